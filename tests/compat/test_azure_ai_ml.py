"""The official ``azure.ai.ml.MLClient`` (azure-ai-ml 1.35.2) against a real Propylon server.

The client is pointed at the server as reference §5.1.4 describes: ``AZUREML_DEV_URL_MFE`` replaces
the ARM base URL of every management client and leaves the token scope at
``https://management.azure.com/.default``, which the built-in identity provider issues tokens for.
(``cloud_metadata={"resource_manager": <server>, …}`` would also move the base URL, but it asks for
tokens scoped to ``<server>/.default``, a resource the identity provider does not know:
AADSTS500011.) The credential is azure-identity's ``ClientSecretCredential`` with the server as a
custom authority (§5.2.1), and the server's CA is trusted through ``REQUESTS_CA_BUNDLE`` /
``SSL_CERT_FILE``: azure-core only sends bearer tokens over HTTPS (§5.1.3 item 5).

The SDK's own asset upload writes to Azure Blob storage, which Propylon does not have, so the
model, code and environment are registered through Propylon's REST API first (as
:mod:`propylon.client.assets` does) and the deployment refers to them as ``azureml:name:version``.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import joblib
import numpy
import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.core.pipeline.transport import RequestsTransport
from azure.identity import ClientSecretCredential

from propylon.client.assets import AssetKind, AssetOperations
from propylon.client.http import Pipeline
from propylon.client.workspace import WorkspaceScope
from propylon.testing import RunningServer, wait_until

with warnings.catch_warnings():
    # marshmallow 3 warns about azure-ai-ml's schemas at import time (RemovedInMarshmallow4Warning).
    warnings.simplefilter("ignore", DeprecationWarning)
    from azure.ai.ml import MLClient
    from azure.ai.ml.entities import (
        CodeConfiguration,
        EndpointAuthKeys,
        EndpointAuthToken,
        ManagedOnlineDeployment,
        ManagedOnlineEndpoint,
    )
    from azure.ai.ml.exceptions import ValidationException

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MODEL_1 = REPO / "examples" / "model-1"
REQUEST = MODEL_1 / "sample-request.json"
ENDPOINT = "sdk-compat"
DEPLOYMENT = "blue"


@dataclass(frozen=True)
class Assets:
    """What the deployment refers to, and the model file to compute the expected predictions."""

    model: str
    code: str
    environment: str
    model_file: Path


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def sdk_environment(server: RunningServer) -> Iterator[None]:
    """Trust the server's CA and send every ARM call of azure-ai-ml to the server."""
    assert server.ca_cert is not None
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REQUESTS_CA_BUNDLE", server.ca_cert)
        patch.setenv("SSL_CERT_FILE", server.ca_cert)
        patch.setenv("AZUREML_DEV_URL_MFE", server.control_url)
        yield


@pytest.fixture(scope="module")
def credential(server: RunningServer) -> Iterator[ClientSecretCredential]:
    boot = server.bootstrap
    credential = ClientSecretCredential(
        boot["tenant_id"],
        boot["admin_client_id"],
        boot["admin_client_secret"],
        authority=server.control_url,
        disable_instance_discovery=True,
    )
    with credential:
        yield credential


@pytest.fixture(scope="module")
def ml_client(server: RunningServer, credential: ClientSecretCredential) -> Iterator[MLClient]:
    """The client as a user builds it, plus a ``transport`` whose session this fixture closes.

    MLClient has no ``close()``, and the server's shutdown waits its whole 20 s grace period for
    TLS keep-alive connections the client leaves open (uvicorn closes an idle connection with a
    TLS close_notify and waits for an answer an idle pooled socket never gives). Closing the
    session closes the pooled sockets; collecting garbage closes those still held by the 404
    responses inside the ResourceNotFoundErrors the tests caught (kept in traceback cycles).
    """
    boot = server.bootstrap
    with requests.Session() as session:
        yield MLClient(
            credential,
            boot["subscription_id"],
            boot["resource_group"],
            boot["workspace"],
            enable_telemetry=False,
            show_progress=False,
            transport=RequestsTransport(session=session, session_owner=False),
        )
    gc.collect()


@pytest.fixture(scope="module")
def assets(
    server: RunningServer,
    credential: ClientSecretCredential,
    tmp_path_factory: pytest.TempPathFactory,
) -> Assets:
    """The sample model, its scoring code and its conda environment, registered over REST."""
    out = tmp_path_factory.mktemp("model-1")
    subprocess.run(
        [sys.executable, str(MODEL_1 / "train.py"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    boot = server.bootstrap
    workspace = WorkspaceScope(
        server.control_url, boot["subscription_id"], boot["resource_group"], boot["workspace"]
    )
    pipeline = Pipeline(credential, ca_cert=server.ca_cert)
    try:
        AssetOperations(pipeline, workspace, AssetKind.MODEL).create_or_update(
            "sdk-regression", "1", path=out / "model"
        )
        AssetOperations(pipeline, workspace, AssetKind.CODE).create_or_update(
            "sdk-regression-code", "1", path=MODEL_1 / "onlinescoring"
        )
        AssetOperations(pipeline, workspace, AssetKind.ENVIRONMENT).create_or_update(
            "sdk-regression-env",
            "1",
            conda_file=MODEL_1 / "environment" / "conda.yaml",
            image="mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest",
        )
    finally:
        pipeline.close()
    return Assets(
        model="azureml:sdk-regression:1",
        code="azureml:sdk-regression-code:1",
        environment="azureml:sdk-regression-env:1",
        model_file=out / "model" / "sklearn_regression_model.pkl",
    )


# -- helpers ----------------------------------------------------------------------------------


def expected_predictions(model_file: Path) -> list[float]:
    """What the model itself predicts for the sample request, computed in this process."""
    model = joblib.load(model_file)
    rows = numpy.array(json.loads(REQUEST.read_text())["data"])
    return [float(value) for value in model.predict(rows)]


def score(server: RunningServer, scoring_uri: str, key: str) -> httpx.Response:
    """A scoring request through the gateway, as ``curl -H "Authorization: Bearer $KEY"``."""
    with server.client() as client:
        return client.post(
            scoring_uri,
            content=REQUEST.read_bytes(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )


def keys_of(ml_client: MLClient, name: str) -> EndpointAuthKeys:
    keys = ml_client.online_endpoints.get_keys(name)
    assert isinstance(keys, EndpointAuthKeys)
    assert keys.primary_key
    assert keys.secondary_key
    assert keys.primary_key != keys.secondary_key
    return keys


# -- tests ------------------------------------------------------------------------------------


def test_endpoint_and_deployment_lifecycle(
    ml_client: MLClient, server: RunningServer, assets: Assets
) -> None:
    # Endpoint: create (PUT + Azure-AsyncOperation polling), get, list, keys.
    created = ml_client.online_endpoints.begin_create_or_update(
        ManagedOnlineEndpoint(name=ENDPOINT, auth_mode="key", tags={"made-by": "azure-ai-ml"})
    ).result()
    assert (created.name, created.auth_mode) == (ENDPOINT, "key")
    assert created.provisioning_state == "Succeeded"
    endpoint = ml_client.online_endpoints.get(ENDPOINT)
    assert endpoint.id is not None
    assert endpoint.id.lower() == f"{server.workspace_id}/onlineEndpoints/{ENDPOINT}".lower()
    assert endpoint.tags == {"made-by": "azure-ai-ml"}
    assert endpoint.traffic == {}
    assert endpoint.kind == "Managed"
    assert endpoint.identity is not None
    assert endpoint.identity.type == "system_assigned"
    assert endpoint.scoring_uri is not None
    assert endpoint.scoring_uri.startswith(server.gateway_url)
    assert ENDPOINT in [e.name for e in ml_client.online_endpoints.list()]
    keys = keys_of(ml_client, ENDPOINT)

    # Deployment of registered assets, referred to as azureml:name:version.
    deployment = ml_client.online_deployments.begin_create_or_update(
        ManagedOnlineDeployment(
            name=DEPLOYMENT,
            endpoint_name=ENDPOINT,
            model=assets.model,
            code_configuration=CodeConfiguration(code=assets.code, scoring_script="score.py"),
            environment=assets.environment,
            instance_type="Standard_DS3_v2",
            instance_count=1,
            environment_variables={"MADE_BY": "azure-ai-ml"},
        )
    ).result()
    assert deployment.provisioning_state == "Succeeded"
    fetched = ml_client.online_deployments.get(DEPLOYMENT, ENDPOINT)
    assert (fetched.name, fetched.endpoint_name, fetched.instance_count) == (
        DEPLOYMENT,
        ENDPOINT,
        1,
    )
    assert fetched.instance_type == "Standard_DS3_v2"
    assert str(fetched.model).endswith("/models/sdk-regression/versions/1")
    assert str(fetched.environment).endswith("/environments/sdk-regression-env/versions/1")
    assert fetched.code_configuration is not None
    assert str(fetched.code_configuration.code).endswith("/codes/sdk-regression-code/versions/1")
    assert fetched.environment_variables.get("MADE_BY") == "azure-ai-ml"
    assert [d.name for d in ml_client.online_deployments.list(ENDPOINT)] == [DEPLOYMENT]
    logs = ml_client.online_deployments.get_logs(DEPLOYMENT, ENDPOINT, lines=100)
    assert "Init complete" in logs  # logged by the scoring script's init()
    setup = ml_client.online_deployments.get_logs(
        DEPLOYMENT, ENDPOINT, lines=100, container_type="storage-initializer"
    )
    assert setup.strip()
    assert "Init complete" not in setup

    # invoke: GET deployments, GET endpoint, POST listKeys, POST scoringUri with the header.
    expected = expected_predictions(assets.model_file)
    answer = ml_client.online_endpoints.invoke(
        endpoint_name=ENDPOINT, request_file=str(REQUEST), deployment_name=DEPLOYMENT
    )
    assert json.loads(answer) == pytest.approx(expected)

    # All live traffic to blue: the SDK's read-modify-write of the endpoint.
    endpoint = ml_client.online_endpoints.get(ENDPOINT)
    endpoint.traffic = {DEPLOYMENT: 100}
    updated = ml_client.online_endpoints.begin_create_or_update(endpoint).result()
    assert updated.traffic == {DEPLOYMENT: 100}
    assert ml_client.online_endpoints.get(ENDPOINT).traffic == {DEPLOYMENT: 100}

    # Both keys score through the gateway; regenerating the secondary retires only it. (Not
    # with invoke(): azure-ai-ml 1.35.2 builds its headers in the class-level dict
    # EndpointInvokeFields.DEFAULT_HEADER, so the deployment header of the invoke() above is
    # sent by every later invoke() of the process, and it would bypass the traffic split.)
    scoring_uri = endpoint.scoring_uri
    assert scoring_uri is not None
    # The gateway follows the store's change feed (~0.2 s), so the new split takes a moment.
    # No azureml-model-deployment header here: the request is routed by the traffic split.
    wait_until(
        lambda: score(server, scoring_uri, keys.primary_key).status_code == 200,
        timeout=15,
        interval=0.1,
    )
    for key in (keys.primary_key, keys.secondary_key):
        response = score(server, scoring_uri, key)
        assert response.status_code == 200, response.text
        assert response.json() == pytest.approx(expected)
    ml_client.online_endpoints.begin_regenerate_keys(ENDPOINT, key_type="secondary").result()
    regenerated = keys_of(ml_client, ENDPOINT)
    assert regenerated.primary_key == keys.primary_key
    assert regenerated.secondary_key != keys.secondary_key
    # The gateway picks the new keys up from the store; once the new secondary works, the
    # old one must not.
    wait_until(
        lambda: score(server, scoring_uri, regenerated.secondary_key).status_code == 200,
        timeout=15,
        interval=0.25,
    )
    assert score(server, scoring_uri, keys.secondary_key).status_code == 401
    assert score(server, scoring_uri, keys.primary_key).status_code == 200

    # Tear down: traffic back to 0 (a deployment with traffic cannot be deleted, as on Azure).
    endpoint = ml_client.online_endpoints.get(ENDPOINT)
    endpoint.traffic = {DEPLOYMENT: 0}
    assert ml_client.online_endpoints.begin_create_or_update(endpoint).result().traffic == {}
    ml_client.online_deployments.begin_delete(DEPLOYMENT, ENDPOINT).result()
    with pytest.raises(ResourceNotFoundError):
        ml_client.online_deployments.get(DEPLOYMENT, ENDPOINT)
    assert list(ml_client.online_deployments.list(ENDPOINT)) == []
    ml_client.online_endpoints.begin_delete(ENDPOINT).result()
    with pytest.raises(ResourceNotFoundError):
        ml_client.online_endpoints.get(ENDPOINT)
    assert ENDPOINT not in [e.name for e in ml_client.online_endpoints.list()]


def test_missing_endpoint_is_resource_not_found(ml_client: MLClient) -> None:
    with pytest.raises(ResourceNotFoundError) as raised:
        ml_client.online_endpoints.get("no-such-endpoint")
    assert raised.value.status_code == 404


def test_regenerating_keys_of_a_token_endpoint_is_refused(ml_client: MLClient) -> None:
    """The SDK checks ``authMode`` itself (reference §5.1.1) — on the server's answer."""
    name = "sdk-compat-token"
    ml_client.online_endpoints.begin_create_or_update(
        ManagedOnlineEndpoint(name=name, auth_mode="aml_token")
    ).result()
    try:
        token = ml_client.online_endpoints.get_keys(name)
        assert isinstance(token, EndpointAuthToken)
        assert token.access_token
        assert token.refresh_after_time_utc <= token.expiry_time_utc
        with pytest.raises(ValidationException, match="does not use keys for authentication"):
            ml_client.online_endpoints.begin_regenerate_keys(name, key_type="primary")
    finally:
        ml_client.online_endpoints.begin_delete(name).result()
