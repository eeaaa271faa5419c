"""Operations left running at shutdown are resumed, canceled or failed at the next start."""

from __future__ import annotations

import functools
import uuid

from control_support import Arm, FakeBackend
from fastapi import FastAPI
from fastapi.testclient import TestClient

from conftest import open_context
from propylon.control import control_plane, start
from propylon.server.context import ServerContext
from propylon.store import canonical, utcnow
from propylon.store.models import Operation


def _restart(served: tuple[TestClient, FastAPI], ctx: ServerContext) -> ServerContext:
    """Stop the operation tasks as shutdown does, then start a new context on the same data."""
    client, app = served
    client.portal.call(control_plane(ctx).operations.stop)
    again = open_context(ctx.settings.data_dir)
    app.state.ctx = again
    client.portal.call(functools.partial(start, again))
    return again


def test_a_running_deployment_operation_is_resumed_after_a_restart(
    arm: Arm, backend: FakeBackend, served: tuple[TestClient, FastAPI]
) -> None:
    arm.create_endpoint("resume-ep")
    ids = arm.register_assets()
    arm.create_deployment("resume-ep", "blue", ids)
    backend.hold.add("slow")
    reply = arm.put(arm.deployment("resume-ep", "slow"), arm.deployment_body(ids))
    url = reply.headers["Azure-AsyncOperation"]

    again = _restart(served, arm.ctx)
    try:
        restarted = Arm(arm.client, again)
        assert restarted.wait(url)["status"] == "Succeeded"
        shown = restarted.get(restarted.deployment("resume-ep", "slow")).json()
        assert shown["properties"]["provisioningState"] == "Succeeded"
        runtime: FakeBackend = again.services["runtime"]
        applied = {spec.name for spec in runtime.applied}
        assert applied == {"slow", "blue"}  # resumed, and the running one restored
        assert [s.generation for s in runtime.applied if s.name == "blue"] == [1]
    finally:
        arm.client.portal.call(control_plane(again).operations.stop)
        again.db.dispose()


def test_unknown_or_overtaken_operations_are_failed_or_canceled(
    arm: Arm, served: tuple[TestClient, FastAPI]
) -> None:
    arm.create_endpoint("orphan-ep")
    rid = canonical(arm.endpoint("orphan-ep"))
    ops = [str(uuid.uuid4()) for _ in range(3)]
    with arm.ctx.db.transaction() as session:
        for op_id, kind in zip(
            ops, ("endpoint.update", "endpoint.update", "endpoint.mystery"), strict=True
        ):
            session.add(
                Operation(
                    id=op_id,
                    resource_id=rid,
                    kind=kind,
                    status="InProgress",
                    error=None,
                    started_at=utcnow(),
                    ended_at=None,
                )
            )
    again = _restart(served, arm.ctx)
    try:
        operations = control_plane(again).operations
        arm.client.portal.call(operations.wait_idle)
        statuses = [operations.get(op_id) for op_id in ops]
        assert [op.status for op in statuses if op] == ["Canceled", "Canceled", "Failed"]
        last = statuses[2]
        assert last is not None
        assert last.error is not None
        assert last.error["code"] == "OperationInterrupted"
    finally:
        again.db.dispose()
