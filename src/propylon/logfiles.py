"""Size-rotated files of lines, as deployment logs and the gateway's traffic log keep them.

A log is ``path`` (newest) followed by ``path.1``, ``path.2`` … ``path.<backups>`` (oldest);
:func:`rotate` shifts them by one and drops the oldest, :func:`tail` reads the newest lines back
across them, from the end of each file, so that asking for the last hundred lines of a large log
costs a few blocks, not the whole file. Example::

    if path.stat().st_size > max_bytes:
        rotate(path, backups=4)
    tail(path, 100)        # oldest first, reaching into path.1 … when path is short
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["backup_path", "last_lines", "rotate", "tail"]

_READ_BLOCK = 64 * 1024


def backup_path(path: Path, index: int) -> Path:
    """``path`` itself for 0, else its ``index``-th rotated file."""
    return path if index == 0 else path.with_name(f"{path.name}.{index}")


def rotate(path: Path, backups: int) -> None:
    """Make ``path`` the first backup (the others move one along, the oldest is dropped);
    with no backups, delete it. The writer opens a fresh ``path`` afterwards."""
    if backups <= 0:
        path.unlink(missing_ok=True)
        return
    for index in range(backups, 0, -1):
        newer = backup_path(path, index - 1)
        if newer.exists():
            os.replace(newer, backup_path(path, index))


def tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of the log at ``path``, oldest first, reaching into ``path.1``,
    ``path.2`` … when the newer files hold fewer (``path`` itself is missing between a rotation
    and the writer's next line)."""
    collected: list[str] = []
    index = 0
    while len(collected) < lines:
        current = backup_path(path, index)
        if index > 0 and not current.exists():
            break
        collected = last_lines(current, lines - len(collected)) + collected
        index += 1
    return collected


def last_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of one file, read backwards in blocks."""
    if count <= 0:
        return []
    try:
        with path.open("rb") as file:
            end = file.seek(0, os.SEEK_END)
            position, data = end, b""
            while position > 0 and data.count(b"\n") <= count:
                step = min(_READ_BLOCK, position)
                position -= step
                file.seek(position)
                data = file.read(step) + data
    except FileNotFoundError:
        return []
    return data.decode("utf-8", errors="replace").splitlines()[-count:]
