"""``propylon identity rotate-keys`` against a running server: publish first, then sign."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx
import jwt
import pytest

from propylon.testing import RunningServer, wait_until

pytestmark = pytest.mark.slow

ARM = "https://management.azure.com"


def rotate(server: RunningServer, *flags: str) -> dict[str, Any]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "propylon",
            "identity",
            "rotate-keys",
            "--data-dir",
            str(server.data_dir),
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    key: dict[str, Any] = json.loads(result.stdout)
    return key


def published(client: httpx.Client, server: RunningServer) -> set[str]:
    tenant = server.bootstrap["tenant_id"]
    keys = client.get(f"{server.control_url}/{tenant}/discovery/v2.0/keys").json()["keys"]
    return {k["kid"] for k in keys}


def admin_token(client: httpx.Client, server: RunningServer) -> str:
    boot = server.bootstrap
    response = client.post(
        f"{server.control_url}/{boot['tenant_id']}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": boot["admin_client_id"],
            "client_secret": boot["admin_client_secret"],
            "scope": f"{ARM}/.default",
        },
    )
    token: str = response.json()["access_token"]
    return token


def kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def test_rotation_publishes_before_signing_and_old_tokens_keep_working(
    server: RunningServer,
) -> None:
    with server.client() as client:
        old_token = admin_token(client, server)
        old_kid = kid(old_token)

        pending = rotate(server)
        assert pending["state"] == "pending"
        wait_until(lambda: pending["kid"] in published(client, server), timeout=5)
        assert kid(admin_token(client, server)) == old_kid  # published, not signing yet

        urgent = rotate(server, "--immediate")
        assert urgent["state"] == "active"
        wait_until(lambda: kid(admin_token(client, server)) == urgent["kid"], timeout=5)
        assert {old_kid, pending["kid"], urgent["kid"]} <= published(client, server)

        still = client.get(
            f"{server.control_url}/v1.0/users", headers={"Authorization": f"Bearer {old_token}"}
        )
        assert still.status_code == 200  # signed by the retired key, still within its life

    listed = subprocess.run(
        [sys.executable, "-m", "propylon", "identity", "keys", "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    states = {k["kid"]: k["state"] for k in json.loads(listed.stdout)}
    assert states[urgent["kid"]] == "active"
    assert states[old_kid] == "retired"


def test_rotate_keys_outside_a_data_dir_is_one_clear_line(tmp_path: Any) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "propylon",
            "identity",
            "rotate-keys",
            "--data-dir",
            str(tmp_path / "none"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "not a Propylon data dir" in result.stderr
