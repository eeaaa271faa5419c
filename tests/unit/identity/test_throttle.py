"""Failed sign-ins: sliding windows per account and per address."""

from __future__ import annotations

import pytest
from identity_support import FakeClock

from propylon.errors import OAuthError
from propylon.identity.throttle import SignInLimit, SignInThrottle


@pytest.fixture
def throttle(clock: FakeClock) -> SignInThrottle:
    return SignInThrottle(
        per_account=SignInLimit(3, 60.0), per_address=SignInLimit(5, 300.0), clock=clock
    )


def fail(
    throttle: SignInThrottle, account: str | None, address: str | None, times: int = 1
) -> None:
    for _ in range(times):
        throttle.record(account=account, address=address, success=False)


def test_an_account_locks_after_its_limit_and_unlocks_as_the_window_slides(
    throttle: SignInThrottle, clock: FakeClock
) -> None:
    fail(throttle, "app", "10.0.0.1", 2)
    throttle.check(account="app", address="10.0.0.2")
    clock.advance(30)
    fail(throttle, "app", "10.0.0.2")
    with pytest.raises(OAuthError) as caught:
        throttle.check(account="APP", address="10.0.0.3")
    assert (caught.value.code, caught.value.status) == ("slow_down", 429)
    assert caught.value.headers["Retry-After"] == "30"
    clock.advance(30)
    throttle.check(account="app", address="10.0.0.3")  # the first two failures left the window


def test_an_address_locks_across_accounts(throttle: SignInThrottle) -> None:
    for name in "abcde":
        fail(throttle, name, "10.0.0.9")
    assert throttle.retry_after(account="f", address="10.0.0.9") == 300
    assert throttle.retry_after(account="f", address="10.0.0.8") == 0


def test_success_clears_the_account_but_not_the_address(throttle: SignInThrottle) -> None:
    fail(throttle, "app", "10.0.0.1", 2)
    throttle.record(account="app", address="10.0.0.1", success=True)
    fail(throttle, "app", "10.0.0.1", 2)
    throttle.check(account="app", address="10.0.0.1")
    fail(throttle, "app", "10.0.0.1")
    assert throttle.retry_after(account="other", address="10.0.0.1") == 300


def test_limits_must_be_sensible() -> None:
    with pytest.raises(ValueError, match="at least one"):
        SignInLimit(0, 10)
