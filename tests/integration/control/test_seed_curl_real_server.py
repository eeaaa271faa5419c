"""Seed 003's REST calls, run with ``curl`` against a real server: only the host is changed.

The control-plane token comes from the built-in identity provider (client credentials of the
bootstrap administrator), as ``$CONTROL_PLANE_TOKEN`` does in the seed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest

from propylon.testing import RunningServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
]


def _curl(server: RunningServer, *args: str) -> tuple[int, dict[str, Any]]:
    ca = ["--cacert", server.ca_cert] if server.ca_cert else []
    completed = subprocess.run(
        ["curl", "--silent", "--location", *ca, "--write-out", "\n%{http_code}", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    body, _, status = completed.stdout.rpartition("\n")
    return int(status), json.loads(body) if body.strip() else {}


def _control_plane_token(server: RunningServer) -> str:
    boot = server.bootstrap
    status, reply = _curl(
        server,
        "--request",
        "POST",
        f"{server.control_url}/{boot['tenant_id']}/oauth2/v2.0/token",
        "--data-urlencode",
        "grant_type=client_credentials",
        "--data-urlencode",
        f"client_id={boot['admin_client_id']}",
        "--data-urlencode",
        f"client_secret={boot['admin_client_secret']}",
        "--data-urlencode",
        "scope=https://management.azure.com/.default",
    )
    assert status == 200, reply
    return str(reply["access_token"])


def test_seed_003_rest_calls_with_curl(server: RunningServer) -> None:
    boot = server.bootstrap
    token = _control_plane_token(server)
    base = (
        f"{server.control_url}/subscriptions/{boot['subscription_id']}/resourceGroups/"
        f"{boot['resource_group']}/providers/Microsoft.MachineLearningServices/workspaces/"
        f"{boot['workspace']}/onlineEndpoints/my-aad-auth-endp1"
    )
    query = "?api-version=2023-04-01"
    status, created = _curl(
        server,
        "--request",
        "PUT",
        base + query,
        "--header",
        "Content-Type: application/json",
        "--header",
        f"Authorization: Bearer {token}",
        "--data-raw",
        '{"identity": {"type": "systemAssigned"}, "properties": {"authMode": "AADToken"}, '
        '"location": "local"}',
    )
    assert status == 201, created
    assert created["properties"]["authMode"] == "AADToken"
    operation = created["properties"]["properties"]["AzureAsyncOperationUri"]
    for _ in range(100):
        status, polled = _curl(server, operation, "--header", f"Authorization: Bearer {token}")
        if polled.get("status") in ("Succeeded", "Failed"):
            break
    assert polled["status"] == "Succeeded"

    status, shown = _curl(
        server,
        base + query,
        "--header",
        "Content-Type: application/json",
        "--header",
        f"Authorization: Bearer {token}",
    )
    assert status == 200
    assert shown["properties"]["provisioningState"] == "Succeeded"
    assert shown["properties"]["scoringUri"] == (
        f"{server.gateway_url}/endpoints/my-aad-auth-endp1/score"
    )
    assert shown["identity"]["principalId"]

    for action, mode in (("token", "AMLToken"), ("listKeys", "Key")):
        status, refused = _curl(
            server,
            "-H",
            "Content-Length: 0",
            "--request",
            "POST",
            f"{base}/{action}{query}",
            "--header",
            f"Authorization: Bearer {token}",
        )
        assert status == 400
        assert mode in refused["error"]["message"]

    status, _ = _curl(server, base + query)
    assert status == 401


def test_key_and_aml_token_endpoints_hand_out_their_credentials(server: RunningServer) -> None:
    boot = server.bootstrap
    token = _control_plane_token(server)
    workspace = (
        f"{server.control_url}/subscriptions/{boot['subscription_id']}/resourceGroups/"
        f"{boot['resource_group']}/providers/Microsoft.MachineLearningServices/workspaces/"
        f"{boot['workspace']}"
    )
    auth = ["--header", f"Authorization: Bearer {token}"]
    for name, mode, action, fields in (
        ("curl-key-ep", "Key", "listKeys", {"primaryKey", "secondaryKey"}),
        (
            "curl-aml-ep",
            "AMLToken",
            "token",
            {"accessToken", "expiryTimeUtc", "refreshAfterTimeUtc"},
        ),
    ):
        url = f"{workspace}/onlineEndpoints/{name}?api-version=2022-05-01"
        status, _ = _curl(
            server,
            "--request",
            "PUT",
            url,
            *auth,
            "--header",
            "Content-Type: application/json",
            "--data-raw",
            json.dumps({"properties": {"authMode": mode}, "location": "local"}),
        )
        assert status == 201
        status, reply = _curl(
            server,
            "-H",
            "Content-Length: 0",
            "--request",
            "POST",
            url.replace("?", f"/{action}?"),
            *auth,
        )
        assert status == 200, reply
        assert fields <= set(reply)
