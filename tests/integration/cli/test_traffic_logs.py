"""``propylon ml online-endpoint get-logs --traffic`` asks the server, as ``az`` would ask Azure.

The gateway's traffic log comes back through ``GET …/onlineEndpoints/{name}/trafficLogs``: the
newest records last, Azure's field names, the caller's identity but never the credential; reading
it needs ``onlineEndpoints/read`` on the endpoint, and an unknown endpoint is a 404.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cli_shell import Shell

from live_platform import LivePlatform
from propylon.testing import RunningServer, wait_until

pytestmark = pytest.mark.slow


def test_get_logs_traffic_reads_the_servers_log_without_a_data_dir(
    server: RunningServer, tmp_path: Path
) -> None:
    live = LivePlatform(server)
    try:
        live.endpoint("traffic-cli", "Key")
        live.deploy("traffic-cli", "blue", live.echo_code())
        key = live.keys("traffic-cli")["primaryKey"]
        live.wait_scoring("traffic-cli", key)
        marker = f"cli-{time.monotonic_ns()}"
        for index in range(3):
            answer = live.http.post(
                live.score_url("traffic-cli"),
                headers={
                    "Authorization": f"Bearer {key}",
                    "x-ms-client-request-id": f"{marker}-{index}",
                },
                json={"n": index},
            )
            assert answer.status_code == 200, answer.text
        refused = live.score("traffic-cli", "not-the-key")
        assert refused.status_code == 401

        admin = Shell(tmp_path / "admin-config", tmp_path)
        admin.ok("login", "--data-dir", str(server.data_dir), "--service-principal")
        admin.ok("configure", "--defaults", "group=default-rg", "workspace=default-ws")

        def newest(lines: int) -> list[dict[str, object]]:
            records: list[dict[str, object]] = admin.json(
                "ml", "online-endpoint", "get-logs", "-n", "traffic-cli", "--traffic",
                "--lines", str(lines),
            )  # fmt: skip
            return records

        # the traffic log is flushed off the request path, about once a second
        def all_four() -> list[dict[str, object]] | None:
            records = newest(4)
            return records if records and records[-1]["ResponseCode"] == 401 else None

        records = wait_until(all_four, timeout=10)
        assert [r["XMSClientRequestId"] for r in records[:3]] == [f"{marker}-{i}" for i in range(3)]
        assert {r["AuthType"] for r in records} == {"Key"}
        assert records[0]["DeploymentName"] == "blue"
        assert records[0]["EndpointName"] == "traffic-cli"
        assert key not in str(records)
        assert len(newest(2)) == 2

        nobody = live.user("traffic-reader")
        reader = Shell(tmp_path / "reader-config", tmp_path)
        reader.ok(
            "login", "--data-dir", str(server.data_dir), "-u", nobody.login, "-p", nobody.secret
        )
        reader.ok("configure", "--defaults", "group=default-rg", "workspace=default-ws")
        refusal = reader.fails("ml", "online-endpoint", "get-logs", "-n", "traffic-cli")
        assert "AuthorizationFailed" in refusal
        assert "onlineEndpoints/read" in refusal
        missing = admin.fails("ml", "online-endpoint", "get-logs", "-n", "no-such-endpoint")
        assert "ResourceNotFound" in missing
    finally:
        live.close()
