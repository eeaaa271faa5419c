"""Helpers for tests, benchmarks and the demo: real servers on loopback, a throwaway PostgreSQL.

Shipped as real code (not hidden in conftest) so that the demo, the benchmarks and users' own tests
start a server exactly the same way. Example::

    with RunningServer.start(tmp_path / "data") as server:
        server.client().get(server.control_url + "/healthz")
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

__all__ = ["PostgresServer", "RunningServer", "free_port", "wait_until"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Any, *, timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns a truthy value; raise TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


@dataclass
class RunningServer:
    """A ``propylon server`` subprocess on loopback ports."""

    data_dir: Path
    port: int
    gateway_port: int
    process: subprocess.Popen[bytes]
    tls: bool = True
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None

    @classmethod
    def start(
        cls,
        data_dir: Path,
        *,
        port: int | None = None,
        gateway_port: int | None = None,
        tls: bool = True,
        role: str = "all",
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
        timeout: float = 60.0,
        detach: bool = False,
    ) -> RunningServer:
        """Start and wait until healthy; ``detach`` lets the server outlive this process."""
        port = port or free_port()
        gateway_port = gateway_port or free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        environment = {**os.environ, **(env or {})}
        environment.setdefault("PROPYLON_LOG_LEVEL", "info")
        args = [
            sys.executable,
            "-m",
            "propylon",
            "server",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--gateway-port",
            str(gateway_port),
            "--role",
            role,
            *(() if tls else ("--no-tls",)),
            *(extra_args or ()),
        ]
        (data_dir / "logs").mkdir(parents=True, exist_ok=True)
        log_path = data_dir / "logs" / f"server-{port}.out"
        log_file = log_path.open("ab")
        process = subprocess.Popen(
            args, env=environment, stdout=log_file, stderr=log_file, start_new_session=detach
        )
        log_file.close()
        server = cls(data_dir, port, gateway_port, process, tls, env or {}, log_path)
        try:
            server.wait_healthy(timeout=timeout, role=role)
        except BaseException:
            server.kill()
            raise
        return server

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def control_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def gateway_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.gateway_port}"

    @property
    def ca_cert(self) -> str | None:
        return str(self.data_dir / "tls" / "ca.pem") if self.tls else None

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What httpx needs to trust this server: an SSL context with its CA."""
        if self.ca_cert is None:
            return True
        return ssl.create_default_context(cafile=self.ca_cert)

    @property
    def bootstrap(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.data_dir / "bootstrap.json").read_text())
        return data

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(verify=self.verify, timeout=30.0, **kwargs)

    def token(
        self,
        resource: str = "https://management.azure.com",
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> str:
        """An access token by the client-credentials grant (the bootstrap admin by default)."""
        info = self.bootstrap
        with self.client() as client:
            response = client.post(
                f"{self.control_url}/{info['tenant_id']}/oauth2/v2.0/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": client_id or info["admin_client_id"],
                    "client_secret": client_secret or info["admin_client_secret"],
                    "scope": f"{resource}/.default",
                },
            )
        response.raise_for_status()
        return str(response.json()["access_token"])

    @property
    def workspace_id(self) -> str:
        info = self.bootstrap
        return (
            f"/subscriptions/{info['subscription_id']}/resourceGroups/{info['resource_group']}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{info['workspace']}"
        )

    def wait_healthy(self, *, timeout: float = 60.0, role: str = "all") -> None:
        url = (self.gateway_url if role == "gateway" else self.control_url) + "/healthz"

        def healthy() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.process.returncode}:\n{self.log_text()[-4000:]}"
                )
            if self.ca_cert is not None and not Path(self.ca_cert).exists():
                return False
            try:
                return httpx.get(url, verify=self.verify, timeout=2.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout=timeout, interval=0.1)

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster (``initdb`` + ``pg_ctl``) in a temp dir on a free port.

    PostgreSQL refuses to run as root; as root it runs as the ``postgres`` user via ``runuser``.
    """

    directory: Path
    port: int
    owner_is_postgres: bool

    @staticmethod
    def available() -> str | None:
        """None when PostgreSQL can be started here, else why not."""
        for tool in ("initdb", "pg_ctl"):
            if shutil.which(tool) is None:
                return f"{tool} is not on PATH"
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            return "running as root without runuser to switch to the postgres user"
        return None

    @classmethod
    def start(cls) -> PostgresServer:
        as_postgres = os.geteuid() == 0
        directory = Path(tempfile.mkdtemp(prefix="propylon-pg-"))
        if as_postgres:
            shutil.chown(directory, "postgres", "postgres")
        server = cls(directory, free_port(), as_postgres)
        server._run("initdb", "-D", str(directory / "data"), "-U", "postgres", "-A", "trust")
        server._run(
            "pg_ctl",
            "-D",
            str(directory / "data"),
            "-l",
            str(directory / "log"),
            "-o",
            f"-p {server.port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off",
            "-w",
            "start",
        )
        return server

    def _run(self, *args: str) -> None:
        command = list(args)
        if self.owner_is_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url().replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)

    @contextlib.contextmanager
    def running(self) -> Iterator[PostgresServer]:
        try:
            yield self
        finally:
            self.stop()
