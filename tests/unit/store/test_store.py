"""The store on SQLite and PostgreSQL: migrations, resources with ETags, change feed, vault."""

from __future__ import annotations

import pytest

from propylon.errors import PreconditionFailed
from propylon.store import (
    ChangeFeed,
    Database,
    MasterKey,
    ResourceStore,
    ResourceWrite,
    Sealer,
    UnsealError,
    Vault,
)

WS = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database.connect(database_url)
    database.migrate()
    yield database
    database.dispose()


def endpoint(name: str, body: dict[str, object] | None = None) -> ResourceWrite:
    return ResourceWrite(
        id=f"{WS}/onlineEndpoints/{name}",
        parent=WS,
        type="onlineEndpoints",
        name=name,
        body=body or {"name": name},
    )


def test_migrate_twice_is_a_no_op(db: Database) -> None:
    db.migrate()
    assert db.revision() == 0


def test_resource_ids_are_case_insensitive(db: Database) -> None:
    store = ResourceStore(db)
    store.put(endpoint("Ep1"))
    found = store.get(f"{WS.upper()}/ONLINEENDPOINTS/ep1")
    assert found is not None
    assert found.name == "Ep1"


def test_put_reports_created_then_replaced_and_changes_etag(db: Database) -> None:
    store = ResourceStore(db)
    first, created = store.put(endpoint("e1"))
    second, created_again = store.put(endpoint("e1", {"name": "e1", "v": 2}))
    assert created
    assert not created_again
    assert first.etag != second.etag
    assert store.get(f"{WS}/onlineEndpoints/e1").body["v"] == 2


def test_stale_if_match_is_refused_and_writes_nothing(db: Database) -> None:
    store = ResourceStore(db)
    first, _ = store.put(endpoint("e1"))
    store.put(endpoint("e1", {"name": "e1", "v": 2}), if_match=first.etag)
    with pytest.raises(PreconditionFailed):
        store.put(endpoint("e1", {"name": "e1", "v": 3}), if_match=first.etag)
    assert store.get(f"{WS}/onlineEndpoints/e1").body["v"] == 2


def test_if_match_star_requires_existence(db: Database) -> None:
    with pytest.raises(PreconditionFailed):
        ResourceStore(db).put(endpoint("new"), if_match="*")


def test_delete_removes_children(db: Database) -> None:
    store = ResourceStore(db)
    store.put(endpoint("e1"))
    child = f"{WS}/onlineEndpoints/e1/deployments/blue"
    store.put(ResourceWrite(child, f"{WS}/onlineEndpoints/e1", "deployments", "blue", {}))
    assert store.delete(f"{WS}/onlineEndpoints/e1")
    assert store.get(child) is None
    assert not store.delete(f"{WS}/onlineEndpoints/e1")


def test_children_lists_only_direct_children_of_the_type(db: Database) -> None:
    store = ResourceStore(db)
    store.put(endpoint("a"))
    store.put(endpoint("b"))
    names = [row.name for row in store.children(WS, "onlineendpoints")]
    assert names == ["a", "b"]
    assert store.children(WS, "deployments") == []


def test_change_feed_sees_every_write_in_order(db: Database) -> None:
    feed = ChangeFeed(db)
    feed.prime()
    seen: list[str] = []
    feed.subscribe(lambda changes: seen.extend(c.key for c in changes))
    store = ResourceStore(db)
    store.put(endpoint("a"))
    store.put(endpoint("b"))
    store.delete(f"{WS}/onlineEndpoints/a")
    feed.poll()
    a, b = f"{WS}/onlineendpoints/a".lower(), f"{WS}/onlineendpoints/b".lower()
    assert seen == [a, b, a]
    assert feed.revision == db.revision()


def test_vault_round_trip_and_ciphertext_is_not_plaintext(db: Database) -> None:
    vault = Vault(db, Sealer(MasterKey.generate().material))
    vault.put("endpoint/e1/primary", "very-secret-value")
    assert vault.get("endpoint/e1/primary") == "very-secret-value"
    with db.reader() as session:
        from propylon.store.models import SecretRow

        row = session.get(SecretRow, "endpoint/e1/primary")
        assert b"very-secret-value" not in row.ciphertext


def test_vault_with_another_master_key_cannot_open(db: Database) -> None:
    Vault(db, Sealer(MasterKey.generate().material)).put("s", "value")
    with pytest.raises(UnsealError):
        Vault(db, Sealer(MasterKey.generate().material)).get("s")
