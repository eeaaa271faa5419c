"""Writing one benchmark's section of ``bench/RESULTS.md``, keeping every other section.

Each bench script (``bench/<name>/run.py --record``) calls :func:`record` with its own section name,
the table it measured and the command that produced it.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path

__all__ = ["RESULTS", "record"]

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def record(section: str, body: str, command: str, path: Path = RESULTS) -> None:
    """Replace (or append) the ``## {section}`` part of ``path`` with ``body``."""
    today = dt.datetime.now(dt.UTC).date().isoformat()
    heading = f"## {section}"
    new = [
        heading,
        "",
        f"Recorded {today} with `{command}` on Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs.",
        "",
        body,
        "",
    ]
    lines = path.read_text().splitlines() if path.exists() else ["# Benchmark results", ""]
    start = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
    if start is None:
        if lines and lines[-1].strip():
            lines.append("")
        lines.extend(new)
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        lines[start:end] = new
    path.write_text("\n".join(lines).rstrip("\n") + "\n")
