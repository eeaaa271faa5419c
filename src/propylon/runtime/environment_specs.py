"""What an environment spec means: its requirements in canonical form, and the cache key.

The normalised spec lower-cases and canonicalises package names (PEP 503), drops comments, blank
lines, duplicates and insignificant spaces, sorts the lines (pip resolves requirements as a set),
and keeps the Python version to ``major.minor``; two specs that differ only in such ways build
the same environment. The key, a SHA-256 of the normalised spec, also covers the interpreter the
environment is built on (``base``), since an environment is only valid on top of that one.

Example::

    normalise_requirement("Scikit_Learn >= 1.5  # the model")   # 'scikit-learn>=1.5'
    environment_key(EnvironmentSpec(pip_requirements=("joblib",)), base="/usr/bin/python3.11")
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from propylon.runtime.base import EnvironmentSpec

__all__ = ["environment_key", "normalise_environment", "normalise_requirement", "python_minor"]

_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(.*)$")
_EXTRAS = re.compile(r"\[([^\]]*)\]")
_VERSION = re.compile(r"(\d+(?:\.\d+)*)")


def _canonical_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def normalise_requirement(line: str) -> str | None:
    """One requirement line in canonical form; ``None`` for blank lines and comments."""
    text = re.split(r"(?:^|\s)#", line, maxsplit=1)[0].strip()
    if not text:
        return None
    if text.startswith("-"):  # a pip option (--no-index, -f DIR, --extra-index-url URL)
        return " ".join(text.split())
    match = _NAME.match(text)
    if match is None or "://" in match[1]:  # a path or URL on its own
        return text
    name, rest = match[1], match[2]
    specifier, _, marker = rest.partition(";")
    specifier = "".join(specifier.split())
    specifier = _EXTRAS.sub(
        lambda extras: (
            "[" + ",".join(sorted(_canonical_name(e) for e in extras[1].split(",") if e)) + "]"
        ),
        specifier,
    )
    marker = " ".join(marker.split())
    return _canonical_name(name) + specifier + (f"; {marker}" if marker else "")


def python_minor(version: str | None) -> str | None:
    if not version:
        return None
    match = _VERSION.search(version)
    if match is None:
        return None
    return ".".join(match[1].split(".")[:2])


def normalise_environment(spec: EnvironmentSpec) -> dict[str, Any]:
    """The parts of ``spec`` that decide what gets built, in canonical form."""
    lines = {normalise_requirement(line) for line in spec.pip_requirements}
    return {
        "pip": sorted(line for line in lines if line is not None),
        "python": python_minor(spec.python_version),
    }


def environment_key(spec: EnvironmentSpec, *, base: str = "") -> str:
    """SHA-256 of the normalised spec (and of ``base``, the interpreter it is built on)."""
    document = {"spec": normalise_environment(spec), "base": base}
    encoded = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()
