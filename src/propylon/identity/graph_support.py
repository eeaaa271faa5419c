"""The plumbing of the Graph-shaped directory routes (:mod:`propylon.identity.graph`).

:class:`DirectoryCall` is one authenticated and authorized call (the caller, the directory, the
caller's tenant); the ``*Read``/``*Write``/``*Delete`` dependencies authorize one
``Microsoft.Directory/…`` action at scope ``/``; the rest reads request bodies and ``$filter``
the way Graph does and writes objects as Graph's JSON.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request

from propylon.errors import BadRequest
from propylon.identity.directory import Directory, DirectoryObject, ObjectKind
from propylon.identity.provider import IdentityProvider
from propylon.server.access import AccessControl, Caller, current_caller

__all__ = [
    "ApplicationsDelete",
    "ApplicationsRead",
    "ApplicationsWrite",
    "DirectoryCall",
    "GroupsDelete",
    "GroupsRead",
    "GroupsWrite",
    "JsonBody",
    "ServicePrincipalsDelete",
    "ServicePrincipalsRead",
    "ServicePrincipalsWrite",
    "UsersDelete",
    "UsersRead",
    "UsersWrite",
]

ROOT_SCOPE = "/"
GRAPH = "https://graph.microsoft.com/v1.0"
ODATA_TYPES = {
    ObjectKind.USER: "#microsoft.graph.user",
    ObjectKind.GROUP: "#microsoft.graph.group",
    ObjectKind.SERVICE_PRINCIPAL: "#microsoft.graph.servicePrincipal",
    ObjectKind.MANAGED_IDENTITY: "#microsoft.graph.servicePrincipal",
}
JsonBody = dict[str, Any]


class DirectoryCall:
    """One authorized directory call: the caller, the directory, its tenant."""

    @classmethod
    def authenticated(
        cls, request: Request, caller: Annotated[Caller, Depends(current_caller)]
    ) -> DirectoryCall:
        """FastAPI dependency: the caller, not yet authorized (ARM routes authorize per scope)."""
        return cls(request, caller)

    def __init__(self, request: Request, caller: Caller) -> None:
        ctx = request.app.state.ctx
        self.provider: IdentityProvider = ctx.services["identity"]
        self.access: AccessControl = ctx.services["access"]
        self.ctx = ctx
        self.caller = caller
        self.directory: Directory = self.provider.directory
        own = self.directory.owns_tenant(caller.tid)
        self.tenant = caller.tid if own else self.directory.default_tenant

    def require(self, action: str, scope: str = ROOT_SCOPE) -> None:
        self.access.require(self.caller, action, scope)


def call_with(action: str) -> Callable[[Request, Caller], DirectoryCall]:
    def dependency(
        request: Request, caller: Annotated[Caller, Depends(current_caller)]
    ) -> DirectoryCall:
        call = DirectoryCall(request, caller)
        call.require(action)
        return call

    return dependency


# One dependency per RBAC action the directory routes require (always at scope "/").
ApplicationsDelete = Annotated[
    DirectoryCall, Depends(call_with("Microsoft.Directory/applications/delete"))
]
ApplicationsRead = Annotated[
    DirectoryCall, Depends(call_with("Microsoft.Directory/applications/read"))
]
ApplicationsWrite = Annotated[
    DirectoryCall, Depends(call_with("Microsoft.Directory/applications/write"))
]
GroupsDelete = Annotated[DirectoryCall, Depends(call_with("Microsoft.Directory/groups/delete"))]
GroupsRead = Annotated[DirectoryCall, Depends(call_with("Microsoft.Directory/groups/read"))]
GroupsWrite = Annotated[DirectoryCall, Depends(call_with("Microsoft.Directory/groups/write"))]
ServicePrincipalsDelete = Annotated[
    DirectoryCall, Depends(call_with("Microsoft.Directory/servicePrincipals/delete"))
]
ServicePrincipalsRead = Annotated[
    DirectoryCall, Depends(call_with("Microsoft.Directory/servicePrincipals/read"))
]
ServicePrincipalsWrite = Annotated[
    DirectoryCall, Depends(call_with("Microsoft.Directory/servicePrincipals/write"))
]
UsersDelete = Annotated[DirectoryCall, Depends(call_with("Microsoft.Directory/users/delete"))]
UsersRead = Annotated[DirectoryCall, Depends(call_with("Microsoft.Directory/users/read"))]
UsersWrite = Annotated[DirectoryCall, Depends(call_with("Microsoft.Directory/users/write"))]


def odata_list(name: str, values: Iterable[JsonBody]) -> JsonBody:
    return {"@odata.context": f"{GRAPH}/$metadata#{name}", "value": list(values)}


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def string(body: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(
            f"Property '{name}' is required and must be a non-empty string.",
            code="Request_BadRequest",
            target=name,
        )
    return value.strip()


def boolean(body: Mapping[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise BadRequest(f"Property '{name}' must be true or false.", code="Request_BadRequest")
    return value


def date_time(body: Mapping[str, Any], name: str) -> datetime | None:
    value = body.get(name)
    if value is None:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"Property '{name}' is not a date-time.", code="Request_BadRequest"
        ) from None


_FILTER = re.compile(r"^\s*(\w+)\s+eq\s+'((?:[^']|'')*)'\s*$")


def filtered(
    objects: list[DirectoryObject],
    expression: str | None,
    fields: Mapping[str, Callable[[DirectoryObject], Any]],
) -> list[DirectoryObject]:
    """The ``$filter=name eq 'value'`` subset of OData that ``az ad`` uses."""
    if not expression:
        return objects
    match = _FILTER.match(expression)
    getter = fields.get(match.group(1)) if match else None
    if match is None or getter is None:
        raise BadRequest(
            f"Unsupported $filter; use \"<property> eq '<value>'\" with one of "
            f"{', '.join(fields)}.",
            code="Request_UnsupportedQuery",
        )
    wanted = match.group(2).replace("''", "'").lower()
    return [o for o in objects if str(getter(o) or "").lower() == wanted]


# -- JSON shapes ----------------------------------------------------------------------------


def user_json(user: DirectoryObject) -> JsonBody:
    return {
        "@odata.type": ODATA_TYPES[user.kind],
        "id": user.id,
        "userPrincipalName": user.upn,
        "displayName": user.display_name,
        "mailNickname": user.body.get("mailNickname"),
        "mail": None,
        "accountEnabled": user.enabled,
        "createdDateTime": iso(user.created_at),
    }


def group_json(group: DirectoryObject) -> JsonBody:
    return {
        "@odata.type": ODATA_TYPES[group.kind],
        "id": group.id,
        "displayName": group.display_name,
        "description": group.body.get("description"),
        "mailNickname": group.body.get("mailNickname"),
        "securityEnabled": True,
        "mailEnabled": False,
        "groupTypes": [],
        "createdDateTime": iso(group.created_at),
    }


def sp_json(sp: DirectoryObject) -> JsonBody:
    managed = sp.kind is ObjectKind.MANAGED_IDENTITY
    return {
        "@odata.type": ODATA_TYPES[sp.kind],
        "id": sp.id,
        "appId": sp.client_id,
        "displayName": sp.display_name,
        "accountEnabled": sp.enabled,
        "servicePrincipalType": "ManagedIdentity" if managed else "Application",
        "servicePrincipalNames": [sp.client_id] + ([sp.resource_id] if sp.resource_id else []),
        "alternativeNames": [sp.resource_id] if managed and sp.resource_id else [],
        "appOwnerOrganizationId": sp.tenant_id,
        "createdDateTime": iso(sp.created_at),
    }


def object_json(obj: DirectoryObject) -> JsonBody:
    if obj.kind is ObjectKind.USER:
        return user_json(obj)
    if obj.kind is ObjectKind.GROUP:
        return group_json(obj)
    return sp_json(obj)


def application_json(directory: Directory, app: DirectoryObject) -> JsonBody:
    application = app.body.get("application")
    details = application if isinstance(application, Mapping) else {}
    return {
        "id": app.application_id,
        "appId": app.client_id,
        "displayName": app.display_name,
        "isFallbackPublicClient": app.public_client,
        "identifierUris": list(details.get("identifierUris") or []),
        "signInAudience": "AzureADMyOrg",
        "createdDateTime": iso(app.created_at),
        "passwordCredentials": [p.graph() for p in directory.credentials.secrets_of(app.id)],
        "keyCredentials": [k.graph() for k, _ in directory.credentials.certificates_of(app.id)],
    }
