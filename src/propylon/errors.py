"""The one error tree of Propylon.

Every failure a client can see is a :class:`PropylonError`. Each carries the HTTP status, a machine
code and a message for humans; one handler per HTTP surface renders it (ARM error body on the
control plane and gateway, RFC 6749 body on the token endpoint).

::

    PropylonError (500 InternalError)
    ├── BadRequest (400, e.g. InvalidRequestContent, ValidationError)
    ├── Unauthenticated (401 AuthenticationFailed) ── carries a WWW-Authenticate challenge
    ├── Forbidden (403 AuthorizationFailed)
    ├── NotFound (404 ResourceNotFound)
    ├── Conflict (409 Conflict)
    ├── PreconditionFailed (412 PreconditionFailed)
    ├── PayloadTooLarge (413)
    ├── HeaderFieldsTooLarge (431) ── answered by the HTTP protocol, before any app sees the request
    ├── TooManyRequests (429) ── carries Retry-After
    ├── ServiceUnavailable (503)
    ├── OAuthError (400/401, RFC 6749 §5.2 codes: invalid_request, invalid_client, invalid_grant,
    │               unauthorized_client, unsupported_grant_type, invalid_scope,
    │               authorization_pending, slow_down, expired_token, access_denied)
    └── ConfigurationError (never reaches a client: the server refuses to start)

Example::

    raise BadRequest("'properties.authMode' must be one of Key, AMLToken, AADToken.",
                     target="properties.authMode")
"""

from __future__ import annotations

from typing import Any, Final

__all__ = [
    "BadRequest",
    "ClientTimeout",
    "ConfigurationError",
    "Conflict",
    "Forbidden",
    "HeaderFieldsTooLarge",
    "NotFound",
    "OAuthError",
    "PayloadTooLarge",
    "PreconditionFailed",
    "PropylonError",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthenticated",
]


class PropylonError(Exception):
    """Base of every error a client may see; renders as the ARM error body."""

    status: int = 500
    code: str = "InternalError"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        target: str | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.target = target
        self.details = details
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The ARM error body: ``{"error": {"code", "message", "target"?, "details"?}}``."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target is not None:
            error["target"] = self.target
        if self.details:
            error["details"] = self.details
        return {"error": error}


class BadRequest(PropylonError):
    status = 400
    code = "BadRequest"


class Unauthenticated(PropylonError):
    status = 401
    code = "AuthenticationFailed"

    def __init__(self, message: str, *, challenge: str = "Bearer", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("WWW-Authenticate", challenge)


class Forbidden(PropylonError):
    status = 403
    code = "AuthorizationFailed"


class NotFound(PropylonError):
    status = 404
    code = "ResourceNotFound"


class Conflict(PropylonError):
    status = 409
    code = "Conflict"


class PreconditionFailed(PropylonError):
    status = 412
    code = "PreconditionFailed"


class PayloadTooLarge(PropylonError):
    status = 413
    code = "RequestEntityTooLarge"


class HeaderFieldsTooLarge(PropylonError):
    """RFC 6585 §5: the request line and header fields are larger than the server accepts."""

    status = 431
    code = "RequestHeaderFieldsTooLarge"


class ClientTimeout(PropylonError):
    """RFC 9110 §15.5.9: the client did not send its request (head, or the next part of its body)
    in time."""

    status = 408
    code = "ClientRequestTimeout"
    # Set in a request's ASGI scope state when the server gave up on its body.
    scope_key: Final = "propylon.client_timeout"


class TooManyRequests(PropylonError):
    status = 429
    code = "TooManyRequests"

    def __init__(self, message: str, *, retry_after: int = 1, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("Retry-After", str(retry_after))


class ServiceUnavailable(PropylonError):
    status = 503
    code = "ServiceUnavailable"


class OAuthError(PropylonError):
    """An RFC 6749 §5.2 error, rendered as ``{"error", "error_description"}``."""

    status = 400

    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        super().__init__(description, code=error)
        self.status = status
        if error == "invalid_client" and status == 401:
            # RFC 6749 §5.2: a 401 for invalid_client must carry a challenge.
            self.headers["WWW-Authenticate"] = 'Basic realm="propylon"'

    def oauth_body(self) -> dict[str, Any]:
        return {"error": self.code, "error_description": self.message}


class ConfigurationError(Exception):
    """The server cannot start as configured; the CLI prints the message as one line and exits 2."""
