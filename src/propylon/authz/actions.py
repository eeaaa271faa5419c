"""Action strings and the patterns in role definitions that match them.

An action is ``{Company}.{Provider}/{resourceType}/{action}``, e.g.
``Microsoft.MachineLearningServices/workspaces/onlineEndpoints/score/action`` (reference §1.1).
The rules implemented here (reference §1.2, Appendix A ``match``):

* matching is case-insensitive ("Permission strings are case-insensitive", ``custom-roles.md``);
* ``*`` matches any run of characters **including** ``/``: ``Microsoft.Compute/virtualMachines/*``
  covers child resource types, and ``workspaces/*/action`` must cover
  ``workspaces/onlineEndpoints/score/action`` for AzureML Data Scientist to score;
* the match is anchored at both ends, and a ``/*/`` may also stand for a single ``/``: so
  ``X/*/read`` matches ``X/read``. Reference §1.2 leaves this open; we follow the evidence that
  AzureML Data Scientist (``workspaces/*/read`` only) must read its workspace — ``az ml`` and
  azure-ai-ml GET the workspace before every PUT — and that the role lists ``workspaces/write``
  in ``notActions``, which would be pointless unless ``workspaces/*/write`` matched it;
* a custom role may hold only one ``*`` per string; ARM answers more with
  ``InvalidActionOrNotAction`` (reference §1.2, MicrosoftDocs/azure-docs#74428).

Patterns are compiled once (:func:`compile_pattern` is cached) into the cheapest test that is
exact: a set lookup with no ``*``, a prefix/suffix test with one, a regular expression otherwise
(built-in or system deny definitions are not bound by the one-``*`` rule).

Example::

    >>> PatternSet(["Microsoft.MachineLearningServices/workspaces/*/action"]).match(
    ...     "microsoft.machinelearningservices/workspaces/onlineendpoints/score/action")
    'Microsoft.MachineLearningServices/workspaces/*/action'
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from propylon.errors import BadRequest

__all__ = [
    "ActionPattern",
    "PatternSet",
    "action_matches",
    "compile_pattern",
    "validate_action_pattern",
]

# Longest ARM operation names are well under this; the bound keeps junk out of the caches.
_MAX_ACTION_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class ActionPattern:
    """One compiled pattern; ``text`` is the pattern as written, for explanations."""

    text: str
    prefix: str
    suffix: str
    wildcards: int
    regex: re.Pattern[str] | None

    def matches(self, action: str) -> bool:
        """Whether the **lower-cased** ``action`` matches (callers lower-case once per request)."""
        if self.wildcards == 0:
            return action == self.prefix
        if self.wildcards == 1:
            if (
                len(action) >= len(self.prefix) + len(self.suffix)
                and action.startswith(self.prefix)
                and action.endswith(self.suffix)
            ):
                return True
            # ``X/*/Y`` also covers ``X/Y`` (see the module docstring).
            return (
                self.prefix.endswith("/")
                and self.suffix.startswith("/")
                and action == self.prefix + self.suffix[1:]
            )
        assert self.regex is not None
        return self.regex.fullmatch(action) is not None


@lru_cache(maxsize=16384)
def compile_pattern(pattern: str) -> ActionPattern:
    """Compile ``pattern`` once: lower-case it and pick the cheapest exact test."""
    lowered = pattern.lower()
    parts = lowered.split("*")
    wildcards = len(parts) - 1
    regex = None
    if wildcards > 1:
        regex = re.compile(_glob_regex(parts), re.DOTALL)
    return ActionPattern(
        text=pattern,
        prefix=parts[0],
        suffix=parts[-1] if wildcards else "",
        wildcards=wildcards,
        regex=regex,
    )


def _glob_regex(parts: list[str]) -> str:
    """``*`` → ``.*``; a ``/*/`` → ``/(?:.*/)?`` so that it may also stand for a single ``/``."""
    regex = re.escape(parts[0])
    for before, part in itertools.pairwise(parts):
        if before.endswith("/") and part.startswith("/"):
            regex += "(?:.*/)?" + re.escape(part[1:])
        else:
            regex += ".*" + re.escape(part)
    return regex


def action_matches(pattern: str, action: str) -> bool:
    """Whether ``action`` matches ``pattern`` under the rules above (both in any case).

    >>> action_matches("*/read", "Microsoft.MachineLearningServices/workspaces/read")
    True
    """
    return compile_pattern(pattern).matches(action.lower())


class PatternSet:
    """A compiled list of patterns (one ``actions`` or ``notActions`` list of a permission).

    Exact patterns go in a dict, so a list of many plain actions costs one lookup; wildcard
    patterns are tested in order.
    """

    __slots__ = ("_exact", "_wild", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns: tuple[str, ...] = tuple(patterns)
        exact: dict[str, str] = {}
        wild: list[ActionPattern] = []
        for text in self.patterns:
            compiled = compile_pattern(text)
            if compiled.wildcards == 0:
                exact.setdefault(compiled.prefix, text)
            else:
                wild.append(compiled)
        self._exact = exact
        self._wild = tuple(wild)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def __repr__(self) -> str:
        return f"PatternSet({list(self.patterns)!r})"

    def match(self, action: str) -> str | None:
        """The first pattern (as written) matching the **lower-cased** ``action``, or ``None``."""
        hit = self._exact.get(action)
        if hit is not None:
            return hit
        for pattern in self._wild:
            if pattern.matches(action):
                return pattern.text
        return None


def validate_action_pattern(pattern: object, *, target: str) -> str:
    """Check one custom-role pattern; return it, or raise ``InvalidActionOrNotAction``.

    ``target`` names the field for the error, e.g. ``properties.permissions[0].actions[2]``.
    """
    if not isinstance(pattern, str):
        raise BadRequest(
            f"'{target}' must be a string.", code="InvalidActionOrNotAction", target=target
        )
    if not pattern.strip():
        raise BadRequest(
            f"'{target}' must not be empty.", code="InvalidActionOrNotAction", target=target
        )
    if len(pattern) > _MAX_ACTION_LENGTH or not pattern.isprintable() or pattern != pattern.strip():
        raise BadRequest(
            f"'{pattern[:100]}' is not a valid action: at most {_MAX_ACTION_LENGTH} printable "
            "characters without leading or trailing spaces.",
            code="InvalidActionOrNotAction",
            target=target,
        )
    if pattern.count("*") > 1:
        # The message ARM returns, verbatim (MicrosoftDocs/azure-docs#74428).
        raise BadRequest(
            f"'{pattern}' contains multiple wildcards. Only one is allowed.",
            code="InvalidActionOrNotAction",
            target=target,
        )
    return pattern
