"""Online endpoints: the stable, authenticated address in front of deployments.

An endpoint body carries everything the gateway routes by: ``properties.authMode``
(Key | AMLToken | AADToken), ``traffic``, ``mirrorTraffic``, ``scoringUri``
(``{gateway}/endpoints/{name}/score``) and ``identity``. A write answers at once with
``provisioningState`` Creating/Updating and finishes in an operation (reference §1.4); the new
traffic and auth mode are in the store, and so on the gateway, as soon as the request returns.

Names are unique on the server, because the scoring URI carries only the name: a row of type
``endpointnames`` claims each (lower-cased) name in the transaction that creates the endpoint.
The endpoint's managed identity (:mod:`propylon.control.identities`) and its two keys
(:mod:`propylon.control.keys`) are made in that transaction too, and go with the endpoint.

Each endpoint gets a random uid when it is created, kept by every update and shown as
``properties.properties["propylon.endpointuid"]``. aml_tokens are bound to it, so a token of a
deleted endpoint does not open a new endpoint of the same name (same ARM id, same audience).

Example::

    written = endpoints.put(ws, "my-endpoint", body, caller, lro, if_match=None, if_none_match=None)
    ops.launch(written.op_id, written.row.id, endpoints.provision(written.op_id, written.row.id))
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from propylon.control.actions import Authorize
from propylon.control.arm import (
    ARM_TYPES,
    PROVIDER,
    STORE_TYPES,
    endpoint_id,
    endpoint_name_claim_id,
    system_data,
)
from propylon.control.identities import EndpointIdentities
from propylon.control.keys import EndpointKeys
from propylon.control.operations import LroUrls, Operations
from propylon.control.records import children_in, delete_tree_in, get_in, set_state_in
from propylon.control.schemas import EndpointPatchBody, OnlineEndpointBody
from propylon.control.validation import (
    bad_request_from,
    check_name,
    normalize_mirror_traffic,
    normalize_traffic,
)
from propylon.control.workspaces import local_auth_disabled
from propylon.errors import BadRequest, Conflict, NotFound, PreconditionFailed
from propylon.runtime.base import Backend
from propylon.server.access import Caller
from propylon.store import Database, ResourceStore, ResourceWrite, canonical, check_etag, utcnow
from propylon.store.models import Resource

__all__ = ["UID_PROPERTY", "Endpoints", "Written", "endpoint_uid"]

UID_PROPERTY = "propylon.endpointuid"
"""The key of ``properties.properties`` that holds an endpoint's uid (see the module docstring);
the gateway's routing table reads it too."""

# Keys of ``properties.properties`` the service owns; the client echoes them back (§5.1.3).
_SERVER_PROPERTIES = frozenset(
    {
        "createdby",
        "createdat",
        "lastmodifiedat",
        "azureasyncoperationuri",
        "azureml.onlineendpointid",
        UID_PROPERTY,
    }
)


def endpoint_uid(body: Mapping[str, Any]) -> str | None:
    """The uid of the endpoint with this stored body (None for one stored before uids)."""
    uid = ((body.get("properties") or {}).get("properties") or {}).get(UID_PROPERTY)
    return uid if isinstance(uid, str) and uid else None


@dataclass(frozen=True)
class Written:
    row: Resource
    created: bool
    op_id: str


class Endpoints:
    def __init__(
        self,
        db: Database,
        resources: ResourceStore,
        keys: EndpointKeys,
        identities: EndpointIdentities,
        operations: Operations,
        *,
        gateway_url: Callable[[], str],
        backend: Callable[[], Backend | None],
    ) -> None:
        self._db = db
        self._resources = resources
        self._keys = keys
        self._identities = identities
        self._ops = operations
        self._gateway_url = gateway_url
        self._backend = backend

    # --- reads -------------------------------------------------------------------------------

    def get(self, workspace: Resource, name: str) -> Resource:
        row = self._resources.get(endpoint_id(workspace.id, name))
        if row is None:
            raise NotFound(f"Could not find online endpoint {name!r}.", code="ResourceNotFound")
        return row

    def list(self, workspace: Resource) -> list[Resource]:
        return self._resources.children(workspace.id, STORE_TYPES["endpoint"])

    def render(self, row: Resource) -> dict[str, Any]:
        """The body as GET returns it (URIs follow the gateway's current address)."""
        return self.render_in({**row.body, "properties": dict(row.body["properties"])})

    # --- writes ------------------------------------------------------------------------------

    def put(
        self,
        workspace: Resource,
        name: str,
        body: OnlineEndpointBody,
        caller: Caller,
        lro: LroUrls,
        authorize: Authorize,
        *,
        if_match: str | None,
        if_none_match: str | None,
    ) -> Written:
        check_name(name, what="endpoint")
        return self._write(
            workspace,
            name,
            lambda _: body,
            caller,
            lro,
            authorize,
            if_match=if_match,
            if_none_match=if_none_match,
        )

    def patch(
        self,
        workspace: Resource,
        name: str,
        patch: EndpointPatchBody,
        caller: Caller,
        lro: LroUrls,
        authorize: Authorize,
        *,
        if_match: str | None,
    ) -> Written:
        """Merge ``tags``, ``identity`` and the given properties into the endpoint (each whole)."""
        self.get(workspace, name)
        changes = patch.model_dump(by_alias=True, exclude_none=True)

        def merged(existing: Resource | None) -> OnlineEndpointBody:
            if existing is None:
                raise NotFound(f"Could not find online endpoint {name!r}.")
            current = {k: v for k, v in existing.body.items() if k in ("location", "kind", "sku")}
            current["tags"] = changes.get("tags", existing.body.get("tags"))
            current["identity"] = changes.get("identity", existing.body.get("identity"))
            current["properties"] = {**existing.body["properties"], **changes.get("properties", {})}
            try:
                return OnlineEndpointBody.model_validate(current)
            except ValidationError as exc:
                raise bad_request_from(exc.errors()) from None

        return self._write(
            workspace, name, merged, caller, lro, authorize, if_match=if_match, if_none_match=None
        )

    def _write(
        self,
        workspace: Resource,
        name: str,
        make_body: Callable[[Resource | None], OnlineEndpointBody],
        caller: Caller,
        lro: LroUrls,
        authorize: Authorize,
        *,
        if_match: str | None,
        if_none_match: str | None,
    ) -> Written:
        eid = endpoint_id(workspace.body["id"], name)
        try:
            with self._db.transaction() as session:
                existing = get_in(session, eid, lock=True)
                check_etag(existing.etag if existing else None, if_match)
                if existing is not None and if_none_match and if_none_match.strip() == "*":
                    raise PreconditionFailed("If-None-Match: * but the endpoint exists.")
                if existing is not None and existing.state == "Deleting":
                    raise Conflict(
                        f"Online endpoint {name!r} is being deleted.", code="OperationInProgress"
                    )
                body = make_body(existing)
                props = body.properties
                if props.auth_mode in ("Key", "AMLToken") and local_auth_disabled(workspace):
                    raise BadRequest(
                        f"Workspace {workspace.name!r} disables local authentication "
                        f"(properties.disableLocalAuth), so authMode {props.auth_mode} is not "
                        "allowed; use AADToken.",
                        code="LocalAuthDisabled",
                        target="properties.authMode",
                    )
                deployments = {
                    row.name.lower(): row.name
                    for row in children_in(session, eid, STORE_TYPES["deployment"])
                    if row.state != "Deleting"
                }
                traffic = normalize_traffic(props.traffic, deployments)
                mirror = normalize_mirror_traffic(props.mirror_traffic, traffic, deployments)
                before = existing.body if existing else {}
                if existing is None:
                    self._claim_name_in(session, name, eid)
                    keys = props.keys.model_dump(by_alias=True) if props.keys else None
                    self._keys.create_in(session, eid, keys)
                identity = self._identities.assign_in(
                    session, eid, name, body.identity, before, authorize
                )
                op_id = self._ops.create_in(
                    session, eid, "endpoint.update" if existing else "endpoint.create"
                )
                user_properties = {
                    k: v
                    for k, v in (props.properties or {}).items()
                    if k.lower() not in _SERVER_PROPERTIES
                }
                old = before.get("properties", {})
                document: dict[str, Any] = {
                    "id": before.get("id", eid),
                    "name": before.get("name", name),
                    "type": ARM_TYPES["endpoint"],
                    "location": body.location
                    or before.get("location")
                    or workspace.body["location"],
                    "kind": body.kind or before.get("kind") or "Managed",
                    "tags": body.tags or {},
                    "identity": identity,
                    "systemData": system_data(caller, utcnow(), before.get("systemData")),
                    "properties": {
                        "authMode": props.auth_mode,
                        "description": props.description,
                        "properties": {
                            **user_properties,
                            **{
                                k: v
                                for k, v in old.get("properties", {}).items()
                                if k.lower() not in _SERVER_PROPERTIES
                            },
                            "azureml.onlineendpointid": canonical(eid),
                            # An endpoint stored before uids gets one at its first update.
                            UID_PROPERTY: endpoint_uid(before) or str(uuid.uuid4()),
                            "AzureAsyncOperationUri": lro.status(op_id),
                        },
                        "traffic": traffic,
                        "mirrorTraffic": mirror,
                        "publicNetworkAccess": props.public_network_access
                        or old.get("publicNetworkAccess", "Enabled"),
                        "provisioningState": "Updating" if existing else "Creating",
                    },
                }
                if props.compute:
                    document["properties"]["compute"] = props.compute
                if body.sku is not None:
                    document["sku"] = body.sku.model_dump(exclude_none=True)
                document = self.render_in(document)
                write = ResourceWrite(
                    id=eid,
                    parent=workspace.id,
                    type=STORE_TYPES["endpoint"],
                    name=document["name"],
                    body=document,
                    state=document["properties"]["provisioningState"],
                )
                row, created = self._resources.put_in(session, write)
                return Written(row, created, op_id)
        except IntegrityError:
            raise Conflict(
                f"Online endpoint {name!r} was created concurrently; retry.", code="Conflict"
            ) from None

    def render_in(self, document: dict[str, Any]) -> dict[str, Any]:
        """Set the gateway URIs of an endpoint body (in place) and return it."""
        base = self._gateway_url().rstrip("/")
        name = document["name"]
        document["properties"]["scoringUri"] = f"{base}/endpoints/{name}/score"
        document["properties"]["swaggerUri"] = f"{base}/endpoints/{name}/swagger.json"
        return document

    def _claim_name_in(self, session: Session, name: str, eid: str) -> None:
        claim = endpoint_name_claim_id(name)
        holder = get_in(session, claim, lock=True)
        if holder is not None and holder.body.get("endpointId") != canonical(eid):
            raise BadRequest(
                f"The endpoint name {name!r} is already in use on this server; endpoint names "
                "must be unique because the scoring URI carries only the name.",
                code="EndpointNameNotAvailable",
                target="name",
            )
        self._resources.put_in(
            session,
            ResourceWrite(
                id=claim,
                parent=f"/providers/{PROVIDER}",
                type=STORE_TYPES["endpointName"],
                name=name.lower(),
                body={"endpointId": canonical(eid)},
            ),
        )

    def delete(self, workspace: Resource, name: str, *, if_match: str | None) -> str | None:
        """Mark the endpoint Deleting and return the operation id (None when it did not exist)."""
        eid = endpoint_id(workspace.id, name)
        with self._db.transaction() as session:
            row = get_in(session, eid, lock=True)
            if row is None:
                return None
            check_etag(row.etag, if_match)
            op_id = self._ops.create_in(session, eid, "endpoint.delete")
            for deployment in children_in(session, eid, STORE_TYPES["deployment"]):
                set_state_in(session, deployment, "Deleting")
            set_state_in(session, row, "Deleting")
            return op_id

    # --- operation work ----------------------------------------------------------------------

    async def provision(self, op_id: str, eid: str) -> None:
        """Finish a create or update: nothing to start, the gateway already routes by the body."""
        with self._db.transaction() as session:
            row = get_in(session, eid, lock=True)
            if row is not None and self._ops.is_latest(op_id, eid):
                set_state_in(session, row, "Succeeded")

    async def teardown(self, op_id: str, eid: str) -> None:
        """Remove every deployment's instances, then the endpoint, its keys, identity and name."""
        backend = self._backend()
        for deployment in self._resources.children(eid, STORE_TYPES["deployment"]):
            if backend is not None:
                await backend.remove(deployment.id)
        with self._db.transaction() as session:
            row = get_in(session, eid, lock=True)
            if row is None:
                return
            self._identities.release_in(session, row.body.get("identity") or {})
            self._keys.delete_in(session, eid)
            claim = get_in(session, endpoint_name_claim_id(row.name), lock=True)
            if claim is not None and claim.body.get("endpointId") == row.id:
                delete_tree_in(session, claim)
            delete_tree_in(session, row)

    # --- credentials -------------------------------------------------------------------------

    def require_auth_mode(self, workspace: Resource, row: Resource, mode: str, what: str) -> None:
        """``listKeys``/``regenerateKeys`` need Key, ``token`` needs AMLToken (else 400)."""
        if local_auth_disabled(workspace):
            raise BadRequest(
                f"Workspace {workspace.name!r} disables local authentication "
                f"(properties.disableLocalAuth); {what} is not available.",
                code="LocalAuthDisabled",
                target="properties.authMode",
            )
        current = row.body["properties"]["authMode"]
        if current != mode:
            raise BadRequest(
                f"Online endpoint {row.name!r} uses authMode {current}; {what} needs "
                f"authMode {mode}.",
                code="InvalidAuthMode",
                target="properties.authMode",
            )

    def list_keys(self, workspace: Resource, name: str) -> dict[str, Any]:
        row = self.get(workspace, name)
        self.require_auth_mode(workspace, row, "Key", "listKeys")
        return self._keys.list(row.id)

    def regenerate_key(
        self, workspace: Resource, name: str, key_type: str, key_value: str | None
    ) -> str:
        """Replace one key now; the returned operation is already Succeeded."""
        row = self.get(workspace, name)
        self.require_auth_mode(workspace, row, "Key", "regenerateKeys")
        with self._db.transaction() as session:
            self._keys.regenerate_in(session, row.id, key_type, key_value)
            return self._ops.create_in(session, row.id, "endpoint.regenerateKeys", done=True)
