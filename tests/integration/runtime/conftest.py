"""Fixtures for the runtime with real instance processes: a store, a backend with fast timings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from propylon.runtime import LocalBackend, RestartPolicy
from propylon.store import Database, ResourceStore

# Short back-off so that crash loops show within seconds; pip never reaches for an index.
FAST_RESTARTS = RestartPolicy(initial_delay=0.2, max_delay=1.0, crash_loop_after=3)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.connect(f"sqlite:///{tmp_path / 'state.db'}")
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def resources(db: Database) -> ResourceStore:
    return ResourceStore(db)


@pytest.fixture
async def backend(tmp_path: Path, resources: ResourceStore) -> AsyncIterator[LocalBackend]:
    local = LocalBackend(
        tmp_path / "data",
        resources,
        restart_policy=FAST_RESTARTS,
        drain_delay=0.5,
        stop_timeout=10.0,
        pip_options=("--no-index",),
        scale_in_window=3,
    )
    try:
        yield local
    finally:
        await local.shutdown()
