"""Where local instances' Unix sockets live: the gateway's way to an instance on the same machine.

Every local instance listens on a loopback TCP port (the probes, a direct call, what ``describe``
shows) and also on a Unix domain socket, which the gateway uses when it runs on the same machine
(the instance set records the machine, :func:`propylon.config.node_name`). On this machine a
request through a Unix socket costs the gateway about 60 µs less than through loopback TCP
(``bench/RESULTS.md``), a third of what the gateway adds to a request.

An instance does not authenticate its callers, so its socket is in a directory that only the
server's user may enter (mode 0700, checked, never taken over from another user). A socket path
must fit in 107 bytes, so the directory is ``<data dir>/run/sockets`` when that is short enough,
else ``propylon-<uid>-<hash of the data dir>`` in the temporary directory. When neither can be
used, instances listen on TCP only and the gateway uses that.

Example::

    sockets = SocketDirectory(data_dir)
    path = sockets.path(deployment_id, "blue-1-0")   # None: TCP only
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import tempfile
from pathlib import Path
from typing import Final

__all__ = ["SocketDirectory"]

log = logging.getLogger("propylon.runtime")

_MAX_PATH: Final = 107  # sun_path is 108 bytes with its terminating NUL
_NAME_LENGTH: Final = 20 + len(".sock")


class SocketDirectory:
    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._directory: Path | None = None
        self._checked = False

    def path(self, deployment_id: str, instance_id: str) -> str | None:
        """The socket of this instance (the same across its restarts), or None for TCP only."""
        directory = self._usable()
        if directory is None:
            return None
        digest = hashlib.sha256(f"{deployment_id.lower()}#{instance_id}".encode()).hexdigest()
        return str(directory / f"{digest[:20]}.sock")

    def _usable(self) -> Path | None:
        if not self._checked:
            self._checked = True
            self._directory = next(
                (found for found in map(_private, self._candidates()) if found is not None), None
            )
            if self._directory is None:
                log.warning("no private directory for instance sockets; instances use TCP only")
        return self._directory

    def _candidates(self) -> list[Path]:
        own = self._data_dir.resolve() / "run" / "sockets"
        digest = hashlib.sha256(str(self._data_dir.resolve()).encode()).hexdigest()[:12]
        shared = Path(tempfile.gettempdir()) / f"propylon-{os.getuid()}-{digest}"
        return [d for d in (own, shared) if len(str(d)) + 1 + _NAME_LENGTH <= _MAX_PATH]


def _private(directory: Path) -> Path | None:
    """``directory``, created if need be, if it is ours and closed to everyone else."""
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        directory.mkdir(mode=0o700, exist_ok=True)
        info = directory.lstat()
    except OSError:
        return None
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.getuid()
        or stat.S_IMODE(info.st_mode) & 0o077
    ):
        return None
    return directory
