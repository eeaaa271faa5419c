"""The few ASGI pieces the inference server needs, without a web framework on the hot path.

A :class:`Response` is a status, headers and either a ``bytes`` body or an async iterator of
chunks; :func:`send_response` writes it, each chunk as its own ``http.response.body`` message so
that a streamed answer (server-sent events) reaches the client as it is produced, and stops early
when the client goes away. Example::

    body = await read_body(receive)
    await send_response(send, receive, Response(200, [("content-type", "text/plain")], b"ok"))
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Receive", "Response", "Scope", "Send", "read_body", "send_response"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ClientDisconnected(Exception):
    """The client closed the connection before the request body was complete."""


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | AsyncIterator[bytes] = b""
    # Called once the response is over, however it ended (frees what a streamed body held).
    on_close: Callable[[], Awaitable[None]] | None = None
    # Filled in by send_response: bytes of body actually sent.
    sent_bytes: int = 0

    @property
    def is_streamed(self) -> bool:
        return not isinstance(self.body, bytes)


async def read_body(receive: Receive) -> bytes:
    """The whole request body; :class:`ClientDisconnected` if the client leaves first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _encode_headers(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


async def send_response(send: Send, receive: Receive, response: Response) -> None:
    """Send ``response``; a streamed body is closed (``aclose``) however the stream ends."""
    if isinstance(response.body, bytes):
        headers = [*response.headers, ("content-length", str(len(response.body)))]
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": _encode_headers(headers),
            }
        )
        await send({"type": "http.response.body", "body": response.body})
        response.sent_bytes = len(response.body)
        return
    await _send_stream(send, receive, response, response.body)


async def _send_stream(
    send: Send, receive: Receive, response: Response, chunks: AsyncIterator[bytes]
) -> None:
    gone = asyncio.Event()

    async def watch_disconnect() -> None:
        # The request body has been read already, so the next message can only be the disconnect.
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.ensure_future(watch_disconnect())
    try:
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": _encode_headers(response.headers),
            }
        )
        async for chunk in chunks:
            if gone.is_set():
                return
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                response.sent_bytes += len(chunk)
        if not gone.is_set():
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
