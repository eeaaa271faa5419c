"""The data plane's own rows of the error tree: the online-endpoint status codes ARM lacks.

They extend :class:`propylon.errors.PropylonError`, so one renderer writes every gateway error as
the ARM error body ``{"error": {"code", "message"}}`` (reference §3.4 lists the codes)::

    PropylonError
    ├── Unauthenticated (401) · Forbidden (403) · NotFound (404) · PayloadTooLarge (413)
    ├── TooManyRequests (429) · ServiceUnavailable (503)          ── from propylon.errors
    ├── MethodNotAllowed (405) a data-plane path called with another method
    ├── RequestTimeout (408)   the model exceeded request_timeout_ms
    └── BadGateway (502)       the instance could not be reached or broke the connection
        └── ConnectFailed      no connection was made, so the request never left: the gateway
                               sends it to another instance, or answers 503 when none is left

A model's own non-200 answer is not an error of the gateway: it is relayed as **424** with the
model's body and ``ms-azureml-model-error-statuscode`` / ``-reason`` (:mod:`propylon.gateway.app`).
"""

from __future__ import annotations

from typing import Any

from propylon.errors import PropylonError

__all__ = ["BadGateway", "ConnectFailed", "MethodNotAllowed", "RequestTimeout"]


class MethodNotAllowed(PropylonError):
    status = 405
    code = "MethodNotAllowed"

    def __init__(self, message: str, *, allow: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("Allow", allow)


class RequestTimeout(PropylonError):
    status = 408
    code = "RequestTimeout"


class BadGateway(PropylonError):
    status = 502
    code = "BadGateway"


class ConnectFailed(BadGateway):
    """The instance refused the connection (or it broke before the request was written): no byte
    of the request reached the instance, so sending it to another one is safe."""

    code = "InstanceUnreachable"
