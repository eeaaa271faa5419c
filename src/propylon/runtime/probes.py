"""Talking to instances over HTTP: liveness and readiness probes, load samples.

The only module of the runtime that uses httpx; its exceptions become a failed
:class:`ProbeResult` here. Probe semantics are Kubernetes' (which Azure's probe settings configure,
reference §1.5.4): a probe passes on any 2xx/3xx answer within ``timeout``; a verdict flips after
``success_threshold`` passes in a row, or ``failure_threshold`` failures in a row
(:class:`ProbeCounter`, pure).

The inference server answers liveness on ``GET /``, readiness on ``GET /readyz`` and its load on
``GET /_propylon/stats`` (``{"in_flight": n, "in_flight_seconds_total": s}``). Example::

    probe = InstanceProbe()
    result = await probe.check("http://127.0.0.1:5001", READINESS_PATH, within=2.0)
    result.ok, result.detail    # (True, "200")
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from propylon.runtime.autoscaler import LoadReport

__all__ = [
    "LIVENESS_PATH",
    "READINESS_PATH",
    "STATS_PATH",
    "InstanceProbe",
    "ProbeCounter",
    "ProbeResult",
]

LIVENESS_PATH = "/"
READINESS_PATH = "/readyz"
STATS_PATH = "/_propylon/stats"


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str


class ProbeCounter:
    """Consecutive passes and failures of one probe, and the verdict they add up to."""

    def __init__(self, *, success_threshold: int, failure_threshold: int, passing: bool) -> None:
        self.success_threshold = max(1, success_threshold)
        self.failure_threshold = max(1, failure_threshold)
        self.passing = passing
        self.successes = 0
        self.failures = 0

    def record(self, ok: bool) -> bool | None:
        """Count one probe; the new verdict when this probe flips it, else ``None``."""
        if ok:
            self.successes += 1
            self.failures = 0
            if not self.passing and self.successes >= self.success_threshold:
                self.passing = True
                return True
        else:
            self.failures += 1
            self.successes = 0
            if self.passing and self.failures >= self.failure_threshold:
                self.passing = False
                return False
        return None


class InstanceProbe:
    """One pooled HTTP client for every probe and load sample of a backend."""

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        # trust_env=False: instances are on loopback; an operator's HTTP(S)_PROXY must not apply.
        self._client = client or httpx.AsyncClient(
            trust_env=False,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )

    async def check(self, base_url: str, path: str, *, within: float) -> ProbeResult:
        """``GET path``; it passes with a 2xx or 3xx answer within ``within`` seconds."""
        try:
            response = await self._client.get(base_url + path, timeout=within)
        except httpx.TimeoutException:
            return ProbeResult(False, f"no answer within {within:g} s")
        except httpx.HTTPError as exc:
            return ProbeResult(
                False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            )
        return ProbeResult(200 <= response.status_code < 400, str(response.status_code))

    async def load(self, base_url: str, *, within: float = 1.0) -> LoadReport | None:
        """The instance's load now; ``None`` when it does not report one (or did not answer)."""
        try:
            response = await self._client.get(base_url + STATS_PATH, timeout=within)
        except httpx.HTTPError:
            return None
        at = time.monotonic()
        if response.status_code != 200:
            return None
        try:
            body: Any = response.json()
            in_flight = int(body["in_flight"])
            busy = body.get("in_flight_seconds_total")
            return LoadReport(at, in_flight, float(busy) if busy is not None else None)
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    async def aclose(self) -> None:
        await self._client.aclose()
