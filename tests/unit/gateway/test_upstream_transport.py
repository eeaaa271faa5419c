"""The pooled HTTP/1.1 client against real sockets: keep-alive, streaming, timeouts, failures."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from propylon.gateway import (
    BadGateway,
    ConnectFailed,
    Instance,
    PooledTransport,
    RequestTimeout,
    UpstreamRequest,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


def answer(body: bytes, *extra: bytes) -> bytes:
    headers = b"".join(h + b"\r\n" for h in extra)
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), headers, body)


@contextlib.asynccontextmanager
async def instance(handler: Handler, *, uds: Path | None = None) -> AsyncIterator[Instance]:
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            await handler(reader, writer, connections)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    if uds is not None:
        server = await asyncio.start_unix_server(serve, path=str(uds))
        target = Instance("d#i0", "i0", "", str(uds), 8)
    else:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        target = Instance("d#i0", "i0", f"http://127.0.0.1:{port}", None, 8)
    try:
        yield target
    finally:
        server.close()
        await server.wait_closed()


def post(body: bytes = b"{}") -> UpstreamRequest:
    return UpstreamRequest(b"POST", b"/score", [(b"content-type", b"application/json")], body)


async def echo_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    while True:
        request = await read_request(reader)
        writer.write(answer(request.split(b"\r\n\r\n", 1)[1], b"x-connection: %d" % n))
        await writer.drain()


def test_sequential_requests_reuse_one_keep_alive_connection() -> None:
    async def scenario() -> None:
        transport = PooledTransport()
        async with instance(echo_forever) as target:
            for n in range(5):
                got = await transport.send(target, post(b'{"n": %d}' % n), 5.0)
                assert got.status == 200
                assert got.complete
                assert got.body() == b'{"n": %d}' % n
                assert dict(got.headers)[b"x-connection"] == b"1"
        await transport.aclose()

    asyncio.run(scenario())


def test_the_request_carries_host_length_and_headers() -> None:
    seen: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        seen.append(await read_request(reader))
        writer.write(answer(b"ok"))
        await writer.drain()

    async def scenario() -> None:
        transport = PooledTransport()
        async with instance(record) as target:
            await transport.send(target, post(b"hello"), 5.0)
        await transport.aclose()

    asyncio.run(scenario())
    head, body = seen[0].split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /score HTTP/1.1"
    assert b"content-length: 5" in lines
    assert b"content-type: application/json" in lines
    assert any(line.startswith(b"host: 127.0.0.1:") for line in lines)
    assert body == b"hello"


def test_a_path_in_the_instance_url_prefixes_the_request() -> None:
    seen: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        seen.append(await read_request(reader))
        writer.write(answer(b"ok"))
        await writer.drain()

    async def scenario() -> None:
        transport = PooledTransport()
        async with instance(record) as target:
            prefixed = Instance("d#i1", "i1", target.url + "/e1_blue/", None, 8)
            await transport.send(prefixed, post(), 5.0)
        await transport.aclose()

    asyncio.run(scenario())
    assert seen[0].startswith(b"POST /e1_blue/score HTTP/1.1\r\n")


def test_a_chunked_answer_is_handed_over_before_it_ends() -> None:
    gate = asyncio.Event()

    async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n")
        writer.write(b"transfer-encoding: chunked\r\n\r\n")
        writer.write(b"b\r\ndata: one\n\n\r\n")
        await writer.drain()
        await gate.wait()
        writer.write(b"b\r\ndata: two\n\n\r\n0\r\n\r\n")
        await writer.drain()

    async def scenario() -> list[bytes]:
        transport = PooledTransport()
        async with instance(stream) as target:
            got = await transport.send(target, post(), 5.0)
            assert not got.complete
            chunks = []
            async for chunk in got.chunks():
                chunks.append(chunk)
                gate.set()
        await transport.aclose()
        return chunks

    assert asyncio.run(scenario()) == [b"data: one\n\n", b"data: two\n\n"]


def test_a_long_answer_is_streamed_and_a_short_one_read_whole() -> None:
    big = b"x" * (600 * 1024)

    async def sizes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            request = await read_request(reader)
            writer.write(answer(big if b"big" in request else b"small"))
            await writer.drain()

    async def scenario() -> None:
        transport = PooledTransport()
        async with instance(sizes) as target:
            small = await transport.send(target, post(b"small"), 5.0)
            assert small.complete
            large = await transport.send(target, post(b"big"), 5.0)
            received = b"".join([chunk async for chunk in large.chunks()])
            assert received == big
            again = await transport.send(target, post(b"small"), 5.0)  # connection reusable
            assert again.body() == b"small"
        await transport.aclose()

    asyncio.run(scenario())


def test_no_answer_within_the_time_limit_is_408_and_drops_the_connection() -> None:
    dropped = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        await reader.read()  # returns at EOF: the gateway dropped the connection
        dropped.set()

    async def scenario() -> None:
        transport = PooledTransport()
        async with instance(silent) as target:
            with pytest.raises(RequestTimeout):
                await transport.send(target, post(), 0.1)
            await asyncio.wait_for(dropped.wait(), 5.0)
        await transport.aclose()

    asyncio.run(scenario())


def test_a_refused_connection_is_a_502_that_says_nothing_was_sent() -> None:
    async def scenario() -> None:
        transport = PooledTransport()
        async with instance(echo_forever) as target:
            pass  # the server is closed again: its port refuses
        with pytest.raises(ConnectFailed) as refused:
            await transport.send(target, post(), 2.0)
        assert refused.value.status == 502
        assert refused.value.code == "InstanceUnreachable"
        await transport.aclose()

    asyncio.run(scenario())


def test_a_connection_broken_after_the_request_was_sent_is_a_plain_502() -> None:
    async def read_then_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
    ) -> None:
        await read_request(reader)  # the request reached the instance: it must not be repeated

    async def scenario() -> None:
        transport = PooledTransport()
        async with instance(read_then_close) as target:
            with pytest.raises(BadGateway) as broken:
                await transport.send(target, post(), 2.0)
            assert not isinstance(broken.value, ConnectFailed)
        await transport.aclose()

    asyncio.run(scenario())


def test_an_answer_that_is_not_http_is_502() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()

    async def scenario() -> None:
        transport = PooledTransport()
        async with instance(garbage) as target:
            with pytest.raises(BadGateway):
                await transport.send(target, post(), 2.0)
        await transport.aclose()

    asyncio.run(scenario())


def test_a_pooled_connection_closed_by_the_instance_is_retried_on_a_fresh_one() -> None:
    async def one_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
    ) -> None:
        await read_request(reader)
        writer.write(answer(b"ok %d" % n))
        await writer.drain()
        await read_request(reader)  # a second request on this connection: closed unanswered

    async def scenario() -> None:
        transport = PooledTransport()
        async with instance(one_per_connection) as target:
            assert (await transport.send(target, post(), 2.0)).body() == b"ok 1"
            assert (await transport.send(target, post(), 2.0)).body() == b"ok 2"
        await transport.aclose()

    asyncio.run(scenario())


def test_an_instance_on_a_unix_socket(tmp_path: Path) -> None:
    async def scenario() -> None:
        transport = PooledTransport()
        async with instance(echo_forever, uds=tmp_path / "instance.sock") as target:
            got = await transport.send(target, post(b"over uds"), 2.0)
            assert got.body() == b"over uds"
        await transport.aclose()

    asyncio.run(scenario())
