"""The routing table built from a real store, and how it follows the change feed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from propylon.gateway import AuthMode, RoutingTables, TableLoader
from propylon.gateway.table import parse_duration
from propylon.gateway.testing import StoreSeeder
from propylon.store import ChangeFeed, Database, ResourceStore, ResourceWrite, Sealer, Vault

WS = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.connect(f"sqlite:///{tmp_path / 'state.db'}")
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def seed(db: Database) -> StoreSeeder:
    resources = ResourceStore(db)
    resources.put(ResourceWrite(WS, "/subscriptions/s1/resourceGroups/rg", "workspaces", "ws", {}))
    return StoreSeeder(resources, Vault(db, Sealer(os.urandom(32))), WS)


def following(seed: StoreSeeder, db: Database) -> tuple[RoutingTables, ChangeFeed]:
    tables = RoutingTables(TableLoader(seed.resources, seed.vault))
    feed = ChangeFeed(db)
    feed.prime()
    assert tables.reload()
    feed.subscribe(tables.on_changes)
    return tables, feed


def test_endpoints_are_loaded_with_everything_routing_needs(
    seed: StoreSeeder, db: Database
) -> None:
    seed.endpoint(
        "Scorer",
        auth_mode="AMLToken",
        traffic={"blue": 90, "green": 10},
        mirror={"shadow": 20},
        keys=("k1", "k2"),
    )
    seed.deployment(
        "Scorer",
        "blue",
        instances=["http://127.0.0.1:5001", "http://127.0.0.1:5002"],
        max_concurrent=4,
        request_timeout="PT1M30S",
        max_queue_wait="PT0.25S",
    )
    seed.deployment("Scorer", "green")
    tables, _ = following(seed, db)
    e = tables.current.endpoints["scorer"]
    assert e.name == "Scorer"
    assert e.auth_mode is AuthMode.AML_TOKEN
    assert e.keys == (b"k1", b"k2")
    assert e.arm_id == seed.endpoint_id("Scorer")
    assert (e.traffic.names, e.traffic.total, e.mirror.names) == (
        ("blue", "green"),
        100,
        ("shadow",),
    )
    blue = e.deployments["blue"]
    assert blue.limits.max_concurrent_requests_per_instance == 4
    assert blue.limits.request_timeout_s == 90.0
    assert blue.limits.max_queue_wait_s == 0.25
    assert [i.url for i in blue.instances] == ["http://127.0.0.1:5001", "http://127.0.0.1:5002"]
    assert [i.max_concurrent for i in blue.instances] == [4, 4]
    assert e.deployments["green"].instances == ()
    assert e.uid is None  # stored before uids


def test_an_endpoints_uid_is_loaded_for_its_aml_tokens(seed: StoreSeeder, db: Database) -> None:
    seed.endpoint("scorer", auth_mode="AMLToken", uid="4b0c5e1a-generation-1")
    tables, _ = following(seed, db)
    assert tables.current.endpoints["scorer"].uid == "4b0c5e1a-generation-1"


def test_a_regenerated_key_reaches_the_table_through_the_change_feed(
    seed: StoreSeeder, db: Database
) -> None:
    seed.endpoint("e1", keys=("old-primary", "secondary"))
    seed.endpoint("e2", keys=("other", "other2"))
    tables, feed = following(seed, db)
    untouched = tables.current.endpoints["e2"]
    seed.keys("e1", "new-primary", "secondary")
    feed.poll()
    assert tables.current.endpoints["e1"].keys == (b"new-primary", b"secondary")
    assert tables.current.endpoints["e2"] is untouched  # only the touched endpoint is reloaded


def test_auth_mode_traffic_and_instances_changes_are_applied(
    seed: StoreSeeder, db: Database
) -> None:
    seed.endpoint("e1", traffic={"blue": 100})
    seed.deployment("e1", "blue", instances=["http://127.0.0.1:5001"])
    tables, feed = following(seed, db)
    seed.update_endpoint("e1", authMode="AADToken", traffic={"blue": 0})
    seed.instances("e1", "blue", ["http://127.0.0.1:6001", "http://127.0.0.1:6002"])
    feed.poll()
    e = tables.current.endpoints["e1"]
    assert e.auth_mode is AuthMode.AAD_TOKEN
    assert e.traffic.names == ()
    assert len(e.deployments["blue"].instances) == 2


def test_a_deleted_endpoint_leaves_the_table(seed: StoreSeeder, db: Database) -> None:
    seed.endpoint("e1")
    seed.deployment("e1", "blue", instances=["http://127.0.0.1:5001"])
    tables, feed = following(seed, db)
    assert seed.resources.delete(seed.endpoint_id("e1"))
    feed.poll()
    assert "e1" not in tables.current.endpoints


def test_disable_local_auth_on_the_workspace_is_followed(seed: StoreSeeder, db: Database) -> None:
    seed.endpoint("e1")
    tables, feed = following(seed, db)
    assert not tables.current.endpoints["e1"].local_auth_disabled
    seed.resources.put(
        ResourceWrite(
            WS,
            "/subscriptions/s1/resourceGroups/rg",
            "workspaces",
            "ws",
            {"properties": {"disableLocalAuth": True}},
        )
    )
    feed.poll()
    assert tables.current.endpoints["e1"].local_auth_disabled


def test_an_unavailable_store_keeps_the_last_table_until_it_returns(
    seed: StoreSeeder, db: Database
) -> None:
    seed.endpoint("e1")
    tables, _ = following(seed, db)
    before = tables.current

    class Broken(TableLoader):
        def load(self, endpoint_id: str) -> Any:
            raise ConnectionError("store is away")

        def load_all(self) -> Any:
            raise ConnectionError("store is away")

    working = tables._loader
    tables._loader = Broken(seed.resources, seed.vault)
    tables.on_changes([_Change("onlineendpoints", seed.endpoint_id("e1").lower())])
    assert tables.current is before
    assert tables.stale
    assert not tables.refresh()
    tables._loader = working
    assert tables.refresh()
    assert not tables.stale
    assert "e1" in tables.current.endpoints


def test_an_endpoint_with_an_unknown_auth_mode_is_not_routed(
    seed: StoreSeeder, db: Database
) -> None:
    seed.endpoint("e1", auth_mode="Certificate")
    tables, _ = following(seed, db)
    assert "e1" not in tables.current.endpoints


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("PT5S", 5.0), ("PT0.5S", 0.5), ("PT1M30S", 90.0), ("PT1H", 3600.0), (None, 7.0), (250, 0.25)],
)
def test_iso_8601_durations(value: object, seconds: float) -> None:
    assert parse_duration(value, 7.0) == seconds


def test_a_malformed_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_duration("5 seconds", 1.0)


class _Change:
    def __init__(self, kind: str, key: str) -> None:
        self.kind, self.key = kind, key


def test_malformed_instance_entries_are_skipped_not_fatal(seed: StoreSeeder, db: Database) -> None:
    seed.endpoint("e1")
    deployment_id = seed.deployment("e1", "blue")
    body = {
        "instances": [
            {"instance_id": "good", "url": "http://127.0.0.1:5001", "max_concurrent": 2},
            {"instance_id": "no-address"},
            {"url": "http://127.0.0.1:5003"},
            "not an object",
        ],
        "generation": 3,
    }
    seed.resources.put(
        ResourceWrite(
            f"{deployment_id}/instanceSets/current", deployment_id, "instanceSets", "current", body
        )
    )
    tables, _ = following(seed, db)
    (instance,) = tables.current.endpoints["e1"].deployments["blue"].instances
    assert instance.instance_id == "good"


def test_an_instance_that_moves_gets_a_new_key(seed: StoreSeeder, db: Database) -> None:
    seed.endpoint("e1")
    seed.deployment("e1", "blue", instances=["http://127.0.0.1:5001"])
    tables, feed = following(seed, db)
    (before,) = tables.current.endpoints["e1"].deployments["blue"].instances
    seed.instances("e1", "blue", ["http://127.0.0.1:6001"])
    feed.poll()
    (after,) = tables.current.endpoints["e1"].deployments["blue"].instances
    assert before.instance_id == after.instance_id
    assert before.key != after.key  # its pooled connections are not reused for the new address
