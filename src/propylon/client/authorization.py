"""Role definitions, role assignments and access checks (``Microsoft.Authorization``).

ARM shapes at ``{scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}`` and
``…/roleAssignments/{guid}`` (reference rbac_tokens §1.1, §1.7). Results are flattened the way
``az role`` prints them (``roleName``, ``roleType``, ``permissions`` … at the top level), so
``--query "[0].id"`` reads the same as with ``az``. Role definition files may be ARM-shaped or
the PowerShell shape of the seed (``Name``, ``IsCustom``, ``Actions`` …); both are read by
:func:`propylon.authz.role_from_json`. Example::

    rbac = AuthorizationClient(pipeline, server, subscription_id)
    role = rbac.find_role("AzureML Data Scientist", scope=workspace_id)
    rbac.create_assignment(workspace_id, role["id"], principal_id, "User")
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from propylon.client.http import ARM_SCOPE, Pipeline
from propylon.errors import BadRequest, Conflict, NotFound

__all__ = ["AUTHORIZATION_API_VERSION", "AuthorizationClient", "flatten"]

AUTHORIZATION_API_VERSION = "2022-04-01"
_PROVIDER = "providers/Microsoft.Authorization"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def flatten(resource: Mapping[str, Any]) -> dict[str, Any]:
    """``{"id", "name", "type", "properties": {…}}`` → one level, as ``az role`` prints it."""
    properties = dict(resource.get("properties") or {})
    flat = {k: v for k, v in resource.items() if k != "properties"}
    if "type" in properties and "roleName" in properties:
        # A role definition's properties.type (CustomRole/BuiltInRole) is az's roleType.
        flat["roleType"] = properties.pop("type")
    flat.update(properties)
    return flat


def is_guid(value: str) -> bool:
    return bool(_GUID.match(value))


class AuthorizationClient:
    """RBAC operations against one server, relative to a subscription for defaults."""

    def __init__(self, pipeline: Pipeline, server: str, subscription_id: str) -> None:
        self._pipeline = pipeline
        self._server = server.rstrip("/")
        self.subscription_id = subscription_id

    @property
    def subscription_scope(self) -> str:
        return f"/subscriptions/{self.subscription_id}"

    def _url(self, scope: str, *segments: str) -> str:
        scope = "" if scope.strip() in {"", "/"} else "/" + scope.strip().strip("/")
        tail = "/".join(quote(s, safe="") for s in segments)
        return f"{self._server}{scope}/{_PROVIDER}/{tail}"

    def _params(self, **extra: str) -> dict[str, str]:
        return {"api-version": AUTHORIZATION_API_VERSION, **extra}

    # -- role definitions --------------------------------------------------------------------

    def list_roles(
        self, scope: str | None = None, *, name: str | None = None, custom_only: bool = False
    ) -> list[dict[str, Any]]:
        """Roles visible at ``scope`` (default: the subscription), filtered by name or GUID."""
        extra: dict[str, str] = {}
        if custom_only:
            extra["$filter"] = "type eq 'CustomRole'"
        elif name and not is_guid(name):
            extra["$filter"] = f"roleName eq '{name}'"
        items = self._pipeline.collect(
            self._url(scope or self.subscription_scope, "roleDefinitions"),
            scope=ARM_SCOPE,
            params=self._params(**extra),
        )
        roles = [flatten(item) for item in items]
        if custom_only:
            roles = [r for r in roles if r.get("roleType") == "CustomRole"]
        if name:
            wanted = name.lower()
            roles = [
                r
                for r in roles
                if str(r.get("roleName", "")).lower() == wanted
                or str(r.get("name", "")).lower() == wanted
            ]
        return roles

    def find_role(self, role: str, scope: str | None = None) -> dict[str, Any]:
        """A role by display name, GUID or full id; one clear 404 when there is none."""
        if role.startswith("/"):
            role = role.rstrip("/").rsplit("/", 1)[-1]
        matches = self.list_roles(scope, name=role)
        if not matches:
            raise NotFound(f"Role '{role}' doesn't exist.", code="RoleDefinitionNotFound")
        return matches[0]

    def create_role(self, definition: Mapping[str, Any], *, update: bool = False) -> dict[str, Any]:
        """PUT a role definition (ARM or PowerShell shape) at its first assignable scope.

        A new role without an id gets one derived from its name (so importing the same file on
        two servers names the same role); when updating, the role is looked up by GUID or name.
        """
        # The role reader is the RBAC core's (one reader of both shapes); imported on use because
        # the authz package is heavy for a CLI command that never creates a role.
        from propylon.authz.roles import role_from_json, role_to_arm

        role_id: str | None = None
        if update:
            existing = self._existing_role(definition)
            role_id = str(existing["name"])
        role = role_from_json(definition, role_id=role_id)
        if not role.role_name:
            raise BadRequest(
                "the role definition needs a name ('Name' or 'roleName').",
                code="InvalidRoleDefinition",
                target="roleName",
            )
        if not update and self.list_roles(name=role.role_name):
            raise Conflict(
                f"A role definition named '{role.role_name}' already exists; use "
                "`propylon role definition update` to change it.",
                code="RoleDefinitionWithSameNameExists",
            )
        scope = role.assignable_scopes[0] if role.assignable_scopes else self.subscription_scope
        body = role_to_arm(role, scope=scope)
        reply = self._pipeline.send(
            "PUT",
            self._url(scope, "roleDefinitions", role.id),
            scope=ARM_SCOPE,
            params=self._params(),
            json_body={"properties": body["properties"]},
        )
        return flatten(reply.json())

    def _existing_role(self, definition: Mapping[str, Any]) -> dict[str, Any]:
        for key in ("Id", "name", "id"):
            value = definition.get(key)
            if isinstance(value, str) and value:
                return self.find_role(value)
        for key in ("Name", "roleName"):
            value = definition.get(key) or (definition.get("properties") or {}).get(key)
            if isinstance(value, str) and value:
                return self.find_role(value)
        raise BadRequest(
            "the role definition names no role to update ('Name', 'roleName' or 'Id').",
            code="InvalidRoleDefinition",
        )

    def delete_role(self, role: str, scope: str | None = None) -> dict[str, Any]:
        found = self.find_role(role, scope)
        role_scope = str(found["id"]).split(f"/{_PROVIDER}/", 1)[0] or "/"
        self._pipeline.send(
            "DELETE",
            self._url(role_scope, "roleDefinitions", str(found["name"])),
            scope=ARM_SCOPE,
            params=self._params(),
        )
        return found

    # -- role assignments -----------------------------------------------------------------------

    def create_assignment(
        self,
        scope: str,
        role_definition_id: str,
        principal_id: str,
        principal_type: str | None = None,
        *,
        description: str | None = None,
    ) -> dict[str, Any]:
        properties: dict[str, Any] = {
            "roleDefinitionId": role_definition_id,
            "principalId": principal_id,
        }
        if principal_type:
            properties["principalType"] = principal_type
        if description:
            properties["description"] = description
        reply = self._pipeline.send(
            "PUT",
            self._url(scope, "roleAssignments", str(uuid.uuid4())),
            scope=ARM_SCOPE,
            params=self._params(),
            json_body={"properties": properties},
        )
        return flatten(reply.json())

    def list_assignments(
        self,
        scope: str | None = None,
        *,
        principal_id: str | None = None,
        at_scope_only: bool = False,
    ) -> list[dict[str, Any]]:
        """Assignments at ``scope`` and inherited by it (``atScope()``), or of one principal."""
        query = f"principalId eq '{principal_id}'" if principal_id else "atScope()"
        items = self._pipeline.collect(
            self._url(scope or self.subscription_scope, "roleAssignments"),
            scope=ARM_SCOPE,
            params=self._params(**{"$filter": query}),
        )
        assignments = [flatten(item) for item in items]
        if at_scope_only and scope:
            wanted = scope.rstrip("/").lower()
            assignments = [a for a in assignments if str(a.get("scope", "")).lower() == wanted]
        return assignments

    def delete_assignment(self, assignment_id: str) -> None:
        """Delete by full id (``{scope}/providers/Microsoft.Authorization/roleAssignments/…``)."""
        scope, _, name = assignment_id.partition(f"/{_PROVIDER}/roleAssignments/")
        if not name:
            raise BadRequest(
                f"{assignment_id!r} is not a role assignment id.", code="InvalidAssignmentId"
            )
        self._pipeline.send(
            "DELETE",
            self._url(scope or "/", "roleAssignments", name),
            scope=ARM_SCOPE,
            params=self._params(),
        )

    # -- access checks ----------------------------------------------------------------------

    def check_access(self, scope: str, principal_id: str, action: str) -> dict[str, Any]:
        """The server's decision, with its reason, for ``principal_id`` doing ``action``."""
        reply = self._pipeline.send(
            "POST",
            self._url(scope, "checkAccess"),
            scope=ARM_SCOPE,
            params=self._params(),
            json_body={"principalId": principal_id, "action": action},
        )
        body: dict[str, Any] = reply.json() or {}
        return body

    def permissions(self, scope: str) -> list[dict[str, Any]]:
        """The caller's own permission entries at ``scope`` (ARM Permissions API)."""
        return self._pipeline.collect(
            self._url(scope, "permissions"), scope=ARM_SCOPE, params=self._params()
        )
