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

This module has the users and groups routes; :mod:`~propylon.identity.graph_applications` the
applications and service principals, :mod:`~propylon.identity.graph_support` what they share.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from propylon.errors import BadRequest, NotFound
from propylon.identity.directory import DirectoryObject, ObjectKind
from propylon.identity.graph_applications import (
    add_key,
    add_password,
    create_application,
    create_service_principal,
    delete_application,
    delete_service_principal,
    get_application,
    get_service_principal,
    list_applications,
    list_service_principals,
    remove_credential,
    update_application,
    update_service_principal,
)
from propylon.identity.graph_support import (
    GRAPH,
    DirectoryCall,
    GroupsDelete,
    GroupsRead,
    GroupsWrite,
    JsonBody,
    UsersDelete,
    UsersRead,
    UsersWrite,
    boolean,
    filtered,
    group_json,
    object_json,
    odata_list,
    string,
    user_json,
)

__all__ = ["router"]


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
    add("/v1.0/applications", list_applications, methods=["GET"])
    add("/v1.0/applications", create_application, methods=["POST"], status_code=201)
    add("/v1.0/applications/{app}", get_application, methods=["GET"])
    add("/v1.0/applications/{app}", update_application, methods=["PATCH"], status_code=204)
    add("/v1.0/applications/{app}", delete_application, methods=["DELETE"], status_code=204)
    add("/v1.0/applications/{app}/addPassword", add_password, methods=["POST"])
    add("/v1.0/applications/{app}/removePassword", remove_credential, methods=["POST"])
    add("/v1.0/applications/{app}/addKey", add_key, methods=["POST"])
    add("/v1.0/applications/{app}/removeKey", remove_credential, methods=["POST"])
    add("/v1.0/servicePrincipals", list_service_principals, methods=["GET"])
    add("/v1.0/servicePrincipals", create_service_principal, methods=["POST"], status_code=201)
    add("/v1.0/servicePrincipals/{oid}", get_service_principal, methods=["GET"])
    add("/v1.0/servicePrincipals/{oid}", update_service_principal, methods=["PATCH"])
    add("/v1.0/servicePrincipals/{oid}", delete_service_principal, methods=["DELETE"])
    return routes


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
    users = filtered(
        call.directory.list_objects(call.tenant, ObjectKind.USER),
        request.query_params.get("$filter"),
        _USER_FIELDS,
    )
    return odata_list("users", (user_json(u) for u in users))


def _create_user(
    body: Annotated[JsonBody, Body()],
    call: UsersWrite,
) -> JsonBody:
    profile = body.get("passwordProfile")
    if not isinstance(profile, Mapping):
        raise BadRequest("Property 'passwordProfile' is required.", code="Request_BadRequest")
    user = call.directory.create_user(
        call.tenant,
        string(body, "userPrincipalName") or "",
        string(body, "displayName") or "",
        string(profile, "password") or "",
        enabled=boolean(body, "accountEnabled") is not False,
        mail_nickname=string(body, "mailNickname", required=False),
    )
    return user_json(user)


def _get_user(oid: str, call: UsersRead) -> JsonBody:
    return user_json(_find_user(call, oid))


def _update_user(
    oid: str,
    body: Annotated[JsonBody, Body()],
    call: UsersWrite,
) -> Response:
    user = _find_user(call, oid)
    profile = body.get("passwordProfile")
    password = string(profile, "password") if isinstance(profile, Mapping) else None
    call.directory.update(
        user.id,
        tenant_id=call.tenant,
        display_name=string(body, "displayName", required=False),
        enabled=boolean(body, "accountEnabled"),
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
    groups = filtered(
        call.directory.list_objects(call.tenant, ObjectKind.GROUP),
        request.query_params.get("$filter"),
        _GROUP_FIELDS,
    )
    return odata_list("groups", (group_json(g) for g in groups))


def _create_group(
    body: Annotated[JsonBody, Body()],
    call: GroupsWrite,
) -> JsonBody:
    group = call.directory.create_group(
        call.tenant,
        string(body, "displayName") or "",
        description=string(body, "description", required=False),
        mail_nickname=string(body, "mailNickname", required=False),
    )
    return group_json(group)


def _get_group(oid: str, call: GroupsRead) -> JsonBody:
    return group_json(call.directory.require(oid, tenant_id=call.tenant, kinds=[ObjectKind.GROUP]))


def _delete_group(oid: str, call: GroupsDelete) -> Response:
    call.directory.require(oid, tenant_id=call.tenant, kinds=[ObjectKind.GROUP])
    call.directory.delete(oid, tenant_id=call.tenant)
    return Response(status_code=204)


def _list_members(oid: str, call: GroupsRead) -> JsonBody:
    call.directory.require(oid, tenant_id=call.tenant, kinds=[ObjectKind.GROUP])
    return odata_list("directoryObjects", (object_json(m) for m in call.directory.members(oid)))


def _add_member(
    oid: str,
    body: Annotated[JsonBody, Body()],
    call: GroupsWrite,
) -> Response:
    reference = string(body, "@odata.id") or ""
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
        "@odata.context": f"{GRAPH}/$metadata#Collection(Edm.String)",
        "value": sorted(call.directory.groups_of(oid)),
    }
