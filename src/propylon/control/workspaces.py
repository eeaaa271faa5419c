"""Resource groups and workspaces: the containers every endpoint and asset lives in.

They are synchronous ARM resources (200/201 with ``provisioningState: Succeeded``). A workspace's
``location`` is what azure-ai-ml reads before every endpoint or deployment PUT (reference §1.7);
``properties.disableLocalAuth: true`` turns off key and aml_token credentials inside it. Deleting a
workspace that still holds online endpoints, or a resource group that still holds workspaces, is a
409: the endpoints' running instances must be removed first (``DELETE`` the endpoints).

Only the subscription made at bootstrap exists; any other answers 404 ``SubscriptionNotFound``.

Example::

    row, created = workspaces.put_workspace(sub, "rg", "ws", WorkspaceBody(), caller, if_match=None)
"""

from __future__ import annotations

import uuid
from typing import Any

from propylon.control.arm import (
    ARM_TYPES,
    STORE_TYPES,
    resource_group_id,
    subscription_id,
    system_data,
    workspace_id,
)
from propylon.control.records import children_in, delete_tree_in, get_in, require_in
from propylon.control.schemas import ResourceGroupBody, WorkspaceBody
from propylon.control.validation import check_resource_group_name, check_workspace_name
from propylon.errors import BadRequest, Conflict, NotFound
from propylon.server.access import Caller
from propylon.store import Database, ResourceStore, ResourceWrite, check_etag, utcnow
from propylon.store.models import Resource

__all__ = ["Workspaces", "local_auth_disabled"]


def local_auth_disabled(workspace: Resource) -> bool:
    """Whether the workspace refuses key and aml_token credentials."""
    return bool(workspace.body.get("properties", {}).get("disableLocalAuth"))


class Workspaces:
    def __init__(self, db: Database, resources: ResourceStore, subscription: str) -> None:
        self._db = db
        self._resources = resources
        self._subscription = subscription

    def check_subscription(self, subscription: str) -> None:
        if subscription.lower() != self._subscription.lower():
            raise NotFound(
                f"The subscription {subscription!r} could not be found.",
                code="SubscriptionNotFound",
            )

    # --- resource groups ---------------------------------------------------------------------

    def get_resource_group(self, subscription: str, name: str) -> Resource:
        self.check_subscription(subscription)
        row = self._resources.get(resource_group_id(subscription, name))
        if row is None:
            raise NotFound(
                f"Resource group {name!r} could not be found.", code="ResourceGroupNotFound"
            )
        return row

    def list_resource_groups(self, subscription: str) -> list[Resource]:
        self.check_subscription(subscription)
        return self._resources.children(subscription_id(subscription), STORE_TYPES["resourceGroup"])

    def put_resource_group(
        self, subscription: str, name: str, body: ResourceGroupBody, *, if_match: str | None
    ) -> tuple[Resource, bool]:
        self.check_subscription(subscription)
        check_resource_group_name(name)
        rid = resource_group_id(subscription, name)
        with self._db.transaction() as session:
            existing = get_in(session, rid, lock=True)
            location = body.location or (existing.body.get("location") if existing else None)
            if not location:
                raise BadRequest("'location' is required.", target="location")
            shown_id = existing.body["id"] if existing else rid
            document: dict[str, Any] = {
                "id": shown_id,
                "name": shown_id.rsplit("/", 1)[-1],
                "type": ARM_TYPES["resourceGroup"],
                "location": location,
                "tags": body.tags or {},
                "properties": {"provisioningState": "Succeeded"},
            }
            if body.managed_by:
                document["managedBy"] = body.managed_by
            write = ResourceWrite(
                id=rid,
                parent=subscription_id(self._subscription),
                type=STORE_TYPES["resourceGroup"],
                name=document["name"],
                body=document,
            )
            return self._resources.put_in(session, write, if_match=if_match)

    def delete_resource_group(self, subscription: str, name: str, *, if_match: str | None) -> bool:
        self.check_subscription(subscription)
        with self._db.transaction() as session:
            row = get_in(session, resource_group_id(subscription, name), lock=True)
            if row is None:
                return False
            check_etag(row.etag, if_match)
            if children_in(session, row.id, STORE_TYPES["workspace"]):
                raise Conflict(
                    f"Resource group {name!r} still contains workspaces; delete them first.",
                    code="ResourceGroupNotEmpty",
                )
            delete_tree_in(session, row)
            return True

    # --- workspaces --------------------------------------------------------------------------

    def get_workspace(self, subscription: str, resource_group: str, name: str) -> Resource:
        self.check_subscription(subscription)
        row = self._resources.get(workspace_id(subscription, resource_group, name))
        if row is None:
            raise NotFound(
                f"Could not find workspace {name!r} in resource group {resource_group!r}.",
                code="ResourceNotFound",
            )
        return row

    def list_workspaces(self, subscription: str, resource_group: str | None) -> list[Resource]:
        self.check_subscription(subscription)
        if resource_group is None:
            return self._resources.list_type(STORE_TYPES["workspace"])
        group = self.get_resource_group(subscription, resource_group)
        return self._resources.children(group.id, STORE_TYPES["workspace"])

    def put_workspace(
        self,
        subscription: str,
        resource_group: str,
        name: str,
        body: WorkspaceBody,
        caller: Caller,
        *,
        if_match: str | None,
    ) -> tuple[Resource, bool]:
        self.check_subscription(subscription)
        check_workspace_name(name)
        rid = workspace_id(subscription, resource_group, name)
        with self._db.transaction() as session:
            group = require_in(
                session,
                resource_group_id(subscription, resource_group),
                "resource group",
                resource_group,
            )
            existing = get_in(session, rid, lock=True)
            before = existing.body if existing else {}
            shown_id = (
                before.get("id") or f"{group.body['id']}/providers/{rid.split('/providers/', 1)[1]}"
            )
            given = body.properties.model_dump(by_alias=True, exclude_none=True)
            properties = {
                **before.get("properties", {}),
                **given,
                "friendlyName": given.get("friendlyName") or name,
                "provisioningState": "Succeeded",
                "publicNetworkAccess": given.get("publicNetworkAccess", "Enabled"),
                "disableLocalAuth": bool(given.get("disableLocalAuth", False)),
                "workspaceId": before.get("properties", {}).get("workspaceId") or str(uuid.uuid4()),
            }
            document: dict[str, Any] = {
                "id": shown_id,
                "name": shown_id.rsplit("/", 1)[-1],
                "type": ARM_TYPES["workspace"],
                "location": body.location or before.get("location") or group.body["location"],
                "kind": body.kind or before.get("kind") or "Default",
                "tags": body.tags if body.tags is not None else before.get("tags", {}),
                "identity": before.get("identity") or {"type": "SystemAssigned"},
                "sku": (body.sku.model_dump(exclude_none=True) if body.sku else None)
                or before.get("sku")
                or {"name": "Basic", "tier": "Basic"},
                "systemData": system_data(caller, utcnow(), before.get("systemData")),
                "properties": properties,
            }
            write = ResourceWrite(
                id=rid,
                parent=group.id,
                type=STORE_TYPES["workspace"],
                name=document["name"],
                body=document,
            )
            return self._resources.put_in(session, write, if_match=if_match)

    def delete_workspace(
        self, subscription: str, resource_group: str, name: str, *, if_match: str | None
    ) -> bool:
        self.check_subscription(subscription)
        with self._db.transaction() as session:
            row = get_in(session, workspace_id(subscription, resource_group, name), lock=True)
            if row is None:
                return False
            check_etag(row.etag, if_match)
            if children_in(session, row.id, STORE_TYPES["endpoint"]):
                raise Conflict(
                    f"Workspace {name!r} still contains online endpoints; delete them first.",
                    code="WorkspaceNotEmpty",
                )
            delete_tree_in(session, row)
            return True
