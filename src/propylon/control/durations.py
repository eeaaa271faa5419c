"""ISO 8601 durations as ARM writes them in probes and request settings (``PT10S``, ``PT0.5S``).

Only the day-time form is meaningful for these settings (ISO 8601-1 §5.5.2.4):
``P[nD][T[nH][nM][nS]]`` with a decimal fraction allowed on the last component. Years, months
and weeks have no fixed length, so they are refused rather than guessed.

Example::

    >>> parse_duration("PT1M30S")
    90.0
    >>> format_duration(0.5)
    'PT0.5S'
"""

from __future__ import annotations

import re

__all__ = ["format_duration", "parse_duration"]

_DURATION = re.compile(
    r"P(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?",
    re.IGNORECASE,
)
_UNITS = {"days": 86400.0, "hours": 3600.0, "minutes": 60.0, "seconds": 1.0}


def parse_duration(text: str) -> float:
    """Seconds in ``text``; ``ValueError`` names the accepted form when it is not one."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or not any(match.groupdict().values()) or text.strip().upper().endswith("T"):
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as 'PT5S' or 'PT0.5S'")
    return sum(float(value) * _UNITS[unit] for unit, value in match.groupdict().items() if value)


def format_duration(seconds: float) -> str:
    """The shortest ``PT…`` form of ``seconds`` (``PT1M30S``, ``PT0.5S``, ``PT0S``)."""
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    parts = ["PT"]
    if hours:
        parts.append(f"{hours}H")
    if minutes:
        parts.append(f"{minutes}M")
    if millis or (not hours and not minutes):
        whole, fraction = divmod(millis, 1000)
        parts.append(f"{whole}.{fraction:03d}".rstrip("0").rstrip(".") + "S")
    return "".join(parts)
