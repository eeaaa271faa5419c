"""Probe thresholds: a verdict flips only after enough passes or failures in a row."""

from __future__ import annotations

from propylon.runtime.probes import ProbeCounter


def test_readiness_needs_success_threshold_passes_in_a_row() -> None:
    counter = ProbeCounter(success_threshold=2, failure_threshold=3, passing=False)
    assert [counter.record(ok) for ok in (True, False, True, True)] == [None, None, None, True]
    assert counter.passing


def test_failure_threshold_failures_in_a_row_flip_a_passing_probe() -> None:
    counter = ProbeCounter(success_threshold=1, failure_threshold=3, passing=True)
    verdicts = [counter.record(ok) for ok in (False, False, True, False, False, False, False)]
    assert verdicts == [None, None, None, None, None, False, None]
    assert not counter.passing


def test_thresholds_below_one_act_as_one() -> None:
    counter = ProbeCounter(success_threshold=0, failure_threshold=0, passing=False)
    assert counter.record(True) is True
    assert counter.record(False) is False
