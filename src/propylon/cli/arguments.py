"""Parsing the argument forms ``az`` uses: ``"blue=90 green=10"``, ``--set a.b=value``, JSON or
``@file`` values, and ``--yes`` confirmations.

Example::

    >>> parse_traffic("blue=90 green=10")
    {'blue': 90, 'green': 10}
    >>> apply_set({"request_settings": {}}, ["request_settings.request_timeout_ms=3000"])
    {'request_settings': {'request_timeout_ms': 3000}}
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import typer

from propylon.errors import BadRequest

__all__ = ["apply_set", "confirm", "json_argument", "parse_traffic"]


def parse_traffic(text: str, *, flag: str = "--traffic") -> dict[str, int]:
    """``"blue=90 green=10"`` (spaces or commas between pairs) → ``{"blue": 90, "green": 10}``."""
    traffic: dict[str, int] = {}
    for pair in text.replace(",", " ").split():
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise BadRequest(
                f"{flag} expects deployment=percent pairs such as 'blue=90 green=10', not "
                f"{pair!r}.",
                code="InvalidArgument",
            )
        try:
            traffic[name] = int(value)
        except ValueError:
            raise BadRequest(
                f"{flag}: {value!r} (for {name}) is not a whole percentage.",
                code="InvalidArgument",
            ) from None
    return traffic


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def apply_set(document: dict[str, Any], assignments: Iterable[str]) -> dict[str, Any]:
    """Apply ``--set path.to.field=value`` (value read as JSON when it parses) to ``document``."""
    for assignment in assignments:
        path, sep, raw = assignment.partition("=")
        keys = [k for k in path.strip().split(".") if k]
        if not sep or not keys:
            raise BadRequest(
                f"--set expects path=value such as instance_count=2, not {assignment!r}.",
                code="InvalidArgument",
            )
        node = document
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise BadRequest(f"--set {path}: '{key}' is not an object.", code="InvalidArgument")
            node = child
        node[keys[-1]] = _value(raw)
    return document


def json_argument(value: str, *, flag: str) -> Any:
    """A JSON document given inline, as ``@file`` or as a path to a file (as ``az`` accepts)."""
    text = value
    candidate = Path(value[1:] if value.startswith("@") else value).expanduser()
    if value.startswith("@") or (not value.lstrip().startswith(("{", "[")) and candidate.exists()):
        try:
            text = candidate.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise BadRequest(f"{flag}: {candidate}: no such file.", code="FileNotFound") from None
        except OSError as exc:
            raise BadRequest(
                f"{flag}: cannot read {candidate}: {exc}", code="FileNotReadable"
            ) from None
    elif not value.lstrip().startswith(("{", "[")):
        raise BadRequest(f"{flag}: {value}: no such file.", code="FileNotFound")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BadRequest(
            f"{flag}: {value} is not valid JSON (line {getattr(exc, 'lineno', '?')}): "
            f"{getattr(exc, 'msg', exc)}.",
            code="InvalidJson",
        ) from None


def confirm(question: str, yes: bool) -> None:
    """Ask before destroying something, unless ``--yes``; refuse when nobody can answer."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise BadRequest(
            f"{question} Pass --yes to confirm (no terminal to ask on).", code="ConfirmationNeeded"
        )
    if not typer.confirm(question, default=False):
        raise typer.Exit(1)
