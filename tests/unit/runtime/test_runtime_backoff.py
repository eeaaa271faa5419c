"""The restart back-off and when failures count as a crash loop."""

from __future__ import annotations

import pytest

from propylon.runtime import RestartPolicy


def test_delay_doubles_from_the_initial_delay_up_to_the_cap() -> None:
    policy = RestartPolicy(initial_delay=1.0, multiplier=2.0, max_delay=60.0)
    assert [policy.delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_no_delay_before_any_failure_and_no_overflow_after_many() -> None:
    policy = RestartPolicy()
    assert policy.delay(0) == 0
    assert policy.delay(10_000) == policy.max_delay


def test_a_long_healthy_run_starts_the_count_afresh() -> None:
    policy = RestartPolicy(healthy_after=60)
    assert policy.count_failure(5, ran_for=61, was_ready=True) == 1


@pytest.mark.parametrize(
    ("ran_for", "was_ready"),
    [(5.0, True), (600.0, False)],  # too short; long but never ready (failed start)
)
def test_short_or_never_ready_runs_add_up(ran_for: float, was_ready: bool) -> None:
    policy = RestartPolicy(healthy_after=60)
    assert policy.count_failure(2, ran_for=ran_for, was_ready=was_ready) == 3


def test_crash_loop_after_the_configured_failures_in_a_row() -> None:
    policy = RestartPolicy(crash_loop_after=3)
    assert [policy.is_crash_loop(n) for n in (0, 1, 2, 3, 4)] == [False, False, False, True, True]


@pytest.mark.parametrize(
    "kwargs",
    [{"initial_delay": -1}, {"multiplier": 0.5}, {"initial_delay": 5, "max_delay": 1},
     {"crash_loop_after": 0}],
)  # fmt: skip
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        RestartPolicy(**kwargs)  # type: ignore[arg-type]
