"""Instances left behind by a server that died without stopping them (SIGKILL, OOM kill, crash).

Every instance process is recorded in ``DATA_DIR/run/instances/<pid>.json`` while it runs, with
the pid and start time of the server that owns it. A backend starting on the same data dir calls
:meth:`ProcessRegistry.reap`: a record whose owner is gone, and whose process is still the one
that was recorded (same start time, so a recycled pid is never hit), gets its process group
killed. Records of live owners (another server on the same data dir) are left alone.

Start times come from ``/proc/<pid>/stat``; where there is no ``/proc`` nothing can be verified
and nothing is killed. Example::

    registry = ProcessRegistry(data_dir / "run" / "instances")
    registry.reap()                       # at start: [4711, 4712] killed
    registry.add(process.pid, "blue-1-0")
    registry.discard(process.pid)         # when it has exited
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

__all__ = ["ProcessRegistry", "process_start_time"]

log = logging.getLogger("propylon.runtime")


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), or ``None`` if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; the command name (field 2) is in parentheses and may contain spaces.
    fields = stat.rpartition(")")[2].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


class ProcessRegistry:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._owner = {"pid": os.getpid(), "started": process_start_time(os.getpid())}

    def add(self, pid: int, instance_id: str) -> None:
        record = {
            "pid": pid,
            "started": process_start_time(pid),
            "instance_id": instance_id,
            "owner": self._owner,
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{pid}.json").write_text(json.dumps(record))

    def discard(self, pid: int) -> None:
        (self.folder / f"{pid}.json").unlink(missing_ok=True)

    def reap(self) -> list[int]:
        """Kill the instances of dead servers; the pids killed."""
        killed: list[int] = []
        if not self.folder.is_dir():
            return killed
        for path in self.folder.glob("*.json"):
            try:
                record: Any = json.loads(path.read_text())
                pid, started, owner = int(record["pid"]), record["started"], record["owner"]
            except (OSError, ValueError, KeyError, TypeError):
                path.unlink(missing_ok=True)
                continue
            if _alive(owner):
                continue
            if started is not None and process_start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                    killed.append(pid)
                    log.warning(
                        "killed an instance left behind by a server that died",
                        extra={"pid": pid, "instance": record.get("instance_id")},
                    )
            path.unlink(missing_ok=True)
        return killed


def _alive(owner: Any) -> bool:
    try:
        pid = int(owner["pid"])
        started = None if owner["started"] is None else int(owner["started"])
    except (KeyError, TypeError, ValueError):
        return False
    if started is None:  # unverifiable: assume the owner lives rather than kill its instances
        return True
    return process_start_time(pid) == started
