"""Server designs for the floor forwarder: which Python front end adds the least latency?

Every variant does the job of ``floor_proxy.py`` and nothing more: read a request, forward its
body with keep-alive to one fixed instance (``POST /score``, the caller's headers minus ``host``,
``content-length``, ``connection`` and ``authorization``) and relay the answer's status, headers
(minus ``date`` and ``content-length``, which is recomputed) and body. ``floor_compare.py``
starts them and measures each against the instance called directly.

``--variant``:

* ``raw`` — a uvloop ``asyncio.Protocol`` server that parses requests with
  ``httptools.HttpRequestParser`` itself (no uvicorn, no ASGI) and forwards with the gateway's
  :class:`~propylon.gateway.PooledTransport` (one task per request, as any ``async`` handler
  needs);
* ``raw-upstream`` — the same server with a callback-only upstream too: the downstream protocol
  hands the request to an idle upstream protocol, whose ``on_message_complete`` writes the answer
  straight to the downstream transport — no task, future or ``await`` per request (a per-request
  deadline timer is kept, as the gateway needs one);
* ``raw-asgi`` — :func:`asgi_app` (the app of ``floor_proxy.py``) on ``asgi_shim.py``, the least
  an ASGI server can do per request: what uvicorn's own machinery costs;
* ``blocking`` — no event loop at all: a thread per caller connection, each with its own
  upstream connection, blocking ``recv``/``sendall`` on plain sockets and httptools for framing —
  the least Python work and the fewest system calls a forwarder can do per request (one
  ``recv`` and one ``send`` per direction, no ``epoll``), so a lower bound for any Python design;
  not a server design (threads contend for the GIL under load);
* ``granian-asgi`` / ``granian-rsgi`` — not run from here: ``floor_compare.py`` serves
  :func:`asgi_app` (the app of ``floor_proxy.py``) or :func:`rsgi_app` (the same on granian's
  native RSGI interface) with ``granian`` from a scratch venv, the upstream given by the
  ``FLOOR_UPSTREAM`` / ``FLOOR_UPSTREAM_UDS`` environment variables.

``--upstream-uds PATH`` connects to an instance listening on a Unix socket instead of TCP.

Simplifications a real server could not make, none of which costs time on the measured path:
no pipelining (wrk sends one request per connection at a time), no streaming of long answers,
no ``Expect: 100-continue``, no request size limit. Example::

    .venv/bin/python bench/gateway/floor_variants.py --variant raw-upstream --port 8100 \\
        --upstream http://127.0.0.1:5001
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

import httptools
import uvloop
from starlette.types import Receive, Scope, Send

from propylon.gateway import Instance, PooledTransport, UpstreamRequest, UpstreamResponse

_DROP = frozenset({b"host", b"content-length", b"connection", b"authorization"})
_DROP_ANSWER = frozenset({b"date", b"content-length"})
_TIME_LIMIT = 5.0
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 502: b"Bad Gateway"}


def _instance(url: str, uds: str | None) -> Instance:
    return Instance("floor", "floor", url, uds, 1 << 20)


def _answer_bytes(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes, keep_alive: bool
) -> bytes:
    """One HTTP/1.1 answer, head and body joined so that it leaves in one ``write``."""
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))]
    for name, value in headers:
        if name not in _DROP_ANSWER:
            parts += (name, b": ", value, b"\r\n")
    parts.append(b"content-length: %d\r\n" % len(body))
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts += (b"\r\n", body)
    return b"".join(parts)


_BAD_GATEWAY = _answer_bytes(502, [], b"bad gateway", False)
_RUNNING: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks


def _spawn(coroutine: Coroutine[None, None, None]) -> None:
    task = asyncio.get_running_loop().create_task(coroutine)
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)


# -- the downstream side, shared by raw and raw-upstream -------------------------------------------


class _Client(asyncio.Protocol):
    """One caller's keep-alive connection, parsed with httptools; ``forward`` takes each request."""

    def __init__(
        self, forward: Callable[[_Client, list[tuple[bytes, bytes]], bytes], None]
    ) -> None:
        self._forward = forward
        self._parser = httptools.HttpRequestParser(self)
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name not in _DROP:
            self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        headers, body = self._headers, b"".join(self._body)
        self._headers, self._body = [], []
        self.keep_alive = self._parser.should_keep_alive()
        self._forward(self, headers, body)

    def reply(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None:
            transport.write(data)
            if not self.keep_alive:
                transport.close()


# -- raw: the gateway's PooledTransport, one task per request --------------------------------------


def _pooled_forwarder(
    instance: Instance,
) -> Callable[[_Client, list[tuple[bytes, bytes]], bytes], None]:
    transport = PooledTransport()

    async def exchange(client: _Client, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        request = UpstreamRequest(b"POST", b"/score", headers, body)
        try:
            answer: UpstreamResponse = await transport.send(instance, request, _TIME_LIMIT)
        except Exception:
            client.keep_alive = False
            client.reply(_BAD_GATEWAY)
            return
        client.reply(_answer_bytes(answer.status, answer.headers, answer.body(), client.keep_alive))

    def forward(client: _Client, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        _spawn(exchange(client, headers, body))

    return forward


# -- raw-upstream: callbacks only ------------------------------------------------------------------


class _Upstream(asyncio.Protocol):
    """A keep-alive connection to the instance; one exchange at a time, answered by callback."""

    def __init__(self, pool: _UpstreamPool) -> None:
        self._pool = pool
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._client: _Client | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []

    def send(self, client: _Client, request: bytes) -> None:
        assert self._transport is not None
        self._client = client
        self._timer = self._pool.loop.call_later(_TIME_LIMIT, self._expire)
        self._transport.write(request)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        client, self._client = self._client, None
        headers, body = self._headers, b"".join(self._body)
        self._headers, self._body = [], []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._parser.should_keep_alive():
            self._pool.idle.append(self)
        elif self._transport is not None:
            self._transport.close()
        if client is not None:
            status = self._parser.get_status_code()
            client.reply(_answer_bytes(status, headers, body, client.keep_alive))

    def _expire(self) -> None:
        self._timer = None
        if self._transport is not None:
            self._transport.abort()  # connection_lost answers the caller

    def _fail(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with_client, self._client = self._client, None
        if self._transport is not None:
            self._transport.abort()
        if self in self._pool.idle:
            self._pool.idle.remove(self)
        if with_client is not None:
            with_client.keep_alive = False
            with_client.reply(_BAD_GATEWAY)


class _UpstreamPool:
    def __init__(self, instance: Instance) -> None:
        self.loop = asyncio.get_running_loop()
        self.idle: list[_Upstream] = []
        self._address = instance.address
        self._host = b"localhost" if instance.uds else urlsplit(instance.url).netloc.encode()

    def forward(self, client: _Client, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        parts = [b"POST /score HTTP/1.1\r\nhost: ", self._host]
        parts.append(b"\r\ncontent-length: %d\r\n" % len(body))
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        parts += (b"\r\n", body)
        request = b"".join(parts)
        if self.idle:
            self.idle.pop().send(client, request)
        else:  # only while the pool grows: connecting needs a coroutine
            _spawn(self._connect_and_send(client, request))

    async def _connect_and_send(self, client: _Client, request: bytes) -> None:
        try:
            if isinstance(self._address, str):
                _, upstream = await self.loop.create_unix_connection(
                    lambda: _Upstream(self), self._address
                )
            else:
                _, upstream = await self.loop.create_connection(
                    lambda: _Upstream(self), *self._address
                )
        except OSError:
            client.keep_alive = False
            client.reply(_BAD_GATEWAY)
            return
        upstream.send(client, request)


# -- blocking: a thread per connection, no event loop ----------------------------------------------


class _Message:
    """httptools callbacks collecting one message (request or answer)."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True


def _read(sock: socket.socket, parser: Any, message: _Message) -> bool:
    """Feed ``parser`` until ``message`` is complete; False if the peer closed first."""
    while not message.done:
        data = sock.recv(65536)
        if not data:
            return False
        parser.feed_data(data)
    return True


def _blocking_connection(client: socket.socket, instance: Instance) -> None:
    address = instance.address
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    upstream = socket.socket(family, socket.SOCK_STREAM)
    upstream.connect(address)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio sets it
    if family == socket.AF_INET:
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    host = b"localhost" if instance.uds else urlsplit(instance.url).netloc.encode()
    request = _Message()
    request_parser = httptools.HttpRequestParser(request)
    with client, upstream:
        while _read(client, request_parser, request):
            parts = [b"POST /score HTTP/1.1\r\nhost: ", host]
            body = b"".join(request.body)
            parts.append(b"\r\ncontent-length: %d\r\n" % len(body))
            for name, value in request.headers:
                if name not in _DROP:
                    parts += (name, b": ", value, b"\r\n")
            parts += (b"\r\n", body)
            keep_alive = request_parser.should_keep_alive()
            request.headers, request.body, request.done = [], [], False
            upstream.sendall(b"".join(parts))
            answer = _Message()
            answer_parser = httptools.HttpResponseParser(answer)
            if not _read(upstream, answer_parser, answer):
                client.sendall(_BAD_GATEWAY)
                return
            status = answer_parser.get_status_code()
            body = b"".join(answer.body)
            client.sendall(_answer_bytes(status, answer.headers, body, keep_alive))
            if not keep_alive:
                return


def _serve_blocking(port: int, instance: Instance) -> None:
    listener = socket.create_server(("127.0.0.1", port), backlog=1024)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_blocking_connection, args=(client, instance), daemon=True).start()


# -- granian: the app of floor_proxy.py, and the same on RSGI --------------------------------------


class _Forward:
    """The upstream of the granian apps, built on first use (granian imports the module)."""

    transport: PooledTransport | None = None
    instance: Instance | None = None

    @classmethod
    async def send(cls, request: UpstreamRequest) -> UpstreamResponse:
        if cls.transport is None or cls.instance is None:
            upstream = os.environ.get("FLOOR_UPSTREAM", "http://localhost")
            cls.instance = _instance(upstream, os.environ.get("FLOOR_UPSTREAM_UDS"))
            cls.transport = PooledTransport()
        return await cls.transport.send(cls.instance, request, _TIME_LIMIT)


async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    """floor_proxy.py's app, for ``granian --interface asgi floor_variants:asgi_app``."""
    if scope["type"] != "http":
        return
    message = await receive()
    headers = [(n, v) for n, v in scope["headers"] if n not in _DROP]
    answer = await _Forward.send(
        UpstreamRequest(b"POST", b"/score", headers, message.get("body", b""))
    )
    body = answer.body()
    relayed = [(n, v) for n, v in answer.headers if n not in _DROP_ANSWER]
    relayed.append((b"content-length", b"%d" % len(body)))
    await send({"type": "http.response.start", "status": answer.status, "headers": relayed})
    await send({"type": "http.response.body", "body": body})


async def rsgi_app(scope: Any, protocol: Any) -> None:
    """The same on granian's RSGI interface (str headers, one call for the whole answer)."""
    body = await protocol()
    headers = [(n.encode(), v.encode()) for n, v in scope.headers.items()]
    headers = [(n, v) for n, v in headers if n not in _DROP]
    answer = await _Forward.send(UpstreamRequest(b"POST", b"/score", headers, body))
    relayed = [(n.decode(), v.decode()) for n, v in answer.headers if n not in _DROP_ANSWER]
    protocol.response_bytes(answer.status, relayed, answer.body())


# -- main ------------------------------------------------------------------------------------------


async def _serve(variant: str, port: int, instance: Instance) -> None:
    forward = _pooled_forwarder(instance) if variant == "raw" else _UpstreamPool(instance).forward
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Client(forward), "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--variant", choices=["raw", "raw-upstream", "raw-asgi", "blocking"], required=True
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", default="http://localhost", help="http://host:port")
    parser.add_argument("--upstream-uds", help="the instance's Unix socket instead")
    args = parser.parse_args()
    if args.variant == "raw-asgi":
        os.environ.setdefault("FLOOR_UPSTREAM", args.upstream)
        if args.upstream_uds:
            os.environ["FLOOR_UPSTREAM_UDS"] = args.upstream_uds
        from asgi_shim import serve  # beside this file

        uvloop.run(serve(asgi_app, "127.0.0.1", args.port))
        return
    if args.variant == "blocking":
        _serve_blocking(args.port, _instance(args.upstream, args.upstream_uds))
        return
    uvloop.run(_serve(args.variant, args.port, _instance(args.upstream, args.upstream_uds)))


if __name__ == "__main__":
    main()
