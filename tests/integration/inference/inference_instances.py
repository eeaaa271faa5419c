"""A real inference-server process in a test: ``python -m propylon.inference`` as the runtime
starts it, with Azure's environment variables, its stderr kept for the assertions.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"


@dataclass
class Instance:
    process: subprocess.Popen[bytes]
    url: str
    stderr_path: Path
    uds: str | None = None

    def client(self, **kwargs: object) -> httpx.Client:
        transport = httpx.HTTPTransport(uds=self.uds) if self.uds else None
        return httpx.Client(base_url=self.url, transport=transport, timeout=10, **kwargs)  # type: ignore[arg-type]

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"instance exited {self.process.returncode}:\n{self.stderr}"
                    )
                # httpcore leaks the socket when a Unix socket path does not exist yet.
                listening = self.uds is None or Path(self.uds).exists()
                with contextlib.suppress(httpx.TransportError):
                    if listening and client.get("/readyz").status_code == 200:
                        return
                time.sleep(0.05)
        raise AssertionError(f"instance not ready after {timeout} s:\n{self.stderr}")

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, then wait; a process that needs SIGKILL fails the test."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"instance ignored SIGTERM for {timeout} s:\n{self.stderr}"
            ) from None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


StartInstance = Callable[..., Instance]
