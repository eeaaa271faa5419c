"""When a failed instance is restarted, and when its failures count as a crash loop.

The shape is Kubernetes' CrashLoopBackOff: the delay before the n-th consecutive restart doubles
from ``initial_delay`` up to ``max_delay``; a run that became ready and lasted ``healthy_after``
seconds clears the count. ``crash_loop_after`` consecutive failures make the deployment Failed
(a new deployment stops trying; a running one keeps retrying at the capped delay and reports
Failed until an instance recovers). Pure functions over numbers, so the schedule is testable
without processes. Example::

    policy = RestartPolicy()
    [policy.delay(n) for n in (1, 2, 3, 10)]   # [1.0, 2.0, 4.0, 60.0]
    policy.count_failure(2, ran_for=5.0, was_ready=True)   # 3: too short to count as healthy
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RestartPolicy"]


@dataclass(frozen=True)
class RestartPolicy:
    initial_delay: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 60.0
    crash_loop_after: int = 3
    healthy_after: float = 60.0

    def __post_init__(self) -> None:
        if self.initial_delay < 0 or self.multiplier < 1 or self.max_delay < self.initial_delay:
            raise ValueError(f"restart delays must grow from 0 ≤ initial ≤ max: {self}")
        if self.crash_loop_after < 1:
            raise ValueError("crash_loop_after must be at least 1")

    def delay(self, failures: int) -> float:
        """Seconds to wait before the restart that follows the ``failures``-th failure in a row."""
        if failures <= 0:
            return 0.0
        # Past ~64 doublings the float overflows long after the cap; stop multiplying there.
        exponent = min(failures - 1, 64)
        return min(self.initial_delay * self.multiplier**exponent, self.max_delay)

    def count_failure(self, previous: int, *, ran_for: float, was_ready: bool) -> int:
        """The consecutive-failure count after a process ends, given how its last run went.

        Only a run that became ready and stayed up ``healthy_after`` seconds starts the count
        afresh: a process killed for never becoming ready is a failed start however long it took.
        """
        if was_ready and ran_for >= self.healthy_after:
            return 1
        return previous + 1

    def is_crash_loop(self, failures: int) -> bool:
        return failures >= self.crash_loop_after
