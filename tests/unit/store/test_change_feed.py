"""The change feed on SQLite and PostgreSQL: revisions in commit order, pruning, and the reset a
follower gets when the changes it had not read were pruned."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import timedelta

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from propylon.store import RESET, ChangeFeed, Database, ResourceStore, ResourceWrite, utcnow
from propylon.store.models import Change

WS = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database.connect(database_url)
    database.migrate()
    yield database
    database.dispose()


def write(db: Database, name: str) -> None:
    ResourceStore(db).put(
        ResourceWrite(f"{WS}/onlineEndpoints/{name}", WS, "onlineEndpoints", name, {})
    )


def key(name: str) -> str:
    return f"{WS}/onlineendpoints/{name}".lower()


class Seen:
    def __init__(self, feed: ChangeFeed) -> None:
        self.batches: list[list[tuple[str, str]]] = []
        feed.subscribe(self)

    def __call__(self, changes: Sequence[Change]) -> None:
        self.batches.append([(c.kind, c.key) for c in changes])

    @property
    def keys(self) -> list[str]:
        return [k for batch in self.batches for kind, k in batch if kind != RESET]

    @property
    def resets(self) -> int:
        return sum(kind == RESET for batch in self.batches for kind, _ in batch)


def test_a_transaction_that_commits_after_a_later_one_is_still_seen(db: Database) -> None:
    """Transaction A has written its change row and not yet committed when B writes and commits
    and a follower polls. Were B's row to get a higher id and commit first, the follower would
    move past A's id before A became visible, and never see A."""
    feed = ChangeFeed(db)
    feed.prime()
    seen = Seen(feed)
    b_done = threading.Event()
    others: list[threading.Thread] = []

    def transaction_b() -> None:
        with db.transaction() as session:
            db.record_change(session, "test", "b")
        b_done.set()

    def between_insert_and_commit(session: Session, _context: object) -> None:
        if others:
            return
        others.append(threading.Thread(target=transaction_b))
        others[0].start()
        b_done.wait(timeout=1.0)  # B is held back (in order) or has committed (out of order)
        feed.poll()

    with db.transaction() as session:
        db.record_change(session, "test", "a")
        event.listen(session, "after_flush_postexec", between_insert_and_commit)
    others[0].join()
    feed.poll()

    assert sorted(seen.keys) == ["a", "b"]
    assert feed.revision == db.revision()


def test_a_rolled_back_transaction_records_no_change(db: Database) -> None:
    def failing_write() -> None:
        with db.transaction() as session:
            db.record_change(session, "test", "lost")
            raise RuntimeError("the write failed")

    before = db.revision()
    with pytest.raises(RuntimeError):
        failing_write()
    with db.transaction() as session:
        db.record_change(session, "test", "kept")

    assert [c.key for c in db.changes_since(before)] == ["kept"]


def test_pruning_keeps_the_newest_change_so_the_revision_never_goes_back(db: Database) -> None:
    for name in "abcd":
        write(db, name)
    revision = db.revision()

    assert db.prune_changes(utcnow() + timedelta(seconds=1)) == 3
    assert db.revision() == revision
    assert db.pruned_through() == revision - 1
    write(db, "e")
    assert [c.key for c in db.changes_since(revision)] == [key("e")]
    assert db.prune_changes(utcnow() - timedelta(hours=1)) == 0  # nothing that old


def test_a_follower_behind_the_pruned_changes_gets_a_reset_first(db: Database) -> None:
    feed = ChangeFeed(db)
    feed.prime()
    seen = Seen(feed)
    write(db, "a")
    write(db, "b")
    db.prune_changes(utcnow() + timedelta(seconds=1))  # "a" is gone before the follower read it
    write(db, "c")

    feed.poll()

    assert seen.batches == [
        [(RESET, "*"), ("onlineendpoints", key("b")), ("onlineendpoints", key("c"))]
    ]
    assert feed.revision == db.revision()


def test_a_follower_that_kept_up_gets_no_reset(db: Database) -> None:
    feed = ChangeFeed(db)
    feed.prime()
    seen = Seen(feed)
    write(db, "a")
    write(db, "b")
    feed.poll()
    db.prune_changes(utcnow() + timedelta(seconds=1))
    write(db, "c")
    feed.poll()

    assert seen.resets == 0
    assert seen.keys == [key("a"), key("b"), key("c")]
