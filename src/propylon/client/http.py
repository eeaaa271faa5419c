"""The one HTTP layer of the client: requests to the control plane, the directory and the gateway.

httpx is used here and nowhere else in ``propylon.client`` or ``propylon.cli``; its exceptions and
every error response become :mod:`propylon.errors` here, so callers see one error tree whatever
went wrong (ARM body ``{"error": {"code", "message"}}``, OAuth body ``{"error",
"error_description"}``, plain text, or no answer at all).

Bearer tokens come from any object with ``get_token(*scopes)`` (every azure-identity credential,
and :class:`~propylon.client.cli_credential.CliCredential`); they are kept until five minutes
before they expire, as azure-core's ``BearerTokenCredentialPolicy`` does. Example::

    pipeline = Pipeline(credential, verify="/srv/propylon/tls/ca.pem")
    reply = pipeline.send("GET", server + ws_path + "/onlineEndpoints", scope=ARM_SCOPE)
    endpoints = reply.json()["value"]
"""

from __future__ import annotations

import json
import ssl
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from propylon import __version__
from propylon.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    PropylonError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthenticated,
)

__all__ = [
    "ARM_SCOPE",
    "GRAPH_SCOPE",
    "ML_SCOPE",
    "AccessTokenLike",
    "Pipeline",
    "Reply",
    "TokenCredential",
    "Transport",
    "error_from_reply",
    "resource_to_scope",
]

#: Control-plane tokens: the audience ARM uses (``az account get-access-token`` default).
ARM_SCOPE = "https://management.azure.com/.default"
#: Data-plane tokens for ``aad_token`` endpoints (azure-ai-ml ``AAD_TOKEN_RESOURCE_ENDPOINT``).
ML_SCOPE = "https://ml.azure.com/.default"
#: Directory calls (``/v1.0/users`` …): Propylon's directory lives on the control plane and takes
#: control-plane tokens (``az ad`` would ask for Microsoft Graph's audience instead).
GRAPH_SCOPE = ARM_SCOPE

#: Refresh a cached token this long before it expires (azure-core uses 300 s).
_REFRESH_MARGIN = 300
_STATUS_ERRORS: dict[int, type[PropylonError]] = {
    400: BadRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
    413: PayloadTooLarge,
    429: TooManyRequests,
    503: ServiceUnavailable,
}

#: What tests pass instead of the network: an ``httpx.MockTransport`` or any httpx transport.
Transport = httpx.BaseTransport


class AccessTokenLike(Protocol):
    @property
    def token(self) -> str: ...

    @property
    def expires_on(self) -> int: ...


class TokenCredential(Protocol):
    """What azure-core calls a ``TokenCredential``; every azure-identity credential is one."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessTokenLike: ...


def resource_to_scope(resource: str) -> str:
    """``https://ml.azure.com`` → ``https://ml.azure.com/.default`` (as ``az`` does)."""
    return resource if resource.endswith("/.default") else resource.rstrip("/") + "/.default"


@dataclass(frozen=True)
class Reply:
    """An HTTP response, read whole, with case-insensitive header lookup."""

    status: int
    headers: Mapping[str, str]
    content: bytes
    url: str

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The JSON body; an empty body reads as ``None``."""
        if not self.content.strip():
            return None
        try:
            return json.loads(self.content)
        except ValueError:
            raise PropylonError(
                f"The server answered {self.url} with a body that is not JSON.",
                code="InvalidResponse",
            ) from None


def _error_fields(reply: Reply) -> tuple[str | None, str | None, str | None]:
    try:
        body = json.loads(reply.content) if reply.content.strip() else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):  # ARM: {"error": {"code", "message", "target"}}
            return error.get("code"), error.get("message"), error.get("target")
        if isinstance(error, str):  # OAuth (RFC 6749 §5.2): {"error", "error_description"}
            return error, body.get("error_description"), None
        if isinstance(body.get("message"), str):
            return body.get("code"), body["message"], None
    text = reply.text.strip()
    return None, text[:500] or None, None


def error_from_reply(reply: Reply) -> PropylonError:
    """The :class:`PropylonError` an error response stands for, with the server's code."""
    code, message, target = _error_fields(reply)
    kind = _STATUS_ERRORS.get(reply.status, PropylonError)
    message = message or f"The server answered HTTP {reply.status}."
    error = kind(message, code=code, target=target)
    error.status = reply.status
    if code is None and kind is PropylonError:
        error.code = f"HttpError{reply.status}"
    for name in ("WWW-Authenticate", "Retry-After"):
        value = reply.header(name)
        if value is not None:
            error.headers[name] = value
    return error


def _verify(ca_cert: str | bool | None) -> ssl.SSLContext | bool:
    if ca_cert is None or ca_cert is True:
        return True
    if ca_cert is False:
        return False
    try:
        return ssl.create_default_context(cafile=ca_cert)
    except (OSError, ssl.SSLError) as exc:
        raise BadRequest(
            f"cannot read the CA certificate {ca_cert}: {exc}", code="InvalidCaCertificate"
        ) from None


@dataclass
class _CachedToken:
    token: str
    expires_on: int


@dataclass
class Pipeline:
    """Sends requests, adds bearer tokens, and turns failures into :mod:`propylon.errors`.

    ``ca_cert`` is a PEM file to trust (the server's ``tls/ca.pem``), ``True`` for the system
    store. ``transport`` replaces the network (tests pass ``httpx.MockTransport``).
    """

    credential: TokenCredential | None = None
    ca_cert: str | bool | None = None
    transport: Transport | None = None
    timeout: float = 60.0
    user_agent: str = f"propylon-client/{__version__}"
    _tokens: dict[str, _CachedToken] = field(default_factory=dict, init=False, repr=False)
    _client: httpx.Client | None = field(default=None, init=False, repr=False)

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                verify=_verify(self.ca_cert),
                transport=self.transport,
                timeout=self.timeout,
                follow_redirects=False,
                headers={"User-Agent": self.user_agent},
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def token(self, scope: str) -> str:
        """A bearer token for ``scope`` from the credential, cached until shortly before expiry."""
        return self.access(scope)[0]

    def access(self, scope: str) -> tuple[str, int]:
        """``(token, expires_on)`` for ``scope``; ``expires_on`` is in epoch seconds."""
        cached = self._tokens.get(scope)
        if cached is None or cached.expires_on - _REFRESH_MARGIN <= time.time():
            if self.credential is None:
                raise Unauthenticated("No credential: sign in with `propylon login`.")
            access = _get_token(self.credential, scope)
            cached = _CachedToken(access.token, int(access.expires_on))
            self._tokens[scope] = cached
        return cached.token, cached.expires_on

    def collect(
        self, url: str, *, scope: str | None, params: Mapping[str, str] | None = None
    ) -> list[Any]:
        """Every item of a paged list (``{"value": […], "nextLink"}`` in ARM and Graph)."""
        items: list[Any] = []
        next_url: str | None = url
        next_params = params
        while next_url:
            body = self.send("GET", next_url, scope=scope, params=next_params).json() or {}
            items.extend(body.get("value") or [])
            next_url = body.get("nextLink") or body.get("@odata.nextLink")
            next_params = None  # the next link carries its own query
        return items

    def send(
        self,
        method: str,
        url: str,
        *,
        scope: str | None = None,
        bearer: str | None = None,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (),
    ) -> Reply:
        """Send one request; raise the mapped error for any status ≥ 400 not listed in ``ok``.

        ``scope`` asks the credential for a token; ``bearer`` gives one directly (keys, endpoint
        tokens). ``json_body`` is serialised; ``content`` is sent as is.
        """
        request_headers = {"Accept": "application/json", "x-ms-client-request-id": _request_id()}
        if scope is not None:
            request_headers["Authorization"] = f"Bearer {self.token(scope)}"
        elif bearer is not None:
            request_headers["Authorization"] = f"Bearer {bearer}"
        body = content
        if json_body is not None:
            body = json.dumps(json_body).encode()
            request_headers["Content-Type"] = "application/json"
        elif body is None and method in {"POST", "PUT", "PATCH"}:
            body = b""  # ARM POST actions (listKeys, token) are sent with Content-Length: 0
        request_headers.update(headers or {})
        reply = self._exchange(method, url, params, body, request_headers)
        if reply.status >= 400 and reply.status not in ok:
            raise error_from_reply(reply)
        return reply

    def _exchange(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        body: bytes | None,
        headers: dict[str, str],
    ) -> Reply:
        where = _origin(url)
        try:
            response = self._http().request(
                method, url, params=dict(params or {}), content=body, headers=headers
            )
            content = response.read()
        except httpx.ConnectError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise PropylonError(
                    f"cannot verify the TLS certificate of {where}; pass the server's CA with "
                    "--ca-cert (or set PROPYLON_CA_CERT).",
                    code="CertificateVerifyFailed",
                ) from None
            raise ServiceUnavailable(
                f"cannot connect to {where}: {_reason(exc)}", code="ServiceRequestError"
            ) from None
        except httpx.TimeoutException:
            error = PropylonError(
                f"{where} did not answer within {self.timeout:g} s.", code="RequestTimeout"
            )
            error.status = 408
            raise error from None
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"the request to {where} failed: {_reason(exc)}", code="ServiceRequestError"
            ) from None
        return Reply(response.status_code, dict(response.headers), content, str(response.url))


def _get_token(credential: TokenCredential, scope: str) -> AccessTokenLike:
    # azure-core's exceptions are converted here, the one place credentials are called.
    from azure.core.exceptions import ClientAuthenticationError

    try:
        return credential.get_token(scope)
    except PropylonError:
        raise
    except ClientAuthenticationError as exc:
        message = str(getattr(exc, "message", None) or exc).strip().splitlines()
        raise Unauthenticated(
            message[0] if message else "authentication failed", code="AuthenticationFailed"
        ) from None


def _request_id() -> str:
    return str(uuid.uuid4())


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__
