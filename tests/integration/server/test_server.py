"""`propylon server` as a newcomer meets it: HTTPS, bootstrap, restart, clean errors."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from propylon.testing import RunningServer, free_port

pytestmark = pytest.mark.slow


def test_healthz_over_https_with_the_local_ca(server: RunningServer) -> None:
    result = subprocess.run(
        ["curl", "-sS", "--cacert", str(server.ca_cert), f"{server.control_url}/healthz"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout)["status"] == "Healthy"


def test_gateway_port_answers_health_and_metrics(server: RunningServer) -> None:
    with server.client() as client:
        assert client.get(f"{server.gateway_url}/healthz").json()["plane"] == "gateway"
        metrics = client.get(f"{server.gateway_url}/metrics")
    assert metrics.status_code == 200
    assert "propylon_gateway_requests_total" in metrics.text


def test_every_answer_carries_request_ids_and_echoes_the_client_id(server: RunningServer) -> None:
    with server.client() as client:
        response = client.get(
            f"{server.control_url}/no/such/path", headers={"x-ms-client-request-id": "abc-123"}
        )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NotFound"
    assert response.headers["x-ms-request-id"] == response.headers["x-request-id"]
    assert response.headers["x-ms-client-request-id"] == "abc-123"


def test_bootstrap_file_is_private_and_complete(server: RunningServer) -> None:
    path = server.data_dir / "bootstrap.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    info = server.bootstrap
    for field in (
        "tenant_id",
        "subscription_id",
        "resource_group",
        "workspace",
        "admin_client_id",
        "admin_client_secret",
        "authority",
        "control_plane_url",
        "gateway_url",
        "ca_cert",
    ):
        assert info[field], field
    assert info["resource_group"] == "default-rg"
    assert info["workspace"] == "default-ws"
    assert info["control_plane_url"] == server.control_url
    assert Path(info["ca_cert"]).exists()


def test_restart_keeps_tenant_secret_and_certificates(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with RunningServer.start(data) as first:
        before = first.bootstrap
        ca = (data / "tls" / "ca.pem").read_bytes()
    with RunningServer.start(data) as second:
        after = second.bootstrap
        assert (data / "tls" / "ca.pem").read_bytes() == ca
    for field in ("tenant_id", "subscription_id", "admin_client_id", "admin_client_secret"):
        assert after[field] == before[field]


def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    running = RunningServer.start(tmp_path / "data")
    assert running.stop() == 0
    assert '"stopped"' in running.log_text()


def test_sigterm_does_not_wait_for_idle_keep_alive_tls_clients(tmp_path: Path) -> None:
    """A client holding an idle TLS connection never answers the server's close_notify; the
    server closes such connections for good instead of waiting out its 20 s grace period."""
    running = RunningServer.start(tmp_path / "data")
    clients = [httpx.Client(verify=running.verify) for _ in range(2)]
    try:
        for client, url in zip(clients, (running.control_url, running.gateway_url), strict=True):
            assert client.get(f"{url}/healthz").status_code == 200  # then idle in its pool
        assert running.stop(timeout=10) == 0  # 10 s: half the grace period
    finally:
        for client in clients:
            client.close()
        running.kill()
    assert "timeout graceful shutdown exceeded" not in running.log_text()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``propylon server …`` on free ports unless the arguments name them."""
    if args[0] == "server" and "--port" not in args:
        args = (*args, "--port", str(free_port()), "--gateway-port", str(free_port()))
    return subprocess.run(
        [sys.executable, "-m", "propylon", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def assert_one_clear_line(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(error_lines) == 1, result.stderr
    assert fragment in error_lines[0]


def test_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            "server", "--data-dir", str(tmp_path / "d"), "--port", str(port),
            "--gateway-port", str(free_port()),
        )  # fmt: skip
    assert_one_clear_line(result, f"port {port}")


def test_unwritable_data_dir_is_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_cli("server", "--data-dir", str(blocker / "data"))
    assert_one_clear_line(result, "not writable")


def test_malformed_database_url_is_one_clear_line(tmp_path: Path) -> None:
    result = run_cli(
        "server",
        "--data-dir",
        str(tmp_path / "d"),
        env={"PROPYLON_DATABASE_URL": "postgresql+psycopg://u:pw@[bad"},
    )
    assert_one_clear_line(result, "database URL")
    assert "pw" not in result.stderr


def test_wrong_master_key_is_one_clear_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    RunningServer.start(data).stop()
    other = "A" * 43
    result = run_cli("server", "--data-dir", str(data), env={"PROPYLON_MASTER_KEY": other})
    assert_one_clear_line(result, "master key")


def test_plain_http_mode_serves_without_tls(tmp_path: Path) -> None:
    with RunningServer.start(tmp_path / "data", tls=False) as running:
        assert httpx.get(f"{running.control_url}/healthz").status_code == 200
        assert running.bootstrap["ca_cert"] is None


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_refuses_the_server_without_the_ca(server: RunningServer) -> None:
    result = subprocess.run(
        ["curl", "-sS", f"{server.control_url}/healthz"], capture_output=True, check=False
    )
    assert result.returncode != 0
