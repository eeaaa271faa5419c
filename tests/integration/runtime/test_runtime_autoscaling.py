"""Target-utilization autoscaling with real load: out under a slow model's load, in when idle."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import httpx
import pytest
from runtime_support import EXAMPLES, eventually, make_spec, settled

from propylon.runtime import DeploymentState, LocalBackend, ScaleSettings

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

AUTOSCALE = ScaleSettings(
    scale_type="TargetUtilization",
    min_instances=1,
    max_instances=3,
    polling_interval=0.3,
    target_utilization_percentage=50,
)


async def test_scales_out_under_load_and_back_in_when_idle(backend: LocalBackend) -> None:
    spec = make_spec(
        "blue",
        EXAMPLES / "echo",
        scale=AUTOSCALE,
        environment_variables={"ECHO_SLEEP_SECONDS": "0.2"},
    )
    await backend.apply(spec)
    assert (await settled(backend, spec.deployment_id)).state is DeploymentState.SUCCEEDED
    assert backend.status(spec.deployment_id).desired == 1
    [first] = backend.addresses(spec.deployment_id)
    async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
        stats = await client.get(first.url + "/_propylon/stats")
        if stats.status_code == 404:
            pytest.skip("the inference server does not report its load on GET /_propylon/stats")

        turn = itertools.count()
        failures: list[int] = []

        async def load() -> None:
            while True:
                addresses = backend.addresses(spec.deployment_id)
                url = addresses[next(turn) % len(addresses)].url
                response = await client.post(url + "/score", json={"x": 1})
                if response.status_code != 200:
                    failures.append(response.status_code)

        # Four requests at a time against one slot per instance at a 50 % target: 3 instances.
        workers = [asyncio.ensure_future(load()) for _ in range(4)]
        try:
            await eventually(lambda: backend.status(spec.deployment_id).desired == 3, within=15)
            await eventually(lambda: backend.status(spec.deployment_id).ready == 3, within=15)
        finally:
            for worker in workers:
                worker.cancel()
            for worker in workers:
                with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                    await worker
    assert failures == []

    await eventually(lambda: backend.status(spec.deployment_id).desired == 1, within=15)
    await eventually(lambda: len(backend.instances(spec.deployment_id)) == 1, within=15)
    assert backend.status(spec.deployment_id).state is DeploymentState.SUCCEEDED
