"""A real local Ray head for the session, and a Ray backend per test on its Serve proxy."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from ray_support import SAMPLE, make_backend

from propylon.runtime.ray import RayBackend
from propylon.runtime.ray_cluster import LocalRayHead
from propylon.store import Database, ResourceStore


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def ray_head() -> Iterator[LocalRayHead]:
    """``ray start --head`` with 2 CPUs in a short temp dir; every process of it ended after."""
    why_not = LocalRayHead.unavailable()
    if why_not is not None:
        pytest.skip(f"Ray backend tests skipped: {why_not}")
    with LocalRayHead.start(num_cpus=2) as head:
        yield head


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample's own train.py, run into a fresh directory."""
    out = tmp_path_factory.mktemp("model-1")
    subprocess.run(
        [sys.executable, str(SAMPLE / "train.py"), "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


@pytest.fixture
def resources(tmp_path: Path) -> Iterator[ResourceStore]:
    database = Database.connect(f"sqlite:///{tmp_path / 'state.db'}")
    database.migrate()
    yield ResourceStore(database)
    database.dispose()


@pytest.fixture
async def backend(
    ray_head: LocalRayHead, resources: ResourceStore, tmp_path: Path
) -> AsyncIterator[RayBackend]:
    """A Ray backend with quick polling; whatever a test leaves deployed is deleted after it."""
    ray = make_backend(ray_head, resources, tmp_path / "data")
    try:
        yield ray
    finally:
        for deployment_id in ray.deployments():
            await ray.remove(deployment_id)
        await ray.shutdown()
