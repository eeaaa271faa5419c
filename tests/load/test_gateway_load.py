"""Load on the gateway over loopback: many concurrent connections, then a soak at a steady rate.

``PROPYLON_LOAD_MODE=ci`` (the default) opens 200 connections and soaks for 30 s;
``PROPYLON_LOAD_MODE=full`` opens 1,000 and soaks for 10 minutes (the figures in SECURITY.md).
Every request must succeed (200, within its 30 s client timeout); the resident memory of the
server and of the instances is read from ``/proc/<pid>/status`` at the start and the end of the
soak and printed; the end may not exceed the start by more than half plus 64 MiB (a leak of a few
bytes per request over the full soak's 60,000 would show).
"""

from __future__ import annotations

import asyncio
import resource
import ssl
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from live_platform import LivePlatform, load_mode, process_tree, rss_kib
from propylon.testing import RunningServer

pytestmark = pytest.mark.slow

MODE = load_mode()
CONNECTIONS = 1000 if MODE == "full" else 200
REQUESTS_PER_CONNECTION = 10 if MODE == "full" else 5
SOAK_SECONDS = 600.0 if MODE == "full" else 30.0
SOAK_RATE = 100.0  # requests per second
TIMEOUT = 30.0


@dataclass
class Target:
    live: LivePlatform
    url: str
    key: str

    def instances(self) -> list[int]:
        pids = []
        for pid in process_tree(self.live.server.process.pid)[1:]:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    if b"propylon.inference" in handle.read():
                        pids.append(pid)
            except OSError:
                continue
        return pids

    def rss(self) -> dict[str, int]:
        """KiB: the server process (control plane + gateway) and its instances together."""
        return {
            "server": rss_kib(self.live.server.process.pid),
            "instances": sum(rss_kib(pid) for pid in self.instances()),
        }


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, 4 * CONNECTIONS + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))  # the server inherits it
    env = {"PROPYLON_LOG_LEVEL": "warning"}  # no access-log line per request
    with RunningServer.start(tmp_path_factory.mktemp("load") / "data", env=env) as server:
        live = LivePlatform(server)
        try:
            live.endpoint("ep-load", "Key")
            # Room for every connection's request at once: 2 × 256 running, as many queued.
            live.deploy(
                "ep-load",
                "blue",
                live.echo_code(),
                instances=2,
                max_concurrent=256,
                max_queue_wait="PT10S",
                request_timeout="PT20S",
                env={"WORKER_COUNT": "8"},
            )
            key = live.keys("ep-load")["primaryKey"]
            live.wait_scoring("ep-load", key)
            yield Target(live, live.score_url("ep-load"), key)
        finally:
            live.close()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _client(target: Target, connections: int) -> httpx.AsyncClient:
    context = ssl.create_default_context(cafile=target.live.server.ca_cert)
    return httpx.AsyncClient(
        verify=context,
        timeout=TIMEOUT,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        headers={"Authorization": f"Bearer {target.key}"},
    )


def established(port: int) -> int:
    """TCP connections to ``port`` on this host now (from /proc/net/tcp, state ESTABLISHED)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                lines = handle.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


async def _connections(target: Target) -> tuple[Counter[str], int, float]:
    """Every connection opened at once, each sending its requests back to back; the answers,
    the most connections the gateway held at once, and the time it took."""
    statuses: Counter[str] = Counter()
    peak = 0
    port = target.live.server.gateway_port
    async with _client(target, CONNECTIONS) as client:
        gate = asyncio.Event()
        done = asyncio.Event()

        async def one(n: int) -> None:
            await gate.wait()
            for r in range(REQUESTS_PER_CONNECTION):
                try:
                    answer = await client.post(target.url, json={"connection": n, "request": r})
                    statuses[str(answer.status_code)] += 1
                except httpx.HTTPError as error:
                    statuses[type(error).__name__] += 1

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, established(port))
                await asyncio.sleep(0.2)

        tasks = [asyncio.create_task(one(n)) for n in range(CONNECTIONS)]
        sampler = asyncio.create_task(sample())
        started = time.monotonic()
        gate.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=600)
        took = time.monotonic() - started
        peak = max(peak, established(port))  # every connection is still open in the pool
        done.set()
        await sampler
    return statuses, peak, took


@pytest.mark.timeout(900)
def test_concurrent_connections_are_all_served(target: Target) -> None:
    statuses, peak, took = asyncio.run(_connections(target))
    total = CONNECTIONS * REQUESTS_PER_CONNECTION
    print(
        f"\n{MODE}: {CONNECTIONS} connections x {REQUESTS_PER_CONNECTION} requests in "
        f"{took:.1f} s ({total / took:.0f}/s); at most {peak} open at once; {dict(statuses)}"
    )
    assert statuses == Counter({"200": total})
    assert peak >= CONNECTIONS * 0.95  # they really were that many at once


async def _soak(target: Target) -> tuple[Counter[str], list[float], int]:
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    async with _client(target, 64) as client:

        async def one(n: int) -> None:
            started = time.monotonic()
            try:
                answer = await client.post(target.url, json={"soak": n})
                statuses[str(answer.status_code)] += 1
            except httpx.HTTPError as error:
                statuses[type(error).__name__] += 1
            latencies.append(time.monotonic() - started)

        tasks: set[asyncio.Task[None]] = set()
        started = time.monotonic()
        sent = 0
        limit = int(SOAK_SECONDS * SOAK_RATE)
        while sent < limit and time.monotonic() - started < SOAK_SECONDS + 5:
            due = started + sent / SOAK_RATE  # a steady rate, not as fast as possible
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            task = asyncio.create_task(one(sent))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=TIMEOUT + 5)
    return statuses, latencies, sent


@pytest.mark.timeout(SOAK_SECONDS + 300)
def test_a_soak_at_a_steady_rate_serves_everything_without_growing_memory(
    target: Target,
) -> None:
    asyncio.run(_soak_warmup(target))
    before = target.rss()
    statuses, latencies, sent = asyncio.run(_soak(target))
    after = target.rss()
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(
        f"\n{MODE}: soak {SOAK_SECONDS:.0f} s at {SOAK_RATE:.0f}/s: {sent} requests, "
        f"{dict(statuses)}, p50 {p50:.1f} ms, p99 {p99:.1f} ms; RSS KiB start {before} "
        f"end {after}"
    )
    assert statuses == Counter({"200": sent})
    assert sent >= SOAK_SECONDS * SOAK_RATE * 0.95
    for part in ("server", "instances"):
        assert after[part] <= before[part] * 1.5 + 64 * 1024, (part, before, after)


async def _soak_warmup(target: Target) -> None:
    """A few hundred requests first, so that caches and pools are at their working size."""
    async with _client(target, 64) as client:
        answers = await asyncio.gather(
            *(client.post(target.url, json={"warm": n}) for n in range(300))
        )
    assert {a.status_code for a in answers} == {200}


def test_zz_the_server_is_healthy_after_the_load_and_logged_no_key(target: Target) -> None:
    live = target.live
    assert live.server.process.poll() is None
    assert live.http.get(f"{live.gateway}/healthz").status_code == 200
    assert live.http.get(live.url("/healthz")).status_code == 200
    time.sleep(1.5)  # the traffic log flushes once a second
    assert (live.server.data_dir / "logs" / "traffic" / "ep-load.jsonl").stat().st_size > 0
    assert live.ledger.found_in_files(live.server.data_dir) == []
