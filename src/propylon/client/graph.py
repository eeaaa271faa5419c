"""The directory: users, groups, applications and service principals, Microsoft Graph-shaped.

Paths and bodies follow Graph v1.0 (``/v1.0/users``, ``/v1.0/groups/{id}/members/$ref``,
``/v1.0/applications/{id}/addPassword`` …), as ``az ad`` sends them. :meth:`resolve_principal`
turns what people type after ``--assignee`` (an object id, an app id or a user principal name)
into the object id and principal type a role assignment needs. Example::

    graph = GraphClient(pipeline, server)
    user = graph.create_user("alice@contoso.local", "Alice", password)
    principal_id, principal_type = graph.resolve_principal("alice@contoso.local")
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from propylon.client.http import GRAPH_SCOPE, Pipeline
from propylon.errors import BadRequest, NotFound

__all__ = ["PRINCIPAL_TYPES", "GraphClient"]

#: Graph ``@odata.type`` → the ``principalType`` of a role assignment.
PRINCIPAL_TYPES = {
    "#microsoft.graph.user": "User",
    "#microsoft.graph.group": "Group",
    "#microsoft.graph.servicePrincipal": "ServicePrincipal",
}
_COLLECTION_TYPES = {
    "users": "User",
    "groups": "Group",
    "servicePrincipals": "ServicePrincipal",
}


def _odata_quote(value: str) -> str:
    return value.replace("'", "''")


class GraphClient:
    """Directory calls to ``{server}/v1.0``."""

    def __init__(self, pipeline: Pipeline, server: str) -> None:
        self._pipeline = pipeline
        self._base = server.rstrip("/") + "/v1.0"

    def _url(self, *segments: str) -> str:
        return "/".join((self._base, *(quote(s, safe="@$") for s in segments)))

    def _get(self, *segments: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = (
            self._pipeline.send(
                "GET", self._url(*segments), scope=GRAPH_SCOPE, params=params
            ).json()
            or {}
        )
        return body

    def _post(self, *segments: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = self._pipeline.send("POST", self._url(*segments), scope=GRAPH_SCOPE, json_body=body)
        result: dict[str, Any] = reply.json() or {}
        return result

    def _list(self, collection: str, query: str | None = None) -> list[dict[str, Any]]:
        params = {"$filter": query} if query else None
        return self._pipeline.collect(self._url(collection), scope=GRAPH_SCOPE, params=params)

    def _delete(self, *segments: str) -> None:
        self._pipeline.send("DELETE", self._url(*segments), scope=GRAPH_SCOPE)

    # -- users ----------------------------------------------------------------------------------

    def create_user(
        self,
        user_principal_name: str,
        display_name: str,
        password: str,
        *,
        force_change_password: bool = False,
    ) -> dict[str, Any]:
        return self._post(
            "users",
            body={
                "accountEnabled": True,
                "displayName": display_name,
                "userPrincipalName": user_principal_name,
                "mailNickname": user_principal_name.split("@", 1)[0],
                "passwordProfile": {
                    "password": password,
                    "forceChangePasswordNextSignIn": force_change_password,
                },
            },
        )

    def list_users(self, *, display_name: str | None = None, upn: str | None = None) -> list[Any]:
        query = None
        if upn:
            query = f"userPrincipalName eq '{_odata_quote(upn)}'"
        elif display_name:
            query = f"startswith(displayName,'{_odata_quote(display_name)}')"
        return self._list("users", query)

    def get_user(self, user: str) -> dict[str, Any]:
        """By object id or user principal name."""
        return self._get("users", user)

    def delete_user(self, user: str) -> None:
        self._delete("users", self.get_user(user)["id"])

    # -- groups ---------------------------------------------------------------------------------

    def create_group(
        self, display_name: str, mail_nickname: str, *, description: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "displayName": display_name,
            "mailNickname": mail_nickname,
            "mailEnabled": False,
            "securityEnabled": True,
        }
        if description:
            body["description"] = description
        return self._post("groups", body=body)

    def list_groups(self, *, display_name: str | None = None) -> list[Any]:
        query = f"startswith(displayName,'{_odata_quote(display_name)}')" if display_name else None
        return self._list("groups", query)

    def get_group(self, group: str) -> dict[str, Any]:
        """By object id, else by display name (which must be unique), as ``az ad group`` does."""
        try:
            return self._get("groups", group)
        except (NotFound, BadRequest):
            matches = self._list("groups", f"displayName eq '{_odata_quote(group)}'")
        if len(matches) == 1:
            found: dict[str, Any] = matches[0]
            return found
        if not matches:
            raise NotFound(f"Group '{group}' doesn't exist.", code="Request_ResourceNotFound")
        raise BadRequest(
            f"More than one group is named '{group}'; use its object id.", code="AmbiguousGroup"
        )

    def delete_group(self, group: str) -> None:
        self._delete("groups", self.get_group(group)["id"])

    def add_member(self, group: str, member_id: str) -> None:
        group_id = self.get_group(group)["id"]
        self._post(
            "groups",
            group_id,
            "members",
            "$ref",
            body={"@odata.id": f"{self._base}/directoryObjects/{member_id}"},
        )

    def remove_member(self, group: str, member_id: str) -> None:
        group_id = self.get_group(group)["id"]
        self._delete("groups", group_id, "members", member_id, "$ref")

    def list_members(self, group: str) -> list[Any]:
        group_id = self.get_group(group)["id"]
        return self._pipeline.collect(self._url("groups", group_id, "members"), scope=GRAPH_SCOPE)

    # -- applications and service principals ----------------------------------------------------

    def create_application(self, display_name: str) -> dict[str, Any]:
        return self._post("applications", body={"displayName": display_name})

    def add_password(self, application_object_id: str, display_name: str) -> dict[str, Any]:
        """A new client secret; the response is the only time its ``secretText`` is shown."""
        return self._post(
            "applications",
            application_object_id,
            "addPassword",
            body={"passwordCredential": {"displayName": display_name}},
        )

    def create_service_principal(self, app_id: str) -> dict[str, Any]:
        return self._post("servicePrincipals", body={"appId": app_id})

    def list_service_principals(self, *, display_name: str | None = None) -> list[Any]:
        query = f"startswith(displayName,'{_odata_quote(display_name)}')" if display_name else None
        return self._list("servicePrincipals", query)

    def get_service_principal(self, identifier: str) -> dict[str, Any]:
        """By object id, else by app id (``az ad sp show --id`` accepts either)."""
        try:
            return self._get("servicePrincipals", identifier)
        except (NotFound, BadRequest):
            matches = self._list("servicePrincipals", f"appId eq '{_odata_quote(identifier)}'")
        if not matches:
            raise NotFound(
                f"Service principal '{identifier}' doesn't exist.",
                code="Request_ResourceNotFound",
            )
        found: dict[str, Any] = matches[0]
        return found

    def delete_service_principal(self, identifier: str) -> None:
        self._delete("servicePrincipals", self.get_service_principal(identifier)["id"])

    # -- assignees ------------------------------------------------------------------------------

    def resolve_principal(self, assignee: str) -> tuple[str, str]:
        """``(object id, principalType)`` of a user (id or UPN), group or service principal
        (object id or app id)."""
        if "@" in assignee:
            return str(self.get_user(assignee)["id"]), "User"
        for collection in ("users", "groups", "servicePrincipals"):
            try:
                found = self._get(collection, assignee)
            except (NotFound, BadRequest):
                continue
            kind = PRINCIPAL_TYPES.get(str(found.get("@odata.type")), _COLLECTION_TYPES[collection])
            return str(found["id"]), kind
        matches = self._list("servicePrincipals", f"appId eq '{_odata_quote(assignee)}'")
        if matches:
            return str(matches[0]["id"]), "ServicePrincipal"
        raise NotFound(
            f"Cannot find user or service principal in graph database for '{assignee}'. If the "
            "assignee is an object id, pass --assignee-object-id and --assignee-principal-type.",
            code="PrincipalNotFound",
        )
