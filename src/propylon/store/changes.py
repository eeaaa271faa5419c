"""The change feed's read side: every replica follows the ``changes`` table.

Writers append a row per committed write (``Database.record_change``); :class:`ChangeFeed` polls the
newest revision a few times a second and hands new rows to its subscribers, so caches (RBAC
decisions, the gateway's routing table, keys) drop stale entries within a second on every replica.
While the database is unreachable the feed keeps its last revision and retries; subscribers keep
serving from what they have.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from sqlalchemy.exc import SQLAlchemyError

from propylon.errors import ServiceUnavailable
from propylon.store.database import Database
from propylon.store.models import Change

__all__ = ["ChangeFeed", "Subscriber"]

log = logging.getLogger("propylon.store.changes")

Subscriber = Callable[[Sequence[Change]], None]


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
        if changes:
            self.revision = changes[-1].id
            for subscriber in self._subscribers:
                try:
                    subscriber(changes)
                except Exception:
                    log.exception("change feed subscriber failed")
        return changes

    async def run(self) -> None:
        """Poll forever (cancel the task to stop)."""
        while True:
            await asyncio.to_thread(self.poll)
            await asyncio.sleep(self._interval)
