"""Routes: content uploads (``…/blobs/sha256:<hex>``) and models, codes, environments.

The asset routes are made by :func:`_container_routes` and :func:`_version_routes` once per kind,
so that each kind's version PUT declares its own body model in the OpenAPI document. (No
``from __future__ import annotations`` here: FastAPI reads the annotations of these nested
functions at definition time.)
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from propylon.control import actions
from propylon.control.arm import AssetKind, asset_container_id, asset_version_id, workspace_id
from propylon.control.blobs import parse_digest
from propylon.control.http import ArmRoute, authorize, listing, no_content, plane, resource
from propylon.control.routes.common import WORKSPACE, CallerDep, IfMatch
from propylon.control.schemas import (
    AssetContainerBody,
    CodeVersionBody,
    EnvironmentVersionBody,
    ModelVersionBody,
)
from propylon.errors import NotFound

__all__ = ["router"]

router = APIRouter(route_class=ArmRoute)

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A tar (optionally compressed) or zip archive whose SHA-256 is the digest.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.put(WORKSPACE + "/blobs/{digest}", tags=["content"], openapi_extra=_UPLOAD_BODY)
async def upload_blob(
    request: Request,
    subscription_id: str,
    resource_group: str,
    workspace: str,
    digest: str,
    caller: CallerDep,
) -> JSONResponse:
    """Store an archive under its SHA-256 (``sha256:<hex>``); 201 new, 200 already stored."""
    scope = workspace_id(subscription_id, resource_group, workspace)
    authorize(request, caller, actions.UPLOAD_WRITE, scope)
    control = plane(request)
    control.workspaces.get_workspace(subscription_id, resource_group, workspace)
    existing = control.blobs.stat(parse_digest(digest))
    if existing is not None:
        return JSONResponse(existing.body(), status_code=200)
    info = await control.blobs.receive(request.stream(), digest)
    return JSONResponse(info.body(), status_code=201)


@router.get(WORKSPACE + "/blobs/{digest}", tags=["content"])
async def get_blob(
    request: Request,
    subscription_id: str,
    resource_group: str,
    workspace: str,
    digest: str,
    caller: CallerDep,
) -> JSONResponse:
    """Whether content is stored (``{digest, size}``), so a client uploads only what is missing."""
    scope = workspace_id(subscription_id, resource_group, workspace)
    authorize(request, caller, actions.UPLOAD_READ, scope)
    control = plane(request)
    control.workspaces.get_workspace(subscription_id, resource_group, workspace)
    info = control.blobs.stat(parse_digest(digest))
    if info is None:
        raise NotFound(f"No content with digest {digest!r} is stored.", code="ContentNotFound")
    return JSONResponse(info.body())


def _scope(kind: AssetKind, sub: str, rg: str, ws: str, name: str, version: str | None) -> str:
    workspace = workspace_id(sub, rg, ws)
    if version is None:
        return asset_container_id(workspace, kind, name)
    return asset_version_id(workspace, kind, name, version)


def _container_routes(kind: AssetKind) -> None:
    base = WORKSPACE + f"/{kind.value}"

    async def list_containers(
        request: Request,
        subscription_id: str,
        resource_group: str,
        workspace: str,
        caller: CallerDep,
    ) -> JSONResponse:
        scope = workspace_id(subscription_id, resource_group, workspace)
        authorize(request, caller, actions.asset_action(kind, "read", version=False), scope)
        control = plane(request)
        ws = control.workspaces.get_workspace(subscription_id, resource_group, workspace)
        return listing([row.body for row in control.assets.list_containers(ws, kind)])

    async def get_container(
        request: Request,
        subscription_id: str,
        resource_group: str,
        workspace: str,
        name: str,
        caller: CallerDep,
    ) -> JSONResponse:
        scope = _scope(kind, subscription_id, resource_group, workspace, name, None)
        authorize(request, caller, actions.asset_action(kind, "read", version=False), scope)
        control = plane(request)
        ws = control.workspaces.get_workspace(subscription_id, resource_group, workspace)
        return resource(control.assets.get_container(ws, kind, name))

    async def put_container(
        request: Request,
        subscription_id: str,
        resource_group: str,
        workspace: str,
        name: str,
        body: Annotated[AssetContainerBody, Body()],
        caller: CallerDep,
        if_match: IfMatch = None,
    ) -> JSONResponse:
        scope = _scope(kind, subscription_id, resource_group, workspace, name, None)
        authorize(request, caller, actions.asset_action(kind, "write", version=False), scope)
        control = plane(request)
        ws = control.workspaces.get_workspace(subscription_id, resource_group, workspace)
        row, created = control.assets.put_container(ws, kind, name, body, caller, if_match=if_match)
        return resource(row, status=201 if created else 200)

    async def delete_container(
        request: Request,
        subscription_id: str,
        resource_group: str,
        workspace: str,
        name: str,
        caller: CallerDep,
        if_match: IfMatch = None,
    ) -> Response:
        scope = _scope(kind, subscription_id, resource_group, workspace, name, None)
        authorize(request, caller, actions.asset_action(kind, "delete", version=False), scope)
        control = plane(request)
        ws = control.workspaces.get_workspace(subscription_id, resource_group, workspace)
        deleted = control.assets.delete_container(ws, kind, name, if_match=if_match)
        return Response(status_code=200) if deleted else no_content()

    _register(
        kind,
        (base, "GET", list_containers, 200),
        (base + "/{name}", "GET", get_container, 200),
        (base + "/{name}", "PUT", put_container, 201),
        (base + "/{name}", "DELETE", delete_container, 200),
    )


def _version_routes(kind: AssetKind, version_body: type[BaseModel]) -> None:
    base = WORKSPACE + f"/{kind.value}/{{name}}/versions"

    async def list_versions(
        request: Request,
        subscription_id: str,
        resource_group: str,
        workspace: str,
        name: str,
        caller: CallerDep,
    ) -> JSONResponse:
        scope = _scope(kind, subscription_id, resource_group, workspace, name, None)
        authorize(request, caller, actions.asset_action(kind, "read", version=True), scope)
        control = plane(request)
        ws = control.workspaces.get_workspace(subscription_id, resource_group, workspace)
        return listing([row.body for row in control.assets.list_versions(ws, kind, name)])

    async def get_version(
        request: Request,
        subscription_id: str,
        resource_group: str,
        workspace: str,
        name: str,
        version: str,
        caller: CallerDep,
    ) -> JSONResponse:
        scope = _scope(kind, subscription_id, resource_group, workspace, name, version)
        authorize(request, caller, actions.asset_action(kind, "read", version=True), scope)
        control = plane(request)
        ws = control.workspaces.get_workspace(subscription_id, resource_group, workspace)
        return resource(control.assets.get_version(ws, kind, name, version))

    async def put_version(
        request: Request,
        subscription_id: str,
        resource_group: str,
        workspace: str,
        name: str,
        version: str,
        body: Annotated[version_body, Body()],  # type: ignore[valid-type]
        caller: CallerDep,
        if_match: IfMatch = None,
    ) -> JSONResponse:
        scope = _scope(kind, subscription_id, resource_group, workspace, name, version)
        authorize(request, caller, actions.asset_action(kind, "write", version=True), scope)
        control = plane(request)
        ws = control.workspaces.get_workspace(subscription_id, resource_group, workspace)
        row, created = control.assets.put_version(
            ws, kind, name, version, body, caller, if_match=if_match
        )
        return resource(row, status=201 if created else 200)

    async def delete_version(
        request: Request,
        subscription_id: str,
        resource_group: str,
        workspace: str,
        name: str,
        version: str,
        caller: CallerDep,
        if_match: IfMatch = None,
    ) -> Response:
        scope = _scope(kind, subscription_id, resource_group, workspace, name, version)
        authorize(request, caller, actions.asset_action(kind, "delete", version=True), scope)
        control = plane(request)
        ws = control.workspaces.get_workspace(subscription_id, resource_group, workspace)
        deleted = control.assets.delete_version(ws, kind, name, version, caller, if_match=if_match)
        return Response(status_code=200) if deleted else no_content()

    _register(
        kind,
        (base, "GET", list_versions, 200),
        (base + "/{version}", "GET", get_version, 200),
        (base + "/{version}", "PUT", put_version, 201),
        (base + "/{version}", "DELETE", delete_version, 200),
    )


def _register(kind: AssetKind, *routes: tuple[str, str, Callable[..., Any], int]) -> None:
    for path, method, handler, status in routes:
        router.add_api_route(
            path,
            handler,
            methods=[method],
            status_code=status,
            tags=[kind.value],
            name=f"{handler.__name__}_{kind.singular}",
            operation_id=f"{kind.value}_{handler.__name__}",
        )


for _kind, _body in (
    (AssetKind.MODEL, ModelVersionBody),
    (AssetKind.CODE, CodeVersionBody),
    (AssetKind.ENVIRONMENT, EnvironmentVersionBody),
):
    _container_routes(_kind)
    _version_routes(_kind, _body)
