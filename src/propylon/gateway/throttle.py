"""Online guessing of keys and tokens: failed authentications per endpoint and source address.

An endpoint key holds 256 random bits, so guessing one is hopeless; still, a caller that keeps
presenting wrong credentials is an attacker or a broken client, and it should not get an answer
per guess at full speed (reference §6.3 #21). The gateway counts **401s** in a sliding window per
``(endpoint, source address)``: when ``failures`` of them fall within ``window_s`` seconds, every
request from that address to that endpoint is refused with **429**
``TooManyFailedAuthentications`` and ``Retry-After`` (seconds until the oldest failure leaves the
window) *before* its credential is checked, so a guesser learns nothing from a right guess made
while locked out.

Keyed by endpoint as well as address, so one attacker cannot lock every client of an endpoint
out, nor every endpoint out for its neighbours behind one NAT. ``X-Forwarded-For`` is not trusted
(as the token endpoint's :mod:`propylon.identity.throttle`). A 403 (a valid identity without the
score action) proves possession of a real token and is not counted. Counts live in this process:
each gateway replica counts its own share. The default, 30 failures per minute, is
``PROPYLON_GATEWAY_AUTH_FAILURES=30/60``; ``0`` switches the limit off.

Example::

    throttle = FailedAuthThrottle(AuthFailureLimit(30, 60.0))
    throttle.check("my-endpoint", "203.0.113.7")      # raises TooManyRequests (429)
    throttle.record("my-endpoint", "203.0.113.7")     # after a 401
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from propylon.errors import ConfigurationError, TooManyRequests

__all__ = ["DEFAULT_AUTH_FAILURE_LIMIT", "AuthFailureLimit", "FailedAuthThrottle"]

_MAX_KEYS = 100_000


@dataclass(frozen=True)
class AuthFailureLimit:
    """At most ``failures`` failed authentications within ``window_s`` seconds (0: no limit)."""

    failures: int
    window_s: float

    @classmethod
    def parse(cls, text: str) -> AuthFailureLimit:
        """``"30/60"`` (failures/seconds), or ``"0"`` for no limit."""
        count, _, seconds = text.strip().partition("/")
        try:
            limit = cls(int(count), float(seconds or 60))
        except ValueError:
            limit = cls(-1, 0)
        if limit.failures < 0 or limit.window_s <= 0:
            raise ConfigurationError(
                "PROPYLON_GATEWAY_AUTH_FAILURES must be '<failures>/<seconds>' (e.g. 30/60) "
                f"or 0, not {text!r}."
            )
        return limit


DEFAULT_AUTH_FAILURE_LIMIT = AuthFailureLimit(30, 60.0)


class FailedAuthThrottle:
    """Sliding windows of 401s per (endpoint, address); used from the event loop only."""

    def __init__(
        self,
        limit: AuthFailureLimit = DEFAULT_AUTH_FAILURE_LIMIT,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def check(self, endpoint: str, address: str | None) -> None:
        """Raise 429 when this address is locked out of this endpoint."""
        if not self.limit.failures or address is None:
            return
        window = self._failures.get((endpoint, address))
        if not window:
            return
        now = self._clock()
        while window and window[0] <= now - self.limit.window_s:
            window.popleft()
        if len(window) < self.limit.failures:
            return
        wait = max(1, math.ceil(window[0] + self.limit.window_s - now))
        raise TooManyRequests(
            f"Too many failed authentications from this address for endpoint '{endpoint}'; "
            f"retry after {wait} seconds.",
            code="TooManyFailedAuthentications",
            retry_after=wait,
        )

    def record(self, endpoint: str, address: str | None) -> None:
        """Count one failed authentication (a 401)."""
        if not self.limit.failures or address is None:
            return
        now = self._clock()
        if len(self._failures) >= _MAX_KEYS:
            self._sweep(now)
        window = self._failures.setdefault((endpoint, address), deque())
        window.append(now)
        while len(window) > self.limit.failures:
            window.popleft()

    def _sweep(self, now: float) -> None:
        horizon = now - self.limit.window_s
        stale = [
            key for key, window in self._failures.items() if not window or window[-1] < horizon
        ]
        for key in stale:
            del self._failures[key]
        if len(self._failures) >= _MAX_KEYS:
            # Under a flood of distinct addresses, forget rather than grow without bound.
            self._failures.clear()
