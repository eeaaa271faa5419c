"""ARM user-assigned managed identities: ``Microsoft.ManagedIdentity/userAssignedIdentities``.

``/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/
userAssignedIdentities[/{name}]`` — PUT (201 new, 200 update; ``location``, ``tags``), GET,
DELETE (200, or 204 when absent), and the list of a resource group — answering Azure's body
``{id, name, type, location, tags, properties: {tenantId, principalId, clientId}}``.

Each identity is a ``managedIdentity`` principal of the directory whose ``xms_mirid`` is its
ARM id, so an endpoint can name it in ``identity.userAssignedIdentities`` and its tokens carry
it. Authorized as Azure does: ``Microsoft.ManagedIdentity/userAssignedIdentities/
{read|write|delete}`` at the identity's scope (its resource group for the list).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse, Response

from propylon.errors import BadRequest, NotFound
from propylon.identity.directory import DirectoryObject, ObjectKind
from propylon.identity.graph_support import DirectoryCall
from propylon.store import canonical

__all__ = ["router"]

_UAI_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities"
_COLLECTION = (
    "/subscriptions/{subscription}/resourceGroups/{group}/providers/"
    "Microsoft.ManagedIdentity/userAssignedIdentities"
)
JsonBody = dict[str, Any]
Call = Annotated[DirectoryCall, Depends(DirectoryCall.authenticated)]


def router() -> APIRouter:
    routes = APIRouter(tags=["managed identities"])
    routes.add_api_route(_COLLECTION, _list_identities, methods=["GET"])
    routes.add_api_route(_COLLECTION + "/{name}", _put_identity, methods=["PUT"])
    routes.add_api_route(_COLLECTION + "/{name}", _get_identity, methods=["GET"])
    routes.add_api_route(_COLLECTION + "/{name}", _delete_identity, methods=["DELETE"])
    return routes


def _identity_id(subscription: str, group: str, name: str) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{group}/providers/{_UAI_TYPE}/{name}"


def _identity_json(identity: DirectoryObject) -> JsonBody:
    return {
        "id": identity.resource_id,
        "name": (identity.resource_id or "").rsplit("/", 1)[-1],
        "type": _UAI_TYPE,
        "location": identity.body.get("location", "local"),
        "tags": identity.body.get("tags") or {},
        "properties": {
            "tenantId": identity.tenant_id,
            "principalId": identity.id,
            "clientId": identity.client_id,
        },
    }


def _require_group(call: DirectoryCall, subscription: str, group: str) -> None:
    group_id = f"/subscriptions/{subscription}/resourceGroups/{group}"
    if call.ctx.resources.get(group_id) is None:
        raise NotFound(
            f"Resource group '{group}' could not be found.", code="ResourceGroupNotFound"
        )


def _list_identities(subscription: str, group: str, call: Call) -> JsonBody:
    group_id = f"/subscriptions/{subscription}/resourceGroups/{group}"
    call.require(f"{_UAI_TYPE}/read", group_id)
    _require_group(call, subscription, group)
    prefix = canonical(f"{group_id}/providers/{_UAI_TYPE}") + "/"
    found = [
        i
        for i in call.directory.list_objects(call.tenant, ObjectKind.MANAGED_IDENTITY)
        if i.body.get("type") == "UserAssigned"
        and canonical(i.resource_id or "/").startswith(prefix)
    ]
    return {"value": [_identity_json(i) for i in found]}


def _put_identity(
    subscription: str,
    group: str,
    name: str,
    call: Call,
    body: Annotated[JsonBody | None, Body()] = None,
) -> JSONResponse:
    resource_id = _identity_id(subscription, group, name)
    call.require(f"{_UAI_TYPE}/write", resource_id)
    _require_group(call, subscription, group)
    body = body or {}
    tags = body.get("tags") or {}
    if not isinstance(tags, Mapping):
        raise BadRequest("'tags' must be an object.", target="tags")
    location = body.get("location") or "local"
    existing = call.directory.find_managed_identity(call.tenant, resource_id)
    if existing is not None:
        updated = call.directory.update(
            existing.id, tenant_id=call.tenant, body={"tags": dict(tags), "location": location}
        )
        return JSONResponse(_identity_json(updated), status_code=200)
    created = call.directory.create_managed_identity(
        call.tenant, name, resource_id=resource_id, user_assigned=True
    )
    created = call.directory.update(
        created.id, tenant_id=call.tenant, body={"tags": dict(tags), "location": location}
    )
    return JSONResponse(_identity_json(created), status_code=201)


def _get_identity(subscription: str, group: str, name: str, call: Call) -> JsonBody:
    resource_id = _identity_id(subscription, group, name)
    call.require(f"{_UAI_TYPE}/read", resource_id)
    found = call.directory.find_managed_identity(call.tenant, resource_id)
    if found is None:
        raise NotFound(
            f"The Resource '{_UAI_TYPE}/{name}' under resource group '{group}' was not found.",
        )
    return _identity_json(found)


def _delete_identity(subscription: str, group: str, name: str, call: Call) -> Response:
    resource_id = _identity_id(subscription, group, name)
    call.require(f"{_UAI_TYPE}/delete", resource_id)
    found = call.directory.find_managed_identity(call.tenant, resource_id)
    if found is None:
        return Response(status_code=204)
    call.directory.delete(found.id, tenant_id=call.tenant)
    return Response(status_code=200)
