"""How the control plane speaks ARM over HTTP: matching, errors, ETags and LRO headers.

* :class:`ArmPathCase` rewrites the literal segments of an ARM path (``resourcegroups``,
  ``PROVIDERS``, ``onlineendpoints`` …) to the spelling the routes are declared with, so paths match
  case-insensitively as on ARM (reference §6 item 1); names keep the case the client sent. Only
  positions that hold a literal are touched (ARM paths alternate type and name after the
  provider namespace), so an endpoint called ``Models`` stays ``Models``.
* :class:`ArmRoute` turns body validation errors into one 400 ``InvalidRequestContent`` naming
  the field (:func:`propylon.control.validation.bad_request_from`), malformed JSON included.
* :func:`resource` answers a resource with its ``ETag``; :func:`created_or_updated` and
  :func:`accepted_with_location` add the headers of reference §1.4.

Example::

    router = APIRouter(route_class=ArmRoute)
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from propylon.control.actions import Authorize
from propylon.control.arm import PROVIDER
from propylon.control.operations import (
    ASYNC_OPERATION_TIMEOUT,
    RETRY_AFTER_SECONDS,
    LroUrls,
)
from propylon.control.plane import ControlPlane, control_plane
from propylon.control.validation import bad_request_from
from propylon.server.access import AccessControl, Caller
from propylon.store.models import Resource

__all__ = [
    "DEFAULT_API_VERSION",
    "ArmPathCase",
    "ArmRoute",
    "accepted_with_location",
    "authorize",
    "authorizer",
    "canonical_path",
    "created_or_updated",
    "listing",
    "lro_urls",
    "no_content",
    "plane",
    "resource",
]

DEFAULT_API_VERSION = "2024-04-01"


_LITERALS = {
    word.lower(): word
    for word in (
        "subscriptions",
        "resourceGroups",
        "providers",
        PROVIDER,
        "workspaces",
        "onlineEndpoints",
        "deployments",
        "listKeys",
        "regenerateKeys",
        "token",
        "getLogs",
        "skus",
        "models",
        "codes",
        "environments",
        "versions",
        "blobs",
        "locations",
        "mfeOperationsStatus",
        "mfeOperationResults",
    )
}


def canonical_path(path: str) -> str:
    """``/SUBSCRIPTIONS/s/resourcegroups/rg/…`` → ``/subscriptions/s/resourceGroups/rg/…``.

    Only paths of this control plane are rewritten: those under the Azure ML provider namespace
    and the subscription/resource-group paths above it.
    """
    segments = path.split("/")
    if len(segments) < 2 or segments[1].lower() != "subscriptions":
        return path
    lowered = [segment.lower() for segment in segments]
    if "providers" in lowered and PROVIDER.lower() not in lowered:
        return path
    expect_literal = True
    after_providers = False
    for index in range(1, len(segments)):
        segment = segments[index]
        if after_providers:  # the namespace, then type/name pairs again
            segments[index] = _LITERALS.get(segment.lower(), segment)
            after_providers = False
            expect_literal = True
            continue
        if expect_literal:
            segments[index] = _LITERALS.get(segment.lower(), segment)
            after_providers = segments[index] == "providers"
        expect_literal = not expect_literal or after_providers
    return "/".join(segments)


class ArmPathCase:
    """ASGI middleware: match ARM paths case-insensitively (see :func:`canonical_path`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = canonical_path(scope["path"])
            if path != scope["path"]:
                scope = {**scope, "path": path}
        await self.app(scope, receive, send)


class ArmRoute(APIRoute):
    """A route whose body validation errors are 400s that name the field."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                raise bad_request_from(exc.errors()) from None

        return handle


def plane(request: Request) -> ControlPlane:
    return control_plane(request.app.state.ctx)


def authorize(request: Request, caller: Caller, action: str, scope: str) -> None:
    """Raise 403 ``AuthorizationFailed`` (naming action and scope) unless RBAC allows it."""
    access: AccessControl = request.app.state.ctx.services["access"]
    access.require(caller, action, scope)


def authorizer(request: Request, caller: Caller) -> Authorize:
    """``authorize`` bound to this request's caller, for services that check further scopes."""

    def check(action: str, scope: str) -> None:
        authorize(request, caller, action, scope)

    return check


def api_version(request: Request) -> str:
    return request.query_params.get("api-version") or DEFAULT_API_VERSION


def lro_urls(request: Request, subscription: str, location: str) -> LroUrls:
    """Poll URLs on the host and scheme the client called, with its ``api-version``."""
    base = str(request.base_url).rstrip("/")
    return LroUrls(base, subscription, location, api_version(request))


def resource(row: Resource, body: dict[str, Any] | None = None, status: int = 200) -> JSONResponse:
    return JSONResponse(
        body if body is not None else row.body, status_code=status, headers={"ETag": row.etag}
    )


def created_or_updated(
    row: Resource, body: dict[str, Any], created: bool, status_url: str
) -> JSONResponse:
    """201 (new) or 200 (replaced) with ``Azure-AsyncOperation`` (PUT, reference §1.3)."""
    response = resource(row, body, 201 if created else 200)
    response.headers["Azure-AsyncOperation"] = status_url
    response.headers["x-ms-async-operation-timeout"] = ASYNC_OPERATION_TIMEOUT
    return response


def accepted_with_location(result_url: str) -> Response:
    """202 with ``Location`` and ``Retry-After`` (PATCH, DELETE, POST regenerateKeys)."""
    return Response(
        status_code=202,
        headers={
            "Location": result_url,
            "Retry-After": str(RETRY_AFTER_SECONDS),
            "x-ms-async-operation-timeout": ASYNC_OPERATION_TIMEOUT,
        },
    )


def no_content() -> Response:
    return Response(status_code=204)


def listing(bodies: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"value": bodies})
