"""``propylon.client.MLClient`` with real azure-identity credentials against a real server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from azure.identity import ClientSecretCredential

from propylon.client import (
    EndpointAuthKeys,
    EndpointAuthToken,
    ManagedOnlineEndpoint,
    MLClient,
    default_credential,
    load_online_deployment,
)
from propylon.errors import NotFound
from propylon.testing import RunningServer

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]


def _client(server: RunningServer, credential: object) -> MLClient:
    info = server.bootstrap
    return MLClient(
        credential,  # type: ignore[arg-type]
        info["subscription_id"],
        info["resource_group"],
        info["workspace"],
        server=server.control_url,
        ca_cert=server.ca_cert,
    )


def _secret_credential(server: RunningServer) -> ClientSecretCredential:
    info = server.bootstrap
    return ClientSecretCredential(
        info["tenant_id"],
        info["admin_client_id"],
        info["admin_client_secret"],
        authority=info["authority"],
        disable_instance_discovery=True,
        connection_verify=server.ca_cert,
    )


def test_endpoint_lifecycle_with_client_secret_credential(server: RunningServer) -> None:
    with _client(server, _secret_credential(server)) as client:
        poller = client.online_endpoints.begin_create_or_update(
            ManagedOnlineEndpoint(name="sdk-key", auth_mode="key", tags={"made-by": "sdk"})
        )
        endpoint = poller.result()
        assert endpoint.provisioning_state == "Succeeded"
        assert endpoint.scoring_uri is not None
        assert "sdk-key" in [e.name for e in client.online_endpoints.list()]
        keys = client.online_endpoints.get_keys("sdk-key")
        assert isinstance(keys, EndpointAuthKeys)
        client.online_endpoints.begin_regenerate_keys("sdk-key", key_type="secondary").result()
        again = client.online_endpoints.get_keys("sdk-key")
        assert isinstance(again, EndpointAuthKeys)
        assert again.primary_key == keys.primary_key
        assert again.secondary_key != keys.secondary_key
        client.online_endpoints.begin_create_or_update(
            ManagedOnlineEndpoint(name="sdk-token", auth_mode="aml_token")
        ).result()
        token = client.online_endpoints.get_keys("sdk-token")
        assert isinstance(token, EndpointAuthToken)
        assert token.refresh_after_time_utc <= token.expiry_time_utc
        client.online_endpoints.begin_delete("sdk-key").result()
        with pytest.raises(NotFound):
            client.online_endpoints.get("sdk-key")


def test_default_credential_from_environment_variables(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    info = server.bootstrap
    monkeypatch.setenv("PROPYLON_CONFIG_DIR", str(tmp_path / "nobody"))
    monkeypatch.setenv("AZURE_TENANT_ID", info["tenant_id"])
    monkeypatch.setenv("AZURE_CLIENT_ID", info["admin_client_id"])
    monkeypatch.setenv("AZURE_CLIENT_SECRET", info["admin_client_secret"])
    credential = default_credential(authority=info["authority"], ca_cert=server.ca_cert)
    with _client(server, credential) as client:
        assert isinstance(client.online_endpoints.list(), list)


def test_deploy_and_invoke_an_aad_token_endpoint(server: RunningServer, tmp_path: Path) -> None:
    """What azure-ai-ml cannot do: invoke an aad_token endpoint (RBAC decides)."""
    subprocess.run(
        [sys.executable, str(REPO / "examples" / "model-1" / "train.py")],
        check=True,
        capture_output=True,
    )
    with _client(server, _secret_credential(server)) as client:
        client.online_endpoints.begin_create_or_update(
            ManagedOnlineEndpoint(name="sdk-aad", auth_mode="aad_token")
        ).result()
        deployment = load_online_deployment(REPO / "examples" / "deployments" / "blue.yml")
        deployment.endpoint_name = "sdk-aad"
        assert client.online_deployments.begin_create_or_update(deployment).result().name == "blue"
        endpoint = client.online_endpoints.get("sdk-aad")
        endpoint.traffic = {"blue": 100}
        client.online_endpoints.begin_create_or_update(endpoint).result()
        request = REPO / "examples" / "model-1" / "sample-request.json"
        # The admin is Owner, and Owner's "*" includes …/onlineEndpoints/score/action.
        predictions = json.loads(client.online_endpoints.invoke("sdk-aad", request_file=request))
        assert len(predictions) == 2
        assert "Init complete" in client.online_deployments.get_logs("blue", "sdk-aad", lines=50)
