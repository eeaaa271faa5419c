"""Routes: resource groups and workspaces (synchronous ARM resources)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from propylon.control import actions, arm
from propylon.control.arm import PROVIDER, resource_group_id, workspace_id
from propylon.control.http import ArmRoute, authorize, listing, no_content, plane, resource
from propylon.control.routes.common import (
    RESOURCE_GROUP,
    SUBSCRIPTION,
    WORKSPACE,
    CallerDep,
    IfMatch,
)
from propylon.control.schemas import ResourceGroupBody, WorkspaceBody

__all__ = ["router"]

router = APIRouter(route_class=ArmRoute)


@router.get(SUBSCRIPTION + "/resourceGroups", tags=["resourceGroups"])
async def list_resource_groups(
    request: Request, subscription_id: str, caller: CallerDep
) -> JSONResponse:
    authorize(request, caller, actions.RESOURCE_GROUP_READ, arm.subscription_id(subscription_id))
    rows = plane(request).workspaces.list_resource_groups(subscription_id)
    return listing([row.body for row in rows])


@router.get(RESOURCE_GROUP, tags=["resourceGroups"])
async def get_resource_group(
    request: Request, subscription_id: str, resource_group: str, caller: CallerDep
) -> JSONResponse:
    scope = resource_group_id(subscription_id, resource_group)
    authorize(request, caller, actions.RESOURCE_GROUP_READ, scope)
    return resource(plane(request).workspaces.get_resource_group(subscription_id, resource_group))


@router.put(RESOURCE_GROUP, tags=["resourceGroups"], status_code=201)
async def put_resource_group(
    request: Request,
    subscription_id: str,
    resource_group: str,
    body: ResourceGroupBody,
    caller: CallerDep,
    if_match: IfMatch = None,
) -> JSONResponse:
    scope = resource_group_id(subscription_id, resource_group)
    authorize(request, caller, actions.RESOURCE_GROUP_WRITE, scope)
    row, created = plane(request).workspaces.put_resource_group(
        subscription_id, resource_group, body, if_match=if_match
    )
    return resource(row, status=201 if created else 200)


@router.delete(RESOURCE_GROUP, tags=["resourceGroups"])
async def delete_resource_group(
    request: Request,
    subscription_id: str,
    resource_group: str,
    caller: CallerDep,
    if_match: IfMatch = None,
) -> Response:
    scope = resource_group_id(subscription_id, resource_group)
    authorize(request, caller, actions.RESOURCE_GROUP_DELETE, scope)
    deleted = plane(request).workspaces.delete_resource_group(
        subscription_id, resource_group, if_match=if_match
    )
    return Response(status_code=200) if deleted else no_content()


@router.get(SUBSCRIPTION + f"/providers/{PROVIDER}/workspaces", tags=["workspaces"])
async def list_workspaces_in_subscription(
    request: Request, subscription_id: str, caller: CallerDep
) -> JSONResponse:
    authorize(request, caller, actions.WORKSPACE_READ, arm.subscription_id(subscription_id))
    rows = plane(request).workspaces.list_workspaces(subscription_id, None)
    return listing([row.body for row in rows])


@router.get(RESOURCE_GROUP + f"/providers/{PROVIDER}/workspaces", tags=["workspaces"])
async def list_workspaces(
    request: Request, subscription_id: str, resource_group: str, caller: CallerDep
) -> JSONResponse:
    scope = resource_group_id(subscription_id, resource_group)
    authorize(request, caller, actions.WORKSPACE_READ, scope)
    rows = plane(request).workspaces.list_workspaces(subscription_id, resource_group)
    return listing([row.body for row in rows])


@router.get(WORKSPACE, tags=["workspaces"])
async def get_workspace(
    request: Request, subscription_id: str, resource_group: str, workspace: str, caller: CallerDep
) -> JSONResponse:
    scope = workspace_id(subscription_id, resource_group, workspace)
    authorize(request, caller, actions.WORKSPACE_READ, scope)
    return resource(
        plane(request).workspaces.get_workspace(subscription_id, resource_group, workspace)
    )


@router.put(WORKSPACE, tags=["workspaces"], status_code=201)
async def put_workspace(
    request: Request,
    subscription_id: str,
    resource_group: str,
    workspace: str,
    body: WorkspaceBody,
    caller: CallerDep,
    if_match: IfMatch = None,
) -> JSONResponse:
    scope = workspace_id(subscription_id, resource_group, workspace)
    authorize(request, caller, actions.WORKSPACE_WRITE, scope)
    row, created = plane(request).workspaces.put_workspace(
        subscription_id, resource_group, workspace, body, caller, if_match=if_match
    )
    return resource(row, status=201 if created else 200)


@router.delete(WORKSPACE, tags=["workspaces"])
async def delete_workspace(
    request: Request,
    subscription_id: str,
    resource_group: str,
    workspace: str,
    caller: CallerDep,
    if_match: IfMatch = None,
) -> Response:
    scope = workspace_id(subscription_id, resource_group, workspace)
    authorize(request, caller, actions.WORKSPACE_DELETE, scope)
    deleted = plane(request).workspaces.delete_workspace(
        subscription_id, resource_group, workspace, if_match=if_match
    )
    return Response(status_code=200) if deleted else no_content()
