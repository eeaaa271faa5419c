"""Target-utilization decisions, as pure functions of the sampled load."""

from __future__ import annotations

import pytest

from propylon.runtime import AutoscalePolicy, Autoscaler, DeploymentSpec, LoadReport, ScaleSettings
from propylon.runtime.autoscaler import average_concurrency, is_autoscaled, recommend

POLICY = AutoscalePolicy(min_instances=1, max_instances=5, target_utilization=50, max_concurrent=2)


@pytest.mark.parametrize(
    ("current", "concurrency", "expected"),
    [
        (1, 0.0, 1),  # idle: the minimum
        (1, 1.0, 1),  # exactly at target (1 of 2 slots = 50 %)
        (1, 1.05, 1),  # within the 10 % tolerance
        (1, 1.2, 2),  # above: one more
        (2, 3.9, 4),
        (3, 100.0, 5),  # capped at the maximum
        (4, 1.0, 1),  # far below: down to what the load needs
    ],
)
def test_recommendation_brings_utilization_to_the_target(
    current: int, concurrency: float, expected: int
) -> None:
    assert recommend(POLICY, current, concurrency) == expected


def test_float_rounding_does_not_add_an_instance() -> None:
    policy = AutoscalePolicy(min_instances=1, max_instances=9, target_utilization=70)
    assert recommend(policy, 1, 1.4) == 2


def test_scale_out_happens_on_the_first_busy_poll() -> None:
    scaler = Autoscaler(POLICY)
    assert scaler.decide(current=1, concurrency=3.0) == 3


def test_scale_in_waits_for_a_whole_window_of_lower_recommendations() -> None:
    policy = AutoscalePolicy(
        min_instances=1, max_instances=5, target_utilization=50, max_concurrent=1, scale_in_window=3
    )
    scaler = Autoscaler(policy)
    assert scaler.decide(current=4, concurrency=0.0) == 4
    assert scaler.decide(current=4, concurrency=0.0) == 4
    assert scaler.decide(current=4, concurrency=0.0) == 1


def test_a_burst_inside_the_window_keeps_the_instances_it_needs() -> None:
    policy = AutoscalePolicy(
        min_instances=1, max_instances=5, target_utilization=50, max_concurrent=1, scale_in_window=3
    )
    scaler = Autoscaler(policy)
    decisions = [scaler.decide(current=3, concurrency=c) for c in (0.0, 1.0, 0.0, 0.0)]
    # The 1.0 poll asked for 2 instances; while it is in the window, no fewer than 2 remain.
    assert decisions == [3, 3, 2, 2]


def test_no_sample_changes_nothing_but_bounds_still_apply() -> None:
    scaler = Autoscaler(POLICY)
    assert scaler.decide(current=3, concurrency=None) == 3
    assert scaler.decide(current=9, concurrency=None) == 5


def test_average_concurrency_uses_busy_seconds_when_reported() -> None:
    before = LoadReport(at=10.0, in_flight=0, busy_seconds=100.0)
    after = LoadReport(at=12.0, in_flight=0, busy_seconds=103.0)  # 3 busy seconds over 2 s
    assert average_concurrency(before, after) == pytest.approx(1.5)


@pytest.mark.parametrize(
    "previous",
    [None, LoadReport(at=10.0, in_flight=1), LoadReport(at=10.0, in_flight=1, busy_seconds=500.0)],
)
def test_average_concurrency_falls_back_to_the_point_sample(previous: LoadReport | None) -> None:
    # No history, no counter, or a counter that went backwards (the instance restarted).
    assert average_concurrency(previous, LoadReport(at=12.0, in_flight=2, busy_seconds=1.0)) == 2


def test_policy_from_a_spec_and_its_scale_type_spellings() -> None:
    spec = DeploymentSpec(
        deployment_id="/d", endpoint_id="/e", endpoint_name="e", name="d", code_dir=None,
        scoring_script="score.py", model_dir=None,
        scale=ScaleSettings(scale_type="target_utilization", min_instances=2, max_instances=1,
                            target_utilization_percentage=70),
    )  # fmt: skip
    assert is_autoscaled(spec)
    policy = AutoscalePolicy.from_spec(spec)
    assert (policy.min_instances, policy.max_instances, policy.target_utilization) == (2, 2, 70)
    for spelling in ("TargetUtilization", "targetUtilization", "target_utilization"):
        assert is_autoscaled(
            DeploymentSpec(**{**spec.__dict__, "scale": ScaleSettings(scale_type=spelling)})
        )
    assert not is_autoscaled(
        DeploymentSpec(**{**spec.__dict__, "scale": ScaleSettings(scale_type="Default")})
    )
