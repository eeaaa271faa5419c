"""The failed-authentication throttle counts the connection's peer: an ``X-Forwarded-For`` header,
even from a loopback client, does not let a client spread its failures over invented addresses."""

from __future__ import annotations

import httpx
import pytest
from gateway_harness import EchoInstance, InProcessGateway

from propylon.testing import wait_until

pytestmark = pytest.mark.slow


def test_rotating_x_forwarded_for_does_not_escape_the_throttle(
    gateway: InProcessGateway, instances: dict[str, EchoInstance]
) -> None:
    gateway.seed.endpoint("xff", traffic={"blue": 100}, keys=("xff-1", "xff-2"))
    gateway.seed.deployment("xff", "blue", instances=[instances["fast"].url])
    url = f"{gateway.url}/endpoints/xff/score"
    good = {"Authorization": "Bearer xff-1"}
    wait_until(lambda: httpx.post(url, json={}, headers=good).status_code == 200, timeout=30)
    limit = gateway.ctx.services["gateway"].options.auth_failures.failures
    assert limit > 0

    with httpx.Client(timeout=10) as client:
        statuses = [
            client.post(
                url,
                json={},
                headers={"Authorization": "Bearer wrong", "X-Forwarded-For": f"198.51.100.{n}"},
            ).status_code
            for n in range(limit)
        ]
        assert statuses == [401] * limit
        # Another invented address: still the same peer, so the throttle refuses it...
        over = client.post(
            url,
            json={},
            headers={"Authorization": "Bearer wrong", "X-Forwarded-For": "203.0.113.77"},
        )
        assert over.status_code == 429
        assert over.json()["error"]["code"] == "TooManyFailedAuthentications"
        # ...and, before any credential is looked at, a valid key from that peer too.
        assert client.post(url, json={}, headers=good).status_code == 429
