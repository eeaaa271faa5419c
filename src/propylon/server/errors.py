"""Rendering of errors as ARM error bodies on the control plane (one handler per kind).

Clients never see a stack trace: an unexpected exception becomes 500 ``InternalError`` naming the
request id, and the traceback goes to the server log.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from propylon.errors import PropylonError
from propylon.server.logs import request_id_var

__all__ = ["install_error_handlers", "render_error"]

log = logging.getLogger("propylon.errors")

_HTTP_CODES = {
    404: "NotFound",
    405: "MethodNotAllowed",
    415: "UnsupportedMediaType",
}


def render_error(error: PropylonError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers or None)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PropylonError)
    async def _propylon(_: Request, exc: PropylonError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("request failed", extra={"code": exc.code, "status": exc.status})
        return render_error(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = []
        for problem in exc.errors():
            location = [str(p) for p in problem.get("loc", ()) if p != "body"]
            details.append(
                {
                    "code": "InvalidRequestContent",
                    "target": ".".join(location) or "body",
                    "message": str(problem.get("msg", "invalid value")),
                }
            )
        first = details[0] if details else {"target": "body", "message": "invalid request"}
        message = f"Invalid value for '{first['target']}': {first['message']}."
        error = PropylonError(
            message, code="InvalidRequestContent", target=first["target"], details=details
        )
        error.status = 400
        return render_error(error)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "BadRequest")
        # Keep the exception's headers: a 405 must say ``Allow`` (RFC 9110 §15.5.6).
        error = PropylonError(str(exc.detail), code=code, headers=dict(exc.headers or {}))
        error.status = exc.status_code
        return render_error(error)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        request_id = request_id_var.get()
        error = PropylonError(
            f"The server failed to process the request (request id {request_id})."
        )
        return render_error(error)
