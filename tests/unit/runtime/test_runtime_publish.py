"""Publishing ready instances to the store, where gateways read them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from propylon.runtime import InstanceAddress, InstanceSetPublisher, instance_set_id
from propylon.store import Database, ResourceStore

DEPLOYMENT = (
    "/subscriptions/s/resourceGroups/g/providers/X/workspaces/w/onlineEndpoints/e/deployments/Blue"
)


@pytest.fixture
def resources(tmp_path: Path) -> ResourceStore:
    db = Database.connect(f"sqlite:///{tmp_path / 'state.db'}")
    db.migrate()
    return ResourceStore(db)


def test_publish_writes_the_set_under_the_deployment(resources: ResourceStore) -> None:
    publisher = InstanceSetPublisher(resources)
    addresses = [InstanceAddress("blue-1-0", "http://127.0.0.1:40001", max_concurrent=2)]
    assert asyncio.run(publisher.publish(DEPLOYMENT, 3, addresses))
    row = resources.get(instance_set_id(DEPLOYMENT))
    assert row is not None
    assert (row.type, row.name) == ("instancesets", "current")
    assert row.parent == DEPLOYMENT.lower()
    assert row.body == {
        "instances": [
            {"instance_id": "blue-1-0", "url": "http://127.0.0.1:40001", "max_concurrent": 2}
        ],
        "generation": 3,
    }


def test_an_unchanged_set_is_not_written_again(resources: ResourceStore) -> None:
    publisher = InstanceSetPublisher(resources)
    addresses = [InstanceAddress("blue-1-0", "http://127.0.0.1:40001")]

    async def twice() -> tuple[bool, bool, str, str]:
        first = await publisher.publish(DEPLOYMENT, 1, addresses)
        etag = resources.get(instance_set_id(DEPLOYMENT)).etag  # type: ignore[union-attr]
        second = await publisher.publish(DEPLOYMENT.upper(), 1, addresses)
        again = resources.get(instance_set_id(DEPLOYMENT)).etag  # type: ignore[union-attr]
        return first, second, etag, again

    first, second, etag, again = asyncio.run(twice())
    assert (first, second) == (True, False)
    assert etag == again


def test_withdraw_deletes_the_set(resources: ResourceStore) -> None:
    publisher = InstanceSetPublisher(resources)

    async def publish_then_withdraw() -> None:
        await publisher.publish(DEPLOYMENT, 1, [InstanceAddress("a", "http://127.0.0.1:1")])
        await publisher.withdraw(DEPLOYMENT)
        await publisher.withdraw(DEPLOYMENT)  # idempotent

    asyncio.run(publish_then_withdraw())
    assert resources.get(instance_set_id(DEPLOYMENT)) is None
    assert publisher.published(DEPLOYMENT) is None
