"""Directory REST, shaped like Microsoft Graph v1.0.

Graph routes (JSON as Graph writes it; lists are ``{"@odata.context", "value": [...]}``):

- ``/v1.0/users`` GET, POST; ``/v1.0/users/{id|userPrincipalName}`` GET, PATCH
  (``displayName``, ``accountEnabled``, ``passwordProfile.password``), DELETE;
- ``/v1.0/groups`` GET, POST; ``/v1.0/groups/{id}`` GET, DELETE; ``/v1.0/groups/{id}/members``
  GET; ``/v1.0/groups/{id}/members/$ref`` POST ``{"@odata.id": ".../directoryObjects/{id}"}``;
  ``/v1.0/groups/{id}/members/{member}/$ref`` DELETE;
- ``/v1.0/{users|servicePrincipals|groups|directoryObjects}/{id}/getMemberObjects`` POST
  (transitive groups — the endpoint the groups-overage pointer names);
- ``/v1.0/applications`` GET, POST; ``/v1.0/applications/{id}`` GET, PATCH, DELETE;
  ``…/addPassword``, ``…/removePassword``, ``…/addKey``, ``…/removeKey`` POST. Here an
  application and its service principal are created together; ``addKey``'s ``proof`` is not
  required (the caller is already authorized by RBAC);
- ``/v1.0/servicePrincipals`` GET, POST ``{"appId"}`` (returns the existing principal);
  ``/v1.0/servicePrincipals/{id}`` GET, PATCH (``accountEnabled``), DELETE.

**Authorization.** Every call is authenticated (``current_caller``: a management-audience
token) and authorized by RBAC at scope ``/`` with the actions ``Microsoft.Directory/
{users|groups|applications|servicePrincipals}/{read|write|delete}`` — directory objects live
above every subscription, as in Entra, so only roles granted at the root (Owner's ``*``, or a
custom role with ``Microsoft.Directory/*``) manage them. Membership changes are
``groups/write``; credentials are ``applications/write``. (User-assigned identities are ARM
resources: :mod:`~propylon.identity.user_assigned_identities`.) The directory is the caller's
tenant when it is ours, else the default tenant.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response

from propylon.errors import BadRequest, NotFound
from propylon.identity.directory import Directory, DirectoryObject, ObjectKind
from propylon.identity.provider import IdentityProvider
from propylon.server.access import AccessControl, Caller, current_caller

__all__ = ["DirectoryCall", "router"]

ROOT_SCOPE = "/"
_GRAPH = "https://graph.microsoft.com/v1.0"
_ODATA_TYPES = {
    ObjectKind.USER: "#microsoft.graph.user",
    ObjectKind.GROUP: "#microsoft.graph.group",
    ObjectKind.SERVICE_PRINCIPAL: "#microsoft.graph.servicePrincipal",
    ObjectKind.MANAGED_IDENTITY: "#microsoft.graph.servicePrincipal",
}
JsonBody = dict[str, Any]


def router() -> APIRouter:
    routes = APIRouter(tags=["directory"])
    add = routes.add_api_route
    add("/v1.0/users", _list_users, methods=["GET"])
    add("/v1.0/users", _create_user, methods=["POST"], status_code=201)
    add("/v1.0/users/{oid}", _get_user, methods=["GET"])
    add("/v1.0/users/{oid}", _update_user, methods=["PATCH"], status_code=204)
    add("/v1.0/users/{oid}", _delete_user, methods=["DELETE"], status_code=204)
    add("/v1.0/groups", _list_groups, methods=["GET"])
    add("/v1.0/groups", _create_group, methods=["POST"], status_code=201)
    add("/v1.0/groups/{oid}", _get_group, methods=["GET"])
    add("/v1.0/groups/{oid}", _delete_group, methods=["DELETE"], status_code=204)
    add("/v1.0/groups/{oid}/members", _list_members, methods=["GET"])
    add("/v1.0/groups/{oid}/members/$ref", _add_member, methods=["POST"], status_code=204)
    add(
        "/v1.0/groups/{oid}/members/{member}/$ref",
        _remove_member,
        methods=["DELETE"],
        status_code=204,
    )
    add("/v1.0/{collection}/{oid}/getMemberObjects", _member_objects, methods=["POST"])
    add("/v1.0/applications", _list_applications, methods=["GET"])
    add("/v1.0/applications", _create_application, methods=["POST"], status_code=201)
    add("/v1.0/applications/{app}", _get_application, methods=["GET"])
    add("/v1.0/applications/{app}", _update_application, methods=["PATCH"], status_code=204)
    add("/v1.0/applications/{app}", _delete_application, methods=["DELETE"], status_code=204)
    add("/v1.0/applications/{app}/addPassword", _add_password, methods=["POST"])
    add("/v1.0/applications/{app}/removePassword", _remove_credential, methods=["POST"])
    add("/v1.0/applications/{app}/addKey", _add_key, methods=["POST"])
    add("/v1.0/applications/{app}/removeKey", _remove_credential, methods=["POST"])
    add("/v1.0/servicePrincipals", _list_service_principals, methods=["GET"])
    add("/v1.0/servicePrincipals", _create_service_principal, methods=["POST"], status_code=201)
    add("/v1.0/servicePrincipals/{oid}", _get_service_principal, methods=["GET"])
    add("/v1.0/servicePrincipals/{oid}", _update_service_principal, methods=["PATCH"])
    add("/v1.0/servicePrincipals/{oid}", _delete_service_principal, methods=["DELETE"])
    return routes


# -- plumbing -------------------------------------------------------------------------------


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


def _call(action: str) -> Callable[[Request, Caller], DirectoryCall]:
    def dependency(
        request: Request, caller: Annotated[Caller, Depends(current_caller)]
    ) -> DirectoryCall:
        call = DirectoryCall(request, caller)
        call.require(action)
        return call

    return dependency


# One dependency per RBAC action the directory routes require (always at scope "/").
ApplicationsDelete = Annotated[
    DirectoryCall, Depends(_call("Microsoft.Directory/applications/delete"))
]
ApplicationsRead = Annotated[DirectoryCall, Depends(_call("Microsoft.Directory/applications/read"))]
ApplicationsWrite = Annotated[
    DirectoryCall, Depends(_call("Microsoft.Directory/applications/write"))
]
GroupsDelete = Annotated[DirectoryCall, Depends(_call("Microsoft.Directory/groups/delete"))]
GroupsRead = Annotated[DirectoryCall, Depends(_call("Microsoft.Directory/groups/read"))]
GroupsWrite = Annotated[DirectoryCall, Depends(_call("Microsoft.Directory/groups/write"))]
ServicePrincipalsDelete = Annotated[
    DirectoryCall, Depends(_call("Microsoft.Directory/servicePrincipals/delete"))
]
ServicePrincipalsRead = Annotated[
    DirectoryCall, Depends(_call("Microsoft.Directory/servicePrincipals/read"))
]
ServicePrincipalsWrite = Annotated[
    DirectoryCall, Depends(_call("Microsoft.Directory/servicePrincipals/write"))
]
UsersDelete = Annotated[DirectoryCall, Depends(_call("Microsoft.Directory/users/delete"))]
UsersRead = Annotated[DirectoryCall, Depends(_call("Microsoft.Directory/users/read"))]
UsersWrite = Annotated[DirectoryCall, Depends(_call("Microsoft.Directory/users/write"))]


def _collection(name: str, values: Iterable[JsonBody]) -> JsonBody:
    return {"@odata.context": f"{_GRAPH}/$metadata#{name}", "value": list(values)}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _string(body: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
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


def _bool(body: Mapping[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise BadRequest(f"Property '{name}' must be true or false.", code="Request_BadRequest")
    return value


def _date(body: Mapping[str, Any], name: str) -> datetime | None:
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


def _filter(
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


def _user_json(user: DirectoryObject) -> JsonBody:
    return {
        "@odata.type": _ODATA_TYPES[user.kind],
        "id": user.id,
        "userPrincipalName": user.upn,
        "displayName": user.display_name,
        "mailNickname": user.body.get("mailNickname"),
        "mail": None,
        "accountEnabled": user.enabled,
        "createdDateTime": _iso(user.created_at),
    }


def _group_json(group: DirectoryObject) -> JsonBody:
    return {
        "@odata.type": _ODATA_TYPES[group.kind],
        "id": group.id,
        "displayName": group.display_name,
        "description": group.body.get("description"),
        "mailNickname": group.body.get("mailNickname"),
        "securityEnabled": True,
        "mailEnabled": False,
        "groupTypes": [],
        "createdDateTime": _iso(group.created_at),
    }


def _sp_json(sp: DirectoryObject) -> JsonBody:
    managed = sp.kind is ObjectKind.MANAGED_IDENTITY
    return {
        "@odata.type": _ODATA_TYPES[sp.kind],
        "id": sp.id,
        "appId": sp.client_id,
        "displayName": sp.display_name,
        "accountEnabled": sp.enabled,
        "servicePrincipalType": "ManagedIdentity" if managed else "Application",
        "servicePrincipalNames": [sp.client_id] + ([sp.resource_id] if sp.resource_id else []),
        "alternativeNames": [sp.resource_id] if managed and sp.resource_id else [],
        "appOwnerOrganizationId": sp.tenant_id,
        "createdDateTime": _iso(sp.created_at),
    }


def _object_json(obj: DirectoryObject) -> JsonBody:
    if obj.kind is ObjectKind.USER:
        return _user_json(obj)
    if obj.kind is ObjectKind.GROUP:
        return _group_json(obj)
    return _sp_json(obj)


def _application_json(directory: Directory, app: DirectoryObject) -> JsonBody:
    application = app.body.get("application")
    details = application if isinstance(application, Mapping) else {}
    return {
        "id": app.application_id,
        "appId": app.client_id,
        "displayName": app.display_name,
        "isFallbackPublicClient": app.public_client,
        "identifierUris": list(details.get("identifierUris") or []),
        "signInAudience": "AzureADMyOrg",
        "createdDateTime": _iso(app.created_at),
        "passwordCredentials": [p.graph() for p in directory.credentials.secrets_of(app.id)],
        "keyCredentials": [k.graph() for k, _ in directory.credentials.certificates_of(app.id)],
    }


# -- users ----------------------------------------------------------------------------------

_USER_FIELDS: Mapping[str, Callable[[DirectoryObject], Any]] = {
    "userPrincipalName": lambda o: o.upn,
    "displayName": lambda o: o.display_name,
    "id": lambda o: o.id,
}


def _find_user(call: DirectoryCall, oid: str) -> DirectoryObject:
    found = call.directory.get(oid, tenant_id=call.tenant)
    if found is None and "@" in oid:
        found = call.directory.find_user(call.tenant, oid)
    if found is None or found.kind is not ObjectKind.USER:
        raise NotFound(
            f"Resource '{oid}' does not exist or one of its queried reference-property objects "
            "are not present.",
            code="Request_ResourceNotFound",
        )
    return found


def _list_users(
    request: Request,
    call: UsersRead,
) -> JsonBody:
    users = _filter(
        call.directory.list_objects(call.tenant, ObjectKind.USER),
        request.query_params.get("$filter"),
        _USER_FIELDS,
    )
    return _collection("users", (_user_json(u) for u in users))


def _create_user(
    body: Annotated[JsonBody, Body()],
    call: UsersWrite,
) -> JsonBody:
    profile = body.get("passwordProfile")
    if not isinstance(profile, Mapping):
        raise BadRequest("Property 'passwordProfile' is required.", code="Request_BadRequest")
    user = call.directory.create_user(
        call.tenant,
        _string(body, "userPrincipalName") or "",
        _string(body, "displayName") or "",
        _string(profile, "password") or "",
        enabled=_bool(body, "accountEnabled") is not False,
        mail_nickname=_string(body, "mailNickname", required=False),
    )
    return _user_json(user)


def _get_user(oid: str, call: UsersRead) -> JsonBody:
    return _user_json(_find_user(call, oid))


def _update_user(
    oid: str,
    body: Annotated[JsonBody, Body()],
    call: UsersWrite,
) -> Response:
    user = _find_user(call, oid)
    profile = body.get("passwordProfile")
    password = _string(profile, "password") if isinstance(profile, Mapping) else None
    call.directory.update(
        user.id,
        tenant_id=call.tenant,
        display_name=_string(body, "displayName", required=False),
        enabled=_bool(body, "accountEnabled"),
        password=password,
    )
    return Response(status_code=204)


def _delete_user(oid: str, call: UsersDelete) -> Response:
    call.directory.delete(_find_user(call, oid).id, tenant_id=call.tenant)
    return Response(status_code=204)


# -- groups ---------------------------------------------------------------------------------

_GROUP_FIELDS: Mapping[str, Callable[[DirectoryObject], Any]] = {
    "displayName": lambda o: o.display_name,
    "mailNickname": lambda o: o.body.get("mailNickname"),
    "id": lambda o: o.id,
}


def _list_groups(
    request: Request,
    call: GroupsRead,
) -> JsonBody:
    groups = _filter(
        call.directory.list_objects(call.tenant, ObjectKind.GROUP),
        request.query_params.get("$filter"),
        _GROUP_FIELDS,
    )
    return _collection("groups", (_group_json(g) for g in groups))


def _create_group(
    body: Annotated[JsonBody, Body()],
    call: GroupsWrite,
) -> JsonBody:
    group = call.directory.create_group(
        call.tenant,
        _string(body, "displayName") or "",
        description=_string(body, "description", required=False),
        mail_nickname=_string(body, "mailNickname", required=False),
    )
    return _group_json(group)


def _get_group(oid: str, call: GroupsRead) -> JsonBody:
    return _group_json(call.directory.require(oid, tenant_id=call.tenant, kinds=[ObjectKind.GROUP]))


def _delete_group(oid: str, call: GroupsDelete) -> Response:
    call.directory.require(oid, tenant_id=call.tenant, kinds=[ObjectKind.GROUP])
    call.directory.delete(oid, tenant_id=call.tenant)
    return Response(status_code=204)


def _list_members(oid: str, call: GroupsRead) -> JsonBody:
    call.directory.require(oid, tenant_id=call.tenant, kinds=[ObjectKind.GROUP])
    return _collection("directoryObjects", (_object_json(m) for m in call.directory.members(oid)))


def _add_member(
    oid: str,
    body: Annotated[JsonBody, Body()],
    call: GroupsWrite,
) -> Response:
    reference = _string(body, "@odata.id") or ""
    member = reference.rstrip("/").rsplit("/", 1)[-1]
    call.directory.add_member(oid, member, tenant_id=call.tenant)
    return Response(status_code=204)


def _remove_member(
    oid: str,
    member: str,
    call: GroupsWrite,
) -> Response:
    call.directory.remove_member(oid, member, tenant_id=call.tenant)
    return Response(status_code=204)


def _member_objects(
    collection: str,
    oid: str,
    call: UsersRead,
) -> JsonBody:
    if collection not in ("users", "servicePrincipals", "groups", "directoryObjects"):
        raise NotFound(f"Resource '{collection}' does not exist.", code="Request_ResourceNotFound")
    call.directory.require(oid, tenant_id=call.tenant)
    return {
        "@odata.context": f"{_GRAPH}/$metadata#Collection(Edm.String)",
        "value": sorted(call.directory.groups_of(oid)),
    }


# -- applications ---------------------------------------------------------------------------


def _find_application(call: DirectoryCall, app: str) -> DirectoryObject:
    found = call.directory.find_application(call.tenant, app)
    if found is None:
        raise NotFound(
            f"Resource '{app}' does not exist or one of its queried reference-property objects "
            "are not present.",
            code="Request_ResourceNotFound",
        )
    return found


def _list_applications(
    request: Request,
    call: ApplicationsRead,
) -> JsonBody:
    apps = _filter(
        call.directory.list_objects(call.tenant, ObjectKind.SERVICE_PRINCIPAL),
        request.query_params.get("$filter"),
        {"appId": lambda o: o.client_id, "displayName": lambda o: o.display_name},
    )
    return _collection("applications", (_application_json(call.directory, a) for a in apps))


def _create_application(
    body: Annotated[JsonBody, Body()],
    call: ApplicationsWrite,
) -> JsonBody:
    uris = body.get("identifierUris") or []
    if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
        raise BadRequest("identifierUris must be a list of strings.", code="Request_BadRequest")
    app = call.directory.create_application(
        call.tenant,
        _string(body, "displayName") or "",
        public_client=_bool(body, "isFallbackPublicClient") is True,
        identifier_uris=uris,
    )
    return _application_json(call.directory, app)


def _get_application(
    app: str,
    call: ApplicationsRead,
) -> JsonBody:
    return _application_json(call.directory, _find_application(call, app))


def _update_application(
    app: str,
    body: Annotated[JsonBody, Body()],
    call: ApplicationsWrite,
) -> Response:
    found = _find_application(call, app)
    application = dict(found.body.get("application") or {})
    public = _bool(body, "isFallbackPublicClient")
    if public is not None:
        application["isFallbackPublicClient"] = public
    if "identifierUris" in body:
        uris = body["identifierUris"]
        if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
            raise BadRequest("identifierUris must be a list of strings.", code="Request_BadRequest")
        application["identifierUris"] = uris
    application.setdefault("id", found.application_id)
    call.directory.update(
        found.id,
        tenant_id=call.tenant,
        display_name=_string(body, "displayName", required=False),
        body={"application": application},
    )
    return Response(status_code=204)


def _delete_application(
    app: str,
    call: ApplicationsDelete,
) -> Response:
    call.directory.delete(_find_application(call, app).id, tenant_id=call.tenant)
    return Response(status_code=204)


def _add_password(
    app: str,
    call: ApplicationsWrite,
    body: Annotated[JsonBody | None, Body()] = None,
) -> JsonBody:
    found = _find_application(call, app)
    credential = (body or {}).get("passwordCredential") or {}
    if not isinstance(credential, Mapping):
        raise BadRequest("passwordCredential must be an object.", code="Request_BadRequest")
    added = call.directory.credentials.add_secret(
        found.id,
        tenant_id=call.tenant,
        display_name=_string(credential, "displayName", required=False),
        end=_date(credential, "endDateTime"),
    )
    return added.graph()


def _add_key(
    app: str,
    body: Annotated[JsonBody, Body()],
    call: ApplicationsWrite,
) -> JsonBody:
    found = _find_application(call, app)
    credential = body.get("keyCredential")
    if not isinstance(credential, Mapping):
        raise BadRequest("keyCredential is required.", code="Request_BadRequest")
    if (
        credential.get("type", "AsymmetricX509Cert") != "AsymmetricX509Cert"
        or credential.get("usage", "Verify") != "Verify"
    ):
        raise BadRequest(
            "Only keyCredentials of type AsymmetricX509Cert with usage Verify are supported.",
            code="Request_BadRequest",
        )
    added = call.directory.credentials.add_certificate(
        found.id,
        _string(credential, "key") or "",
        tenant_id=call.tenant,
        display_name=_string(credential, "displayName", required=False),
        end=_date(credential, "endDateTime"),
    )
    return added.graph()


def _remove_credential(
    app: str,
    body: Annotated[JsonBody, Body()],
    call: ApplicationsWrite,
) -> Response:
    found = _find_application(call, app)
    call.directory.credentials.remove(found.id, _string(body, "keyId") or "", tenant_id=call.tenant)
    return Response(status_code=204)


# -- service principals ---------------------------------------------------------------------


def _find_sp(call: DirectoryCall, oid: str) -> DirectoryObject:
    return call.directory.require(
        oid,
        tenant_id=call.tenant,
        kinds=[ObjectKind.SERVICE_PRINCIPAL, ObjectKind.MANAGED_IDENTITY],
    )


def _list_service_principals(
    request: Request,
    call: ServicePrincipalsRead,
) -> JsonBody:
    principals = [
        *call.directory.list_objects(call.tenant, ObjectKind.SERVICE_PRINCIPAL),
        *call.directory.list_objects(call.tenant, ObjectKind.MANAGED_IDENTITY),
    ]
    selected = _filter(
        principals,
        request.query_params.get("$filter"),
        {
            "appId": lambda o: o.client_id,
            "displayName": lambda o: o.display_name,
            "id": lambda o: o.id,
        },
    )
    return _collection("servicePrincipals", (_sp_json(p) for p in selected))


def _create_service_principal(
    body: Annotated[JsonBody, Body()],
    call: ServicePrincipalsWrite,
) -> JsonBody:
    # Applications come with their principal here, so this only confirms it exists.
    app_id = _string(body, "appId") or ""
    found = call.directory.find_client(call.tenant, app_id)
    if found is None:
        raise BadRequest(
            f"The appId '{app_id}' of the service principal does not reference a valid "
            "application object.",
            code="Request_BadRequest",
        )
    return _sp_json(found)


def _get_service_principal(
    oid: str,
    call: ServicePrincipalsRead,
) -> JsonBody:
    return _sp_json(_find_sp(call, oid))


def _update_service_principal(
    oid: str,
    body: Annotated[JsonBody, Body()],
    call: ServicePrincipalsWrite,
) -> Response:
    found = _find_sp(call, oid)
    call.directory.update(
        found.id,
        tenant_id=call.tenant,
        display_name=_string(body, "displayName", required=False),
        enabled=_bool(body, "accountEnabled"),
    )
    return Response(status_code=204)


def _delete_service_principal(
    oid: str,
    call: ServicePrincipalsDelete,
) -> Response:
    call.directory.delete(_find_sp(call, oid).id, tenant_id=call.tenant)
    return Response(status_code=204)
