"""HTTP/1.1 to deployment instances: the only module of the gateway that talks to them.

:class:`PooledTransport` is a small client on asyncio protocols and ``httptools`` (the parser
uvicorn uses), with keep-alive connections pooled per instance, over TCP or a Unix socket. It was
chosen by measurement (``bench/gateway``): on the echo model it forwards about 2.5 times the
requests per second of an ``aiohttp`` session and adds a third of its latency, because a request
is one ``write`` of pre-joined bytes and its answer is parsed in the callback that receives it.

Its contract, which :class:`Transport` states for any other implementation (a fake for tests, the
``aiohttp`` one the benchmark compares):

* :meth:`Transport.send` resolves with the whole answer (``response.complete``) when it declares a
  length of at most 256 KiB, else as soon as its status line and headers have arrived; a longer
  or open-ended answer (chunked, server-sent events) is then read with
  :meth:`UpstreamResponse.chunks` as it arrives, never buffered whole.
* No answer (for a streamed one: no head) within ``time_limit`` seconds raises
  :class:`RequestTimeout` (408) and drops the connection, which the late answer would corrupt.
* An instance that refuses the connection raises :class:`ConnectFailed`, a :class:`BadGateway`
  that promises no byte of the request was written (the gateway then tries another instance).
  One that breaks the connection afterwards or answers with something that is not HTTP raises a
  plain :class:`BadGateway` (502): the request may have reached it, so it must not be repeated.
  A pooled connection that the instance closed while idle is retried once on a fresh one, since
  the instance cannot have seen the request.

Example::

    transport = PooledTransport()
    answer = await transport.send(instance, UpstreamRequest(b"POST", b"/score", headers, body), 5.0)
    if answer.complete:
        body = answer.body()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import httptools

from propylon.gateway.errors import BadGateway, ConnectFailed, RequestTimeout
from propylon.gateway.table import Instance

__all__ = [
    "AnswerSink",
    "IdleConnection",
    "PooledTransport",
    "StaleConnection",
    "Transport",
    "UpstreamRequest",
    "UpstreamResponse",
    "whole_answer",
]

log = logging.getLogger("propylon.gateway")

_PAUSE_ABOVE = 1 << 20  # buffered bytes of a streamed answer before the instance is paused
_MAX_IDLE = 256  # idle keep-alive connections kept per instance
_WHOLE_UP_TO = 256 * 1024  # answers up to this length (by content-length) are read whole


@dataclass(slots=True)
class UpstreamRequest:
    method: bytes
    target: bytes  # path and query, e.g. b"/score?verbose=1"
    headers: list[tuple[bytes, bytes]]  # lower-case names; no host, content-length or hop-by-hop
    body: bytes


class UpstreamResponse:
    """An instance's answer: status and headers at once, the body complete or still arriving."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_more",
        "_paused",
        "_peer",
        "complete",
        "error",
        "headers",
        "reason",
        "received",
        "status",
    )

    def __init__(
        self,
        status: int = 0,
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes | None = None,
        *,
        reason: bytes = b"",
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers: list[tuple[bytes, bytes]] = headers if headers is not None else []
        self._chunks: list[bytes] = [body] if body else []
        self.received = len(body) if body else 0
        self._buffered = self.received
        self.complete = body is not None
        self.error: BaseException | None = None
        self._more: asyncio.Future[None] | None = None
        self._peer: _Connection | None = None
        self._paused = False

    def body(self) -> bytes:
        """The whole body of a complete answer."""
        chunks = self._chunks
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; raises BadGateway if the instance breaks off."""
        while True:
            if self._chunks:
                data = b"".join(self._chunks)
                self._chunks.clear()
                self._buffered = 0
                if self._paused and self._peer is not None:
                    self._paused = False
                    self._peer.resume()
                yield data
                continue
            if self.complete:
                return
            if self.error is not None:
                raise self.error
            self._more = asyncio.get_running_loop().create_future()
            await self._more

    def abort(self) -> None:
        """Stop reading an unfinished answer (the client went away); drops the connection."""
        if not self.complete and self._peer is not None:
            self._peer.close()

    # -- fed by the connection ---------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self.received += len(data)
        self._buffered += len(data)
        if self._more is not None:
            self._wake()
        if self._peer is not None and not self._paused and self._buffered > _PAUSE_ABOVE:
            self._paused = True
            self._peer.pause()

    def _finish(self, error: BaseException | None = None) -> None:
        if error is None:
            self.complete = True
        else:
            self.error = error
        self._wake()

    def _wake(self) -> None:
        more, self._more = self._more, None
        if more is not None and not more.done():
            more.set_result(None)


class Transport(Protocol):
    async def send(
        self, instance: Instance, request: UpstreamRequest, time_limit: float
    ) -> UpstreamResponse:
        """Forward ``request``; see the module docstring for what it raises."""
        ...

    def retain(self, instances: Iterable[str]) -> None:
        """Close the connections of instances not in ``instances`` (keys)."""

    async def aclose(self) -> None: ...


class AnswerSink(Protocol):
    """Where a connection delivers the answer to the request it carries, as it is parsed.

    The callback form of :meth:`PooledTransport.send`, for a caller that relays the answer from
    the connection's own callbacks (:mod:`propylon.gateway.fastlane`): ``head`` once the status
    line and headers are in (``whole``: :func:`whole_answer`), ``body`` per piece (chunked
    framing removed), ``flush`` after each segment read from the instance, then ``done`` — or
    ``failed`` with :class:`StaleConnection` (a reused connection had been closed by the
    instance, and no byte of an answer came: the request may go again), :class:`RequestTimeout`
    or :class:`BadGateway`.
    """

    def head(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], whole: bool
    ) -> None: ...

    def body(self, data: bytes) -> None: ...

    def flush(self) -> None: ...

    def done(self) -> None: ...

    def failed(self, error: BaseException) -> None: ...


class StaleConnection(Exception):
    """A pooled connection was found closed before any byte of the answer arrived."""


class PooledTransport:
    """Keep-alive HTTP/1.1 over asyncio + httptools; see the module docstring."""

    def __init__(self, *, max_idle: int = _MAX_IDLE) -> None:
        self._pools: dict[str, _Pool] = {}
        self._max_idle = max_idle

    async def send(
        self, instance: Instance, request: UpstreamRequest, time_limit: float
    ) -> UpstreamResponse:
        pool = self._pool(instance)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + time_limit
        if pool.idle:
            connection = pool.idle.pop()
            try:
                return await connection.exchange(request, deadline, reused=True)
            except StaleConnection:
                pass
        connection = await pool.connect(instance, deadline)
        return await connection.exchange(request, deadline, reused=False)

    def idle(self, instance: Instance) -> IdleConnection | None:
        """A pooled connection to ``instance`` that is ready for a request now, or None: the
        synchronous start of an exchange, for :mod:`propylon.gateway.fastlane`."""
        pool = self._pools.get(instance.key)
        while pool is not None and pool.idle:
            connection = pool.idle.pop()
            if connection.ready:
                return IdleConnection(connection)
        return None

    def has_idle(self, instances: Iterable[Instance]) -> bool:
        """Whether a pooled connection to one of ``instances`` is waiting for a request (it may
        yet be closed by the instance, or taken, before :meth:`idle` is asked for it)."""
        pools = self._pools
        for instance in instances:
            pool = pools.get(instance.key)
            if pool is not None and pool.idle:
                return True
        return False

    def retain(self, instances: Iterable[str]) -> None:
        keep = set(instances)
        for key in [key for key in self._pools if key not in keep]:
            self._pools.pop(key).close()

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    def _pool(self, instance: Instance) -> _Pool:
        pool = self._pools.get(instance.key)
        if pool is None:
            pool = self._pools[instance.key] = _Pool(instance, self._max_idle)
        return pool


class IdleConnection:
    """A connection taken from the pool, for one request sent with :meth:`start`."""

    __slots__ = ("_connection",)

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection

    def start(self, request: UpstreamRequest, deadline: float, sink: AnswerSink) -> None:
        """Write ``request``; the answer goes to ``sink`` (the connection returns to the pool
        after it). ``deadline`` is the loop time by which the answer (for a long or open-ended
        one: its head) must have come."""
        self._connection.start(request, deadline, sink, reused=True)

    def pause(self) -> None:
        """Stop reading the answer (the client reads slower than the instance writes)."""
        self._connection.pause()

    def resume(self) -> None:
        self._connection.resume()

    def abort(self) -> None:
        """Drop the connection mid-answer (the client went away)."""
        self._connection.abort()


class _Pool:
    def __init__(self, instance: Instance, max_idle: int) -> None:
        self.idle: list[_Connection] = []
        self.max_idle = max_idle
        parts = urlsplit(instance.url)
        self.host = b"localhost" if instance.uds else parts.netloc.encode()
        # An instance URL with a path (a Ray Serve application's route prefix) is prepended.
        self.prefix = parts.path.rstrip("/").encode()
        self.closed = False

    async def connect(self, instance: Instance, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        address = instance.address
        try:
            async with asyncio.timeout_at(deadline):
                if isinstance(address, str):
                    _, connection = await loop.create_unix_connection(
                        lambda: _Connection(self), address
                    )
                else:
                    _, connection = await loop.create_connection(
                        lambda: _Connection(self), *address
                    )
        except TimeoutError:
            raise _timeout(instance) from None
        except OSError:
            raise ConnectFailed(
                f"Instance '{instance.instance_id}' is not accepting connections."
            ) from None
        return connection

    def encode(self, request: UpstreamRequest) -> bytes:
        """``request`` as it goes on the wire: one buffer, so one write."""
        parts = [
            request.method,
            b" ",
            self.prefix,
            request.target,
            b" HTTP/1.1\r\nhost: ",
            self.host,
            b"\r\ncontent-length: ",
            b"%d" % len(request.body),
            b"\r\n",
        ]
        for name, value in request.headers:
            parts += (name, b": ", value, b"\r\n")
        parts += (b"\r\n", request.body)
        return b"".join(parts)

    def give_back(self, connection: _Connection) -> None:
        if self.closed or len(self.idle) >= self.max_idle:
            connection.close()
        else:
            self.idle.append(connection)

    def forget(self, connection: _Connection) -> None:
        with contextlib.suppress(ValueError):
            self.idle.remove(connection)

    def close(self) -> None:
        self.closed = True
        for connection in self.idle:
            connection.close()
        self.idle.clear()


class _Awaited:
    """The sink behind :meth:`PooledTransport.send`: an :class:`UpstreamResponse` and the future
    that resolves with it (at the head of a long answer, else at its end)."""

    __slots__ = ("future", "response")

    def __init__(self, connection: _Connection, future: asyncio.Future[UpstreamResponse]) -> None:
        self.future = future
        self.response = UpstreamResponse()
        self.response._peer = connection

    def head(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], whole: bool
    ) -> None:
        response = self.response
        response.status, response.reason, response.headers = status, reason, headers
        # A short answer of known length is handed over whole (its body is usually in the same
        # or the next segment: uvicorn writes head and body separately); a long or open-ended
        # one (chunked, server-sent events) is handed over now and streamed.
        if not whole and not self.future.done():
            self.future.set_result(response)

    def body(self, data: bytes) -> None:
        self.response._feed(data)

    def flush(self) -> None:
        return None

    def done(self) -> None:
        self.response._peer = None
        self.response._finish()
        if not self.future.done():
            self.future.set_result(self.response)

    def failed(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)
        if not self.response.complete:
            broken = error if type(error) is BadGateway else None
            self.response._finish(broken or BadGateway("The instance broke off its answer."))


class _Connection(asyncio.Protocol):
    """One keep-alive connection; carries one exchange at a time (no pipelining)."""

    def __init__(self, pool: _Pool) -> None:
        self._pool = pool
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._sink: AnswerSink | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._reused = False
        self._answered = False  # a byte of the current answer has arrived

    @property
    def ready(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    async def exchange(
        self, request: UpstreamRequest, deadline: float, *, reused: bool
    ) -> UpstreamResponse:
        if not self.ready:
            if reused:
                raise StaleConnection
            raise ConnectFailed("The instance closed the connection before the request was sent.")
        head: asyncio.Future[UpstreamResponse] = asyncio.get_running_loop().create_future()
        self.start(request, deadline, _Awaited(self, head), reused=reused)
        return await head

    def start(
        self, request: UpstreamRequest, deadline: float, sink: AnswerSink, *, reused: bool
    ) -> None:
        if self._transport is None or self._transport.is_closing():
            # Closed by the instance since it was taken from the pool (the fast lane takes it
            # when a request's head arrives and writes when its body is complete).
            sink.failed(StaleConnection())
            return
        self._sink, self._reused, self._answered = sink, reused, False
        self._reason, self._headers = b"", []
        self._transport.write(self._pool.encode(request))
        self._timer = asyncio.get_running_loop().call_at(deadline, self._expire)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        self._sink = None
        self._stop_timer()
        if self._transport is not None:
            self._transport.abort()

    def pause(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def _expire(self) -> None:
        self._timer = None
        self._fail(RequestTimeout("The model did not answer within requestTimeout."))
        if self._transport is not None:
            self._transport.abort()

    def _stop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _fail(self, error: BaseException) -> None:
        sink, self._sink = self._sink, None
        self._stop_timer()
        if sink is not None:
            sink.failed(error)

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._answered = True
        sink = self._sink
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            log.exception("relaying an instance's answer failed")
            self._fail(BadGateway("The gateway failed to relay the answer."))
            if self._transport is not None:
                self._transport.abort()
            return
        except httptools.HttpParserError:
            self._fail(BadGateway("The instance's answer is not valid HTTP.", code="BadResponse"))
            if self._transport is not None:
                self._transport.abort()
            return
        if sink is not None and sink is self._sink:
            sink.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._pool.forget(self)
        if self._sink is not None:
            stale = self._reused and not self._answered
            self._fail(
                StaleConnection()
                if stale
                else BadGateway("The instance closed the connection.", code="InstanceUnreachable")
            )

    # -- httptools callbacks ------------------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        sink = self._sink
        if sink is not None:
            headers = self._headers
            whole = whole_answer(headers)
            if not whole:
                self._stop_timer()  # the deadline is for the head of a long answer
            sink.head(self._parser.get_status_code(), self._reason, headers, whole)

    def on_body(self, body: bytes) -> None:
        if self._sink is not None:
            self._sink.body(body)

    def on_message_complete(self) -> None:
        sink, self._sink = self._sink, None
        if sink is None:
            return
        self._stop_timer()
        if self._parser.should_keep_alive() and self._transport is not None:
            self._transport.resume_reading()  # if a streamed answer had paused it
            self._pool.give_back(self)
        else:
            self.close()
        sink.done()


def whole_answer(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether an answer with these headers is read whole before it is relayed: a declared
    length of at most 256 KiB. A longer or open-ended one is relayed as it arrives."""
    for name, value in headers:
        if name == b"content-length":
            return value.isdigit() and int(value) <= _WHOLE_UP_TO
    return False


def _timeout(instance: Instance) -> RequestTimeout:
    return RequestTimeout(
        f"Instance '{instance.instance_id}' did not accept the connection within requestTimeout."
    )
