"""Changing a running deployment: rolling updates, scaling in, removal — no request fails."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
from pathlib import Path

import httpx
import pytest
from runtime_support import EXAMPLES, FollowingGateway, eventually, make_spec, settled, write_app

from propylon.runtime import DeploymentState, LocalBackend, instance_set_id
from propylon.store import Database, ResourceStore

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

GENERATION_APP = """
    import os

    def init():
        pass

    def run(raw_data):
        return {"generation": os.environ["GENERATION"]}
"""


async def test_rolling_update_under_load_fails_no_request(
    backend: LocalBackend, db: Database, resources: ResourceStore, tmp_path: Path
) -> None:
    code = write_app(tmp_path / "app", GENERATION_APP)
    first = make_spec("blue", code, instance_count=2, environment_variables={"GENERATION": "1"})
    await backend.apply(first)
    assert (await settled(backend, first.deployment_id)).state is DeploymentState.SUCCEEDED
    old_pids = {i.pid for i in backend.instances(first.deployment_id)}

    gateway = FollowingGateway(db, resources, first.deployment_id)
    following = asyncio.ensure_future(gateway.run())
    await eventually(lambda: len(gateway.instances) == 2)
    second = dataclasses.replace(first, environment_variables={"GENERATION": "2"}, generation=2)
    answers: list[str] = []
    failures: list[str] = []
    try:
        async with httpx.AsyncClient(trust_env=False) as client:
            # At least 300 requests, and on until 20 in a row came from the new generation.
            for index in itertools.count():
                if index == 30:
                    await backend.apply(second)
                if (index >= 300 and answers[-20:] == ["2"] * 20) or index == 3000:
                    break
                url = gateway.pick()
                try:
                    response = await client.post(url + "/score", content=b"{}")
                    response.raise_for_status()
                    answers.append(response.json()["generation"])
                except httpx.HTTPError as exc:
                    failures.append(f"request {index} to {url}: {exc!r}")
                await asyncio.sleep(0.01)
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following

    assert failures == []
    assert len(answers) >= 300
    assert answers[:30] == ["1"] * 30
    assert answers[-20:] == ["2"] * 20
    status = await settled(backend, first.deployment_id)
    assert status.state is DeploymentState.SUCCEEDED
    assert (status.desired, status.ready) == (2, 2)
    published = resources.get(instance_set_id(first.deployment_id))
    assert published is not None
    assert published.body["generation"] == 2
    await eventually(lambda: {i.generation for i in backend.instances(first.deployment_id)} == {2})
    assert not old_pids & {i.pid for i in backend.instances(first.deployment_id)}


async def test_failed_update_keeps_the_old_generation_serving(backend: LocalBackend) -> None:
    spec = make_spec("blue", EXAMPLES / "echo")
    await backend.apply(spec)
    assert (await settled(backend, spec.deployment_id)).state is DeploymentState.SUCCEEDED
    [serving] = backend.addresses(spec.deployment_id)

    broken = dataclasses.replace(spec, environment_variables={"ECHO_FAIL": "init"}, generation=2)
    await backend.apply(broken)
    status = await settled(backend, spec.deployment_id, within=45)
    assert status.state is DeploymentState.FAILED
    assert status.reason is not None
    assert "echo model asked to fail" in status.reason
    assert backend.addresses(spec.deployment_id) == [serving]
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.post(serving.url + "/score", json={"still": "here"})
    assert response.json() == {"still": "here"}


async def test_scale_in_and_removal_let_in_flight_requests_finish(
    backend: LocalBackend, resources: ResourceStore
) -> None:
    spec = make_spec(
        "blue",
        EXAMPLES / "echo",
        instance_count=2,
        environment_variables={"ECHO_SLEEP_SECONDS": "1.5"},
    )
    await backend.apply(spec)
    assert (await settled(backend, spec.deployment_id)).state is DeploymentState.SUCCEEDED
    # Scale-in drains the newest instance: send it a slow request first.
    newest = max(backend.addresses(spec.deployment_id), key=lambda a: a.instance_id)
    async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
        in_flight = asyncio.ensure_future(client.post(newest.url + "/score", json={"n": 1}))
        await asyncio.sleep(0.3)
        await backend.apply(dataclasses.replace(spec, instance_count=1))
        await eventually(lambda: len(backend.addresses(spec.deployment_id)) == 1)
        assert newest not in backend.addresses(spec.deployment_id)
        response = await in_flight
        assert response.json() == {"n": 1}
        await eventually(lambda: len(backend.instances(spec.deployment_id)) == 1)

        [last] = backend.addresses(spec.deployment_id)
        in_flight = asyncio.ensure_future(client.post(last.url + "/score", json={"n": 2}))
        await asyncio.sleep(0.3)
        await backend.remove(spec.deployment_id)
        assert (await in_flight).json() == {"n": 2}
    assert resources.get(instance_set_id(spec.deployment_id)) is None
