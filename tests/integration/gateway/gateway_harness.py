"""Real pieces for the gateway's integration tests: echo-model instance processes and a gateway
served by uvicorn (as ``propylon server`` serves it) in a thread, on a real store.

The gateway runs in this process so that tests can change its store, mint tokens and edit role
assignments directly, the way the control plane would — without depending on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn
import uvloop

from propylon.config import Settings
from propylon.gateway.testing import LocalAccess, StoreSeeder
from propylon.server.app import build_context, create_gateway_app
from propylon.server.context import ServerContext
from propylon.server.run import uvicorn_config
from propylon.testing import free_port, wait_until

ROOT = Path(__file__).resolve().parents[3]
ECHO = ROOT / "examples" / "echo"


@dataclass
class EchoInstance:
    """``python -m propylon.inference`` serving the echo model; ``env`` sets its behaviour."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, name: str, logs: Path, *, workers: int = 4, **env: str) -> EchoInstance:
        port = free_port()
        log = logs / f"instance-{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "propylon.inference",
                    "--port",
                    str(port),
                    "--app-root",
                    str(ECHO),
                    "--entry-script",
                    "score.py",
                    "--worker-count",
                    str(workers),
                ],
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return cls(name, port, process, log)

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"instance {self.name} exited:\n{self.log.read_text()[-2000:]}")
            try:
                return httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=60, interval=0.1)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class InProcessGateway:
    """The gateway port of a server context, served by uvicorn in a background thread."""

    ctx: ServerContext
    access: LocalAccess
    port: int = field(default_factory=free_port)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def seed(self) -> StoreSeeder:
        return StoreSeeder(self.ctx.resources, self.ctx.vault, self.ctx.tenancy.workspace_id)

    @classmethod
    def start(cls, data_dir: Path) -> InProcessGateway:
        ctx = build_context(Settings.from_env(data_dir=data_dir, tls=False))
        access = LocalAccess()
        ctx.services["access"] = access
        gateway = cls(ctx, access)
        app = create_gateway_app(ctx)
        # As `propylon server` serves its gateway port: the same protocol (fast lane) and settings.
        config = uvicorn_config(
            app, tls=None, gateway=ctx.services["gateway"], host="127.0.0.1", port=gateway.port
        )
        gateway._server = uvicorn.Server(config)
        gateway._thread = threading.Thread(target=gateway._run, name="gateway", daemon=True)
        gateway._thread.start()
        wait_until(gateway._healthy, timeout=30, interval=0.05)
        return gateway

    def _run(self) -> None:
        uvloop.run(self._main())

    async def _main(self) -> None:
        assert self._server is not None
        feed = asyncio.create_task(self.ctx.feed.run())
        serving = asyncio.create_task(self._server.serve())
        for hook in self.ctx.on_startup:
            await hook()
        await serving
        for hook in reversed(self.ctx.on_shutdown):
            await hook()
        feed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feed

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        assert self._server is not None
        assert self._thread is not None
        self._server.should_exit = True
        self._thread.join(30)
        self.ctx.db.dispose()

    def record_change(self, kind: str, key: str) -> None:
        """What the control plane writes with a role-assignment change (the feed's signal)."""
        with self.ctx.db.transaction() as session:
            self.ctx.db.record_change(session, kind, key)


@contextlib.contextmanager
def flowing(url: str, headers: dict[str, str], *, until: int) -> Iterator[list[int]]:
    """Requests sent back to back in a thread while the block runs; yields their statuses.

    The flow stops by itself after three answers in a row are ``until`` (the refusal the test
    waits for), so that it does not trip the gateway's failed-authentication throttle.
    """
    statuses: list[int] = []
    stop = threading.Event()

    def loop() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set() and statuses[-3:] != [until] * 3:
                statuses.append(client.post(url, headers=headers, content=b"{}").status_code)

    worker = threading.Thread(target=loop, daemon=True)
    worker.start()
    try:
        yield statuses
    finally:
        stop.set()
        worker.join(15)
