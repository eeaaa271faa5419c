"""Routes: online deployments, their logs and SKUs (reference §1.3)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from propylon.control import actions
from propylon.control.arm import deployment_id, endpoint_id, workspace_id
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
from propylon.control.plane import ControlPlane
from propylon.control.routes.common import DEPLOYMENT, ENDPOINT, CallerDep, IfMatch
from propylon.control.schemas import (
    DeploymentLogsBody,
    OnlineDeploymentBody,
    OnlineDeploymentPatchBody,
)
from propylon.store import canonical
from propylon.store.models import Resource

__all__ = ["router"]

router = APIRouter(route_class=ArmRoute, tags=["onlineDeployments"])

_LRO_CREATED: dict[int | str, dict[str, Any]] = {
    200: {"description": "Replaced; follow Azure-AsyncOperation."},
    201: {"description": "Created; follow Azure-AsyncOperation."},
}
_LRO_ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {"description": "Accepted; poll Location until it stops answering 202."},
    204: {"description": "There was nothing to delete."},
}


def _scope(subscription_id: str, resource_group: str, workspace: str, endpoint: str) -> str:
    return endpoint_id(workspace_id(subscription_id, resource_group, workspace), endpoint)


def _parents(
    control: ControlPlane, subscription_id: str, resource_group: str, workspace: str, endpoint: str
) -> tuple[Resource, Resource]:
    ws = control.workspaces.get_workspace(subscription_id, resource_group, workspace)
    return ws, control.endpoints.get(ws, endpoint)


@router.get(ENDPOINT + "/deployments")
async def list_deployments(
    request: Request,
    subscription_id: str,
    resource_group: str,
    workspace: str,
    endpoint: str,
    caller: CallerDep,
) -> JSONResponse:
    scope = _scope(subscription_id, resource_group, workspace, endpoint)
    authorize(request, caller, actions.DEPLOYMENT_READ, scope)
    control = plane(request)
    _, ep = _parents(control, subscription_id, resource_group, workspace, endpoint)
    return listing([row.body for row in control.deployments.list(ep)])


@router.get(DEPLOYMENT)
async def get_deployment(
    request: Request,
    subscription_id: str,
    resource_group: str,
    workspace: str,
    endpoint: str,
    deployment: str,
    caller: CallerDep,
) -> JSONResponse:
    scope = deployment_id(_scope(subscription_id, resource_group, workspace, endpoint), deployment)
    authorize(request, caller, actions.DEPLOYMENT_READ, scope)
    control = plane(request)
    _, ep = _parents(control, subscription_id, resource_group, workspace, endpoint)
    return resource(control.deployments.get(ep, deployment))


@router.put(DEPLOYMENT, status_code=201, responses=_LRO_CREATED)
async def put_deployment(
    request: Request,
    subscription_id: str,
    resource_group: str,
    workspace: str,
    endpoint: str,
    deployment: str,
    body: OnlineDeploymentBody,
    caller: CallerDep,
    if_match: IfMatch = None,
) -> JSONResponse:
    scope = deployment_id(_scope(subscription_id, resource_group, workspace, endpoint), deployment)
    authorize(request, caller, actions.DEPLOYMENT_WRITE, scope)
    control = plane(request)
    ws, ep = _parents(control, subscription_id, resource_group, workspace, endpoint)
    lro = lro_urls(request, subscription_id, ws.body["location"])
    written = control.deployments.put(
        ws, ep, deployment, body, caller, lro, authorizer(request, caller), if_match=if_match
    )
    rid = written.row.id
    control.operations.launch(written.op_id, rid, control.rollouts.rollout(written.op_id, rid))
    return created_or_updated(
        written.row, written.row.body, written.created, lro.status(written.op_id)
    )


@router.patch(DEPLOYMENT, status_code=202, responses=_LRO_ACCEPTED)
async def patch_deployment(
    request: Request,
    subscription_id: str,
    resource_group: str,
    workspace: str,
    endpoint: str,
    deployment: str,
    body: OnlineDeploymentPatchBody,
    caller: CallerDep,
    if_match: IfMatch = None,
) -> Response:
    scope = deployment_id(_scope(subscription_id, resource_group, workspace, endpoint), deployment)
    authorize(request, caller, actions.DEPLOYMENT_WRITE, scope)
    control = plane(request)
    ws, ep = _parents(control, subscription_id, resource_group, workspace, endpoint)
    lro = lro_urls(request, subscription_id, ws.body["location"])
    written = control.deployments.patch(
        ws, ep, deployment, body, caller, lro, authorizer(request, caller), if_match=if_match
    )
    rid = written.row.id
    control.operations.launch(written.op_id, rid, control.rollouts.rollout(written.op_id, rid))
    response = accepted_with_location(lro.result(written.op_id))
    response.headers["ETag"] = written.row.etag
    return response


@router.delete(DEPLOYMENT, status_code=202, responses=_LRO_ACCEPTED)
async def delete_deployment(
    request: Request,
    subscription_id: str,
    resource_group: str,
    workspace: str,
    endpoint: str,
    deployment: str,
    caller: CallerDep,
    if_match: IfMatch = None,
) -> Response:
    scope = deployment_id(_scope(subscription_id, resource_group, workspace, endpoint), deployment)
    authorize(request, caller, actions.DEPLOYMENT_DELETE, scope)
    control = plane(request)
    ws, ep = _parents(control, subscription_id, resource_group, workspace, endpoint)
    op_id = control.deployments.delete(ep, deployment, if_match=if_match)
    if op_id is None:
        return no_content()
    rid = canonical(deployment_id(ep.id, deployment))
    control.operations.launch(op_id, rid, control.rollouts.remove(op_id, rid))
    return accepted_with_location(
        lro_urls(request, subscription_id, ws.body["location"]).result(op_id)
    )


@router.post(DEPLOYMENT + "/getLogs")
async def get_logs(
    request: Request,
    subscription_id: str,
    resource_group: str,
    workspace: str,
    endpoint: str,
    deployment: str,
    caller: CallerDep,
    body: DeploymentLogsBody | None = None,
) -> JSONResponse:
    """``{"content": "…"}``: the last ``tail`` lines of InferenceServer or StorageInitializer."""
    scope = deployment_id(_scope(subscription_id, resource_group, workspace, endpoint), deployment)
    authorize(request, caller, actions.DEPLOYMENT_GET_LOGS, scope)
    control = plane(request)
    _, ep = _parents(control, subscription_id, resource_group, workspace, endpoint)
    wanted = body or DeploymentLogsBody()
    content = control.deployments.logs(ep, deployment, wanted.container_type, wanted.tail)
    return JSONResponse({"content": content})


@router.get(DEPLOYMENT + "/skus")
async def list_skus(
    request: Request,
    subscription_id: str,
    resource_group: str,
    workspace: str,
    endpoint: str,
    deployment: str,
    caller: CallerDep,
) -> JSONResponse:
    scope = deployment_id(_scope(subscription_id, resource_group, workspace, endpoint), deployment)
    authorize(request, caller, actions.DEPLOYMENT_SKUS, scope)
    control = plane(request)
    _, ep = _parents(control, subscription_id, resource_group, workspace, endpoint)
    control.deployments.get(ep, deployment)
    return JSONResponse(control.deployments.skus())
