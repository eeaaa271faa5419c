"""Garbage collection of built environments: by the backend, for what its deployments do not use."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from runtime_support import EXAMPLES, build_wheel, eventually, make_spec, settled, write_app

from propylon.runtime import (
    DeploymentState,
    EnvironmentBuilder,
    EnvironmentSpec,
    LocalBackend,
)
from propylon.store import ResourceStore

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

DAY = 86400.0
OLD = time.time() - 30 * DAY
STALE = "e" * 64
MARKER = ".propylon-environment.json"

WHEEL_APP = """
    import propylon_test_greeting as greeting

    def init():
        pass

    def run(raw_data):
        return {"greeting": greeting.GREETING}
"""


def greeting_environment(tmp_path: Path) -> EnvironmentSpec:
    wheels = tmp_path / "wheels"
    build_wheel(
        wheels, "propylon-test-greeting", "1.0", {"propylon_test_greeting": "GREETING = 'hi'"}
    )
    return EnvironmentSpec(
        pip_requirements=("propylon-test-greeting==1.0", f"--find-links {wheels}")
    )


def age(folder: Path) -> None:
    os.utime(folder / MARKER, (OLD, OLD))


def plant_stale(root: Path) -> Path:
    folder = root / STALE
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("{}\n")
    age(folder)
    return folder


async def test_pruned_environment_is_built_again_by_the_next_ensure(tmp_path: Path) -> None:
    builder = EnvironmentBuilder(tmp_path / "envs", pip_options=("--no-index",))
    spec = greeting_environment(tmp_path)
    built = await builder.ensure(spec, log=lambda line: None)
    assert built.root is not None
    age(built.root)

    [pruned] = builder.prune(set(), idle_seconds=7 * DAY)

    assert pruned.key == built.key
    assert pruned.complete
    assert pruned.size > 0
    assert not built.root.exists()
    lines: list[str] = []
    again = await builder.ensure(spec, log=lines.append)
    assert again == built
    assert f"Building environment {built.key[:12]} in {built.root}." in lines
    assert (built.root / MARKER).is_file()
    assert again.python.exists()


async def test_backend_removes_only_environments_no_deployment_uses(
    backend: LocalBackend, tmp_path: Path
) -> None:
    environment = greeting_environment(tmp_path)
    spec = make_spec("blue", write_app(tmp_path / "app", WHEEL_APP), environment=environment)
    await backend.apply(spec)
    assert (
        await settled(backend, spec.deployment_id, within=60)
    ).state is DeploymentState.SUCCEEDED
    root = backend.environments.root
    used = root / backend.environments.key(environment)
    age(used)
    stale = plant_stale(root)

    assert [pruned.key for pruned in await backend.collect_environments()] == [STALE]
    assert not stale.exists()
    assert (used / MARKER).stat().st_mtime > OLD + DAY  # in use: marked used

    await backend.remove(spec.deployment_id)
    age(used)
    assert [pruned.key for pruned in await backend.collect_environments()] == [used.name]
    assert not used.exists()


async def test_backend_cleans_up_after_its_first_apply(
    tmp_path: Path, resources: ResourceStore
) -> None:
    backend = LocalBackend(tmp_path / "data", resources, drain_delay=0, environment_gc_delay=0)
    stale = plant_stale(backend.environments.root)
    try:
        spec = make_spec("blue", EXAMPLES / "echo")
        await backend.apply(spec)
        await eventually(lambda: not stale.exists())
    finally:
        await backend.shutdown()


async def test_retention_0_keeps_every_environment(
    tmp_path: Path, resources: ResourceStore
) -> None:
    backend = LocalBackend(
        tmp_path / "data", resources, environment_retention=0, environment_gc_delay=0
    )
    stale = plant_stale(backend.environments.root)
    try:
        assert await backend.collect_environments() == []
        assert (stale / MARKER).is_file()
    finally:
        await backend.shutdown()
