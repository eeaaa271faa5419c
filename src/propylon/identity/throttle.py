"""Rate limits on failed sign-ins: a sliding window per account and per source address.

Guessing a password or client secret must cost more than one scrypt per try. Two windows count
*failed* attempts:

- per **account** — the client id for client authentication, ``user:{upn}`` for a user's
  password (keying users by the shared public client id of the CLI would let one user's typos
  lock out everyone): by default 10 failures per minute;
- per **source address**: by default 30 failures per 5 minutes.

When either is full, every sign-in attempt for that key — right or wrong — is refused with
HTTP 429 and ``Retry-After`` (the seconds until the oldest failure leaves the window) before
any credential is checked, so a locked-out guesser learns nothing. The error code is RFC 8628's
``slow_down``, the one OAuth code at the token endpoint that means "too many attempts"; device
code pollers already back off on it. A success clears the account's failures (Entra's smart
lockout does the same); the address window is not cleared.

The price of a per-account limit is that anyone can lock an account out for one window by
failing on purpose; the window is short for that reason. Counts live in this process: with
several replicas each counts its own share. ``X-Forwarded-For`` is not trusted.

Example::

    throttle = SignInThrottle()
    throttle.check(account=client_id, address=ip)      # raises OAuthError slow_down / 429
    ok = credentials.verify_client_secret(client, secret)
    throttle.record(account=client_id, address=ip, success=ok)
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from propylon.errors import OAuthError

__all__ = ["SignInLimit", "SignInThrottle", "throttled"]

_MAX_KEYS = 100_000


@dataclass(frozen=True)
class SignInLimit:
    """At most ``failures`` failed attempts within ``window_s`` seconds."""

    failures: int
    window_s: float

    def __post_init__(self) -> None:
        if self.failures < 1 or self.window_s <= 0:
            raise ValueError("A sign-in limit needs at least one failure and a positive window.")


def throttled(retry_after: int) -> OAuthError:
    """The 429 answer of a throttled sign-in."""
    error = OAuthError(
        "slow_down",
        "Too many failed sign-in attempts for this account or address; "
        f"retry after {retry_after} seconds.",
        status=429,
    )
    error.headers["Retry-After"] = str(retry_after)
    return error


class SignInThrottle:
    """Sliding windows of failed sign-ins; thread-safe (the token endpoint runs in a pool)."""

    def __init__(
        self,
        *,
        per_account: SignInLimit = SignInLimit(10, 60.0),
        per_address: SignInLimit = SignInLimit(30, 300.0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_account = per_account
        self.per_address = per_address
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}

    def check(self, *, account: str | None, address: str | None) -> None:
        """Raise the 429 ``slow_down`` error when the account or the address is locked out."""
        wait = max(
            self.retry_after(account=account, address=address),
            0,
        )
        if wait > 0:
            raise throttled(wait)

    def retry_after(self, *, account: str | None, address: str | None) -> int:
        """Seconds until a sign-in may be attempted again; 0 when it may now."""
        now = self._clock()
        with self._lock:
            waits = [
                self._wait(key, limit, now)
                for key, limit in self._keys(account, address)
                if key is not None
            ]
        return max(waits, default=0)

    def record(self, *, account: str | None, address: str | None, success: bool) -> None:
        now = self._clock()
        with self._lock:
            if success:
                if account is not None:
                    self._failures.pop(_account_key(account), None)
                return
            if len(self._failures) >= _MAX_KEYS:
                self._sweep(now)
            for key, limit in self._keys(account, address):
                if key is None:
                    continue
                window = self._failures.setdefault(key, deque())
                window.append(now)
                while len(window) > limit.failures:
                    window.popleft()

    def _keys(
        self, account: str | None, address: str | None
    ) -> list[tuple[str | None, SignInLimit]]:
        return [
            (_account_key(account) if account else None, self.per_account),
            (f"address:{address}" if address else None, self.per_address),
        ]

    def _wait(self, key: str, limit: SignInLimit, now: float) -> int:
        window = self._failures.get(key)
        if not window:
            return 0
        while window and window[0] <= now - limit.window_s:
            window.popleft()
        if len(window) < limit.failures:
            return 0
        return max(1, math.ceil(window[0] + limit.window_s - now))

    def _sweep(self, now: float) -> None:
        horizon = now - max(self.per_account.window_s, self.per_address.window_s)
        stale = [
            key for key, window in self._failures.items() if not window or window[-1] < horizon
        ]
        for key in stale:
            del self._failures[key]
        if len(self._failures) >= _MAX_KEYS:
            # Under a flood of distinct keys, forget rather than grow without bound.
            self._failures.clear()


def _account_key(account: str) -> str:
    return f"account:{account.lower()}"
