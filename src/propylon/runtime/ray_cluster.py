"""A throwaway Ray head on this machine, for tests, benchmarks and the demo of the Ray backend.

Started with Ray's own command (``ray start --head --block``) in a session of its own, in a
short temporary directory (Ray's Unix socket paths must stay under ~107 characters, which a
pytest ``tmp_path`` exceeds), with no dashboard and explicit ports, so that two heads on one
machine do not collide. :meth:`LocalRayHead.stop` ends exactly the processes of that session,
by id: ``ray stop`` would end every Ray process of the machine. Nothing here imports Ray.
Example::

    with LocalRayHead.start(num_cpus=2) as head:
        backend = RayBackend(resources, address=head.address, http_port=head.serve_port)
        …
        head.processes("ray::ServeReplica:my-endpoint_blue:")   # replica pids
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = ["LocalRayHead"]

_STARTED = "Ray runtime started"
_ADDRESS = re.compile(r"ray start --address='([^']+)'")
_OBJECT_STORE_BYTES = 200 * 1024 * 1024


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ray_command() -> Path:
    return Path(sys.executable).with_name("ray")


@dataclass
class LocalRayHead:
    """A running head: ``address`` for ``ray.init``, ``serve_port`` free for Serve's proxy."""

    root: Path
    address: str
    serve_port: int
    process: subprocess.Popen[bytes]

    @staticmethod
    def unavailable() -> str | None:
        """Why a head cannot be started here (Ray not installed), or None."""
        import importlib.util

        if importlib.util.find_spec("ray") is None or not _ray_command().exists():
            return "Ray is not installed (pip install 'propylon[ray]')"
        if importlib.util.find_spec("ray.serve") is None:
            return "Ray Serve is not installed (pip install 'ray[serve]')"
        return None

    @classmethod
    def start(cls, *, num_cpus: float = 2, timeout: float = 120.0) -> LocalRayHead:
        root = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
        port = _free_port()
        environment = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
        environment["RAY_USAGE_STATS_ENABLED"] = "0"
        # A head for one machine and its tests: no token authentication, whatever a local
        # ray.init() elsewhere left in ~/.ray/auth_token (Ray 2.60 makes one and then enables
        # token authentication on every later head, which drivers without the token cannot join).
        environment.setdefault("RAY_AUTH_MODE", "disabled")
        output = (root / "ray-start.log").open("wb")
        command = [
            str(_ray_command()),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            f"--num-cpus={num_cpus}",
            f"--temp-dir={root}",
            "--include-dashboard=false",
            "--dashboard-host=127.0.0.1",
            f"--ray-client-server-port={_free_port()}",
            f"--dashboard-agent-listen-port={_free_port()}",
            f"--object-store-memory={_OBJECT_STORE_BYTES}",
            "--disable-usage-stats",
        ]
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,  # its own session: stop() finds every process by session id
        )
        output.close()
        head = cls(root, f"127.0.0.1:{port}", _free_port(), process)
        deadline = time.monotonic() + timeout
        while True:
            text = (root / "ray-start.log").read_text(errors="replace")
            if _STARTED in text:
                match = _ADDRESS.search(text)
                if match is not None:
                    head.address = match[1]
                return head
            if process.poll() is not None or time.monotonic() > deadline:
                head.stop()
                raise RuntimeError(f"ray start did not start a head:\n{text[-3000:]}")
            time.sleep(0.2)

    def processes(self, title_prefix: str = "") -> list[int]:
        """Pids of the head's processes whose command line starts with ``title_prefix``."""
        found = []
        for pid in _session_members(self.process.pid):
            with contextlib.suppress(OSError):
                raw = Path(f"/proc/{pid}/cmdline").read_bytes()
                if raw.replace(b"\0", b" ").decode(errors="replace").startswith(title_prefix):
                    found.append(pid)
        return found

    def stop(self, *, grace: float = 2.0) -> None:
        """End every process of the head's session (TERM, then KILL), remove its directory."""
        members = _session_members(self.process.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(grace)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(pid) for pid in members):
            time.sleep(0.1)
        members |= _session_members(self.process.pid)
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        # The pip environments Ray built (full copies of a virtualenv when the cluster runs in
        # one) can take most of a minute to delete: a detached rm does it without waiting.
        built = [
            session / "runtime_resources"
            for session in self.root.glob("session_2*")  # not the session_latest link
            if (session / "runtime_resources").is_dir()
        ]
        leftovers = self.root.with_name(self.root.name + "-runtime-resources")
        if built:
            leftovers.mkdir(exist_ok=True)
            for number, folder in enumerate(built):
                folder.rename(leftovers / str(number))
        shutil.rmtree(self.root, ignore_errors=True)
        if built:
            # sh puts rm in the background and returns: nothing is left to wait for.
            subprocess.run(
                ["sh", "-c", 'rm -rf -- "$0" &', str(leftovers)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                check=False,
            )

    def __enter__(self) -> LocalRayHead:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _session_members(session: int) -> set[int]:
    members = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            # Fields after the parenthesised command name: state ppid pgrp session …
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == session and fields[0] != "Z":
                members.add(int(entry.name))
    return members


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
