"""ISO 8601 durations of probes and request settings."""

from __future__ import annotations

import pytest

from propylon.control.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT10S", 10.0),
        ("PT0.5S", 0.5),
        ("PT1M30S", 90.0),
        ("PT1H", 3600.0),
        ("P1DT1S", 86401.0),
        ("pt3s", 3.0),
        ("PT5M", 300.0),
    ],
)
def test_parse_reads_day_time_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "P", "PT", "10S", "P1Y", "P1W", "PT-1S", "PTS", "5"])
def test_parse_refuses_what_is_not_a_fixed_duration(text: str) -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (10, "PT10S"),
        (0.5, "PT0.5S"),
        (3, "PT3S"),
        (90, "PT1M30S"),
        (3600, "PT1H"),
        (0, "PT0S"),
        (180, "PT3M"),
        (0.001, "PT0.001S"),
    ],
)
def test_format_writes_the_shortest_form_the_sdk_writes(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


def test_format_refuses_negative_durations() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_duration(-1)
