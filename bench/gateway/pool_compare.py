"""How the instance's pool for user code changes the gateway's added latency. Prints one table.

Usage (from the repository root)::

    .venv/bin/python bench/gateway/pool_compare.py [--repeat 3] [--seconds 4] [--model sklearn]

Two instances of the echo model or the scikit-learn sample (``--worker-count 16``, on TCP and a
Unix socket, as ``run.py`` starts them), each behind its own gateway (``serve.py``, key auth, over
the socket):

* ``UserThreadPool`` — ``python -m propylon.inference`` as shipped;
* ``ThreadPoolExecutor`` — the same through ``standard_pool_instance.py``, which swaps in the
  standard library's pool and changes nothing else.

Each round, for each instance in turn: 16 connections through the gateway (this starts the
pool's threads, as any busy spell does), then 1 connection through the gateway and 1 directly,
then 16 connections directly. ``p50 added`` is the median over rounds of the gateway's p50 minus
direct's p50 in the same round; ``threads`` the instance's thread count at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # run.py, beside this file

ROOT, HERE = bench.ROOT, bench.HERE
POOLS = {
    "UserThreadPool": ["-m", "propylon.inference"],
    "ThreadPoolExecutor": [str(HERE / "standard_pool_instance.py")],
}


@dataclass
class Row:
    pool: str
    direct: bench.Target
    gateway: bench.Target
    instance_pid: int
    figures: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.figures.setdefault(name, []).append(value)

    def median(self, name: str) -> float:
        return statistics.median(self.figures[name])


def start_row(
    pool: str, model: bench.Model, work: Path, logs: Path, processes: list[bench.Process]
) -> Row:
    port, sockets = bench.free_port(), work / "sockets"
    sockets.mkdir(mode=0o700, exist_ok=True)
    socket = sockets / f"{pool}.sock"
    args = [*POOLS[pool], "--port", str(port), "--unix-socket", str(socket)]
    args += ["--app-root", str(model.app_root), "--entry-script", model.entry_script]
    args += ["--worker-count", "16"]
    if model.model_dir is not None:
        args += ["--model-dir", str(model.model_dir)]
    instance = bench.start(f"instance-{pool}", args, logs, {"PROPYLON_LOG_LEVEL": "warning"})
    processes.append(instance)
    url = f"http://127.0.0.1:{port}"
    bench.wait_for(f"{url}/readyz", instance)
    gateway_port, data = bench.free_port(), work / f"data-{pool}"
    args = [str(HERE / "serve.py"), "--data-dir", str(data), "--port", str(gateway_port)]
    args += ["--max-concurrent", "16", f"--model={model.name}={url},{socket}"]
    gateway = bench.start(f"gateway-{pool}", args, logs)
    processes.append(gateway)
    credentials = data / "bench-credentials.json"
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    bench.wait_for_gateway(gateway, credentials, gateway_url, f"gateway for {pool}")
    key = json.loads(credentials.read_text())[model.name]["key"]
    body = model.request
    return Row(
        pool,
        bench.Target("direct", model.name, f"{url}/score", body),
        bench.Target(
            "key",
            model.name,
            f"{gateway_url}/endpoints/{model.name}-key/score",
            body,
            {"Authorization": f"Bearer {key}"},
        ),
        instance.process.pid,
    )


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def measure(rows: list[Row], repeat: int, seconds: float, scripts: Path) -> None:
    for row in rows:  # warm-up: pools, connections
        for target in (row.gateway, row.direct):
            bench.wrk(target, 1, 1, scripts)
    for round_ in range(repeat):
        for row in rows if round_ % 2 == 0 else reversed(rows):
            cpu = bench.cpu_seconds(row.instance_pid)
            rps, _, errors = bench.wrk(row.gateway, 16, seconds, scripts)
            row.add(
                "gateway_cpu_us",
                (bench.cpu_seconds(row.instance_pid) - cpu) * 1e6 / (rps * seconds),
            )
            _, through, errors_1 = bench.wrk(row.gateway, 1, seconds, scripts)
            _, direct, errors_2 = bench.wrk(row.direct, 1, seconds, scripts)
            direct_rps, _, errors_3 = bench.wrk(row.direct, 16, seconds, scripts)
            if errors + errors_1 + errors_2 + errors_3:
                raise SystemExit(f"{row.pool}: answers other than 200 in round {round_ + 1}")
            row.add("gateway_rps", rps)
            row.add("direct_rps", direct_rps)
            row.add("gateway_p50", through["50"])
            row.add("direct_p50", direct["50"])
            row.add("added", through["50"] - direct["50"])
            row.add("threads", threads_of(row.instance_pid))
            print(
                f"  round {round_ + 1}/{repeat} {row.pool:18} gateway {rps:7.0f} req/s "
                f"p50 {through['50']:5.0f} µs   direct {direct_rps:7.0f} req/s "
                f"p50 {direct['50']:5.0f} µs",
                flush=True,
            )


def render(
    rows: list[Row], model: str, loads: tuple[float, float], repeat: int, seconds: float
) -> str:
    lines = [
        f"Command: `python bench/gateway/pool_compare.py --repeat {repeat} --seconds "
        f"{seconds:g} --model {model}` — wrk, median of {repeat} rounds; 2 CPUs, load average "
        f"{loads[0]:.2f} before / {loads[1]:.2f} after.",
        "",
        "| pool for user code | threads | req/s @16 direct | req/s @16 gateway "
        "| instance CPU/req @16 | p50 @1 direct | p50 @1 gateway | p50 added |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| `{row.pool}` | {row.median('threads'):.0f} | {row.median('direct_rps'):,.0f} "
            f"| {row.median('gateway_rps'):,.0f} | {row.median('gateway_cpu_us'):.0f} µs "
            f"| {row.median('direct_p50'):.0f} µs | {row.median('gateway_p50'):.0f} µs "
            f"| +{row.median('added'):.0f} µs |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--model", choices=["echo", "sklearn"], default="echo")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed (apt-get install wrk)")
    work = Path(tempfile.mkdtemp(prefix="propylon-pool-"))
    logs = work / "logs"
    logs.mkdir()
    scripts = work / "scripts"
    scripts.mkdir()
    processes: list[bench.Process] = []
    load_before = os.getloadavg()[0]
    try:
        model = next(m for m in bench.models(smoke=False) if m.name == args.model)
        rows = [start_row(pool, model, work, logs, processes) for pool in POOLS]
        measure(rows, args.repeat, args.seconds, scripts)
    finally:
        for process in reversed(processes):
            process.stop()
    print()
    print(render(rows, args.model, (load_before, os.getloadavg()[0]), args.repeat, args.seconds))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
