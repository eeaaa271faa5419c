"""MLClient used as the seed's Python snippets use azure-ai-ml's, plus what azure-ai-ml cannot do
(invoking an aad_token endpoint), against the in-memory fake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from azure.identity import ChainedTokenCredential, CredentialUnavailableError, EnvironmentCredential

from fake_propylon import (
    GATEWAY,
    RESOURCE_GROUP,
    SERVER,
    SUBSCRIPTION,
    WORKSPACE,
    FakeCredential,
    FakeServer,
)
from propylon.client import (
    CliCredential,
    EndpointAadToken,
    EndpointAuthKeys,
    EndpointAuthToken,
    ManagedOnlineEndpoint,
    MLClient,
    default_credential,
    load_online_deployment,
    load_online_endpoint,
)
from propylon.errors import NotFound

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.fixture
def client(fake: FakeServer, credential: FakeCredential) -> MLClient:
    return MLClient(
        credential,
        SUBSCRIPTION,
        RESOURCE_GROUP,
        WORKSPACE,
        server=SERVER,
        transport=fake.transport(),
        polling_interval=0,
    )


@pytest.fixture
def fake() -> FakeServer:
    return FakeServer()


@pytest.fixture
def credential() -> FakeCredential:
    return FakeCredential()


def test_seed_python_snippet(client: MLClient) -> None:
    endpoint = ManagedOnlineEndpoint(
        name="my-endpoint",
        description="this is a sample online endpoint",
        auth_mode="aad_token",
        tags={"foo": "bar"},
    )
    created = client.online_endpoints.begin_create_or_update(endpoint).result()
    assert created.provisioning_state == "Succeeded"
    assert client.online_endpoints.get(name="my-endpoint").scoring_uri == (
        f"{GATEWAY}/endpoints/my-endpoint/score"
    )
    assert [e.name for e in client.online_endpoints.list()] == ["my-endpoint"]


def test_get_keys_shapes_per_auth_mode(client: MLClient, fake: FakeServer) -> None:
    fake.put_endpoint("k", "Key")
    fake.put_endpoint("a", "AMLToken")
    fake.put_endpoint("d", "AADToken")
    keys = client.online_endpoints.get_keys("k")
    assert isinstance(keys, EndpointAuthKeys)
    assert keys.primary_key == "pk-1"
    token = client.online_endpoints.get_keys("a")
    assert isinstance(token, EndpointAuthToken)
    assert token.refresh_after_time_utc < token.expiry_time_utc
    aad = client.online_endpoints.get_keys("d")
    assert isinstance(aad, EndpointAadToken)
    assert aad.access_token == "token:https://ml.azure.com/.default"


def test_invoke_aad_token_endpoint_with_the_callers_identity(
    client: MLClient, fake: FakeServer, credential: FakeCredential, tmp_path: Path
) -> None:
    fake.put_endpoint("d", "AADToken")
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"data": [[1, 2], [3, 4]]}))
    assert json.loads(client.online_endpoints.invoke("d", request_file=request)) == [3.0, 7.0]
    assert "https://ml.azure.com/.default" in credential.scopes
    [score] = fake.sent("POST", "/score")
    assert score.headers["authorization"] == "Bearer token:https://ml.azure.com/.default"


def test_regenerate_and_delete_are_pollers(client: MLClient, fake: FakeServer) -> None:
    fake.put_endpoint("k")
    client.online_endpoints.begin_regenerate_keys("k", key_type="primary").result()
    keys = client.online_endpoints.get_keys("k")
    assert isinstance(keys, EndpointAuthKeys)
    assert keys.primary_key != "pk-1"
    client.online_endpoints.begin_delete("k").result()
    with pytest.raises(NotFound):
        client.online_endpoints.get("k")


def test_example_files_load_and_map(client: MLClient, fake: FakeServer) -> None:
    modes = {}
    for path in sorted((EXAMPLES / "endpoints").glob("*.yml")):
        endpoint = load_online_endpoint(path)
        modes[path.name] = endpoint.to_rest(location="local")["properties"]["authMode"]
    assert modes == {
        "endpoint-aad-token.yml": "AADToken",
        "endpoint-aml-token.yml": "AMLToken",
        "endpoint-key.yml": "Key",
    }
    for name in ("blue", "green"):
        deployment = load_online_deployment(EXAMPLES / "deployments" / f"{name}.yml")
        assert deployment.name == name
        assert deployment.code_configuration is not None
        assert deployment.code_configuration.code is not None
        assert (deployment.base_path / deployment.code_configuration.code / "score.py").is_file()
        assert isinstance(deployment.environment, dict)
        assert (deployment.base_path / deployment.environment["conda_file"]).is_file()
        assert isinstance(deployment.model, dict)
        assert deployment.model["path"] == "../model-1/model/"


def test_default_credential_chain_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROPYLON_CONFIG_DIR", str(tmp_path))
    chain = default_credential(authority=SERVER)
    assert isinstance(chain, ChainedTokenCredential)
    kinds = [type(c).__name__ for c in chain.credentials]
    assert kinds == ["EnvironmentCredential", "CliCredential", "ManagedIdentityCredential"]
    assert isinstance(chain.credentials[0], EnvironmentCredential)


def test_cli_credential_is_unavailable_without_a_sign_in(tmp_path: Path) -> None:
    with pytest.raises(CredentialUnavailableError, match="propylon login"):
        CliCredential(tmp_path).get_token("https://ml.azure.com/.default")
