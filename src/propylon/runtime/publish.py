"""Where gateways learn which instances serve a deployment: its instance set in the store.

The set is an ARM-style child resource of the deployment (``{deployment id}/instanceSets/current``,
type ``instancesets``) whose body lists the instances that are ready right now::

    {"instances": [{"instance_id": "blue-1-0", "url": "http://127.0.0.1:40123",
                    "max_concurrent": 1}],
     "generation": 1}

Every write lands in the change feed, so every gateway replica, in this process or another,
routes to the new set within its polling interval; that is why the supervisor waits a moment
after withdrawing an instance before it stops it. Writes are serialised per deployment and an
unchanged set is not written again. Store calls are blocking (SQLAlchemy), so they run in a
worker thread, off the event loop. Example::

    publisher = InstanceSetPublisher(resources)
    await publisher.publish(spec.deployment_id, 1, [InstanceAddress("blue-1-0", url)])
    await publisher.withdraw(spec.deployment_id)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from propylon.runtime.base import InstanceAddress, instance_set_id
from propylon.store import ResourceStore, ResourceWrite, canonical

__all__ = ["InstanceSetPublisher", "instance_set_body"]


def instance_set_body(generation: int, instances: Sequence[InstanceAddress]) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    for address in instances:
        entry: dict[str, Any] = {
            "instance_id": address.instance_id,
            "url": address.url,
            "max_concurrent": address.max_concurrent,
        }
        if address.uds is not None:
            entry["uds"] = address.uds
            if address.node is not None:
                entry["node"] = address.node
        entries.append(entry)
    return {"instances": entries, "generation": generation}


class InstanceSetPublisher:
    def __init__(self, resources: ResourceStore) -> None:
        self._resources = resources
        self._written: dict[str, dict[str, Any]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def publish(
        self, deployment_id: str, generation: int, instances: Sequence[InstanceAddress]
    ) -> bool:
        """Write the set unless it is what was last written; whether a write happened.

        Store errors propagate (the supervisor logs them and publishes again on its next tick).
        """
        key = canonical(deployment_id)
        body = instance_set_body(generation, instances)
        async with self._lock(key):
            if self._written.get(key) == body:
                return False
            write = ResourceWrite(
                id=instance_set_id(deployment_id),
                parent=deployment_id,
                type="instancesets",
                name="current",
                body=body,
            )
            await asyncio.to_thread(self._resources.put, write)
            self._written[key] = body
            return True

    async def withdraw(self, deployment_id: str) -> None:
        """Remove the set: no gateway routes to the deployment's instances any more."""
        key = canonical(deployment_id)
        async with self._lock(key):
            self._written.pop(key, None)
            await asyncio.to_thread(self._resources.delete, instance_set_id(deployment_id))

    def published(self, deployment_id: str) -> dict[str, Any] | None:
        """The body last written for the deployment (what gateways see), if any."""
        return self._written.get(canonical(deployment_id))

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())
