"""Seconds from apply to Succeeded for a local deployment: cached and fresh environments.

Usage::

    python bench/deploy/run.py             # 5 deployments per scenario
    python bench/deploy/run.py --smoke     # 2 per scenario, a few seconds
    python bench/deploy/run.py --record    # also write the "## deploy" section of bench/RESULTS.md

Each deployment is one instance of a new deployment name (its own supervisor and process) on a
:class:`~propylon.runtime.LocalBackend` with a SQLite store in a temporary data dir, with Azure's
default probe settings (``initial_delay`` 10 s, ``period`` 10 s), timed from ``apply`` until
``status`` says Succeeded (polled every 10 ms), then removed. Scenarios:

* **server environment** — no environment spec: the baseline (process start, import, ``init()``);
* **cached environment** — pip requirements whose environment was built by an earlier deployment:
  the cache lookup plus the baseline (goal ≤ 3 s);
* **fresh environment** — a requirement nobody asked for before (a small wheel, new for every
  deployment, installed with ``--no-index --find-links``): virtual environment, pip, baseline;
* **sklearn sample, cached environment** — the diabetes sample with its conda file (satisfied by
  the server's packages), where importing scikit-learn dominates.

No network is used: wheels are written locally and pip never reaches for an index.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from results import record

from propylon.control.specs import environment_spec
from propylon.runtime import (
    DeploymentSpec,
    DeploymentState,
    EnvironmentSpec,
    LocalBackend,
)
from propylon.store import Database, ResourceStore

REPO = Path(__file__).resolve().parents[2]
ECHO = REPO / "examples" / "echo"
SAMPLE = REPO / "examples" / "model-1"
ENDPOINT = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/bench/providers/"
    "Microsoft.MachineLearningServices/workspaces/bench/onlineEndpoints/bench"
)
GOAL_CACHED_S = 3.0


@dataclass(frozen=True)
class Scenario:
    name: str
    goal: str
    spec: Callable[[int], DeploymentSpec]


@dataclass(frozen=True)
class Result:
    scenario: Scenario
    seconds: list[float]


def base_spec(name: str, code_dir: Path, **changes: object) -> DeploymentSpec:
    spec = DeploymentSpec(
        deployment_id=f"{ENDPOINT}/deployments/{name}",
        endpoint_id=ENDPOINT,
        endpoint_name="bench",
        name=name,
        code_dir=code_dir,
        scoring_script="score.py",
        model_dir=None,
    )
    return replace(spec, **changes)  # type: ignore[arg-type]


def write_wheel(folder: Path, name: str, version: str) -> None:
    """A one-module pure-Python wheel (PEP 427), written without any build tool."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}.py": f"VERSION = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = [
        f"{path},sha256={_digest(text.encode())},{len(text.encode())}"
        for path, text in files.items()
    ]
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / f"{dist}-{version}-py3-none-any.whl", "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def scenarios(work: Path) -> list[Scenario]:
    wheels = work / "wheels"
    write_wheel(wheels, "bench-cached", "1.0")
    cached = EnvironmentSpec(pip_requirements=("bench-cached==1.0", f"--find-links {wheels}"))

    def fresh(index: int) -> DeploymentSpec:
        version = f"1.0.{index}"
        write_wheel(wheels, "bench-fresh", version)
        environment = EnvironmentSpec(
            pip_requirements=(f"bench-fresh=={version}", f"--find-links {wheels}")
        )
        return base_spec(f"fresh-{index}", ECHO, environment=environment)

    model_dir = work / "model-1"
    subprocess.run(
        [sys.executable, str(SAMPLE / "train.py"), "--out", str(model_dir)],
        check=True,
        capture_output=True,
    )
    conda = environment_spec(
        {"properties": {"condaFile": (SAMPLE / "environment" / "conda.yaml").read_text()}}
    )
    return [
        Scenario("server environment", "-", lambda i: base_spec(f"server-{i}", ECHO)),
        Scenario(
            "cached environment",
            f"≤ {GOAL_CACHED_S:g} s",
            lambda i: base_spec(f"cached-{i}", ECHO, environment=cached),
        ),
        Scenario("fresh environment", "-", fresh),
        Scenario(
            "sklearn sample, cached environment",
            "-",
            lambda i: base_spec(
                f"sklearn-{i}", SAMPLE / "onlinescoring", model_dir=model_dir, environment=conda
            ),
        ),
    ]


async def deploy_seconds(backend: LocalBackend, spec: DeploymentSpec) -> float:
    started = time.perf_counter()
    await backend.apply(spec)
    while True:
        status = backend.status(spec.deployment_id)
        if status.state is DeploymentState.SUCCEEDED:
            elapsed = time.perf_counter() - started
            break
        if status.state is DeploymentState.FAILED:
            raise SystemExit(f"{spec.name} failed: {status.reason}")
        await asyncio.sleep(0.01)
    await backend.remove(spec.deployment_id)
    return elapsed


async def run(repeats: int, work: Path) -> list[Result]:
    db = Database.connect(f"sqlite:///{work / 'state.db'}")
    db.migrate()
    backend = LocalBackend(
        work / "data", ResourceStore(db), drain_delay=0.0, pip_options=("--no-index",)
    )
    results: list[Result] = []
    try:
        for scenario in scenarios(work):
            # One unmeasured deployment first: it builds the cached environments and warms the
            # page cache, as on a server that has been up for a while.
            await deploy_seconds(backend, scenario.spec(0))
            seconds = [
                await deploy_seconds(backend, scenario.spec(i)) for i in range(1, repeats + 1)
            ]
            results.append(Result(scenario, seconds))
            print(f"{scenario.name}: " + ", ".join(f"{s:.2f}" for s in seconds), flush=True)
    finally:
        await backend.shutdown()
        db.dispose()
    return results


def table(results: Sequence[Result], repeats: int) -> str:
    lines = [
        f"{repeats} deployments per scenario, 1 instance each, Azure's default probe settings; "
        "seconds from apply to Succeeded.",
        "",
        "| scenario | median s | min s | max s | goal |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for result in results:
        median = statistics.median(result.seconds)
        goal = result.scenario.goal
        if goal != "-":
            goal += ": met" if median <= GOAL_CACHED_S else ": NOT met"
        lines.append(
            f"| {result.scenario.name} | {median:.2f} | {min(result.seconds):.2f} "
            f"| {max(result.seconds):.2f} | {goal} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="2 deployments per scenario")
    parser.add_argument("--record", action="store_true", help="write bench/RESULTS.md")
    args = parser.parse_args(argv)
    repeats = 2 if args.smoke else 5
    with tempfile.TemporaryDirectory(prefix="propylon-bench-deploy-") as work:
        results = asyncio.run(run(repeats, Path(work)))
    body = table(results, repeats)
    print()
    print(body)
    if args.record:
        command = "python bench/deploy/run.py" + (" --smoke" if args.smoke else "") + " --record"
        record("deploy", body, command)
        print("\nrecorded in bench/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
