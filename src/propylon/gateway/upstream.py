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
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import httptools

from propylon.gateway.errors import BadGateway, ConnectFailed, RequestTimeout
from propylon.gateway.table import Instance

__all__ = ["PooledTransport", "Transport", "UpstreamRequest", "UpstreamResponse"]

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


class PooledTransport:
    """Keep-alive HTTP/1.1 over asyncio + httptools; see the module docstring."""

    def __init__(self, *, max_idle: int = _MAX_IDLE) -> None:
        self._pools: dict[str, _Pool] = {}
        self._max_idle = max_idle

    async def send(
        self, instance: Instance, request: UpstreamRequest, time_limit: float
    ) -> UpstreamResponse:
        pool = self._pools.get(instance.key)
        if pool is None:
            pool = self._pools[instance.key] = _Pool(instance, self._max_idle)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + time_limit
        if pool.idle:
            connection = pool.idle.pop()
            try:
                return await connection.exchange(request, deadline, reused=True)
            except _Stale:
                pass
        connection = await pool.connect(instance, deadline)
        return await connection.exchange(request, deadline, reused=False)

    def retain(self, instances: Iterable[str]) -> None:
        keep = set(instances)
        for key in [key for key in self._pools if key not in keep]:
            self._pools.pop(key).close()

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


class _Stale(Exception):
    """A pooled connection was found closed before any byte of the answer arrived."""


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


class _Connection(asyncio.Protocol):
    """One keep-alive connection; carries one exchange at a time (no pipelining)."""

    def __init__(self, pool: _Pool) -> None:
        self._pool = pool
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._response: UpstreamResponse | None = None
        self._head: asyncio.Future[UpstreamResponse] | None = None
        self._reused = False
        self._answered = False  # a byte of the current answer has arrived

    async def exchange(
        self, request: UpstreamRequest, deadline: float, *, reused: bool
    ) -> UpstreamResponse:
        transport = self._transport
        if transport is None or transport.is_closing():
            if reused:
                raise _Stale
            raise ConnectFailed("The instance closed the connection before the request was sent.")
        loop = asyncio.get_running_loop()
        response = UpstreamResponse()
        response._peer = self
        head: asyncio.Future[UpstreamResponse] = loop.create_future()
        self._response, self._head, self._reused = response, head, reused
        self._answered = False
        parts = [
            request.method,
            b" ",
            self._pool.prefix,
            request.target,
            b" HTTP/1.1\r\nhost: ",
            self._pool.host,
            b"\r\ncontent-length: ",
            b"%d" % len(request.body),
            b"\r\n",
        ]
        for name, value in request.headers:
            parts += (name, b": ", value, b"\r\n")
        parts += (b"\r\n", request.body)
        transport.write(b"".join(parts))
        timer = loop.call_at(deadline, self._expire)
        try:
            return await head
        finally:
            timer.cancel()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def pause(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def _expire(self) -> None:
        head = self._head
        if head is not None and not head.done():
            head.set_exception(RequestTimeout("The model did not answer within requestTimeout."))
        self._end(None)
        if self._transport is not None:
            self._transport.abort()

    def _end(self, error: BaseException | None) -> None:
        response, self._response, self._head = self._response, None, None
        if response is not None and not response.complete:
            response._finish(error or BadGateway("The instance broke off its answer."))

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._answered = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail(BadGateway("The instance's answer is not valid HTTP.", code="BadResponse"))
            if self._transport is not None:
                self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._pool.forget(self)
        head = self._head
        if head is not None and not head.done():
            stale = self._reused and not self._answered
            self._fail(
                _Stale()
                if stale
                else BadGateway("The instance closed the connection.", code="InstanceUnreachable")
            )
        else:
            self._end(None)

    def _fail(self, error: BaseException) -> None:
        head = self._head
        if head is not None and not head.done():
            head.set_exception(error)
        self._end(error if isinstance(error, BadGateway) else None)

    # -- httptools callbacks ------------------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        if self._response is not None:
            self._response.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._response is not None:
            self._response.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        response, head = self._response, self._head
        if response is not None and head is not None:
            response.status = self._parser.get_status_code()
            # A short answer of known length is handed over whole (its body is usually in the
            # same or the next segment: uvicorn writes head and body separately); a long or
            # open-ended one (chunked, server-sent events) is handed over now and streamed.
            if not _short(response.headers) and not head.done():
                head.set_result(response)

    def on_body(self, body: bytes) -> None:
        if self._response is not None:
            self._response._feed(body)

    def on_message_complete(self) -> None:
        response, head = self._response, self._head
        self._response = self._head = None
        if response is None:
            return
        response._peer = None
        response._finish()
        if head is not None and not head.done():
            head.set_result(response)
        if self._parser.should_keep_alive() and self._transport is not None:
            if response._paused:
                self._transport.resume_reading()
            self._pool.give_back(self)
        else:
            self.close()


def _short(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-length":
            return value.isdigit() and int(value) <= _WHOLE_UP_TO
    return False


def _timeout(instance: Instance) -> RequestTimeout:
    return RequestTimeout(
        f"Instance '{instance.instance_id}' did not accept the connection within requestTimeout."
    )
