"""The data-plane ASGI app: every scoring request goes through :meth:`Gateway.serve`, top to bottom.

    read body (413) → endpoint (404) → failed-auth throttle (429) → authenticate / authorize
    (401 / 403) → route (404)
    → admit (429 / 503) → forward (408 / 502; a refused connection: the next instance, or 503)
    → relay (200, or 424 for a model error)
    → mirror a copy → traffic log

Routes (reference §3.1; the model-inference routes of Azure AI model inference / OpenAI):

=======================================================  ======  ==================================
path                                                     method  forwarded to the instance as
=======================================================  ======  ==================================
``/endpoints/{e}/score``, or ``/score`` with
``Host: {e}.<gateway host>``                             POST    ``/score``
``/endpoints/{e}/swagger.json`` (``/swagger.json``)      GET     ``/swagger.json`` (status as is)
``/endpoints/{e}/chat/completions``                      POST    ``/chat/completions``
``/endpoints/{e}/embeddings``                            POST    ``/embeddings``
``/endpoints/{e}/info``                                  GET     ``/info``
``/models/chat/completions``, ``/models/embeddings``     POST    the same without ``/models``;
                                                                 the body's ``model`` names the
                                                                 endpoint, aad_token + RBAC only
=======================================================  ======  ==================================

The query string is forwarded. Credentials (``Authorization``, ``api-key``) and hop-by-hop
headers never reach the instance; it receives the gateway's ``x-request-id`` and
``azureml-model-deployment``. Every answer after routing carries ``azureml-model-deployment``;
``x-request-id`` and the echoed ``x-ms-client-request-id`` come from the server's
:class:`~propylon.server.middleware.RequestContextMiddleware` around this app. Other paths go to
``fallback`` (``/healthz``, ``/metrics``).

Example::

    app = create_gateway(ctx, fallback=Starlette(routes=health_routes(ctx, plane="gateway")))
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from starlette.types import ASGIApp, Receive, Scope, Send

from propylon.errors import BadRequest, ClientTimeout, NotFound, PropylonError, Unauthenticated
from propylon.gateway.auth import Authenticator, Identity
from propylon.gateway.errors import ConnectFailed, MethodNotAllowed
from propylon.gateway.limits import (
    DEFAULT_MAX_REQUEST_BYTES,
    ClientDisconnected,
    Limiter,
    read_body,
)
from propylon.gateway.mirror import Mirror
from propylon.gateway.responses import relay, send_error
from propylon.gateway.routing import choose_deployment
from propylon.gateway.table import (
    AuthMode,
    Deployment,
    Endpoint,
    Instance,
    RoutingTables,
    TableLoader,
)
from propylon.gateway.throttle import (
    DEFAULT_AUTH_FAILURE_LIMIT,
    AuthFailureLimit,
    FailedAuthThrottle,
)
from propylon.gateway.traffic_log import TrafficLog, TrafficRecord
from propylon.gateway.upstream import (
    PooledTransport,
    Transport,
    UpstreamRequest,
    UpstreamResponse,
)

if TYPE_CHECKING:  # propylon.server imports the gateway
    from propylon.server.context import ServerContext

__all__ = ["Gateway", "GatewayOptions", "Route", "create_gateway"]

log = logging.getLogger("propylon.gateway")


@dataclass(frozen=True)
class GatewayOptions:
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    # ``Host: {endpoint}{suffix}`` selects an endpoint for the host-form routes (``/score``).
    host_suffixes: tuple[str, ...] = (".localhost",)
    # 401s per (endpoint, source address) before 429 (:mod:`propylon.gateway.throttle`).
    auth_failures: AuthFailureLimit = DEFAULT_AUTH_FAILURE_LIMIT

    @classmethod
    def for_context(cls, ctx: ServerContext) -> GatewayOptions:
        """From the server's settings; ``PROPYLON_GATEWAY_MAX_REQUEST_BYTES`` sets the 413 limit,
        ``PROPYLON_GATEWAY_AUTH_FAILURES`` (``30/60``) the failed-authentication limit."""
        hosts = {ctx.settings.advertised_host, ctx.settings.public_host or "", "localhost"}
        limit = os.environ.get("PROPYLON_GATEWAY_MAX_REQUEST_BYTES")
        failures = os.environ.get("PROPYLON_GATEWAY_AUTH_FAILURES")
        return cls(
            max_request_bytes=int(limit) if limit else DEFAULT_MAX_REQUEST_BYTES,
            host_suffixes=tuple(sorted(f".{host.lower()}" for host in hosts if host)),
            auth_failures=(
                AuthFailureLimit.parse(failures) if failures else DEFAULT_AUTH_FAILURE_LIMIT
            ),
        )


class Route(NamedTuple):
    """A matched data-plane path: which endpoint (None: from the body), method, instance path."""

    endpoint: str | None
    method: str
    target: bytes
    mode: AuthMode | None = None  # forces an auth mode (the key-less /models routes)
    passthrough: bool = False  # the instance's status is relayed as is (no 424)

    def of(self, endpoint: str) -> Route:
        return Route(endpoint, self.method, self.target, self.mode, self.passthrough)


_ENDPOINT_ROUTES: Final = {
    "score": Route(None, "POST", b"/score"),
    "swagger.json": Route(None, "GET", b"/swagger.json", passthrough=True),
    "chat/completions": Route(None, "POST", b"/chat/completions"),
    "embeddings": Route(None, "POST", b"/embeddings"),
    "info": Route(None, "GET", b"/info"),
}
_MODEL_ROUTES: Final = {
    "chat/completions": Route(None, "POST", b"/chat/completions", AuthMode.AAD_TOKEN),
    "embeddings": Route(None, "POST", b"/embeddings", AuthMode.AAD_TOKEN),
}
_UNKNOWN_PATH: Final = Route(None, "", b"")

# Request headers an instance never sees: credentials, hop-by-hop (RFC 9110 §7.6.1), and the
# ones the gateway sets itself.
_NOT_FORWARDED: Final = frozenset(
    {
        b"authorization",
        b"api-key",
        b"host",
        b"content-length",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
        b"x-request-id",
        b"x-ms-request-id",
        b"azureml-model-deployment",
    }
)
_NOT_PLAIN: Final = frozenset({b"transfer-encoding", b"expect", b"upgrade"})
REASONS: Final = {200: "OK", 424: "Model error"}
# Set in ``scope["state"]`` by the fast lane when it chose (deployment, mirror) for a request it
# then left to the app, so that the choice is not drawn twice (:mod:`propylon.gateway.fastlane`).
CHOSEN: Final = "propylon.gateway.chosen"


class Gateway:
    """The data-plane ASGI app; construct with :func:`create_gateway`."""

    def __init__(
        self,
        *,
        tables: RoutingTables,
        authenticator: Authenticator,
        transport: Transport,
        traffic: TrafficLog,
        limiter: Limiter | None = None,
        mirror: Mirror | None = None,
        options: GatewayOptions | None = None,
        fallback: ASGIApp | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.tables = tables
        self.auth = authenticator
        self.transport = transport
        self.traffic = traffic
        self.limiter = limiter or Limiter()
        self.mirror = mirror or Mirror(transport, self.limiter)
        self.options = options or GatewayOptions()
        self.auth_failures = FailedAuthThrottle(self.options.auth_failures)
        self.fallback = fallback
        self.rand = rand
        self._refresher: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = self.route(scope)
            if route is not None:
                await self.serve(scope, receive, send, route)
                return
        if self.fallback is not None:
            await self.fallback(scope, receive, send)
        elif scope["type"] == "http":
            await send_error(send, NotFound("No such path on the gateway."), None)

    def route(self, scope: Scope) -> Route | None:
        """Which data-plane route a request is, or None for the fallback app."""
        return self.route_of(scope["path"], scope["headers"])

    def route_of(self, path: str, headers: Sequence[tuple[bytes, bytes]]) -> Route | None:
        """Which data-plane route ``path`` (percent-decoded) is, or None for the fallback app."""
        if path.startswith("/endpoints/"):
            name, _, rest = path[11:].partition("/")
            known = _ENDPOINT_ROUTES.get(rest)
            return known.of(name) if known and name else _UNKNOWN_PATH
        if path.startswith("/models/"):
            return _MODEL_ROUTES.get(path[8:], _UNKNOWN_PATH)
        known = _ENDPOINT_ROUTES.get(path[1:])
        if known is not None:
            host_name = self._endpoint_from_host(headers)
            if host_name is not None:
                return known.of(host_name)
        return None

    async def serve(  # noqa: PLR0915 - the hot path stays one function: each call costs µs
        self, scope: Scope, receive: Receive, send: Send, route: Route
    ) -> None:
        """One scoring request, from its headers to its traffic-log record."""
        started = time.perf_counter()
        incoming = Incoming(scope["headers"])
        request_id = _request_id(scope)
        record = TrafficRecord(
            time=time.time(),
            method=scope["method"],
            path=scope["path"],
            user_agent=incoming.user_agent,
            x_request_id=request_id,
            x_ms_client_request_id=incoming.client_request_id,
        )
        deployment: Deployment | None = None
        mirror: Deployment | None = None
        instance = forwarded = None
        try:
            _check_method(route, scope["method"])
            body = await read_body(receive, incoming.content_length, self.options.max_request_bytes)
            record.request_size = len(body)
            record.request_ms = (time.perf_counter() - started) * 1000
            endpoint = self._endpoint(route, body)
            record.endpoint, record.workspace = endpoint.name, last_segment(endpoint.workspace_id)
            record.auth_type = (route.mode or endpoint.auth_mode).value
            client = scope.get("client")
            identity = self.authenticate(endpoint, incoming, route, client[0] if client else None)
            record.identity, record.app_id = identity.identity_data, identity.appid
            record.tenant_id = identity.tid
            chosen = scope["state"].get(CHOSEN) if "state" in scope else None
            deployment, mirror = chosen or choose_deployment(
                endpoint, incoming.deployment, self.rand
            )
            record.deployment = deployment.name
            admitted = time.perf_counter()
            instance = await self.limiter.acquire(deployment)
            record.queue_ms = (time.perf_counter() - admitted) * 1000
            forwarded = UpstreamRequest(
                route.method.encode(),
                route.target + _query(scope),
                incoming.forward_headers(request_id, deployment.name),
                body,
            )
            try:
                answer = await self.transport.send(
                    instance, forwarded, deployment.limits.request_timeout_s
                )
            except ConnectFailed:
                instance, answer = await self._elsewhere(deployment, instance, forwarded)
            record.response_ms = (time.perf_counter() - started) * 1000
            record.model_status_code, record.model_status_reason = answer.status, answer.reason
            record.response_code, record.response_size = await relay(
                send, receive, answer, deployment.name, passthrough=route.passthrough
            )
            record.response_reason = REASONS.get(record.response_code, "")
        except PropylonError as error:
            record.response_code, record.response_reason = error.status, error.code
            await send_error(send, error, deployment)
        except ClientDisconnected:
            if scope.get("state", {}).get(ClientTimeout.scope_key):  # the server gave up on it
                record.response_code, record.response_reason = 408, ClientTimeout.code
            else:
                record.response_code, record.response_reason = 499, "ClientClosedRequest"
            if not record.endpoint:  # gone within its body: logged under the path's endpoint
                self._attribute(record, route)
        except Exception:
            log.exception("scoring request failed", extra={"request_id": request_id})
            record.response_code, record.response_reason = 500, "InternalError"
            with contextlib.suppress(RuntimeError):  # the answer may have started already
                await send_error(send, PropylonError("The gateway failed."), deployment)
        finally:
            if instance is not None and deployment is not None:
                self.limiter.release(deployment, instance)
            if mirror is not None and forwarded is not None:  # after the live answer, always
                self.mirror.submit(record.endpoint, mirror, copy_for(forwarded, mirror))
            record.total_ms = (time.perf_counter() - started) * 1000
            self.traffic.record(record)

    async def _elsewhere(
        self, deployment: Deployment, refused: Instance, request: UpstreamRequest
    ) -> tuple[Instance, UpstreamResponse]:
        """The answer of another instance of ``deployment``, and that instance (its slot held),
        for a request that ``refused`` did not take: no byte of it was sent, so it may go to the
        next instance, while the dead one waits to leave the routing table. 503 when none is
        left. Until an answer arrives the slot on ``refused`` stays held, for the caller to
        release if this raises."""
        self.limiter.set_aside(refused)
        log.warning("instance refused the connection", extra={"instance": refused.key})
        while True:
            instance = await self.limiter.acquire(deployment)  # 503 once all are set aside
            try:
                answer = await self.transport.send(
                    instance, request, deployment.limits.request_timeout_s
                )
            except ConnectFailed:
                self.limiter.set_aside(instance)
                log.warning("instance refused the connection", extra={"instance": instance.key})
                self.limiter.release(deployment, instance)
                continue
            except BaseException:
                self.limiter.release(deployment, instance)
                raise
            self.limiter.release(deployment, refused)
            return instance, answer

    def authenticate(
        self,
        endpoint: Endpoint,
        incoming: Incoming,
        route: Route,
        address: str | None,
        *,
        count_failure: bool = True,
    ) -> Identity:
        """The credential check, behind the failed-authentication throttle (429). The fast lane,
        which leaves a failed request to the app, does not count the failure itself."""
        self.auth_failures.check(endpoint.name, address)
        try:
            return self.auth.check(
                endpoint, incoming.authorization, incoming.api_key, mode=route.mode
            )
        except Unauthenticated:
            if count_failure:
                self.auth_failures.record(endpoint.name, address)
            raise

    def endpoint(self, name: str) -> Endpoint | None:
        return self.tables.current.endpoints.get(name.lower())

    def _endpoint(self, route: Route, body: bytes) -> Endpoint:
        name = route.endpoint if route.endpoint is not None else _model_of(body)
        endpoint = self.tables.current.endpoints.get(name.lower())
        if endpoint is None:
            raise NotFound(f"No online endpoint named '{name}'.", code="EndpointNotFound")
        return endpoint

    def _attribute(self, record: TrafficRecord, route: Route) -> None:
        """Name in ``record`` the endpoint its path names, if there is one."""
        if route.endpoint is not None:
            endpoint = self.tables.current.endpoints.get(route.endpoint.lower())
            if endpoint is not None:
                record.endpoint = endpoint.name
                record.workspace = last_segment(endpoint.workspace_id)

    def _endpoint_from_host(self, headers: Sequence[tuple[bytes, bytes]]) -> str | None:
        for name, value in headers:
            if name == b"host":
                host = value.decode("latin-1").rsplit(":", 1)[0].lower()
                for suffix in self.options.host_suffixes:
                    if host.endswith(suffix) and "." not in host[: -len(suffix)]:
                        return host[: -len(suffix)] or None
                return None
        return None

    # -- life cycle ---------------------------------------------------------------------------

    def on_changes(self, changes: Sequence[Any]) -> None:
        """Change-feed subscriber: new routing data, and no cached token verdict survives."""
        self.auth.forget()
        self.tables.on_changes(changes)

    async def start(self) -> None:
        """Begin the once-a-second upkeep (retry a stale table, close connections of gone
        instances)."""
        if self._refresher is None:
            self._refresher = asyncio.create_task(self._upkeep(), name="gateway-upkeep")

    async def aclose(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        await self.mirror.aclose()
        await self.traffic.aclose()
        await self.transport.aclose()

    async def _upkeep(self) -> None:
        seen = None
        while True:
            await asyncio.sleep(1.0)
            try:
                if self.tables.stale:
                    await asyncio.to_thread(self.tables.refresh)
                table = self.tables.current
                if table is not seen:
                    self.transport.retain(table.instances())
                    seen = table
            except Exception:
                log.exception("gateway upkeep failed")


def create_gateway(
    ctx: ServerContext,
    *,
    fallback: ASGIApp | None = None,
    options: GatewayOptions | None = None,
    transport: Transport | None = None,
) -> Gateway:
    """The gateway of a server: routing table loaded and following the change feed, start and
    shutdown hooks registered on ``ctx``; the AccessControl is looked up in
    ``ctx.services["access"]`` when a token is first seen."""
    tables = RoutingTables(TableLoader(ctx.resources, ctx.vault))
    tables.reload()
    transport = transport or PooledTransport()
    limiter = Limiter()
    gateway = Gateway(
        tables=tables,
        authenticator=Authenticator(lookup=lambda: ctx.services.get("access")),
        transport=transport,
        traffic=TrafficLog(
            ctx.settings.logs_dir / "traffic",
            registry=ctx.metrics,
            max_bytes=ctx.settings.traffic_log_size,
            backups=ctx.settings.traffic_log_backups,
        ),
        limiter=limiter,
        mirror=Mirror(transport, limiter, registry=ctx.metrics),
        options=options or GatewayOptions.for_context(ctx),
        fallback=fallback,
    )
    ctx.feed.subscribe(gateway.on_changes)
    ctx.on_startup.append(gateway.start)
    ctx.on_shutdown.append(gateway.aclose)
    ctx.services["gateway"] = gateway
    return gateway


class Incoming:
    """The request headers the gateway reads, found in one pass; the rest is forwarded.

    ``plain`` is False for a request the fast lane leaves to the ASGI app: a body in chunks, an
    ``Expect`` or an ``Upgrade``."""

    __slots__ = (
        "api_key",
        "authorization",
        "client_request_id",
        "content_length",
        "deployment",
        "forward",
        "plain",
        "user_agent",
    )

    def __init__(self, headers: Sequence[tuple[bytes, bytes]]) -> None:
        self.authorization: bytes | None = None
        self.api_key: bytes | None = None
        self.deployment: str | None = None
        self.content_length: int | None = None
        self.user_agent = ""
        self.client_request_id = ""
        self.plain = True
        forward: list[tuple[bytes, bytes]] = []
        for name, value in headers:
            if name not in _NOT_FORWARDED:
                forward.append((name, value))
                if name == b"user-agent":
                    self.user_agent = value.decode("latin-1")
                elif name == b"x-ms-client-request-id":
                    self.client_request_id = value.decode("latin-1")[:200]
            elif name == b"authorization":
                self.authorization = value
            elif name == b"api-key":
                self.api_key = value
            elif name == b"content-length":
                self.content_length = int(value) if value.isdigit() else None
            elif name == b"azureml-model-deployment":
                self.deployment = value.decode("latin-1").strip() or None
            elif name in _NOT_PLAIN:
                self.plain = False
        self.forward = forward

    def forward_headers(self, request_id: str, deployment: str) -> list[tuple[bytes, bytes]]:
        return [
            *self.forward,
            (b"x-request-id", request_id.encode()),
            (b"azureml-model-deployment", deployment.encode()),
        ]


def copy_for(request: UpstreamRequest, mirror: Deployment) -> UpstreamRequest:
    headers = [(n, v) for n, v in request.headers if n != b"azureml-model-deployment"]
    headers.append((b"azureml-model-deployment", mirror.name.encode()))
    return UpstreamRequest(request.method, request.target, headers, request.body)


def _model_of(body: bytes) -> str:
    """The endpoint a workspace-level model-inference request names in its ``model``."""
    try:
        model = json.loads(body).get("model")
    except (ValueError, AttributeError):
        model = None
    if not isinstance(model, str) or not model:
        raise BadRequest(
            "The request body must be a JSON object whose 'model' names the endpoint.",
            code="InvalidRequestContent",
            target="model",
        )
    return model


def _check_method(route: Route, method: str) -> None:
    if not route.target:
        raise NotFound("No such path on the gateway.", code="NotFound")
    if method != route.method:
        raise MethodNotAllowed(
            f"This route accepts {route.method} only.", allow=route.method, code="MethodNotAllowed"
        )


def _request_id(scope: Scope) -> str:
    """The server middleware's request id (a fresh one without it). The middleware is told
    that this request has a traffic-log record, so it may skip its own access-log line."""
    state = scope.get("state")
    if state is None:
        return str(uuid.uuid4())
    state["traffic_logged"] = True
    request_id = state.get("request_id")
    return request_id if isinstance(request_id, str) else str(uuid.uuid4())


def _query(scope: Scope) -> bytes:
    query: bytes = scope.get("query_string", b"")
    return b"?" + query if query else b""


def last_segment(resource_id: str) -> str:
    return resource_id.rsplit("/", 1)[-1]
