"""The bound on how long a client takes to send a request: a head must arrive within the client
timeout of its first byte, and a body must never be silent that long (408, then close); a slow
but steady body, and time in which the server itself does not read, are not cut.

The timeout here is short and the clients' pauses are far from it either way (a tenth of it, or
twice it), so a busy machine moves no case across the line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
import uvicorn
import uvloop

from propylon.errors import ClientTimeout
from propylon.server.protocol import BoundedHeadProtocol

TIMEOUT = 1.0

Run = Callable[[Coroutine[Any, Any, None]], None]


class QuickProtocol(BoundedHeadProtocol):
    client_timeout = TIMEOUT


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run:
    runner: Run = uvloop.run if request.param == "uvloop" else asyncio.run
    return runner


class App:
    """Answers with the size of the body it read, after ``delay`` seconds of not reading it;
    notes how each request ended for the app (``seen``)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.seen.append(
                    {"disconnect": True, "timed_out": scope["state"].get(ClientTimeout.scope_key)}
                )
                await send({"type": "http.response.start", "status": 500, "headers": []})
                return  # uvicorn drops what the app sends to a client gone
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        self.seen.append({"disconnect": False, "size": size})
        body = json.dumps({"body": size}).encode()
        headers = [(b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def server(app: App) -> AsyncIterator[int]:
    config = uvicorn.Config(
        app,
        http=QuickProtocol,
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=TIMEOUT,  # a failing case's open connection ends, too
    )
    running = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    task = asyncio.create_task(running.serve(sockets=[sock]))
    try:
        yield sock.getsockname()[1]
    finally:
        running.should_exit = True
        await task
        sock.close()


async def answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], dict[str, Any]]:
    async with asyncio.timeout(TIMEOUT * 10):  # a server that never times out fails, not hangs
        return await _answer(reader)


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], dict[str, Any]]:
    status_line = await reader.readline()
    assert status_line, "the connection closed without an answer"
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, json.loads(body)


async def trickle(
    writer: asyncio.StreamWriter, data: bytes, *, every: float, until: asyncio.Event | None = None
) -> None:
    """Send ``data`` a byte at a time, ``every`` seconds apart (stopping once ``until`` is set)."""
    for byte in data:
        if until is not None and until.is_set():
            return
        writer.write(bytes([byte]))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        await asyncio.sleep(every)


HEAD = b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 10\r\n\r\n"


def test_a_head_that_does_not_arrive_in_time_is_408_and_closed(run: Run) -> None:
    async def scenario() -> None:
        app = App()
        async with server(app) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            answered = asyncio.Event()
            # A byte every 0.1 s: always busy, yet the head takes 5 s, five times the limit.
            sending = asyncio.create_task(trickle(writer, HEAD, every=0.1, until=answered))
            status, headers, body = await answer(reader)
            answered.set()
            await sending
            assert status == 408
            assert headers["connection"] == "close"
            assert body["error"]["code"] == "ClientRequestTimeout"
            assert "request line and headers" in body["error"]["message"]
            assert await reader.read() == b""  # closed
            writer.close()
        assert app.seen == []  # the app never saw the request

    run(scenario())


def test_a_body_that_stops_coming_is_408_and_the_app_is_told_why(run: Run) -> None:
    async def scenario() -> None:
        app = App()
        async with server(app) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(HEAD + b"12345")  # half the body, then silence
            status, headers, body = await answer(reader)
            assert status == 408
            assert headers["connection"] == "close"
            assert body["error"]["code"] == "ClientRequestTimeout"
            assert "body" in body["error"]["message"]
            assert await reader.read() == b""
            writer.close()
            await asyncio.sleep(0.1)
        assert app.seen == [{"disconnect": True, "timed_out": True}]

    run(scenario())


def test_a_slow_but_steady_body_is_served_however_long_it_takes(run: Run) -> None:
    async def scenario() -> None:
        app = App()
        async with server(app) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(HEAD)
            await trickle(writer, b"0123456789", every=TIMEOUT / 4)  # 2.5 timeouts in all
            status, _, body = await answer(reader)
            assert (status, body) == (200, {"body": 10})
            # The connection serves the next request, with a fresh allowance.
            await asyncio.sleep(TIMEOUT * 1.5)  # idle between requests: keep-alive's business
            writer.write(HEAD + b"0123456789")
            assert (await answer(reader))[0] == 200
            writer.close()

    run(scenario())


def test_time_the_server_does_not_read_does_not_count_against_the_client(run: Run) -> None:
    async def scenario() -> None:
        # The app reads nothing for twice the limit; a 1 MiB body fills uvicorn's buffer and
        # the server stops reading from the client meanwhile.
        app = App(delay=TIMEOUT * 2)
        size = 2**20
        async with server(app) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: %d\r\n\r\n" % size)
            writer.write(b"x" * size)
            status, _, body = await answer(reader)
            assert (status, body) == (200, {"body": size})
            writer.close()

    run(scenario())


def test_a_request_that_arrives_whole_arms_no_timer(run: Run) -> None:
    async def scenario() -> None:
        app = App()
        armed: list[float] = []
        loop = asyncio.get_running_loop()
        call_at = loop.call_at

        def counting_call_at(
            when: float, callback: Any, *args: Any, **kwargs: Any
        ) -> asyncio.TimerHandle:
            if getattr(callback, "__name__", "") == "_read_expired":
                armed.append(when)
            return call_at(when, callback, *args, **kwargs)

        loop.call_at = counting_call_at  # type: ignore[method-assign]
        async with server(app) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(3):
                writer.write(HEAD + b"0123456789")
                assert (await answer(reader))[0] == 200
            assert armed == []
            writer.write(HEAD + b"01234")  # incomplete after its segment: timed from now on
            await asyncio.sleep(0.1)
            assert len(armed) == 1
            writer.write(b"56789")
            assert (await answer(reader))[0] == 200
            writer.close()

    run(scenario())
