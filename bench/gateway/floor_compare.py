"""Which Python server design adds the least to a forwarded request? Prints one table.

Usage (from the repository root; granian in a scratch venv, not the project's)::

    python -m venv /tmp/granvenv && /tmp/granvenv/bin/pip install granian
    .venv/bin/python bench/gateway/floor_compare.py [--repeat 5] [--seconds 5]
        [--granian /tmp/granvenv/bin/granian] [--no-gateway]

One echo instance (``python -m propylon.inference --worker-count 16``, as ``run.py`` starts it)
on TCP, and a second on a Unix socket, serve every row:

* ``direct`` — wrk against the TCP instance;
* ``uvicorn + ASGI`` — ``floor_proxy.py``, the floor ``run.py`` records;
* ``raw protocol + PooledTransport`` / ``raw protocol + raw upstream`` — ``floor_variants.py``
  ``--variant raw`` / ``raw-upstream``;
* ``granian ASGI`` / ``granian RSGI`` — ``floor_variants:asgi_app`` / ``rsgi_app`` under granian,
  1 worker, uvloop (skipped when ``--granian`` does not exist);
* ``… → instance over UDS`` — the raw variants forwarding to the Unix-socket instance;
* ``raw ASGI shim + floor app`` — ``floor_proxy.py``'s app on ``asgi_shim.py`` instead of uvicorn;
* ``blocking threads`` — ``--variant blocking``, the lower bound for Python in the path;
* ``gateway, key`` — the real gateway (``serve.py`` as ``run.py`` starts it), for reference, and
  the same on ``asgi_shim.py`` (``serve_shim.py``): what swapping only the server would save.

Each round runs every row (in a rotated order) for ``--seconds`` at 16 connections, then at 1;
figures are medians over ``--repeat`` rounds. ``p50 added`` is the median over rounds of the
row's p50 minus direct's p50 in the same round, which the load of a shared machine disturbs less
than a difference of medians. ``CPU/req`` is the CPU time of the process in front (with its
children: granian serves from a worker process) per request, at 16 and at 1 connection.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # run.py, beside this file

ROOT, HERE = bench.ROOT, bench.HERE
VENV_SITE = ROOT / ".venv" / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"


@dataclass
class Row:
    label: str
    target: bench.Target
    rps: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    added: list[float] = field(default_factory=list)
    cpu16: list[float] = field(default_factory=list)
    cpu1: list[float] = field(default_factory=list)
    errors: int = 0


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants (Linux /proc)."""
    total = bench.cpu_seconds(pid)
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        total += sum(tree_cpu(int(child)) for child in children)
    return total


def launch(
    name: str, argv: list[str], logs: Path, env: dict[str, str] | None = None
) -> bench.Process:
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=HERE,
        )
    return bench.Process(name, process, log)


def start_rows(
    args: argparse.Namespace, work: Path, logs: Path, processes: list[bench.Process]
) -> list[Row]:
    (model,) = bench.models(smoke=True)
    python = sys.executable
    instance_args = ["-m", "propylon.inference", "--app-root", str(model.app_root)]
    instance_args += ["--entry-script", model.entry_script, "--worker-count", "16"]
    quiet = {"PROPYLON_LOG_LEVEL": "warning"}
    port = bench.free_port()
    tcp = launch("instance-tcp", [python, *instance_args, "--port", str(port)], logs, quiet)
    uds = str(work / "instance.sock")
    unix = launch("instance-uds", [python, *instance_args, "--uds", uds], logs, quiet)
    processes += [tcp, unix]
    instance = f"http://127.0.0.1:{port}"
    bench.wait_for(f"{instance}/readyz", tcp)
    deadline = time.monotonic() + 60
    while not Path(uds).exists() and time.monotonic() < deadline:
        time.sleep(0.1)

    rows = [Row("direct", bench.Target("direct", "echo", f"{instance}/score", model.request))]
    rows[0].target.pid = tcp.process.pid

    def forwarder(label: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        port = bench.free_port()
        process = launch(label, [*argv, "--port", str(port)], logs, env)
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        bench.wait_for_post(f"{url}/score", process)
        target = bench.Target(label, "echo", f"{url}/score", model.request)
        target.pid = process.process.pid
        rows.append(Row(label, target))

    variants = str(HERE / "floor_variants.py")
    forwarder("uvicorn + ASGI", [python, str(HERE / "floor_proxy.py"), "--upstream", instance])
    forwarder(
        "raw protocol + PooledTransport",
        [python, variants, "--variant", "raw", "--upstream", instance],
    )
    forwarder(
        "raw protocol + raw upstream",
        [python, variants, "--variant", "raw-upstream", "--upstream", instance],
    )
    forwarder(
        "raw ASGI shim + floor app",
        [python, variants, "--variant", "raw-asgi", "--upstream", instance],
    )
    forwarder(
        "blocking threads (lower bound)",
        [python, variants, "--variant", "blocking", "--upstream", instance],
    )
    if Path(args.granian).exists():
        path = os.pathsep.join([str(HERE), str(ROOT / "src"), str(VENV_SITE / "site-packages")])
        env = {"FLOOR_UPSTREAM": instance, "PYTHONPATH": path}
        base = [args.granian, "--loop", "uvloop", "--workers", "1", "--no-ws"]
        base += ["--log-level", "warning"]
        forwarder("granian ASGI", [*base, "--interface", "asgi", "floor_variants:asgi_app"], env)
        forwarder("granian RSGI", [*base, "--interface", "rsgi", "floor_variants:rsgi_app"], env)
    else:
        print(f"{args.granian} not found: granian rows skipped")
    forwarder(
        "raw protocol + PooledTransport → UDS",
        [python, variants, "--variant", "raw", "--upstream-uds", uds],
    )
    forwarder(
        "raw protocol + raw upstream → UDS",
        [python, variants, "--variant", "raw-upstream", "--upstream-uds", uds],
    )
    if args.gateway:
        gateway = bench.start_gateway(
            "gateway", [model], {"echo": instance}, work, logs, processes, 16, True
        )
        target = bench.gateway_target(gateway, model, "key", "gateway, key (reference)")
        rows.append(Row(target.label, target))
        gateway = start_gateway_on_shim(model, instance, work, logs, processes)
        target = bench.gateway_target(gateway, model, "key", "gateway, key, on ASGI shim")
        rows.append(Row(target.label, target))
    return rows


def start_gateway_on_shim(
    model: bench.Model, instance: str, work: Path, logs: Path, processes: list[bench.Process]
) -> bench.Gateway:
    """``run.start_gateway``, with ``serve_shim.py`` in place of ``serve.py``."""
    port = bench.free_port()
    data = work / "data-shim"
    args = [str(HERE / "serve_shim.py"), "--data-dir", str(data), "--port", str(port)]
    args += ["--max-concurrent", "16", f"--model=echo={instance}"]
    process = bench.start("gateway-shim", args, logs)
    processes.append(process)
    credentials = data / "bench-credentials.json"
    url = f"http://127.0.0.1:{port}"
    bench.wait_for_gateway(process, credentials, url, "gateway on shim")
    credentials_json = json.loads(credentials.read_text())
    return bench.Gateway("shim", "", url, None, credentials_json, process.process.pid)


def measure(rows: list[Row], repeat: int, seconds: float, scripts: Path) -> None:
    for row in rows:  # warm-up: pools, caches
        bench.wrk(row.target, 16, 1, scripts)
    for round_ in range(repeat):
        turn = round_ % len(rows)
        order = rows[turn:] + rows[:turn]
        p50s: dict[str, float] = {}
        for row in order:
            pid = row.target.pid
            before = tree_cpu(pid) if pid else 0.0
            rps, _, errors = bench.wrk(row.target, 16, seconds, scripts)
            middle = tree_cpu(pid) if pid else 0.0
            rps1, latency, errors1 = bench.wrk(row.target, 1, seconds, scripts)
            after = tree_cpu(pid) if pid else 0.0
            run_s = max(1, round(seconds))
            if pid:
                row.cpu16.append((middle - before) * 1e6 / (rps * run_s))
                row.cpu1.append((after - middle) * 1e6 / (rps1 * run_s))
            row.rps.append(rps)
            row.p50.append(latency["50"])
            row.p99.append(latency["99"])
            row.errors += errors + errors1
            p50s[row.label] = latency["50"]
            print(
                f"  round {round_ + 1}/{repeat} {row.label:40} {rps:7.0f} req/s  "
                f"p50 {latency['50']:5.0f} µs  load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
        for row in rows:
            row.added.append(p50s[row.label] - p50s["direct"])


def render(rows: list[Row], loads: tuple[float, float], repeat: int, seconds: float) -> str:
    med = statistics.median
    direct = rows[0]
    lines = [
        f"wrk, 16 connections then 1, {seconds:g} s each, median of {repeat} interleaved rounds; "
        f"{os.cpu_count()} CPUs, load average {loads[0]:.2f} before / {loads[1]:.2f} after.",
        "",
        "| variant | req/s @16 | vs direct | p50 @1 | p50 added | p99 @1 "
        "| CPU/req @16 | CPU/req @1 | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        ratio = "—" if row is direct else f"{med(row.rps) / med(direct.rps):.0%}"
        added = "—" if row is direct else f"{med(row.added):+.0f} µs"
        cpu16 = f"{med(row.cpu16):.0f} µs" if row.cpu16 else "—"
        cpu1 = f"{med(row.cpu1):.0f} µs" if row.cpu1 else "—"
        lines.append(
            f"| {row.label} | {med(row.rps):,.0f} | {ratio} | {med(row.p50):.0f} µs | {added} "
            f"| {med(row.p99):.0f} µs | {cpu16} | {cpu1} | {row.errors} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--granian", default="/tmp/granvenv/bin/granian")  # noqa: S108
    parser.add_argument("--no-gateway", dest="gateway", action="store_false")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="propylon-floor-compare-"))
    logs = work / "logs"
    scripts = work / "scripts"
    logs.mkdir()
    scripts.mkdir()
    processes: list[bench.Process] = []
    try:
        rows = start_rows(args, work, logs, processes)
        before = os.getloadavg()[0]
        measure(rows, args.repeat, args.seconds, scripts)
        after = os.getloadavg()[0]
    finally:
        for process in reversed(processes):
            process.stop()
    print()
    print(render(rows, (before, after), args.repeat, args.seconds))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
