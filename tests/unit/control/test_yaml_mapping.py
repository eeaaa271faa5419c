"""CLI v2 YAML ↔ REST bodies, on the examples of the seeds and reference §2."""

from __future__ import annotations

import pytest
import yaml

from propylon.control.yaml_mapping import (
    deployment_from_rest,
    deployment_to_rest,
    endpoint_from_rest,
    endpoint_to_rest,
)
from propylon.errors import BadRequest

WS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"


def test_the_seed_endpoint_yaml_becomes_the_rest_body() -> None:
    document = yaml.safe_load("name: my-endp1\nauth_mode: aad_token\n")
    assert endpoint_to_rest(document, location="local") == {
        "location": "local",
        "tags": {},
        "identity": {"type": "SystemAssigned"},
        "properties": {
            "authMode": "AADToken",
            "properties": {},
            "traffic": {},
            "mirrorTraffic": {},
        },
    }


def test_endpoint_fields_map_as_azure_ml_maps_them() -> None:
    document = {
        "name": "e",
        "auth_mode": "AML_TOKEN",
        "description": "d",
        "tags": {"a": "b"},
        "traffic": {"blue": 90, "green": 10, "red": 0},
        "mirror_traffic": {"green": 0},
        "public_network_access": "disabled",
        "identity": {
            "type": "user_assigned",
            "user_assigned_identities": [{"resource_id": "/uai/1"}],
        },
    }
    body = endpoint_to_rest(document, location="eastus")
    assert body["properties"]["authMode"] == "AMLToken"
    assert body["properties"]["traffic"] == {"blue": 90, "green": 10}
    assert body["properties"]["mirrorTraffic"] == {}
    assert body["properties"]["publicNetworkAccess"] == "Disabled"
    assert body["identity"] == {"type": "UserAssigned", "userAssignedIdentities": {"/uai/1": {}}}


def test_an_unknown_auth_mode_names_the_yaml_field() -> None:
    with pytest.raises(BadRequest) as caught:
        endpoint_to_rest({"name": "e", "auth_mode": "password"}, location="l")
    assert caught.value.target == "auth_mode"


def test_endpoint_show_document_is_snake_case_like_az_ml() -> None:
    body = {
        "id": f"{WS}/onlineEndpoints/e",
        "name": "e",
        "location": "local",
        "kind": "Managed",
        "tags": {},
        "identity": {"type": "SystemAssigned", "principalId": "p", "tenantId": "t"},
        "systemData": {
            "createdAt": "2026-01-01T00:00:00Z",
            "lastModifiedAt": "2026-01-02T00:00:00Z",
        },
        "properties": {
            "authMode": "Key",
            "traffic": {"blue": 100},
            "mirrorTraffic": {},
            "provisioningState": "Succeeded",
            "scoringUri": "https://gw/endpoints/e/score",
            "swaggerUri": "https://gw/endpoints/e/swagger.json",
            "publicNetworkAccess": "Enabled",
            "properties": {"AzureAsyncOperationUri": "u"},
        },
    }
    shown = endpoint_from_rest(body)
    assert shown["auth_mode"] == "key"
    assert shown["identity"] == {"type": "system_assigned", "principal_id": "p", "tenant_id": "t"}
    assert shown["scoring_uri"] == "https://gw/endpoints/e/score"
    assert shown["openapi_uri"].endswith("/swagger.json")
    assert shown["public_network_access"] == "enabled"
    assert shown["properties"]["createdAt"] == "2026-01-01T00:00:00Z"
    again = endpoint_to_rest(shown, location="local")
    assert again["properties"]["authMode"] == "Key"
    assert again["properties"]["traffic"] == {"blue": 100}


DEPLOYMENT_YAML = f"""
name: blue
endpoint_name: my-endpoint
model: azureml:my-model:1
code_configuration:
  code: azureml:{WS}/codes/c/versions/1
  scoring_script: score.py
environment: azureml:my-env:1
instance_type: Standard_DS3_v2
instance_count: 2
environment_variables: {{X: 1}}
request_settings:
  request_timeout_ms: 3000
  max_queue_wait_ms: 500
  max_concurrent_requests_per_instance: 2
liveness_probe: {{initial_delay: 10, period: 10, timeout: 2, success_threshold: 1}}
scale_settings:
  type: target_utilization
  min_instances: 1
  max_instances: 3
  polling_interval: 10
  target_utilization_percentage: 70
"""


def test_deployment_yaml_becomes_the_wire_body_azure_ml_sends() -> None:
    body = deployment_to_rest(yaml.safe_load(DEPLOYMENT_YAML), location="local")
    properties = body["properties"]
    assert body["sku"] == {"name": "Default", "capacity": 2}
    assert properties["endpointComputeType"] == "Managed"
    assert properties["model"] == "azureml:my-model:1"
    assert properties["codeConfiguration"] == {
        "codeId": f"{WS}/codes/c/versions/1",
        "scoringScript": "score.py",
    }
    assert properties["environmentVariables"] == {"X": "1"}
    assert properties["requestSettings"] == {
        "requestTimeout": "PT3S",
        "maxQueueWait": "PT0.5S",
        "maxConcurrentRequestsPerInstance": 2,
    }
    assert properties["livenessProbe"] == {
        "initialDelay": "PT10S",
        "period": "PT10S",
        "timeout": "PT2S",
        "successThreshold": 1,
    }
    assert properties["scaleSettings"]["scaleType"] == "TargetUtilization"
    assert properties["scaleSettings"]["pollingInterval"] == "PT10S"


def test_deployment_round_trips_through_rest() -> None:
    document = yaml.safe_load(DEPLOYMENT_YAML)
    body = deployment_to_rest(document, location="local")
    body["id"] = f"{WS}/onlineEndpoints/my-endpoint/deployments/blue"
    body["name"] = "blue"
    shown = deployment_from_rest(body)
    assert shown["endpoint_name"] == "my-endpoint"
    assert shown["instance_count"] == 2
    assert shown["request_settings"] == document["request_settings"]
    assert shown["liveness_probe"] == document["liveness_probe"]
    assert shown["scale_settings"] == document["scale_settings"]
    assert shown["code_configuration"]["code"] == document["code_configuration"]["code"]
    assert deployment_to_rest(shown, location="local")["properties"] == body["properties"]


def test_inline_assets_must_be_uploaded_by_the_client_first() -> None:
    with pytest.raises(BadRequest) as caught:
        deployment_to_rest({"name": "b", "model": {"path": "../model"}}, location="l")
    assert caught.value.target == "model"
