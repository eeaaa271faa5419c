"""Finished operations that nothing reads any more are pruned; those that decide a resource's
outcome or number a deployment's generations are kept."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from propylon.control.operations import Operations, OperationStatus
from propylon.store import Database, ResourceStore, ResourceWrite, utcnow

WS = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
KEPT = f"{WS}/onlineEndpoints/kept"
GONE = f"{WS}/onlineEndpoints/gone"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.connect(f"sqlite:///{tmp_path / 'state.db'}")
    database.migrate()
    yield database
    database.dispose()


def record(ops: Operations, db: Database, resource_id: str, kind: str, *, done: bool) -> str:
    with db.transaction() as session:
        return ops.create_in(session, resource_id, kind, done=done)


def test_only_finished_operations_nobody_reads_are_pruned(db: Database) -> None:
    ResourceStore(db).put(ResourceWrite(KEPT, WS, "onlineEndpoints", "kept", {}))
    ops = Operations(db)
    created = record(ops, db, KEPT, "endpoint.createOrUpdate", done=False)
    ops.finish(created, OperationStatus.SUCCEEDED)
    regenerated = record(ops, db, KEPT, "endpoint.regenerateKeys", done=True)
    running = record(ops, db, KEPT, "endpoint.createOrUpdate", done=False)
    of_deleted = record(ops, db, GONE, "endpoint.delete", done=True)
    still_running_of_deleted = record(ops, db, GONE, "endpoint.createOrUpdate", done=False)

    assert ops.prune(utcnow() - timedelta(hours=1)) == 0  # all too recent
    assert ops.prune(utcnow() + timedelta(seconds=1)) == 2

    assert ops.get(regenerated) is None
    assert ops.get(of_deleted) is None
    for op_id in (created, running, still_running_of_deleted):
        assert ops.get(op_id) is not None
    assert ops.count(KEPT, ("endpoint.createOrUpdate",)) == 2  # generations keep counting
    assert ops.latest_for(KEPT) == running
