"""Routes: online endpoints, their keys and aml_tokens (reference §1.3)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from propylon.control import actions
from propylon.control.arm import endpoint_id, workspace_id
from propylon.control.endpoints import endpoint_uid
from propylon.control.http import (
    ArmRoute,
    accepted_with_location,
    authorize,
    authorizer,
    created_or_updated,
    listing,
    lro_urls,
    no_content,
    plane,
    resource,
)
from propylon.control.routes.common import (
    ENDPOINT,
    WORKSPACE,
    CallerDep,
    IfMatch,
    IfNoneMatch,
)
from propylon.control.schemas import EndpointPatchBody, OnlineEndpointBody, RegenerateKeysBody
from propylon.server.access import AccessControl
from propylon.store import canonical

__all__ = ["router"]

router = APIRouter(route_class=ArmRoute, tags=["onlineEndpoints"])

_LRO_CREATED: dict[int | str, dict[str, Any]] = {
    200: {"description": "Replaced; follow Azure-AsyncOperation."},
    201: {"description": "Created; follow Azure-AsyncOperation."},
}
_LRO_ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {"description": "Accepted; poll Location until it stops answering 202."},
    204: {"description": "There was nothing to delete."},
}


@router.get(WORKSPACE + "/onlineEndpoints")
async def list_endpoints(
    request: Request, subscription_id: str, resource_group: str, workspace: str, caller: CallerDep
) -> JSONResponse:
    scope = workspace_id(subscription_id, resource_group, workspace)
    authorize(request, caller, actions.ENDPOINT_READ, scope)
    control = plane(request)
    ws = control.workspaces.get_workspace(subscription_id, resource_group, workspace)
    return listing([control.endpoints.render(row) for row in control.endpoints.list(ws)])


@router.get(ENDPOINT)
async def get_endpoint(
    request: Request,
    subscription_id: str,
    resource_group: str,
    workspace: str,
    endpoint: str,
    caller: CallerDep,
) -> JSONResponse:
    scope = endpoint_id(workspace_id(subscription_id, resource_group, workspace), endpoint)
    authorize(request, caller, actions.ENDPOINT_READ, scope)
    control = plane(request)
    ws = control.workspaces.get_workspace(subscription_id, resource_group, workspace)
    row = control.endpoints.get(ws, endpoint)
    return resource(row, control.endpoints.render(row))


@router.put(ENDPOINT, status_code=201, responses=_LRO_CREATED)
async def put_endpoint(
    request: Request,
    subscription_id: str,
    resource_group: str,
    workspace: str,
    endpoint: str,
    body: OnlineEndpointBody,
    caller: CallerDep,
    if_match: IfMatch = None,
    if_none_match: IfNoneMatch = None,
) -> JSONResponse:
    scope = endpoint_id(workspace_id(subscription_id, resource_group, workspace), endpoint)
    authorize(request, caller, actions.ENDPOINT_WRITE, scope)
    control = plane(request)
    ws = control.workspaces.get_workspace(subscription_id, resource_group, workspace)
    lro = lro_urls(request, subscription_id, ws.body["location"])
    written = control.endpoints.put(
        ws,
        endpoint,
        body,
        caller,
        lro,
        authorizer(request, caller),
        if_match=if_match,
        if_none_match=if_none_match,
    )
    rid = written.row.id
    control.operations.launch(written.op_id, rid, control.endpoints.provision(written.op_id, rid))
    body_out = control.endpoints.render(written.row)
    return created_or_updated(written.row, body_out, written.created, lro.status(written.op_id))


@router.patch(ENDPOINT, status_code=202, responses=_LRO_ACCEPTED)
async def patch_endpoint(
    request: Request,
    subscription_id: str,
    resource_group: str,
    workspace: str,
    endpoint: str,
    body: EndpointPatchBody,
    caller: CallerDep,
    if_match: IfMatch = None,
) -> Response:
    scope = endpoint_id(workspace_id(subscription_id, resource_group, workspace), endpoint)
    authorize(request, caller, actions.ENDPOINT_WRITE, scope)
    control = plane(request)
    ws = control.workspaces.get_workspace(subscription_id, resource_group, workspace)
    lro = lro_urls(request, subscription_id, ws.body["location"])
    written = control.endpoints.patch(
        ws, endpoint, body, caller, lro, authorizer(request, caller), if_match=if_match
    )
    rid = written.row.id
    control.operations.launch(written.op_id, rid, control.endpoints.provision(written.op_id, rid))
    response = accepted_with_location(lro.result(written.op_id))
    response.headers["ETag"] = written.row.etag
    return response


@router.delete(ENDPOINT, status_code=202, responses=_LRO_ACCEPTED)
async def delete_endpoint(
    request: Request,
    subscription_id: str,
    resource_group: str,
    workspace: str,
    endpoint: str,
    caller: CallerDep,
    if_match: IfMatch = None,
) -> Response:
    scope = endpoint_id(workspace_id(subscription_id, resource_group, workspace), endpoint)
    authorize(request, caller, actions.ENDPOINT_DELETE, scope)
    control = plane(request)
    ws = control.workspaces.get_workspace(subscription_id, resource_group, workspace)
    op_id = control.endpoints.delete(ws, endpoint, if_match=if_match)
    if op_id is None:
        return no_content()
    rid = canonical(endpoint_id(ws.id, endpoint))
    control.operations.launch(
        op_id, rid, control.endpoints.teardown(op_id, rid), after_children=True
    )
    return accepted_with_location(
        lro_urls(request, subscription_id, ws.body["location"]).result(op_id)
    )


@router.post(ENDPOINT + "/listKeys")
async def list_keys(
    request: Request,
    subscription_id: str,
    resource_group: str,
    workspace: str,
    endpoint: str,
    caller: CallerDep,
) -> JSONResponse:
    scope = endpoint_id(workspace_id(subscription_id, resource_group, workspace), endpoint)
    authorize(request, caller, actions.ENDPOINT_LIST_KEYS, scope)
    control = plane(request)
    ws = control.workspaces.get_workspace(subscription_id, resource_group, workspace)
    return JSONResponse(control.endpoints.list_keys(ws, endpoint))


@router.post(ENDPOINT + "/regenerateKeys", status_code=202, responses=_LRO_ACCEPTED)
async def regenerate_keys(
    request: Request,
    subscription_id: str,
    resource_group: str,
    workspace: str,
    endpoint: str,
    body: RegenerateKeysBody,
    caller: CallerDep,
) -> Response:
    scope = endpoint_id(workspace_id(subscription_id, resource_group, workspace), endpoint)
    authorize(request, caller, actions.ENDPOINT_REGENERATE_KEYS, scope)
    control = plane(request)
    ws = control.workspaces.get_workspace(subscription_id, resource_group, workspace)
    op_id = control.endpoints.regenerate_key(ws, endpoint, body.key_type, body.key_value)
    return accepted_with_location(
        lro_urls(request, subscription_id, ws.body["location"]).result(op_id)
    )


@router.post(ENDPOINT + "/token")
async def get_token(
    request: Request,
    subscription_id: str,
    resource_group: str,
    workspace: str,
    endpoint: str,
    caller: CallerDep,
) -> JSONResponse:
    """An ``aml_token`` for this endpoint only (``accessToken``, ``expiryTimeUtc``, …)."""
    scope = endpoint_id(workspace_id(subscription_id, resource_group, workspace), endpoint)
    authorize(request, caller, actions.ENDPOINT_TOKEN, scope)
    control = plane(request)
    ws = control.workspaces.get_workspace(subscription_id, resource_group, workspace)
    row = control.endpoints.get(ws, endpoint)
    control.endpoints.require_auth_mode(ws, row, "AMLToken", "token")
    access: AccessControl = request.app.state.ctx.services["access"]
    minted = access.mint_endpoint_token(
        row.id,
        endpoint_uid=endpoint_uid(row.body),
        requested_by=caller.oid,
        requester_tid=caller.tid,
    )
    return JSONResponse(minted)
