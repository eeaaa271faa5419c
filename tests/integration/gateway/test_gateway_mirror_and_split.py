"""Traffic split over 2,000 requests, and mirror copies that never touch the live request."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
from gateway_harness import EchoInstance, InProcessGateway
from prometheus_client import generate_latest

from propylon.testing import wait_until

pytestmark = pytest.mark.slow


def mirror_count(gateway: InProcessGateway, endpoint: str, outcome: str) -> float:
    for line in generate_latest(gateway.ctx.metrics).decode().splitlines():
        if (
            line.startswith("propylon_gateway_mirror_requests_total{")
            and f'endpoint="{endpoint}"' in line
            and f'outcome="{outcome}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def routed(gateway: InProcessGateway, endpoint: str, key: str, *deployments: str) -> None:
    """Wait until the gateway's table has the endpoint and each of its deployments."""
    for deployment in deployments:
        headers = {"authorization": f"Bearer {key}", "azureml-model-deployment": deployment}
        wait_until(
            lambda headers=headers: (
                httpx.post(
                    f"{gateway.url}/endpoints/{endpoint}/score", headers=headers, json={}
                ).status_code
                not in (401, 404)  # keys are written after the endpoint
            ),
            timeout=30,
        )


def test_traffic_split_is_honoured_within_3_points_over_2000_requests(
    gateway: InProcessGateway, instances: dict[str, EchoInstance]
) -> None:
    seed = gateway.seed
    seed.endpoint("split", traffic={"blue": 80, "green": 20}, keys=("split-1", "split-2"))
    seed.deployment("split", "blue", instances=[instances["fast"].url], max_concurrent=8)
    seed.deployment("split", "green", instances=[instances["fast2"].url], max_concurrent=8)
    routed(gateway, "split", "split-1", "blue", "green")
    seen: Counter[str] = Counter()
    with httpx.Client(timeout=30) as client:
        for _ in range(2000):
            answer = client.post(
                f"{gateway.url}/endpoints/split/score",
                headers={"authorization": "Bearer split-1"},
                content=b"{}",
            )
            assert answer.status_code == 200
            seen[answer.headers["azureml-model-deployment"]] += 1
    assert abs(seen["blue"] / 2000 * 100 - 80) <= 3, seen
    assert abs(seen["green"] / 2000 * 100 - 20) <= 3, seen


@pytest.mark.parametrize(
    ("mirror_instance", "outcome"), [("slow", "200"), ("failing", "500")], ids=["sleeps", "fails"]
)
def test_a_mirror_deployment_that_sleeps_or_fails_leaves_the_live_request_alone(
    gateway: InProcessGateway,
    instances: dict[str, EchoInstance],
    mirror_instance: str,
    outcome: str,
) -> None:
    name = f"mirror-{mirror_instance}"
    seed = gateway.seed
    seed.endpoint(name, traffic={"blue": 100}, mirror={"shadow": 50}, keys=(name, name + "-2"))
    seed.deployment(name, "blue", instances=[instances["fast"].url], max_concurrent=8)
    seed.deployment(name, "shadow", instances=[instances[mirror_instance].url], max_concurrent=4)
    routed(gateway, name, name, "blue", "shadow")
    with httpx.Client(timeout=30) as client:
        for _ in range(40):
            before = mirror_count(gateway, name, outcome)
            answer = client.post(
                f"{gateway.url}/endpoints/{name}/score",
                headers={"authorization": f"Bearer {name}"},
                json={"live": True},
            )
            assert answer.status_code == 200
            assert answer.json() == {"live": True}
            assert answer.headers["azureml-model-deployment"] == "blue"
            if mirror_instance == "slow" and mirror_count(gateway, name, "dropped_busy") == 0:
                # The copy sleeps for a second on the mirror: the live answer came back first.
                assert mirror_count(gateway, name, outcome) == before
    wait_until(lambda: mirror_count(gateway, name, outcome) >= 1, timeout=15)


def test_a_request_targeted_by_header_is_not_mirrored(
    gateway: InProcessGateway, instances: dict[str, EchoInstance]
) -> None:
    seed = gateway.seed
    seed.endpoint("mirror-header", traffic={"blue": 100}, mirror={"shadow": 50}, keys=("mh", "mh2"))
    seed.deployment("mirror-header", "blue", instances=[instances["fast"].url], max_concurrent=8)
    seed.deployment("mirror-header", "shadow", instances=[instances["fast2"].url], max_concurrent=8)
    routed(gateway, "mirror-header", "mh", "blue", "shadow")
    baseline = mirror_count(gateway, "mirror-header", "200")
    wait_until(lambda: mirror_count(gateway, "mirror-header", "200") == baseline, timeout=5)
    baseline = mirror_count(gateway, "mirror-header", "200")
    with httpx.Client(timeout=30) as client:
        for target in ("blue", "shadow") * 20:
            answer = client.post(
                f"{gateway.url}/endpoints/mirror-header/score",
                headers={"authorization": "Bearer mh", "azureml-model-deployment": target},
                json={},
            )
            assert answer.headers["azureml-model-deployment"] == target
        # Then one unrouted request per round: its copy is the only one that may arrive.
        for _ in range(20):
            client.post(
                f"{gateway.url}/endpoints/mirror-header/score",
                headers={"authorization": "Bearer mh"},
                json={},
            )
    wait_until(lambda: mirror_count(gateway, "mirror-header", "200") > baseline, timeout=10)
    assert mirror_count(gateway, "mirror-header", "200") - baseline <= 20
