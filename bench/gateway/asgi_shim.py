"""The least an HTTP/1.1 server can do to run an ASGI app: what does uvicorn itself cost?

:func:`serve` runs an ASGI app on a uvloop ``asyncio.Protocol`` that parses with
``httptools.HttpRequestParser`` — the parser uvicorn uses — but does per request only what ASGI
requires: one scope dict, one task, a ``receive`` that returns the body already read, and a
``send`` that writes the head and a whole body in one ``write`` (uvicorn writes them separately,
so a caller wakes twice). No keep-alive timer, no flow control, no ``Expect: 100-continue``, no
pipelining, no lifespan: a measuring tool, not a server. ``floor_variants.py --variant
raw-asgi`` serves the floor's app with it; ``serve_shim.py`` serves the gateway with it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from starlette.types import ASGIApp, Message

_REASONS = {200: b"OK", 401: b"Unauthorized", 404: b"Not Found", 502: b"Bad Gateway"}
_RUNNING: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks


class _Connection(asyncio.Protocol):
    def __init__(self, app: ASGIApp, server: tuple[str, int]) -> None:
        self._app = app
        self._server = server
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._client: tuple[str, int] | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._disconnected: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self._client = (peer[0], peer[1]) if isinstance(peer, tuple) else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._disconnected is not None and not self._disconnected.done():
            self._disconnected.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        url = httptools.parse_url(self._url)
        path = url.path.decode("latin-1")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": self._parser.get_method().decode("ascii"),
            "scheme": "http",
            "path": path,
            "raw_path": url.path,
            "query_string": url.query or b"",
            "root_path": "",
            "headers": self._headers,
            "client": self._client,
            "server": self._server,
            "state": {},
        }
        body = b"".join(self._body)
        self._url, self._headers, self._body = b"", [], []
        keep_alive = self._parser.should_keep_alive()
        task = asyncio.get_running_loop().create_task(self._run(scope, body, keep_alive))
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)

    async def _run(self, scope: dict[str, Any], body: bytes, keep_alive: bool) -> None:
        request: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
        head: list[bytes] = []
        chunks: list[bytes] = []
        announced = False  # a content-length came with the head

        async def receive() -> Message:
            if request:
                return request.pop()
            if self._disconnected is None:
                self._disconnected = asyncio.get_running_loop().create_future()
            await self._disconnected
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal announced
            transport = self._transport
            if message["type"] == "http.response.start":
                status = message["status"]
                head.append(b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown")))
                for name, value in message.get("headers", ()):
                    head.extend((name, b": ", value, b"\r\n"))
                    announced = announced or name.lower() == b"content-length"
                if not keep_alive:
                    head.append(b"connection: close\r\n")
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False) or transport is None:
                return  # whole bodies only: good enough for the echo model
            data = b"".join(chunks)
            if not announced:
                head.append(b"content-length: %d\r\n" % len(data))
            transport.write(b"".join([*head, b"\r\n", data]))
            if not keep_alive:
                transport.close()

        await self._app(scope, receive, send)


async def serve(app: ASGIApp, host: str, port: int) -> None:
    """Serve ``app`` on ``host:port`` until cancelled."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Connection(app, (host, port)), host, port, backlog=2048
    )
    async with server:
        await server.serve_forever()
