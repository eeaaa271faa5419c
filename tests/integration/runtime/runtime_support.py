"""Helpers for the runtime's integration tests: specs with fast probes, waiting, a gateway stand-in,
a tiny wheel built without any build tool."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import textwrap
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from propylon.runtime import (
    DeploymentSpec,
    DeploymentState,
    DeploymentStatus,
    LocalBackend,
    ProbeSettings,
    instance_set_id,
)
from propylon.store import ChangeFeed, Database, ResourceStore

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"
ENDPOINT = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/"
    "Microsoft.MachineLearningServices/workspaces/ws/onlineEndpoints/my-endpoint"
)
FAST_PROBE = ProbeSettings(
    initial_delay=0.5, period=0.5, timeout=2.0, success_threshold=1, failure_threshold=3
)
# Readiness is polled quickly until the first pass anyway; a long deadline (30 s) keeps a slow
# start on a loaded machine (importing scikit-learn on 2 busy cores) from counting as a failure.
READINESS = ProbeSettings(
    initial_delay=0.5, period=0.5, timeout=2.0, success_threshold=1, failure_threshold=60
)


def write_app(folder: Path, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "score.py").write_text(textwrap.dedent(source))
    return folder


def make_spec(name: str, code_dir: Path | None, **changes: Any) -> DeploymentSpec:
    spec = DeploymentSpec(
        deployment_id=f"{ENDPOINT}/deployments/{name}",
        endpoint_id=ENDPOINT,
        endpoint_name="my-endpoint",
        name=name,
        code_dir=code_dir,
        scoring_script="score.py",
        model_dir=None,
        liveness=FAST_PROBE,
        readiness=READINESS,
    )
    return replace(spec, **changes)


async def eventually(
    predicate: Callable[[], Any], *, within: float = 30.0, interval: float = 0.05
) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {within}s")
        await asyncio.sleep(interval)


async def settled(
    backend: LocalBackend, deployment_id: str, *, within: float = 30.0
) -> DeploymentStatus:
    """Wait until the deployment is Succeeded or Failed; its status then."""

    def done() -> DeploymentStatus | None:
        status = backend.status(deployment_id)
        final = (DeploymentState.SUCCEEDED, DeploymentState.FAILED)
        return status if status.state in final else None

    try:
        status: DeploymentStatus = await eventually(done, within=within)
    except TimeoutError:
        raise AssertionError(f"not settled: {backend.status(deployment_id)}") from None
    return status


class FollowingGateway:
    """What a gateway replica does with instance sets: follow the change feed, round-robin."""

    def __init__(self, db: Database, resources: ResourceStore, deployment_id: str) -> None:
        self._resources = resources
        self._deployment_id = deployment_id
        self._feed = ChangeFeed(db, interval=0.2)
        self._feed.subscribe(lambda changes: self.reload())
        self._turn = itertools.count()
        self.instances: list[dict[str, Any]] = []

    def reload(self) -> None:
        row = self._resources.get(instance_set_id(self._deployment_id))
        self.instances = list(row.body["instances"]) if row is not None else []

    def pick(self) -> str:
        instances = self.instances
        return str(instances[next(self._turn) % len(instances)]["url"])

    async def run(self) -> None:
        self._feed.prime()
        self.reload()
        await self._feed.run()


def build_wheel(folder: Path, name: str, version: str, modules: dict[str, str]) -> Path:
    """A pure-Python wheel (PEP 427) written directly: no setuptools, no network."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = {f"{module}.py": textwrap.dedent(source) for module, source in modules.items()}
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    files[f"{info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: propylon-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    records: Sequence[str] = [
        f"{path},sha256={_digest(text.encode())},{len(text.encode())}"
        for path, text in files.items()
    ]
    files[f"{info}/RECORD"] = "\n".join([*records, f"{info}/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
