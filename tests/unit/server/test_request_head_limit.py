"""The bound on a request head (request line + header fields): served up to the limit, refused
with 431 one byte past it however it arrives, and a refused head never buffered whole."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import uvloop

from propylon.server.protocol import MAX_REQUEST_HEAD_BYTES, BoundedHeadProtocol

LIMIT = MAX_REQUEST_HEAD_BYTES

Run = Callable[[Coroutine[Any, Any, None]], None]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run:
    """Runs a scenario on each event loop: the server's (uvloop) and the standard one."""
    runner: Run = uvloop.run if request.param == "uvloop" else asyncio.run
    return runner


async def echo_size(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the size of the request's headers and body."""
    size = 0
    more = True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    headers = sum(len(name) + len(value) for name, value in scope["headers"])
    body = json.dumps({"headers": headers, "body": size}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def server() -> AsyncIterator[int]:
    config = uvicorn.Config(
        echo_size, http=BoundedHeadProtocol, lifespan="off", log_config=None, access_log=False
    )
    running = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()  # connections wait in the backlog until the server accepts them
    task = asyncio.create_task(running.serve(sockets=[sock]))
    try:
        yield sock.getsockname()[1]
    finally:
        running.should_exit = True
        await task
        sock.close()


def head(size: int, *, body: bytes = b"", target: bytes = b"/") -> bytes:
    """A request whose head — request line, headers, blank line — is ``size`` bytes long."""
    start = b"POST " + target + b" HTTP/1.1\r\nhost: t\r\ncontent-length: %d\r\n" % len(body)
    filler = size - len(start) - len(b"x-fill: \r\n\r\n")
    return start + b"x-fill: " + b"a" * filler + b"\r\n\r\n" + body


async def answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, Any]]:
    status_line = await reader.readline()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length)
    return int(status_line.split()[1]), json.loads(body)


async def exchange(port: int, data: bytes) -> tuple[int, dict[str, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        return await answer(reader)
    finally:
        writer.close()


def test_a_16_kib_header_and_a_head_of_exactly_the_limit_are_served(run: Run) -> None:
    async def scenario() -> None:
        async with server() as port:
            assert (await exchange(port, head(16 * 1024)))[0] == 200
            assert (await exchange(port, head(LIMIT)))[0] == 200

    run(scenario())


def test_one_byte_over_the_limit_is_431_with_the_arm_error_body_and_closed(run: Run) -> None:
    async def scenario() -> None:
        async with server() as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(head(LIMIT + 1))
            status, body = await answer(reader)
            assert status == 431
            assert body["error"]["code"] == "RequestHeaderFieldsTooLarge"
            writer.write(b"dropped")
            writer.write_eof()
            assert await reader.read() == b""  # closed once the client is done sending
            writer.close()

    run(scenario())


def test_a_long_request_target_counts_against_the_limit(run: Run) -> None:
    async def scenario() -> None:
        async with server() as port:
            status, _ = await exchange(port, head(LIMIT + 100, target=b"/?" + b"q" * LIMIT))
            assert status == 431

    run(scenario())


def test_a_head_dribbled_in_small_pieces_is_refused_as_it_crosses_the_limit(run: Run) -> None:
    async def scenario() -> None:
        async with server() as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            data = head(4 * LIMIT)
            for offset in range(0, LIMIT + 1024, 1024):  # the head's end is never sent
                writer.write(data[offset : offset + 1024])
                await writer.drain()
                await asyncio.sleep(0)
            status, _ = await asyncio.wait_for(answer(reader), 5)
            assert status == 431
            writer.close()

    run(scenario())


def test_a_body_sent_with_its_head_is_not_counted_as_head(run: Run) -> None:
    async def scenario() -> None:
        async with server() as port:
            body = b"b" * (1 << 20)
            status, sizes = await exchange(port, head(LIMIT - 10, body=body))
            assert status == 200
            assert sizes["body"] == len(body)

    run(scenario())


def test_each_request_of_a_keep_alive_connection_has_its_own_limit(run: Run) -> None:
    async def scenario() -> None:
        async with server() as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(4):
                writer.write(head(LIMIT - 100, body=b"{}"))
                assert (await answer(reader))[0] == 200
            writer.write(head(LIMIT - 100) * 3)  # pipelined
            assert [(await answer(reader))[0] for _ in range(3)] == [200, 200, 200]
            writer.close()

    run(scenario())


def peak_rss_growth(action: Any) -> int:
    """How far the peak resident size of this process rises above its size before ``action``."""
    clear_refs = Path("/proc/self/clear_refs")
    try:
        clear_refs.write_text("5")  # resets VmHWM to the current VmRSS (Linux >= 4.0)
    except OSError:
        pytest.skip("cannot reset the peak resident size here")

    def field(name: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(name)

    before = field("VmRSS")
    action()
    return field("VmHWM") - before


def test_a_64_mib_header_is_answered_431_without_being_held_in_memory(run: Run) -> None:
    piece = b"a" * (1 << 16)
    got: list[int] = []

    async def send_64_mib(port: int) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nhost: t\r\nx-big: ")
        for _ in range(1024):  # all of it, as a client that does not read until it has sent
            writer.write(piece)
            await writer.drain()
        writer.write(b"\r\n\r\n")
        status, _ = await asyncio.wait_for(answer(reader), 10)
        writer.close()
        return status

    async def scenario() -> None:
        async with server() as port:
            got.append(await send_64_mib(port))

    growth = peak_rss_growth(lambda: run(scenario()))
    assert growth < 16 << 20, f"peak resident size grew by {growth >> 20} MiB"
    assert got == [431]


def chunked(body: bytes, *, chunk: int, trailer: bytes = b"") -> bytes:
    """A chunked request carrying ``body`` in ``chunk``-byte chunks, then ``trailer`` fields."""
    start = b"POST / HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"
    chunks = b"".join(
        b"%x\r\n" % len(body[i : i + chunk]) + body[i : i + chunk] + b"\r\n"
        for i in range(0, len(body), chunk)
    )
    return start + chunks + b"0\r\n" + trailer + b"\r\n"


def test_a_chunked_body_with_a_small_trailer_is_served(run: Run) -> None:
    async def scenario() -> None:
        async with server() as port:
            body = b"c" * (1 << 20)
            request = chunked(body, chunk=4096, trailer=b"x-checksum: " + b"f" * 1000 + b"\r\n")
            status, sizes = await exchange(port, request)
            assert status == 200
            assert sizes["body"] == len(body)

    run(scenario())


def test_a_trailer_over_the_limit_cuts_the_connection_without_being_held(run: Run) -> None:
    """httptools buffers a trailer field as it does a header: 64 MiB of one would cost the
    server that much; the connection is cut once the limit's worth arrived with no body."""
    piece = b"t" * (1 << 16)
    cut: list[bool] = []

    async def send_trailer(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(chunked(b"body", chunk=4)[:-2] + b"x-big: ")  # the last chunk, then a field
        try:
            for _ in range(1024):
                writer.write(piece)
                await writer.drain()
        except ConnectionError:
            cut.append(True)
        else:
            cut.append(await reader.read() == b"")  # no answer: the request was the app's
        finally:
            writer.close()

    async def scenario() -> None:
        async with server() as port:
            await asyncio.wait_for(send_trailer(port), 60)

    growth = peak_rss_growth(lambda: run(scenario()))
    assert cut == [True]
    assert growth < 32 << 20, f"the server grew {growth >> 20} MiB"
