"""The Ray column of the gateway benchmark: Ray Serve's proxy called directly vs through Propylon.

    python bench/gateway/ray_column.py [--seconds 10] [--concurrency 8] [--replicas 1]

Starts a throwaway Ray head (:class:`~propylon.runtime.ray_cluster.LocalRayHead`, 2 CPUs) and
deploys the echo model (``examples/echo``) as one Serve application, with the replica class and
the options the Ray backend uses (:func:`~propylon.runtime.ray_apps.serve_application`). Then,
in the same run and with the same client (aiohttp, ``--concurrency`` requests in flight):

* ``local instance`` — the echo model under ``python -m propylon.inference`` (no Ray): the
  baseline the gateway benchmark uses;
* ``serve proxy`` — ``POST /score`` on Serve's HTTP proxy, directly;
* ``gateway → serve proxy`` — the same requests through Propylon's gateway
  (``bench/gateway/serve.py``, key auth) to the same proxy;
* ``handle`` — :class:`DeploymentHandle` calls from this process straight to the replicas (what
  a handle-based gateway transport would do instead of HTTP).

The application has the backend's name and route prefix (``/ray_blue``); the gateway is given
the instance URL the backend publishes (``http://127.0.0.1:<port>/ray_blue``). Prints a
Markdown table with ratios to ``serve proxy``. ``RAY_SERVE_ENABLE_HA_PROXY=1`` in the
environment measures Serve's HAProxy ingress instead of its Python proxy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp

from propylon.runtime import DeploymentSpec, RequestSettings
from propylon.runtime.ray_apps import serve_application
from propylon.runtime.ray_cluster import LocalRayHead
from propylon.runtime.ray_replica import InferenceReplica, ReplicaSettings

REPO = Path(__file__).resolve().parents[2]
ECHO = REPO / "examples" / "echo"
BODY = json.dumps({"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]}).encode()
ENDPOINT = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/bench/providers/"
    "Microsoft.MachineLearningServices/workspaces/bench/onlineEndpoints/ray"
)


@dataclass
class Result:
    name: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


class BenchReplica(InferenceReplica):
    """The backend's replica plus one method a DeploymentHandle can call (``POST /score``)."""

    def __init__(self, settings: ReplicaSettings) -> None:
        super().__init__(settings, "bench")

    async def score(self, body: bytes) -> bytes:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/score",
            "root_path": "",
            "query_string": b"",
            "headers": [(b"content-type", b"application/json")],
        }
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Any) -> None:
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.inference(scope, receive, send)
        return b"".join(chunks)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def load(
    name: str, call: Callable[[], Awaitable[bool]], *, seconds: float, concurrency: int
) -> Result:
    """``concurrency`` loops calling ``call`` for ``seconds`` after a 2 s warm-up."""
    warm_until = time.perf_counter() + 2.0
    stop_at = warm_until + seconds
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        while (now := time.perf_counter()) < stop_at:
            ok = await call()
            if now >= warm_until:
                latencies.append((time.perf_counter() - now) * 1000)
                errors += not ok

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Result(name, len(latencies), errors, seconds, latencies)


def wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def echo_spec(replicas: int, max_concurrent: int) -> DeploymentSpec:
    return DeploymentSpec(
        deployment_id=f"{ENDPOINT}/deployments/blue",
        endpoint_id=ENDPOINT,
        endpoint_name="ray",
        name="blue",
        code_dir=ECHO,
        scoring_script="score.py",
        model_dir=None,
        instance_count=replicas,
        requests=RequestSettings(max_concurrent_requests_per_instance=max_concurrent),
    )


async def http_column(
    name: str, url: str, args: argparse.Namespace, headers: dict[str, str] | None = None
) -> Result:
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        request_headers = {"content-type": "application/json", **(headers or {})}

        async def call() -> bool:
            async with session.post(url, data=BODY, headers=request_headers) as response:
                await response.read()
                return response.status == 200

        return await load(name, call, seconds=args.seconds, concurrency=args.concurrency)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--max-concurrent", type=int, default=16)
    args = parser.parse_args()
    why_not = LocalRayHead.unavailable()
    if why_not is not None:
        sys.exit(f"ray column skipped: {why_not}")
    import ray
    from ray import serve

    work = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    with LocalRayHead.start(num_cpus=2) as head:
        try:
            local_port = free_port()
            processes.append(start_local_instance(local_port, args.max_concurrent))
            ray.init(address=head.address, log_to_driver=False)
            serve.start(http_options={"host": "127.0.0.1", "port": head.serve_port})
            app = serve_application(echo_spec(args.replicas, args.max_concurrent))
            deployment: Any = serve.deployment(serve.ingress()(BenchReplica))
            bound = deployment.options(**app.options).bind(replace(app.replica, log_folder=None))
            handle = serve.run(bound, name=app.name, route_prefix=app.route_prefix)
            proxy = f"http://127.0.0.1:{head.serve_port}{app.route_prefix}"
            gateway_port = free_port()
            processes.append(start_gateway(gateway_port, proxy, work, args))
            wait_for_port(local_port)
            wait_for_port(gateway_port)
            credentials = json.loads((work / "gateway" / "bench-credentials.json").read_text())
            urls = {
                "local instance": (f"http://127.0.0.1:{local_port}/score", {}),
                "serve proxy": (f"{proxy}/score", {}),
                "gateway → serve proxy": (
                    f"http://127.0.0.1:{gateway_port}/endpoints/ray-key/score",
                    {"authorization": f"Bearer {credentials['ray']['key']}"},
                ),
            }
            load_before = os.getloadavg()[0]
            results = asyncio.run(measure(args, urls, handle.options(method_name="score")))
            load_after = os.getloadavg()[0]
            serve.delete(app.name)
            ray.shutdown()
        finally:
            for process in processes:
                process.terminate()
                process.wait(30)
            shutil.rmtree(work, ignore_errors=True)
    report(args, results, (load_before, load_after))


def start_local_instance(port: int, max_concurrent: int) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        "AML_APP_ROOT": str(ECHO),
        "AZUREML_ENTRY_SCRIPT": "score.py",
        "MAX_CONCURRENT_REQUESTS": str(max_concurrent),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "propylon.inference", "--port", str(port)],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_gateway(
    port: int, proxy: str, work: Path, args: argparse.Namespace
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("serve.py")),
            "--data-dir",
            str(work / "gateway"),
            "--port",
            str(port),
            "--model",
            f"ray={proxy}",
            "--max-concurrent",
            str(args.max_concurrent * args.replicas),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def measure(
    args: argparse.Namespace, urls: dict[str, tuple[str, dict[str, str]]], scorer: Any
) -> list[Result]:
    results = [await http_column(name, url, args, headers) for name, (url, headers) in urls.items()]

    async def call() -> bool:
        return bool(await scorer.remote(BODY))

    results.append(await load("handle", call, seconds=args.seconds, concurrency=args.concurrency))
    return results


def report(args: argparse.Namespace, results: list[Result], load: tuple[float, float]) -> None:
    base = next(result for result in results if result.name == "serve proxy")
    ingress = "HAProxy" if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1" else "Python proxy"
    print(
        f"\nray column: echo model, {args.replicas} replica(s), Serve's {ingress}, "
        f"{args.concurrency} in flight, {args.seconds:g} s per row, Python "
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load[0]:.1f} → "
        f"{load[1]:.1f}\n"
    )
    print("| path | requests/s | p50 ms | p99 ms | mean ms | errors | throughput vs serve proxy |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for result in results:
        mean = statistics.fmean(result.latencies_ms) if result.latencies_ms else 0.0
        print(
            f"| {result.name} | {result.throughput:,.0f} | {result.percentile(0.5):.2f} | "
            f"{result.percentile(0.99):.2f} | {mean:.2f} | {result.errors} | "
            f"{result.throughput / base.throughput:.2f}× |"
        )


if __name__ == "__main__":
    main()
