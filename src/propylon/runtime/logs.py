"""What deployments print, kept on disk for ``getLogs`` (reference §1.5.4, ``DeploymentLogs``).

Layout under the data dir (one folder per deployment, named by the hash of its id, since ARM ids
are long and full of slashes)::

    logs/deployments/<sha256(deployment id)[:16]>/
        deployment.txt                   the deployment id, for whoever browses the folder
        storage-initializer.log          set-up: environment build (pip's output), model and code
        <instance id>.log                the instance's stdout and stderr, interleaved as printed
        <instance id>.log.1 …            older output, rotated at ``max_bytes``

Each line is stored behind the time it was read (``2026-08-01T12:00:00.123Z text``, as
``docker logs --timestamps`` shows), so that the lines of several instances merge in order.
``tail(InferenceServer, n)`` is the newest ``n`` lines across the instances, each marked with its
instance; ``tail(StorageInitializer, n)`` the newest ``n`` lines of set-up. Example::

    logs = LogStore(data_dir / "logs" / "deployments").deployment(deployment_id)
    out = logs.instance("blue-1-0")
    out.feed(b"Loading model\\n")
    logs.tail(ContainerType.INFERENCE_SERVER, 100)   # '2026-…Z [blue-1-0] Loading model'
"""

from __future__ import annotations

import hashlib
import heapq
import shutil
import time
from collections import deque
from pathlib import Path
from typing import IO

from propylon import logfiles
from propylon.runtime.base import ContainerType
from propylon.store import canonical

__all__ = ["DeploymentLogs", "LogFile", "LogStore"]

STORAGE_INITIALIZER = "storage-initializer"
_SUFFIX = ".log"
_TIMESTAMP_WIDTH = len("2026-08-01T12:00:00.123Z")
# A process that prints without newlines still gets its output stored, in pieces of this size.
_MAX_LINE = 64 * 1024


def _now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


class LogFile:
    """An append-only, size-rotated log of lines, with the last few kept in memory."""

    def __init__(
        self, path: Path, *, max_bytes: int = 10 * 1024 * 1024, backups: int = 2, keep: int = 50
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.recent: deque[str] = deque(maxlen=keep)
        self._partial = b""
        self._file: IO[bytes] | None = None

    def write_line(self, text: str, *, remember: bool = True) -> None:
        """Store text line by line (pip's output; the runtime's notes, with ``remember=False``
        so that :attr:`recent` stays the process's own output)."""
        for line in text.splitlines() or [""]:
            self._store(line, remember=remember)
        self._flush()

    def feed(self, chunk: bytes) -> None:
        """Store a chunk of a process's output; a trailing partial line waits for its end."""
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        for line in lines:
            self._store(line.rstrip(b"\r").decode("utf-8", errors="replace"))
        while len(self._partial) > _MAX_LINE:
            piece, self._partial = self._partial[:_MAX_LINE], self._partial[_MAX_LINE:]
            self._store(piece.decode("utf-8", errors="replace"))
        self._flush()

    def close(self) -> None:
        """Store what is left of a partial line and close the file."""
        if self._partial:
            self._store(self._partial.decode("utf-8", errors="replace"))
            self._partial = b""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _store(self, line: str, *, remember: bool = True) -> None:
        if remember:
            self.recent.append(line)
        record = f"{_now()} {line}\n".encode()
        file = self._open()
        if file.tell() and file.tell() + len(record) > self.max_bytes:
            self._rotate()
            file = self._open()
        file.write(record)

    def _flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def _open(self) -> IO[bytes]:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")
        return self._file

    def _rotate(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        logfiles.rotate(self.path, self.backups)


class DeploymentLogs:
    """The log folder of one deployment."""

    def __init__(self, folder: Path, deployment_id: str, *, max_bytes: int, backups: int) -> None:
        self.folder = folder
        self.deployment_id = deployment_id
        self._max_bytes = max_bytes
        self._backups = backups

    def instance(self, instance_id: str) -> LogFile:
        return self._file(instance_id)

    def storage_initializer(self) -> LogFile:
        return self._file(STORAGE_INITIALIZER)

    def tail(self, container: ContainerType, lines: int) -> str:
        """The newest ``lines`` lines of the container's output, oldest first."""
        if lines <= 0 or not self.folder.is_dir():
            return ""
        if container is ContainerType.STORAGE_INITIALIZER:
            return "\n".join(logfiles.tail(self.folder / f"{STORAGE_INITIALIZER}{_SUFFIX}", lines))
        streams = []
        for path in sorted(self.folder.glob(f"*{_SUFFIX}")):
            instance_id = path.name.removesuffix(_SUFFIX)
            if instance_id == STORAGE_INITIALIZER:
                continue
            stored = logfiles.tail(path, lines)
            streams.append([(line[:_TIMESTAMP_WIDTH], instance_id, line) for line in stored])
        # Each file is in time order already; merging keeps that order and interleaves by time.
        merged = list(heapq.merge(*streams, key=lambda entry: entry[0]))[-lines:]
        return "\n".join(
            f"{line[:_TIMESTAMP_WIDTH]} [{instance_id}]{line[_TIMESTAMP_WIDTH:]}"
            for _, instance_id, line in merged
        )

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def _file(self, name: str) -> LogFile:
        self.folder.mkdir(parents=True, exist_ok=True)
        label = self.folder / "deployment.txt"
        if not label.exists():
            label.write_text(self.deployment_id + "\n")
        return LogFile(
            self.folder / f"{name}{_SUFFIX}", max_bytes=self._max_bytes, backups=self._backups
        )


class LogStore:
    """Where every deployment's logs live (``DATA_DIR/logs/deployments``)."""

    def __init__(self, root: Path, *, max_bytes: int = 10 * 1024 * 1024, backups: int = 2) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.backups = backups

    def deployment(self, deployment_id: str) -> DeploymentLogs:
        digest = hashlib.sha256(canonical(deployment_id).encode()).hexdigest()[:16]
        return DeploymentLogs(
            self.root / digest, deployment_id, max_bytes=self.max_bytes, backups=self.backups
        )
