"""Routes: where clients poll long-running operations (reference §1.4).

Reading an operation needs the read action on the resource it changes (the endpoint's or the
deployment's), so whoever may see a resource may follow its operations.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from propylon.control import actions
from propylon.control.http import ArmRoute, authorize, plane
from propylon.control.operations import RETRY_AFTER_SECONDS, Operations, OperationStatus
from propylon.control.routes.common import LOCATION, CallerDep
from propylon.errors import NotFound
from propylon.store.models import Operation

__all__ = ["router"]

router = APIRouter(route_class=ArmRoute, tags=["operations"])


def _find(request: Request, subscription_id: str, operation_id: str) -> Operation:
    op = plane(request).operations.get(operation_id)
    if op is None or not op.resource_id.startswith(f"/subscriptions/{subscription_id.lower()}/"):
        raise NotFound(f"Could not find operation {operation_id!r}.", code="OperationNotFound")
    return op


def _read_action(op: Operation) -> str:
    return actions.DEPLOYMENT_READ if op.kind.startswith("deployment.") else actions.ENDPOINT_READ


@router.get(LOCATION + "/mfeOperationsStatus/{operation_id}")
async def operation_status(
    request: Request, subscription_id: str, location: str, operation_id: str, caller: CallerDep
) -> JSONResponse:
    """The ``Azure-AsyncOperation`` document: always 200, ``status`` says how it stands."""
    op = _find(request, subscription_id, operation_id)
    authorize(request, caller, _read_action(op), op.resource_id)
    return JSONResponse(Operations.document(op, request.url.path))


@router.get(
    LOCATION + "/mfeOperationResults/{operation_id}",
    responses={202: {"description": "Still running; poll again after Retry-After."}},
)
async def operation_result(
    request: Request, subscription_id: str, location: str, operation_id: str, caller: CallerDep
) -> Response:
    """An operation's ``Location``: 202 while running, 200 when it succeeded, else its error."""
    op = _find(request, subscription_id, operation_id)
    authorize(request, caller, _read_action(op), op.resource_id)
    if op.status == OperationStatus.IN_PROGRESS:
        return Response(
            status_code=202,
            headers={"Location": str(request.url), "Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    document = Operations.document(op, request.url.path)
    if op.status == OperationStatus.SUCCEEDED:
        return JSONResponse(document)
    error = document.get("error") or {
        "code": "OperationCanceled",
        "message": "The operation was canceled.",
    }
    status = int((op.error or {}).get("httpStatus", 409))
    return JSONResponse({"error": error}, status_code=status)
