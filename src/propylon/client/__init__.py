"""The Python client of Propylon: ``MLClient`` shaped like azure-ai-ml's, and credentials.

Any azure-identity credential works; :func:`default_credential` chains environment variables,
the ``propylon login`` cache and the managed identity. Unlike azure-ai-ml, ``invoke`` also works
for ``aad_token`` endpoints. Example::

    from propylon.client import MLClient, ManagedOnlineEndpoint, default_credential

    client = MLClient(default_credential(), subscription_id, "default-rg", "default-ws",
                      server="https://127.0.0.1:8080", ca_cert=".propylon/tls/ca.pem")
    client.online_endpoints.begin_create_or_update(
        ManagedOnlineEndpoint(name="my-endpoint", auth_mode="aad_token")).result()
    deployment = load_online_deployment("examples/deployments/blue.yml")
    deployment.endpoint_name = "my-endpoint"
    client.online_deployments.begin_create_or_update(deployment).result()
    print(client.online_endpoints.invoke("my-endpoint", request_file="sample-request.json"))

Modules: :mod:`~propylon.client.http` (the one HTTP layer), :mod:`~propylon.client.lro`
(pollers), :mod:`~propylon.client.entities`, the operations (:mod:`~propylon.client.
online_endpoints`, :mod:`~propylon.client.online_deployments`, :mod:`~propylon.client.assets`,
:mod:`~propylon.client.authorization`, :mod:`~propylon.client.graph`), and sign-in
(:mod:`~propylon.client.sign_in`, :mod:`~propylon.client.profile`,
:mod:`~propylon.client.cli_credential`, :mod:`~propylon.client.credentials`).
"""

from propylon.client.assets import AssetKind, AssetOperations
from propylon.client.authorization import AuthorizationClient
from propylon.client.cli_credential import CliCredential
from propylon.client.credentials import default_credential
from propylon.client.entities import (
    CodeConfiguration,
    EndpointAadToken,
    EndpointAuthKeys,
    EndpointAuthToken,
    ManagedOnlineDeployment,
    ManagedOnlineEndpoint,
    load_online_deployment,
    load_online_endpoint,
)
from propylon.client.graph import GraphClient
from propylon.client.http import ARM_SCOPE, ML_SCOPE, Pipeline
from propylon.client.lro import Poller
from propylon.client.ml_client import MLClient
from propylon.client.online_deployments import OnlineDeploymentOperations
from propylon.client.online_endpoints import OnlineEndpointOperations

__all__ = [
    "ARM_SCOPE",
    "ML_SCOPE",
    "AssetKind",
    "AssetOperations",
    "AuthorizationClient",
    "CliCredential",
    "CodeConfiguration",
    "EndpointAadToken",
    "EndpointAuthKeys",
    "EndpointAuthToken",
    "GraphClient",
    "MLClient",
    "ManagedOnlineDeployment",
    "ManagedOnlineEndpoint",
    "OnlineDeploymentOperations",
    "OnlineEndpointOperations",
    "Pipeline",
    "Poller",
    "default_credential",
    "load_online_deployment",
    "load_online_endpoint",
]
