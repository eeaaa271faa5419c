"""The change feed's read side: every replica follows the ``changes`` table.

Writers append a row per committed write (``Database.record_change``); :class:`ChangeFeed` polls the
newest revision a few times a second and hands new rows to its subscribers, so caches (RBAC
decisions, the gateway's routing table, keys) drop stale entries within a second on every replica.
While the database is unreachable the feed keeps its last revision and retries; subscribers keep
serving from what they have.

Old rows are pruned (:func:`prune_forever`, :meth:`Database.prune_changes`). A follower that was
cut off for longer than that cannot know what it missed: its next batch starts with a change of
kind :data:`RESET`, on which every subscriber reloads all it caches.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError

from propylon.errors import ServiceUnavailable
from propylon.store.database import Database
from propylon.store.models import Change

__all__ = ["CHANGE_RETENTION", "RESET", "ChangeFeed", "Subscriber", "prune_forever"]

log = logging.getLogger("propylon.store.changes")

Subscriber = Callable[[Sequence[Change]], None]

#: The kind of the change a follower gets first after it fell behind the pruned rows.
RESET = "reset"
#: How long change rows are kept: followers poll several times a second, so only one cut off
#: from the store for longer than this gets a :data:`RESET`.
CHANGE_RETENTION = timedelta(hours=1)


class ChangeFeed:
    def __init__(self, db: Database, *, interval: float = 0.2) -> None:
        self._db = db
        self._interval = interval
        self._subscribers: list[Subscriber] = []
        self.revision = 0
        self.healthy = True

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def prime(self) -> None:
        """Start from the current revision (callers load their snapshot right after)."""
        self.revision = self._db.revision()

    def poll(self) -> Sequence[Change]:
        """Fetch changes after the last seen revision and notify subscribers (blocking)."""
        try:
            changes = self._db.changes_since(self.revision)
        except (SQLAlchemyError, ServiceUnavailable) as exc:
            if self.healthy:
                log.warning("change feed lost the store", extra={"error": type(exc).__name__})
            self.healthy = False
            return ()
        if not self.healthy:
            log.info("change feed reconnected to the store")
            self.healthy = True
        if changes and changes[0].id > self.revision + 1 and self._missed():
            log.warning(
                "change feed fell behind the pruned changes; reloading everything",
                extra={"revision": self.revision, "next": changes[0].id},
            )
            changes = [Change(id=changes[0].id - 1, kind=RESET, key="*"), *changes]
        if changes:
            self.revision = changes[-1].id
            for subscriber in self._subscribers:
                try:
                    subscriber(changes)
                except Exception:
                    log.exception("change feed subscriber failed")
        return changes

    def _missed(self) -> bool:
        """Whether rows after our revision were pruned (ids also skip when a transaction rolls
        back, so a gap alone says nothing)."""
        try:
            return self._db.pruned_through() > self.revision
        except (SQLAlchemyError, ServiceUnavailable):
            return True  # cannot tell: reloading is safe

    async def run(self) -> None:
        """Poll forever (cancel the task to stop)."""
        while True:
            await asyncio.to_thread(self.poll)
            await asyncio.sleep(self._interval)


async def prune_forever(
    db: Database,
    *,
    keep: timedelta = CHANGE_RETENTION,
    every: timedelta = timedelta(minutes=10),
) -> None:
    """Delete change rows older than ``keep`` every ``every`` until cancelled (any replica may;
    the deletes are idempotent)."""
    while True:
        await asyncio.sleep(every.total_seconds())
        try:
            pruned = await asyncio.to_thread(db.prune_changes, datetime.now(UTC) - keep)
        except (SQLAlchemyError, ServiceUnavailable) as exc:
            log.warning("pruning the change feed failed", extra={"error": type(exc).__name__})
            continue
        if pruned:
            log.info("change feed pruned", extra={"rows": pruned})
