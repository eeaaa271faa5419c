"""The gateway in front of a Ray-backed deployment: auth and routing as for local instances.

The gateway is the real one (``create_gateway_app`` served by uvicorn, as ``propylon server``
serves it; the in-process harness of the gateway's own integration tests), following the store
in which the Ray backend publishes the deployment's replicas.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ray_support import PAYLOAD, SAMPLE, eventually, make_backend, make_spec, settled

from propylon.runtime import DeploymentState, instance_set_id
from propylon.runtime.ray_cluster import LocalRayHead

pytest.importorskip("ray.serve", reason="Ray Serve is not installed: pip install 'propylon[ray]'")

# The gateway tests' harness (an in-process gateway on a real store), shared rather than copied.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway"))
from gateway_harness import InProcessGateway

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[InProcessGateway]:
    running = InProcessGateway.start(tmp_path / "gateway")
    try:
        yield running
    finally:
        running.stop()


async def test_gateway_scores_a_ray_deployment_with_its_key_and_routes_by_traffic(
    ray_head: LocalRayHead, gateway: InProcessGateway, trained_model: Path, tmp_path: Path
) -> None:
    seed = gateway.seed
    endpoint_id = seed.endpoint(
        "ray-endpoint", traffic={"blue": 100}, keys=("primary-key", "secondary-key")
    )
    deployment_id = seed.deployment("ray-endpoint", "blue", max_concurrent=2)
    spec = make_spec(
        "blue",
        SAMPLE / "onlinescoring",
        model_dir=trained_model,
        instance_count=2,
        deployment_id=deployment_id,
        endpoint_id=endpoint_id,
        endpoint_name="ray-endpoint",
    )
    backend = make_backend(ray_head, gateway.ctx.resources, tmp_path / "data")
    try:
        await backend.apply(spec)
        assert (await settled(backend, deployment_id)).state is DeploymentState.SUCCEEDED
        row = await eventually(lambda: gateway.ctx.resources.get(instance_set_id(deployment_id)))
        assert [item["url"] for item in row.body["instances"]] == [
            backend.proxy_url + "/ray-endpoint_blue"
        ] * 2

        url = f"{gateway.url}/endpoints/ray-endpoint/score"
        async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
            # The gateway follows the store through its change feed (within a second or so),
            # and Serve's proxy routes to a new application a moment after it reports RUNNING.
            seen: list[int] = []
            deadline = time.monotonic() + 30
            while True:
                response = await client.post(
                    url, json=PAYLOAD, headers={"authorization": "Bearer primary-key"}
                )
                seen.append(response.status_code)
                if response.status_code == 200 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            assert response.status_code == 200, f"statuses while waiting: {seen[-20:]}"
            assert response.headers["azureml-model-deployment"] == "blue"
            assert len(response.json()) == 2
            refused = await client.post(
                url, json=PAYLOAD, headers={"authorization": "Bearer not-the-key"}
            )
            assert refused.status_code == 401
    finally:
        await backend.remove(deployment_id)
        await backend.shutdown()
