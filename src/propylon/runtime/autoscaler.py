"""Target-utilization autoscaling: how many instances a deployment needs for its load.

Azure's ``target_utilization`` scale settings (reference §1.5.4, §2.2) keep the concurrent requests
per instance near ``target_utilization_percentage`` of ``max_concurrent_requests_per_instance``,
between ``min_instances`` and ``max_instances``, re-evaluated every ``polling_interval``. The
decision follows Kubernetes' horizontal pod autoscaler: the instances needed are
``ceil(concurrency / (max_concurrent × target))``; within 10 % of the target nothing changes; a
scale-out happens at once, a scale-in only when every recommendation of the last
``scale_in_window`` polls asked for fewer instances (so a lull between bursts does not drain
instances that are needed again a second later).

The load of an instance is what it reports (:class:`LoadReport`): requests in flight now and,
when available, the running total of in-flight seconds, whose growth over a polling interval is
the average concurrency (Little's law) and sees short requests that a point sample misses.

No I/O here; the supervisor samples and applies. Example::

    policy = AutoscalePolicy(min_instances=1, max_instances=4, target_utilization=70,
                             max_concurrent=1)
    scaler = Autoscaler(policy)
    scaler.decide(current=1, concurrency=2.5)   # 4: 2.5 requests at 0.7 per instance
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from propylon.runtime.base import DeploymentSpec

__all__ = [
    "AutoscalePolicy",
    "Autoscaler",
    "LoadReport",
    "average_concurrency",
    "is_autoscaled",
    "recommend",
]

_TOLERANCE = 0.1


def is_autoscaled(spec: DeploymentSpec) -> bool:
    """Whether ``scale_settings.type`` is ``target_utilization`` (any of Azure's spellings)."""
    kind = spec.scale.scale_type.replace("_", "").lower()
    return kind == "targetutilization"


@dataclass(frozen=True)
class AutoscalePolicy:
    min_instances: int
    max_instances: int
    target_utilization: float
    max_concurrent: int = 1
    scale_in_window: int = 5

    def __post_init__(self) -> None:
        if not 0 <= self.min_instances <= self.max_instances:
            raise ValueError(f"need 0 ≤ min_instances ≤ max_instances, not {self}")
        if not 0 < self.target_utilization <= 100 or self.max_concurrent < 1:
            raise ValueError(f"target utilization must be in (0, 100] percent: {self}")
        if self.scale_in_window < 1:
            raise ValueError("scale_in_window must be at least 1 poll")

    @classmethod
    def from_spec(cls, spec: DeploymentSpec, *, scale_in_window: int = 5) -> AutoscalePolicy:
        scale = spec.scale
        return cls(
            min_instances=scale.min_instances,
            max_instances=max(scale.max_instances, scale.min_instances),
            target_utilization=scale.target_utilization_percentage,
            max_concurrent=spec.requests.max_concurrent_requests_per_instance,
            scale_in_window=scale_in_window,
        )

    def clamp(self, count: int) -> int:
        return max(self.min_instances, min(self.max_instances, count))


def recommend(policy: AutoscalePolicy, current: int, concurrency: float) -> int:
    """The instance count that brings ``concurrency`` (requests in flight) to the target."""
    per_instance = policy.max_concurrent * policy.target_utilization / 100
    if current > 0 and abs(concurrency / (current * per_instance) - 1) <= _TOLERANCE:
        return policy.clamp(current)
    # The epsilon keeps 1.4 / 0.7 (= 2.0000000000000004 in floats) at two instances.
    return policy.clamp(math.ceil(concurrency / per_instance - 1e-9))


class Autoscaler:
    """Recommendations of the last polls, turned into one decision per poll."""

    def __init__(self, policy: AutoscalePolicy) -> None:
        self.policy = policy
        self._recent: deque[int] = deque(maxlen=policy.scale_in_window)

    def decide(self, current: int, concurrency: float | None) -> int:
        """The instance count to run now; ``concurrency=None`` (no sample) keeps ``current``."""
        if concurrency is None:
            return self.policy.clamp(current)
        wanted = recommend(self.policy, current, concurrency)
        self._recent.append(wanted)
        if wanted > current:
            return wanted
        if len(self._recent) == self._recent.maxlen and max(self._recent) < current:
            return max(self._recent)
        return self.policy.clamp(current)

    def reset(self) -> None:
        """Forget the window (after a new generation, whose load history starts over)."""
        self._recent.clear()


@dataclass(frozen=True)
class LoadReport:
    """One instance's load as sampled at ``at`` (the sampler's monotonic clock, seconds)."""

    at: float
    in_flight: int
    busy_seconds: float | None = None


def average_concurrency(previous: LoadReport | None, current: LoadReport) -> float:
    """Requests in flight on average since ``previous``, or right now when that is unknown."""
    if (
        previous is not None
        and previous.busy_seconds is not None
        and current.busy_seconds is not None
        and current.at > previous.at
        and current.busy_seconds >= previous.busy_seconds
    ):
        return (current.busy_seconds - previous.busy_seconds) / (current.at - previous.at)
    return float(current.in_flight)
