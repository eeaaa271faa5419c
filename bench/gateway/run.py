"""Gateway benchmark: a model called directly on its instance, and through the gateway.

Usage (from the repository root; ``wrk`` comes from Debian's packages: ``apt-get install -y wrk``)::

    .venv/bin/python bench/gateway/run.py            # full run, prints the table
    .venv/bin/python bench/gateway/run.py --record   # and writes the "## gateway" section of
                                                      # bench/RESULTS.md (other sections kept)
    .venv/bin/python bench/gateway/run.py --smoke    # a few seconds, for CI

For the echo model (``examples/echo``) and, when scikit-learn is installed, the sample model
(``examples/model-1``), each served by ``python -m propylon.inference`` exactly as the runtime
starts an instance, it measures in one run:

* (a) the instance called directly, and
* (b) the gateway in front of it with ``key``, ``aml_token`` and ``aad_token`` endpoints,

as requests/s at 16 connections and p50/p99 latency at 1 connection, and prints the ratios to
(a). The gateway is served as ``propylon server`` serves its gateway port (``bench/gateway/
serve.py``: the same protocol with the fast lane, middleware and JSON logging; the instance
reached through its Unix socket, as the runtime publishes it), over plain HTTP; one extra row
measures ``key`` over TLS. The full run adds rows that explain the design: the gateway with the
fast lane off (every request through the ASGI app), the gateway with an ``aiohttp`` upstream
client instead of the pooled httptools one, and a bare Python forwarder. Each figure is the
median of ``--repeat`` interleaved runs, since the machine may be shared; the load average is
printed with the results.

Goal (issue 7): every auth mode ≥ 60 % of direct throughput and ≤ +100 µs p50.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
RESULTS = ROOT / "bench" / "RESULTS.md"
MODES = ("key", "aml_token", "aad_token")
FLOOR = "floor: minimal Python proxy, no gateway work"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Model:
    name: str
    app_root: Path
    entry_script: str
    model_dir: Path | None
    request: bytes


def models(smoke: bool) -> list[Model]:
    found = [
        Model(
            "echo",
            ROOT / "examples" / "echo",
            "score.py",
            None,
            (ROOT / "examples" / "echo" / "sample-request.json").read_bytes(),
        )
    ]
    sklearn_root = ROOT / "examples" / "model-1"
    if not smoke and sklearn_root.exists():
        try:
            import sklearn  # noqa: F401
        except ImportError:
            print("scikit-learn is not installed: the sample model is skipped.")
        else:
            found.append(
                Model(
                    "sklearn",
                    sklearn_root / "onlinescoring",
                    "score.py",
                    sklearn_root,
                    (sklearn_root / "sample-request.json").read_bytes(),
                )
            )
    return found


@dataclass
class Process:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(name: str, args: list[str], logs: Path, env: dict[str, str] | None = None) -> Process:
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, *args],
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    return Process(name, process, log)


def wait_for(url: str, what: Process, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what.process.poll() is not None:
            raise SystemExit(f"{what.name} exited:\n{what.log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"{what.name} did not become ready; see {what.log}")


@dataclass
class Target:
    label: str
    model: str
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    baseline: bool = False
    pid: int | None = None  # the process whose CPU time per request is reported


@dataclass
class Figures:
    cpu_us: list[float] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    p50_us: list[float] = field(default_factory=list)
    p99_us: list[float] = field(default_factory=list)
    errors: int = 0

    def median(self, values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")


# -- load generators -----------------------------------------------------------------------------


def wrk_script(target: Target, directory: Path) -> Path:
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = {lua_string(target.body.decode())}",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    lines += [f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in target.headers.items()]
    path = directory / f"{abs(hash((target.label, target.model)))}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_UNITS = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0}


def wrk(
    target: Target, connections: int, seconds: float, scripts: Path
) -> tuple[float, dict[str, float], int]:
    """(requests/s, latency percentiles in µs, non-2xx count) from one wrk run."""
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(wrk_script(target, scripts)),
            target.url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    percentiles = {
        pct: float(value) * _UNITS[unit]
        for pct, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    }
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: .*", out)
    count = int(errors.group(1)) if errors else 0
    if socket_errors and "timeout 0" not in socket_errors.group(0):
        count += 1
    return rps, percentiles, count


async def python_load(
    target: Target, connections: int, seconds: float
) -> tuple[float, dict[str, float], int]:
    """A small keep-alive HTTP/1.1 load generator (used only when wrk is missing)."""
    import httptools

    url = httpx.URL(target.url)
    head = (
        f"POST {url.raw_path.decode()} HTTP/1.1\r\nhost: {url.host}:{url.port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(target.body)}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in target.headers.items())
        + "\r\n"
    ).encode() + target.body
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    class Reader:
        def __init__(self) -> None:
            self.done = False

        def on_message_complete(self) -> None:
            self.done = True

    async def connection() -> None:
        nonlocal errors
        ssl = url.scheme == "https"
        reader, writer = await asyncio.open_connection(url.host, url.port, ssl=ssl or None)
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            writer.write(head)
            state = Reader()
            parser = httptools.HttpResponseParser(state)
            while not state.done:
                parser.feed_data(await reader.read(65536))
            if parser.get_status_code() != 200:
                errors += 1
            latencies.append((time.perf_counter() - started) * 1_000_000)
        writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    ordered = sorted(latencies)
    pick = {
        p: ordered[min(len(ordered) - 1, int(len(ordered) * int(p) / 100))] for p in ("50", "99")
    }
    return len(latencies) / seconds, pick, errors


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process and its threads (Linux), 0 if unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    target: Target, connections: int, seconds: float, scripts: Path, use_wrk: bool
) -> tuple[float, dict[str, float], int]:
    if use_wrk:
        return wrk(target, connections, seconds, scripts)
    return asyncio.run(python_load(target, connections, seconds))


# -- the run -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a few seconds: echo, direct and key")
    parser.add_argument("--record", action="store_true", help="write bench/RESULTS.md")
    parser.add_argument("--seconds", type=float, help="length of each load run")
    parser.add_argument("--repeat", type=int, help="interleaved runs per figure (median taken)")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    seconds = args.seconds or (1.0 if args.smoke else 5.0)
    repeat = args.repeat or (1 if args.smoke else 3)
    use_wrk = shutil.which("wrk") is not None
    if not use_wrk:
        print(
            "wrk is not installed (apt-get install -y wrk): using the built-in Python load "
            "generator, which is itself a bottleneck — ratios are indicative only."
        )

    work = Path(tempfile.mkdtemp(prefix="propylon-bench-gateway-"))
    logs = work / "logs"
    logs.mkdir()
    processes: list[Process] = []
    try:
        targets = launch(work, logs, processes, smoke=args.smoke, concurrency=args.concurrency)
        load_before = os.getloadavg()
        results = run_all(targets, args.concurrency, seconds, repeat, work, use_wrk)
        load_after = os.getloadavg()
    finally:
        for process in reversed(processes):
            process.stop()
    command = (
        "python bench/gateway/run.py"
        + (" --smoke" if args.smoke else "")
        + (" --record" if args.record else "")
    )
    report = render(
        results, targets, args, seconds, repeat, use_wrk, load_before, load_after, command
    )
    print(report)
    if args.record:
        record(report)
        print(f"written to {RESULTS.relative_to(ROOT)}")
    shutil.rmtree(work, ignore_errors=True)


@dataclass
class Gateway:
    """One gateway process under test and the credentials its endpoints accept."""

    variant: str
    label: str  # how its key row is labelled ("" for the main gateway: one row per auth mode)
    url: str
    tls_url: str | None
    credentials: dict[str, dict[str, str]]
    pid: int


# The main gateway, and in a full run the variants that explain the design (see the docstring).
VARIANTS = {
    "gateway": ("", [], {}),
    "asgi": ("key, fast lane off (ASGI app only)", ["--no-fast-lane"], {}),
    "aiohttp": ("key, aiohttp upstream client", ["--transport", "aiohttp"], {}),
}


def launch(
    work: Path, logs: Path, processes: list[Process], *, smoke: bool, concurrency: int
) -> list[Target]:
    chosen = models(smoke)
    instances = start_instances(chosen, logs, processes, concurrency)
    variants = ["gateway"] if smoke else list(VARIANTS)
    gateways = [
        start_gateway(variant, chosen, instances, work, logs, processes, concurrency, smoke)
        for variant in variants
    ]
    targets: list[Target] = []
    for model in chosen:
        direct = Target("direct", model.name, f"{instances[model.name]}/score", model.request)
        direct.baseline, direct.pid = True, pid_of(processes, f"instance-{model.name}")
        targets.append(direct)
        main_gateway = gateways[0]
        for mode in ("key",) if smoke else MODES:
            targets.append(gateway_target(main_gateway, model, mode, mode))
        if model.name == "echo" and main_gateway.tls_url:
            targets.append(gateway_target(main_gateway, model, "key", "key, TLS", tls=True))
        if model.name == "echo":
            targets += [gateway_target(g, model, "key", g.label) for g in gateways[1:]]
        if model.name == "echo" and not smoke:
            floor = start_floor(instances[model.name], logs, processes)
            targets.append(
                Target(
                    FLOOR,
                    model.name,
                    f"{floor}/score",
                    model.request,
                    pid=pid_of(processes, "floor"),
                )
            )
    for target in targets:  # every target answers 200 before anything is measured
        # The TLS row's certificate is the server's own self-signed one; wrk does not verify it.
        answer = httpx.post(
            target.url,
            headers=target.headers,
            content=target.body,
            verify=False,  # noqa: S501
        )
        if answer.status_code != 200:
            raise SystemExit(f"{target.model}/{target.label}: {answer.status_code} {answer.text}")
    return targets


def start_instances(
    chosen: list[Model], logs: Path, processes: list[Process], concurrency: int
) -> dict[str, str]:
    """``python -m propylon.inference`` per model, as the runtime starts an instance: on a
    loopback port (what ``direct`` calls) and a private Unix socket (the gateway's way in,
    ``propylon.runtime.sockets``)."""
    urls: dict[str, str] = {}
    started: list[tuple[Process, str]] = []
    for model in chosen:
        port = free_port()
        sockets = logs.parent / "sockets"
        sockets.mkdir(mode=0o700, exist_ok=True)
        args = ["-m", "propylon.inference", "--port", str(port), "--app-root", str(model.app_root)]
        args += ["--unix-socket", str(sockets / f"{model.name}.sock")]
        args += ["--entry-script", model.entry_script, "--worker-count", str(concurrency)]
        if model.model_dir is not None:
            args += ["--model-dir", str(model.model_dir)]
        process = start(f"instance-{model.name}", args, logs, {"PROPYLON_LOG_LEVEL": "warning"})
        processes.append(process)
        urls[model.name] = f"http://127.0.0.1:{port}"
        started.append((process, urls[model.name]))
    for process, url in started:
        wait_for(f"{url}/readyz", process)
    return urls


def wait_for_gateway(process: Process, credentials: Path, url: str, what: str) -> None:
    """Until ``serve.py`` has written its credentials and ``url`` answers (404 for an unknown
    endpoint), within 90 s; exits with the process's log otherwise."""
    deadline = time.monotonic() + 90
    while not credentials.exists():
        if process.process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{what} did not start:\n{process.log.read_text()[-3000:]}")
        time.sleep(0.1)
    while True:  # unknown endpoint: 404 once the port answers
        with contextlib.suppress(httpx.HTTPError):
            if httpx.post(f"{url}/endpoints/none/score", timeout=1.0).status_code == 404:
                return
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} is not answering; see {process.log}")
        time.sleep(0.1)


def start_gateway(
    variant: str,
    chosen: list[Model],
    instances: dict[str, str],
    work: Path,
    logs: Path,
    processes: list[Process],
    concurrency: int,
    smoke: bool,
) -> Gateway:
    label, extra, env = VARIANTS[variant]
    port = free_port()
    tls_port = free_port() if variant == "gateway" and not smoke else None
    data = work / f"data-{variant}"
    args = [str(HERE / "serve.py"), "--data-dir", str(data), "--port", str(port)]
    args += ["--max-concurrent", str(concurrency), *extra]
    if tls_port is not None:
        args += ["--tls-port", str(tls_port)]
    sockets = logs.parent / "sockets"
    args += [f"--model={m.name}={instances[m.name]},{sockets / m.name}.sock" for m in chosen]
    process = start(f"gateway-{variant}", args, logs, env)
    processes.append(process)
    credentials = data / "bench-credentials.json"
    url = f"http://127.0.0.1:{port}"
    wait_for_gateway(process, credentials, url, f"gateway {variant}")
    tls_url = f"https://127.0.0.1:{tls_port}" if tls_port else None
    return Gateway(
        variant, label, url, tls_url, json.loads(credentials.read_text()), process.process.pid
    )


def start_floor(instance: str, logs: Path, processes: list[Process]) -> str:
    """``floor_proxy.py`` in front of ``instance``: what one more Python hop costs by itself."""
    port = free_port()
    process = start(
        "floor", [str(HERE / "floor_proxy.py"), "--port", str(port), "--upstream", instance], logs
    )
    processes.append(process)
    url = f"http://127.0.0.1:{port}"
    wait_for_post(f"{url}/score", process)
    return url


def wait_for_post(url: str, what: Process, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what.process.poll() is not None:
            raise SystemExit(f"{what.name} exited:\n{what.log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.post(url, content=b"{}", timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"{what.name} did not become ready; see {what.log}")


def gateway_target(
    gateway: Gateway, model: Model, mode: str, label: str, *, tls: bool = False
) -> Target:
    base = gateway.tls_url if tls else gateway.url
    endpoint = f"{model.name}-{mode.replace('_', '')}"
    return Target(
        label,
        model.name,
        f"{base}/endpoints/{endpoint}/score",
        model.request,
        {"Authorization": f"Bearer {gateway.credentials[model.name][mode]}"},
        pid=gateway.pid,
    )


def pid_of(processes: list[Process], name: str) -> int:
    return next(p.process.pid for p in processes if p.name == name)


def run_all(
    targets: list[Target], concurrency: int, seconds: float, repeat: int, work: Path, use_wrk: bool
) -> dict[tuple[str, str], Figures]:
    results = {(t.model, t.label): Figures() for t in targets}
    scripts = work / "scripts"
    scripts.mkdir(exist_ok=True)
    for target in targets:  # warm-up: connection pools, token caches, instances
        measure(target, concurrency, min(1.0, seconds), scripts, use_wrk)
    for round_ in range(repeat):
        for target in targets:
            figures = results[(target.model, target.label)]
            cpu_before = cpu_seconds(target.pid)
            rps, _, errors = measure(target, concurrency, seconds, scripts, use_wrk)
            cpu = cpu_seconds(target.pid) - cpu_before
            if target.pid is not None and rps:
                figures.cpu_us.append(cpu * 1_000_000 / (rps * max(1, round(seconds))))
            _, latency, errors_1 = measure(target, 1, seconds, scripts, use_wrk)
            figures.rps.append(rps)
            figures.p50_us.append(latency["50"])
            figures.p99_us.append(latency["99"])
            figures.errors += errors + errors_1
            print(
                f"  round {round_ + 1}/{repeat} {target.model:8} {target.label:38} "
                f"{rps:9.0f} req/s   p50 {latency['50']:7.0f} µs   p99 {latency['99']:7.0f} µs",
                flush=True,
            )
    return results


def render(
    results: dict[tuple[str, str], Figures],
    targets: list[Target],
    args: argparse.Namespace,
    seconds: float,
    repeat: int,
    use_wrk: bool,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
    command: str,
) -> str:
    lines = [
        "## gateway",
        "",
        f"Command: `{command}` — {'wrk' if use_wrk else 'built-in Python load generator'}, "
        f"{args.concurrency} connections for throughput, 1 for latency, {seconds:g} s per run, "
        f"median of {repeat} interleaved runs. Machine: {os.cpu_count()} CPUs, load average "
        f"{load_before[0]:.2f} before / {load_after[0]:.2f} after. Instances: "
        f"`python -m propylon.inference --worker-count {args.concurrency}`; deployments "
        f"`maxConcurrentRequestsPerInstance: {args.concurrency}`.",
        "",
        f"| model | path | req/s ({args.concurrency} conn) | vs direct | p50 (1 conn) "
        "| p50 added | p99 (1 conn) | CPU per request | errors | goal (≥ 60 %, ≤ +100 µs) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for target in targets:
        figures = results[(target.model, target.label)]
        base = results[(target.model, "direct")]
        rps, p50, p99 = (
            figures.median(figures.rps),
            figures.median(figures.p50_us),
            figures.median(figures.p99_us),
        )
        base_rps, base_p50 = base.median(base.rps), base.median(base.p50_us)
        ratio = "—" if target.baseline else f"{rps / base_rps:.0%}"
        added = "—" if target.baseline else f"{p50 - base_p50:+.0f} µs"
        goal = "—"
        if not target.baseline and target.label != FLOOR:
            throughput = "met" if rps / base_rps >= 0.6 else "missed"
            latency = "met" if p50 - base_p50 <= 100 else "missed"
            goal = f"throughput {throughput}, latency {latency}"
        cpu = figures.median(figures.cpu_us)
        lines.append(
            f"| {target.model} | {target.label} | {rps:,.0f} | {ratio} | {p50:.0f} µs | {added} "
            f"| {p99:.0f} µs | {cpu:.0f} µs | {figures.errors} | {goal} |"
        )
    lines += [
        "",
        "Rows: `key`, `aml_token`, `aad_token` are the gateway as `propylon server` serves it "
        "(uvicorn + uvloop + httptools with the fast lane, the server's request middleware and "
        "JSON logging, plain HTTP; the instance reached through its Unix socket, as the local "
        "runtime publishes it, while `direct` calls its TCP port as a client would); `key, TLS` "
        "the same over HTTPS. The other echo rows explain the figures: `fast lane off` answers "
        "every request through the ASGI app (the path that requests the fast lane does not "
        "take still follow), `aiohttp upstream client` is the gateway with the client it does "
        "not use (which also turns the fast lane off), and `floor` is a bare Python forwarder "
        "(uvicorn + an ASGI app) over TCP with the gateway's client and nothing else. "
        "`CPU per request` is the CPU time of the process in front (the instance for "
        "`direct`, else the gateway or forwarder) divided by the requests it served in the "
        "throughput runs — unlike the rates, it hardly depends on what else the machine is "
        "doing.",
        "",
    ]
    return "\n".join(lines)


def record(report: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    # Up to the next section, or to the hand-written "Where the latency goes" (kept as it is).
    pattern = re.compile(r"^## gateway\n.*?(?=^## |^### Where the latency goes|\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: report + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + report + "\n"
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
