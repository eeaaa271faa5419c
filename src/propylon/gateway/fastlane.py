"""The fast lane: a plain scoring request answered from the HTTP protocol's own callbacks.

Most requests a gateway sees look alike: ``POST /endpoints/{e}/score`` with a key or a token it
has seen before, a body of declared length, a deployment with a free slot and an idle pooled
connection to the chosen instance. For those, what the ASGI app costs per request — a task, the
scope and its messages, futures for the body and for the answer — is more than the gateway's own
checks (``bench/RESULTS.md``, "Where the latency goes"). So the gateway port's protocol
(:mod:`propylon.server.gateway_protocol`) asks :meth:`FastLane.begin` when a request head is
complete whether the request may go this way. If it may, the request takes a slot on an instance
and a pooled connection to it when its body is complete (a client still sending its body holds
neither, as with the app), is written to the instance, and the instance's answer goes to the
client from the callbacks that read it: no task, no future, one write each way per segment.

The lane decides nothing by itself. It calls the app's own steps (:mod:`propylon.gateway.app`):
route, endpoint, failed-authentication throttle, authentication and authorization, choice of
deployment, and once the body is complete admission; it takes a request only when every step
passes without waiting. Anything else is left to the app, which answers it as it always did: a
missing, failed or refused credential (401, 403, the throttle's 429), an unknown endpoint,
deployment or path (404, 405), a body over the limit (413) or in chunks, a full deployment
(queue, 429, 503), no idle connection to an instance of the deployment, the ``/models`` routes
(the endpoint is named in the body), ``Expect``, ``Upgrade``, HTTP/1.0, a percent-encoded path or
a request pipelined behind another. When the lane had already drawn the deployment of a request
it leaves, it hands the draw on (:data:`~propylon.gateway.app.CHOSEN`), so traffic weights are
drawn once per request.

A request the lane took is answered as the app would answer it:

* the instance's answer with the app's headers and 424 mapping (:func:`answer_head`): read whole
  when its length is at most 256 KiB, else relayed as it arrives (server-sent events, long
  answers), the client's backpressure passed on to the instance;
* 408 when the model does not answer within ``request_timeout_ms``, 502 when the instance breaks
  the connection; after a streamed answer's head, the client's connection is cut instead;
* a pooled connection that the instance had closed (no byte answered) hands the request to the
  app (:meth:`Downstream.replay`), which connects afresh or tries another instance (503); so
  does a complete request that finds no free slot or idle connection (the app queues it);
* the client going away before its body ended, or mid-answer, ends the request as 499 in the
  traffic log (a streamed answer is stopped, a short one still read).

It writes the same traffic-log record, mirror copy, request ids (``x-request-id`` =
``x-ms-request-id``, echoed ``x-ms-client-request-id``) and request metrics as the app and the
server's middleware.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any, Final, Protocol

from propylon.errors import PropylonError
from propylon.gateway.app import (
    CHOSEN,
    REASONS,
    Gateway,
    Incoming,
    Route,
    copy_for,
    last_segment,
)
from propylon.gateway.auth import Identity
from propylon.gateway.errors import BadGateway
from propylon.gateway.responses import answer_head, error_answer
from propylon.gateway.routing import choose_deployment
from propylon.gateway.table import Deployment, Endpoint, Instance
from propylon.gateway.traffic_log import TrafficRecord
from propylon.gateway.upstream import (
    IdleConnection,
    PooledTransport,
    StaleConnection,
    UpstreamRequest,
)

__all__ = ["Downstream", "Exchange", "FastLane"]

log = logging.getLogger("propylon.gateway")

_STATUS_LINES: dict[int, bytes] = {}


class _NoEvent:
    def set(self) -> None:
        return None


class Downstream(Protocol):
    """What an :class:`Exchange` needs of the client's connection (the server's protocol)."""

    transport: asyncio.Transport

    def date_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers the server puts on every answer (``date``)."""
        ...

    def exchange_done(self, exchange: Exchange) -> None:
        """The answer is complete: the connection takes its next request (or closes)."""

    def replay(self, exchange: Exchange) -> None:
        """Hand the request, its body read, to the ASGI app."""


class FastLane:
    """Takes the plain requests of one gateway; see the module docstring.

    ``request_id`` makes the request id (the middleware's); ``observe(method, status, seconds)``
    counts an answered request in the server's request metrics.
    """

    def __init__(
        self,
        gateway: Gateway,
        *,
        request_id: Callable[[], str],
        observe: Callable[[str, int, float], None],
    ) -> None:
        self.gateway = gateway
        self.request_id = request_id
        self.observe = observe
        transport = gateway.transport
        # Only the pooled client can start an exchange from a callback; with another (a test
        # double, the benchmark's aiohttp one) every request goes through the app.
        self.transport = transport if isinstance(transport, PooledTransport) else None
        # Requests taken, and of those handed to the app after all (a stale pooled connection).
        self.taken = 0
        self.replayed = 0

    def begin(  # noqa: PLR0911 - each early return leaves the request to the app
        self,
        down: Downstream,
        method: bytes,
        url: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        *,
        keep_alive: bool,
        address: str | None,
        state: dict[str, Any],
    ) -> Exchange | None:
        """An exchange for this request head, or None to leave the request to the app (with the
        drawn deployment in ``state[CHOSEN]`` if it got that far)."""
        transport = self.transport
        if transport is None or url[:1] != b"/":
            return None
        raw_path, _, query = url.partition(b"?")
        if b"%" in raw_path or b"#" in url:
            return None
        gateway = self.gateway
        path = raw_path.decode("latin-1")
        route = gateway.route_of(path, headers)
        if route is None or route.endpoint is None or route.method.encode() != method:
            return None
        incoming = Incoming(headers)
        length = incoming.content_length
        if not incoming.plain or (
            length is not None and length > gateway.options.max_request_bytes
        ):
            return None
        endpoint = gateway.endpoint(route.endpoint)
        if endpoint is None:
            return None
        try:
            identity = gateway.authenticate(endpoint, incoming, route, address, count_failure=False)
            deployment, mirror = choose_deployment(endpoint, incoming.deployment, gateway.rand)
        except PropylonError:
            return None
        if not transport.has_idle(deployment.instances):
            state[CHOSEN] = (deployment, mirror)
            return None
        self.taken += 1
        return Exchange(
            self, down, route, endpoint, deployment, mirror, incoming, identity, path, query,
            keep_alive=keep_alive,
        )  # fmt: skip


class Exchange:
    """One request on the fast lane, from its head to the end of its answer.

    For the server's protocol it stands where uvicorn keeps a request's cycle (hence
    ``response_complete``, ``disconnected``, ``keep_alive`` and ``message_event``); for the
    upstream connection it is the :class:`~propylon.gateway.upstream.AnswerSink`.
    """

    __slots__ = (
        "_body",
        "_chunked",
        "_deployment",
        "_down",
        "_endpoint",
        "_forwarded",
        "_identity",
        "_incoming",
        "_instance",
        "_lane",
        "_mirror",
        "_path",
        "_pending",
        "_query",
        "_route",
        "_started",
        "_status",
        "_streaming",
        "_time",
        "_upstream",
        "disconnected",
        "keep_alive",
        "record",
        "request_id",
        "response_complete",
    )

    message_event: Final = _NoEvent()  # what uvicorn sets when the client goes away

    def __init__(
        self,
        lane: FastLane,
        down: Downstream,
        route: Route,
        endpoint: Endpoint,
        deployment: Deployment,
        mirror: Deployment | None,
        incoming: Incoming,
        identity: Identity,
        path: str,
        query: bytes,
        *,
        keep_alive: bool,
    ) -> None:
        self._started = time.perf_counter()
        self._time = time.time()
        self.request_id = lane.request_id()
        self._identity = identity
        self._path = path
        self._lane = lane
        self._down = down
        self._route = route
        self._endpoint = endpoint
        self._deployment = deployment
        self._mirror = mirror
        # The slot and the pooled connection, taken when the request is complete (send()).
        self._instance: Instance | None = None
        self._upstream: IdleConnection | None = None
        self._incoming = incoming
        self._query = query
        self._body: list[bytes] = []
        self._pending: list[bytes] = []
        self._forwarded: UpstreamRequest | None = None
        self._status = 0
        self._chunked = False
        self._streaming = False
        self.record: TrafficRecord | None = None  # made while the instance works (send)
        self.keep_alive = keep_alive
        self.disconnected = False
        self.response_complete = False

    @property
    def chosen(self) -> tuple[Deployment, Deployment | None]:
        return self._deployment, self._mirror

    @property
    def method(self) -> str:
        return self._route.method

    def request_body(self) -> bytes:
        """The request body read so far (all of it once :meth:`send` was called)."""
        return self._forwarded.body if self._forwarded is not None else b"".join(self._body)

    # -- from the client's connection ------------------------------------------------------------

    def add_body(self, data: bytes) -> None:
        self._body.append(data)

    def send(self) -> None:
        """The request is complete: take a slot on an instance and a pooled connection to it,
        forward the request, then fill in its traffic-log record while the instance works on it.
        Without a free slot or an idle connection now, the request is the app's (which queues or
        connects)."""
        body = b"".join(self._body)
        request_ms = (time.perf_counter() - self._started) * 1000
        route, deployment, incoming = self._route, self._deployment, self._incoming
        lane = self._lane
        limiter, transport = lane.gateway.limiter, lane.transport
        assert transport is not None  # begin() takes no request without the pooled client
        instance = limiter.try_acquire(deployment)
        upstream = transport.idle(instance) if instance is not None else None
        if upstream is None:
            if instance is not None:
                limiter.release(deployment, instance)
            self._body = [body]
            self._hand_to_the_app()
            return
        self._instance, self._upstream, self._body = instance, upstream, []
        self._forwarded = request = UpstreamRequest(
            route.method.encode(),
            route.target + b"?" + self._query if self._query else route.target,
            incoming.forward_headers(self.request_id, deployment.name),
            body,
        )
        deadline = asyncio.get_running_loop().time() + deployment.limits.request_timeout_s
        upstream.start(request, deadline, self)
        if self.response_complete:  # the connection was closed: replayed to the app
            return
        self.record = self._new_record(len(body), request_ms)

    def _new_record(self, request_size: int, request_ms: float) -> TrafficRecord:
        route, endpoint, identity = self._route, self._endpoint, self._identity
        return TrafficRecord(
            time=self._time,
            method=route.method,
            path=self._path,
            endpoint=endpoint.name,
            workspace=last_segment(endpoint.workspace_id),
            deployment=self._deployment.name,
            request_size=request_size,
            request_ms=request_ms,
            user_agent=self._incoming.user_agent,
            x_request_id=self.request_id,
            x_ms_client_request_id=self._incoming.client_request_id,
            auth_type=(route.mode or endpoint.auth_mode).value,
            identity=identity.identity_data,
            app_id=identity.appid,
            tenant_id=identity.tid,
        )

    def client_gone(self) -> None:
        """The client closed its connection. Before its body was complete: nothing went to the
        instance (and no slot or connection was taken), the request ends as 499. Mid answer: a
        streamed answer is stopped, a short one is still read (the instance is working
        on it, and its connection can be used again)."""
        self.disconnected = True
        if self.response_complete:
            return
        if self._forwarded is None:
            self.abandon(499, "ClientClosedRequest")
        elif self._streaming:
            self._abort_upstream()
            self._finish(499, "ClientClosedRequest")

    def abandon(self, status: int, reason: str) -> None:
        """End a request whose body never came whole (the client left, or was too slow): it was
        not sent, and holds no slot; the traffic log gets ``status``."""
        if self.response_complete or self._forwarded is not None:
            return
        self.keep_alive = False
        received = sum(len(part) for part in self._body)
        self._body = []
        self.record = self._new_record(received, (time.perf_counter() - self._started) * 1000)
        self._finish(status, reason)

    def pause(self) -> None:
        if self._streaming and self._upstream is not None:
            self._upstream.pause()

    def resume(self) -> None:
        if self._streaming and self._upstream is not None:
            self._upstream.resume()

    # -- AnswerSink: from the instance's connection ----------------------------------------------

    def head(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], whole: bool
    ) -> None:
        record = self.record
        assert record is not None  # made in send(), before any answer can arrive
        record.response_ms = (time.perf_counter() - self._started) * 1000
        record.model_status_code, record.model_status_reason = status, reason
        self._streaming = not whole
        if self.disconnected and self._streaming:
            self._abort_upstream()
            self._finish(499, "ClientClosedRequest")
            return
        code, relayed = answer_head(
            status,
            reason,
            headers,
            self._deployment.name.encode(),
            passthrough=self._route.passthrough,
        )
        self._status = code
        parts = self._pending
        parts.append(_status_line(code))
        for name, value in self._down.date_headers():
            parts += (name, b": ", value, b"\r\n")
        for name, value in relayed:
            parts += (name, b": ", value, b"\r\n")
        length = _content_length(headers)
        if length is not None:
            parts += (b"content-length: ", length, b"\r\n")
        elif code >= 200 and code not in (204, 304):
            self._chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
        parts += self._id_lines()

    def body(self, data: bytes) -> None:
        self.record.response_size += len(data)  # type: ignore[union-attr]  # see head()
        if self._chunked:
            self._pending += (b"%x\r\n" % len(data), data, b"\r\n")
        else:
            self._pending.append(data)

    def flush(self) -> None:
        if self._streaming:
            self._write()

    def done(self) -> None:
        if self.response_complete:
            return
        if self._chunked:
            self._pending.append(b"0\r\n\r\n")
        self._write()
        status = self._status
        if self.disconnected:
            self._finish(499, "ClientClosedRequest")
        else:
            self._finish(status, REASONS.get(status, ""))

    def failed(self, error: BaseException) -> None:
        if self.response_complete:
            return
        if isinstance(error, StaleConnection) and not self.disconnected:
            self._hand_to_the_app()
            return
        if not isinstance(error, PropylonError):  # the sink is only given gateway errors
            error = BadGateway("The gateway failed.")
        if self._streaming or self.disconnected:
            # The head is out (or nobody listens): nothing can be said any more but by cutting.
            self.keep_alive = False
            self._down.transport.abort()
            self._finish(499 if self.disconnected else 502, "BadGateway")
            return
        headers, body = error_answer(error, self._deployment)
        self._pending = parts = [_status_line(error.status)]
        for name, value in (*self._down.date_headers(), *headers):
            parts += (name, b": ", value, b"\r\n")
        parts += self._id_lines()
        parts.append(body)
        self._write()
        self._finish(error.status, error.code)

    # -- helpers ------------------------------------------------------------------------------

    def _hand_to_the_app(self) -> None:
        """Give up the slot, if one was taken, and hand the whole request to the app."""
        if self._instance is not None:
            self._lane.gateway.limiter.release(self._deployment, self._instance)
            self._instance = None
        self.response_complete = True  # it is the app's request now
        self._lane.replayed += 1
        self._down.replay(self)

    def _abort_upstream(self) -> None:
        if self._upstream is not None:
            self._upstream.abort()

    def _id_lines(self) -> list[bytes]:
        request_id = self.request_id.encode()
        lines = [b"x-ms-request-id: ", request_id, b"\r\nx-request-id: ", request_id, b"\r\n"]
        client_request_id = self._incoming.client_request_id
        if client_request_id:
            lines += (b"x-ms-client-request-id: ", client_request_id.encode("latin-1"), b"\r\n")
        if not self.keep_alive:
            lines.append(b"connection: close\r\n")
        lines.append(b"\r\n")
        return lines

    def _write(self) -> None:
        pending = self._pending
        if pending:
            if not self.disconnected:
                self._down.transport.write(b"".join(pending))
            pending.clear()

    def _finish(self, status: int, reason: str) -> None:
        self.response_complete = True
        lane = self._lane
        gateway = lane.gateway
        if self._instance is not None:
            gateway.limiter.release(self._deployment, self._instance)
        record = self.record
        if record is None:  # failed in send(): the client's connection is gone
            self._down.exchange_done(self)
            return
        record.response_code, record.response_reason = status, reason
        if self._mirror is not None and self._forwarded is not None:
            gateway.mirror.submit(
                self._endpoint.name, self._mirror, copy_for(self._forwarded, self._mirror)
            )
        elapsed = time.perf_counter() - self._started
        record.total_ms = elapsed * 1000
        gateway.traffic.record(record)
        lane.observe(record.method, status, elapsed)
        self._down.exchange_done(self)


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {phrase}\r\n".encode()
    return line


def _content_length(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"content-length":
            return value
    return None
