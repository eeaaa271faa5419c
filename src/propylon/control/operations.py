"""Long-running operations as ARM runs them (reference §1.4, §6 item 3).

A mutating call records an :class:`~propylon.store.models.Operation` row (``InProgress``) in the
transaction that changes the resource, answers at once, and the work runs as an asyncio task on the
server loop. Clients follow one of two URLs on the control plane:

* ``Azure-AsyncOperation`` → ``…/locations/{loc}/mfeOperationsStatus/{id}``: always 200 with the
  status document ``{id, name, status, startTime, endTime?, error?}``; terminal statuses are
  ``Succeeded``, ``Failed`` and ``Canceled``.
* ``Location`` → ``…/locations/{loc}/mfeOperationResults/{id}``: 202 (with ``Retry-After``) while
  running; 200 with the status document when it succeeded; the ARM error body with the failure's
  status when it failed.

Operations on one resource run one after another (a delete also waits for its children), so the
runtime never sees two ``apply`` calls for one deployment at once; an operation that a newer one
on the same resource overtook is ``Canceled`` and leaves the resource state alone.

After a restart, :meth:`Operations.resume` restarts every operation left ``InProgress`` whose kind
has a handler (all work here is idempotent: it reads the desired state from the store), cancels the
overtaken ones and fails the rest with ``OperationInterrupted``.

Example::

    op = ops.create_in(session, endpoint_id, "endpoint.delete")
    ops.launch(op, endpoint_id, delete_work(endpoint_id, op))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, or_, select

from propylon.control.arm import PROVIDER, format_time
from propylon.errors import PropylonError
from propylon.store import Database, canonical, utcnow
from propylon.store.models import Operation, Resource

__all__ = [
    "ASYNC_OPERATION_TIMEOUT",
    "RETRY_AFTER_SECONDS",
    "SIDE_OPERATIONS",
    "LroUrls",
    "OperationCanceled",
    "OperationStatus",
    "Operations",
    "result_url",
    "status_url",
]

log = logging.getLogger("propylon.control.operations")

RETRY_AFTER_SECONDS = 1
# How long the status of a finished operation stays readable once nothing needs it any more.
OPERATION_RETENTION = timedelta(days=1)
ASYNC_OPERATION_TIMEOUT = "PT1H"

Handler = Callable[[Operation], Coroutine[Any, Any, None]]

# Operations that finish with their request and leave the resource's state alone.
SIDE_OPERATIONS = ("endpoint.regenerateKeys",)


class OperationCanceled(PropylonError):
    """Raised by work that a newer operation on the same resource made pointless."""

    status = 409
    code = "OperationCanceled"


class OperationStatus:
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELED = "Canceled"
    TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELED})


def _operations_path(subscription: str, location: str, collection: str, op_id: str) -> str:
    return (
        f"/subscriptions/{subscription}/providers/{PROVIDER}/locations/{location}"
        f"/{collection}/{op_id}"
    )


def status_url(base: str, subscription: str, location: str, op_id: str, api_version: str) -> str:
    """The ``Azure-AsyncOperation`` URL (absolute, on the control plane)."""
    path = _operations_path(subscription, location, "mfeOperationsStatus", op_id)
    return f"{base.rstrip('/')}{path}?api-version={api_version}"


def result_url(base: str, subscription: str, location: str, op_id: str, api_version: str) -> str:
    """The ``Location`` URL (absolute, on the control plane)."""
    path = _operations_path(subscription, location, "mfeOperationResults", op_id)
    return f"{base.rstrip('/')}{path}?api-version={api_version}"


@dataclass(frozen=True)
class LroUrls:
    """Where the client of one request polls: built from the URL it called (so the host matches
    the certificate it trusts) and its ``api-version``."""

    base: str
    subscription: str
    location: str
    api_version: str

    def status(self, op_id: str) -> str:
        return status_url(self.base, self.subscription, self.location, op_id, self.api_version)

    def result(self, op_id: str) -> str:
        return result_url(self.base, self.subscription, self.location, op_id, self.api_version)


class Operations:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._tasks: dict[str, tuple[str, asyncio.Task[None]]] = {}
        self._stopping = False
        self._last_start = datetime.min.replace(tzinfo=UTC)
        self._pruner: asyncio.Task[None] | None = None

    # --- records ----------------------------------------------------------------------------

    def create_in(self, session: Any, resource_id: str, kind: str, *, done: bool = False) -> str:
        """Record an operation inside the caller's transaction and return its id.

        ``done`` records one that finished with the request itself (e.g. regenerateKeys).
        """
        op_id = str(uuid.uuid4())
        # Strictly increasing start times order the operations of one resource (latest_for).
        now = max(utcnow(), self._last_start + timedelta(microseconds=1))
        self._last_start = now
        session.add(
            Operation(
                id=op_id,
                resource_id=canonical(resource_id),
                kind=kind,
                status=OperationStatus.SUCCEEDED if done else OperationStatus.IN_PROGRESS,
                error=None,
                started_at=now,
                ended_at=now if done else None,
            )
        )
        return op_id

    def get(self, op_id: str) -> Operation | None:
        with self._db.reader() as session:
            return session.get(Operation, op_id)

    def latest_for(self, resource_id: str) -> str | None:
        """The id of the newest operation on a resource: the one whose outcome counts."""
        with self._db.reader() as session:
            return session.scalar(
                select(Operation.id)
                .where(
                    Operation.resource_id == canonical(resource_id),
                    Operation.kind.not_in(SIDE_OPERATIONS),
                )
                .order_by(Operation.started_at.desc(), Operation.id.desc())
                .limit(1)
            )

    def count(self, resource_id: str, kinds: tuple[str, ...]) -> int:
        """How many operations of ``kinds`` a resource has had (a deployment's generation)."""
        with self._db.reader() as session:
            rows = session.scalars(
                select(Operation.id).where(
                    Operation.resource_id == canonical(resource_id), Operation.kind.in_(kinds)
                )
            )
            return len(list(rows))

    def prune(self, before: datetime) -> int:
        """Delete the operations that ended before ``before`` and that nothing reads any more:
        those of resources that no longer exist, and side operations (key regenerations). The
        others stay: a resource's newest operation decides its outcome, and how many writes a
        deployment has had numbers its generations."""
        gone = ~exists().where(Resource.id == Operation.resource_id)
        with self._db.transaction() as session:
            result = session.execute(
                delete(Operation)
                .where(
                    Operation.status.in_(OperationStatus.TERMINAL),
                    Operation.ended_at < before,
                    or_(gone, Operation.kind.in_(SIDE_OPERATIONS)),
                )
                .execution_options(synchronize_session=False)
            )
            return int(getattr(result, "rowcount", 0) or 0)

    def start_pruning(self) -> None:
        """Run :meth:`prune_forever` on the server loop until :meth:`stop`."""
        if self._pruner is None:
            self._pruner = asyncio.get_running_loop().create_task(
                self.prune_forever(), name="operation-pruning"
            )

    async def prune_forever(self, *, every: timedelta = timedelta(hours=1)) -> None:
        """:meth:`prune` what ended more than :data:`OPERATION_RETENTION` ago, every ``every``."""
        while True:
            await asyncio.sleep(every.total_seconds())
            try:
                pruned = await asyncio.to_thread(self.prune, utcnow() - OPERATION_RETENTION)
            except Exception:
                log.exception("pruning finished operations failed; retrying at the next interval")
                continue
            if pruned:
                log.info("finished operations pruned", extra={"rows": pruned})

    def is_latest(self, op_id: str, resource_id: str) -> bool:
        return self.latest_for(resource_id) == op_id

    def finish(self, op_id: str, status: str, error: dict[str, Any] | None = None) -> None:
        with self._db.transaction() as session:
            row = session.get(Operation, op_id, with_for_update=True)
            if row is None or row.status in OperationStatus.TERMINAL:
                return
            row.status = status
            row.error = error
            row.ended_at = utcnow()

    @staticmethod
    def document(op: Operation, op_path: str) -> dict[str, Any]:
        """The status document (reference §1.4; ``error`` only when it failed)."""
        doc: dict[str, Any] = {
            "id": op_path,
            "name": op.id,
            "status": op.status,
            "startTime": format_time(op.started_at),
        }
        if op.ended_at is not None:
            doc["endTime"] = format_time(op.ended_at)
            doc["percentComplete"] = 100.0
        if op.error:
            doc["error"] = {k: v for k, v in op.error.items() if k != "httpStatus"}
        return doc

    # --- tasks ------------------------------------------------------------------------------

    def launch(
        self, op_id: str, resource_id: str, work: Awaitable[None], *, after_children: bool = False
    ) -> None:
        """Run ``work`` after earlier operations on the resource (and, for a delete, below it)."""
        key = canonical(resource_id)
        before = [
            task
            for other, task in self._tasks.values()
            if other == key or (after_children and other.startswith(key + "/"))
        ]
        task = asyncio.get_running_loop().create_task(
            self._run(op_id, key, before, work), name=f"operation-{op_id}"
        )
        self._tasks[op_id] = (key, task)
        task.add_done_callback(lambda _: self._tasks.pop(op_id, None))

    async def _run(
        self, op_id: str, key: str, before: list[asyncio.Task[None]], work: Awaitable[None]
    ) -> None:
        try:
            if before:
                await asyncio.wait(before)
            if not self.is_latest(op_id, key):
                self.finish(op_id, OperationStatus.CANCELED, _overtaken())
                _close(work)
                return
            await work
        except asyncio.CancelledError:
            _close(work)
            if not self._stopping:
                self.finish(op_id, OperationStatus.CANCELED)
            raise
        except OperationCanceled as exc:
            self.finish(op_id, OperationStatus.CANCELED, _error_of(exc))
        except PropylonError as exc:
            self.finish(op_id, OperationStatus.FAILED, _error_of(exc))
        except Exception as exc:
            log.exception("operation failed", extra={"operation": op_id})
            error = PropylonError(f"The operation failed unexpectedly ({type(exc).__name__}).")
            self.finish(op_id, OperationStatus.FAILED, _error_of(error))
        else:
            self.finish(op_id, OperationStatus.SUCCEEDED)

    async def wait_idle(self) -> None:
        """Wait until no operation task runs (tests, orderly shutdown)."""
        while self._tasks:
            await asyncio.wait([task for _, task in list(self._tasks.values())])

    async def stop(self) -> None:
        """Cancel running tasks without recording an outcome: the next start resumes them."""
        self._stopping = True
        tasks = [task for _, task in self._tasks.values()]
        if self._pruner is not None:
            tasks.append(self._pruner)
            self._pruner = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def resume(self, handlers: dict[str, Handler]) -> int:
        """Restart, cancel or fail what a previous process left ``InProgress``; return the count."""
        with self._db.reader() as session:
            pending = list(
                session.scalars(
                    select(Operation)
                    .where(Operation.status == OperationStatus.IN_PROGRESS)
                    .order_by(Operation.started_at, Operation.id)
                )
            )
        for op in pending:
            if op.id in self._tasks:
                continue
            handler = handlers.get(op.kind)
            if not self.is_latest(op.id, op.resource_id):
                self.finish(op.id, OperationStatus.CANCELED, _overtaken())
            elif handler is None:
                error = PropylonError(
                    "The server restarted while this operation was running; repeat the request.",
                    code="OperationInterrupted",
                )
                self.finish(op.id, OperationStatus.FAILED, _error_of(error))
            else:
                log.info("resuming operation", extra={"operation": op.id, "kind": op.kind})
                self.launch(op.id, op.resource_id, handler(op))
        return len(pending)


def _overtaken() -> dict[str, Any]:
    return {
        "code": "OperationCanceled",
        "message": "A newer operation on the same resource replaced this one.",
    }


def _error_of(exc: PropylonError) -> dict[str, Any]:
    return {**exc.body()["error"], "httpStatus": exc.status}


def _close(work: Awaitable[None]) -> None:
    """Close a coroutine that will never be awaited (no 'never awaited' warning)."""
    if isinstance(work, Coroutine):
        work.close()
