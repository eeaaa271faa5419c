"""The failed-authentication throttle: 401s per (endpoint, address), then 429 before any check."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from gateway_support import call, deployment, endpoint, make_gateway, serving

from propylon.errors import ConfigurationError, TooManyRequests
from propylon.gateway import GatewayOptions
from propylon.gateway.throttle import AuthFailureLimit, FailedAuthThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_limit_locks_one_address_out_of_one_endpoint_until_the_window_passes() -> None:
    clock = Clock()
    throttle = FailedAuthThrottle(AuthFailureLimit(3, 60.0), clock=clock)
    for _ in range(3):
        throttle.check("e1", "203.0.113.7")
        throttle.record("e1", "203.0.113.7")
        clock.now += 1
    with pytest.raises(TooManyRequests) as refused:
        throttle.check("e1", "203.0.113.7")
    assert refused.value.code == "TooManyFailedAuthentications"
    assert refused.value.headers["Retry-After"] == "57"  # until the first failure is 60 s old
    throttle.check("e2", "203.0.113.7")  # another endpoint: open
    throttle.check("e1", "198.51.100.1")  # another address: open
    clock.now += 57
    throttle.check("e1", "203.0.113.7")  # the first failure left the window


def test_zero_switches_the_limit_off_and_an_unknown_address_is_not_counted() -> None:
    off = FailedAuthThrottle(AuthFailureLimit.parse("0"))
    for _ in range(100):
        off.record("e1", "203.0.113.7")
    off.check("e1", "203.0.113.7")
    on = FailedAuthThrottle(AuthFailureLimit(1, 60.0))
    on.record("e1", None)
    on.check("e1", None)


@pytest.mark.parametrize(
    ("text", "limit"), [("30/60", AuthFailureLimit(30, 60.0)), ("5", AuthFailureLimit(5, 60.0))]
)
def test_the_setting_reads_failures_per_seconds(text: str, limit: AuthFailureLimit) -> None:
    assert AuthFailureLimit.parse(text) == limit


@pytest.mark.parametrize("text", ["many", "-1/60", "3/0", "3/x"])
def test_a_malformed_setting_is_one_clear_error(text: str) -> None:
    with pytest.raises(ConfigurationError, match="PROPYLON_GATEWAY_AUTH_FAILURES"):
        AuthFailureLimit.parse(text)


def _from(app: Any, address: str) -> Any:
    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await app({**scope, "client": (address, 50123)}, receive, send)

    return wrapped


def test_the_gateway_answers_429_even_to_the_right_key_once_an_address_is_locked_out(
    tmp_path: Path,
) -> None:
    async def scenario() -> list[int]:
        options = GatewayOptions(auth_failures=AuthFailureLimit(3, 60.0))
        gateway = make_gateway(
            endpoint(deployments=[deployment("blue")]), tmp_path=tmp_path, options=options
        )
        statuses = []
        async with serving(gateway) as gw:
            guesser, neighbour = _from(gw, "203.0.113.7"), _from(gw, "198.51.100.1")
            for n in range(4):
                wrong = {"authorization": f"Bearer guess-{n}"}
                statuses.append(
                    (await call(guesser, "POST", "/endpoints/e1/score", headers=wrong)).status
                )
            right = {"authorization": "Bearer primary-key-e1"}
            locked = await call(guesser, "POST", "/endpoints/e1/score", headers=right)
            statuses.append(locked.status)
            assert locked.json()["error"]["code"] == "TooManyFailedAuthentications"
            assert int(locked.header("retry-after") or 0) >= 1
            statuses.append(
                (await call(neighbour, "POST", "/endpoints/e1/score", headers=right)).status
            )
        return statuses

    assert asyncio.run(scenario()) == [401, 401, 401, 429, 429, 200]
