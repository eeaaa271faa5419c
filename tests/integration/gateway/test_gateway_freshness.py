"""Changes in the store are in force on the gateway within a second, while requests flow."""

from __future__ import annotations

import httpx
import pytest
from gateway_harness import EchoInstance, InProcessGateway, flowing

from propylon.testing import wait_until

pytestmark = pytest.mark.slow

USER = "3c2a1f4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"


def status(url: str, headers: dict[str, str]) -> int:
    return httpx.post(url, headers=headers, json={}, timeout=10).status_code


def test_a_regenerated_key_is_refused_and_the_new_one_accepted_while_requests_flow(
    gateway: InProcessGateway, instances: dict[str, EchoInstance]
) -> None:
    seed = gateway.seed
    seed.endpoint("fresh-key", traffic={"blue": 100}, keys=("old-primary", "secondary"))
    seed.deployment("fresh-key", "blue", instances=[instances["fast"].url], max_concurrent=8)
    url = f"{gateway.url}/endpoints/fresh-key/score"
    wait_until(lambda: status(url, {"authorization": "Bearer old-primary"}) == 200, timeout=10)
    with flowing(url, {"authorization": "Bearer old-primary"}, until=401) as statuses:
        wait_until(lambda: len(statuses) > 5, timeout=10)
        seed.keys("fresh-key", "new-primary", "secondary")
        wait_until(lambda: statuses[-1] == 401, timeout=2)
    assert set(statuses) <= {200, 401}
    assert statuses.index(401) > 0
    assert status(url, {"authorization": "Bearer new-primary"}) == 200
    assert status(url, {"authorization": "Bearer secondary"}) == 200


def test_switching_the_auth_mode_while_requests_flow(
    gateway: InProcessGateway, instances: dict[str, EchoInstance]
) -> None:
    seed, access = gateway.seed, gateway.access
    endpoint_id = seed.endpoint("fresh-mode", traffic={"blue": 100}, keys=("mode-key", "mode-2"))
    seed.deployment("fresh-mode", "blue", instances=[instances["fast"].url], max_concurrent=8)
    access.grant_score(USER, endpoint_id)
    token = access.identity_token(USER)
    url = f"{gateway.url}/endpoints/fresh-mode/score"
    wait_until(lambda: status(url, {"authorization": "Bearer mode-key"}) == 200, timeout=10)
    assert status(url, {"authorization": f"Bearer {token}"}) == 401
    with flowing(url, {"authorization": "Bearer mode-key"}, until=401) as statuses:
        wait_until(lambda: len(statuses) > 5, timeout=10)
        seed.update_endpoint("fresh-mode", authMode="AADToken")
        wait_until(lambda: statuses[-1] == 401, timeout=2)
    assert set(statuses) <= {200, 401}
    assert status(url, {"authorization": f"Bearer {token}"}) == 200


def test_a_deleted_role_assignment_is_refused_while_requests_flow(
    gateway: InProcessGateway, instances: dict[str, EchoInstance]
) -> None:
    seed, access = gateway.seed, gateway.access
    endpoint_id = seed.endpoint("fresh-rbac", auth_mode="AADToken", traffic={"blue": 100})
    seed.deployment("fresh-rbac", "blue", instances=[instances["fast"].url], max_concurrent=8)
    assignment = access.grant_score(USER, endpoint_id)
    headers = {"authorization": f"Bearer {access.identity_token(USER)}"}
    url = f"{gateway.url}/endpoints/fresh-rbac/score"
    wait_until(lambda: status(url, headers) == 200, timeout=10)
    with flowing(url, headers, until=403) as statuses:
        wait_until(lambda: len(statuses) > 5, timeout=10)
        # What the control plane does on DELETE …/roleAssignments/{id}: the policy changes and the
        # deletion is recorded in the change feed, which drops the gateway's cached verdicts.
        access.remove_assignment(assignment)
        gateway.record_change("roleassignments", assignment)
        wait_until(lambda: statuses[-1] == 403, timeout=2)
    assert set(statuses) <= {200, 403}


def test_new_instances_are_routed_and_removed_ones_are_not(
    gateway: InProcessGateway, instances: dict[str, EchoInstance]
) -> None:
    seed = gateway.seed
    seed.endpoint("fresh-scale", traffic={"blue": 100}, keys=("scale-1", "scale-2"))
    seed.deployment("fresh-scale", "blue")
    url = f"{gateway.url}/endpoints/fresh-scale/score"
    headers = {"authorization": "Bearer scale-1"}
    wait_until(lambda: status(url, headers) == 503, timeout=10)
    seed.instances("fresh-scale", "blue", [instances["fast"].url], max_concurrent=8)
    wait_until(lambda: status(url, headers) == 200, timeout=2)
    seed.instances("fresh-scale", "blue", [])
    wait_until(lambda: status(url, headers) == 503, timeout=2)
