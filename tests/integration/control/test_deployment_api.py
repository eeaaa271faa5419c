"""Online deployments over HTTP, run by a fake runtime backend."""

from __future__ import annotations

from typing import Any

import pytest
from control_support import Arm, FakeAccess, FakeBackend

from propylon.runtime.base import ContainerType
from propylon.store import canonical


def _error(reply: Any) -> dict[str, Any]:
    assert reply.status_code >= 400, reply.text
    error: dict[str, Any] = reply.json()["error"]
    return error


@pytest.fixture
def ids(arm: Arm) -> dict[str, str]:
    arm.create_endpoint("dep-ep")
    return arm.register_assets()


def test_create_runs_the_spec_on_the_backend_and_ends_succeeded(
    arm: Arm, backend: FakeBackend, ids: dict[str, str]
) -> None:
    reply = arm.put(arm.deployment("dep-ep", "blue"), arm.deployment_body(ids))
    assert reply.status_code == 201
    assert reply.json()["properties"]["provisioningState"] == "Creating"
    assert (
        reply.headers["Azure-AsyncOperation"]
        == (reply.json()["properties"]["properties"]["AzureAsyncOperationUri"])
    )
    assert arm.wait(reply.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
    assert arm.get(arm.deployment("dep-ep", "blue")).json()["properties"]["provisioningState"] == (
        "Succeeded"
    )
    spec = backend.applied[-1]
    assert spec.deployment_id == canonical(arm.deployment("dep-ep", "blue"))
    assert spec.endpoint_id == canonical(arm.endpoint("dep-ep"))
    assert spec.endpoint_name == "dep-ep"
    assert spec.code_dir is not None
    assert (spec.code_dir / "score.py").is_file()
    assert spec.code_dir.name == "onlinescoring"
    assert spec.model_dir is not None
    assert (spec.model_dir / "model" / "model.pkl").read_bytes() == b"weights"
    assert spec.environment.pip_requirements == ("numpy==2.3.1", "joblib")
    assert spec.environment.python_version == "3.11"
    assert spec.identity is not None
    assert spec.identity.tenant_id == arm.ctx.tenancy.tenant_id
    assert spec.generation == 1


def test_update_rolls_a_new_generation(arm: Arm, backend: FakeBackend, ids: dict[str, str]) -> None:
    arm.create_deployment("dep-ep", "blue", ids)
    body = arm.deployment_body(ids)
    body["sku"]["capacity"] = 3
    reply = arm.put(arm.deployment("dep-ep", "blue"), body)
    assert reply.status_code == 200
    assert reply.json()["properties"]["provisioningState"] == "Updating"
    arm.wait(reply.headers["Azure-AsyncOperation"])
    assert backend.applied[-1].generation == 2
    assert backend.applied[-1].instance_count == 3


def test_a_failing_deployment_ends_failed_with_the_reason(
    arm: Arm, backend: FakeBackend, ids: dict[str, str]
) -> None:
    backend.fail["red"] = "score.py init() raised ZeroDivisionError"
    reply = arm.put(arm.deployment("dep-ep", "red"), arm.deployment_body(ids))
    status = arm.wait(reply.headers["Azure-AsyncOperation"])
    assert status["status"] == "Failed"
    assert status["error"]["code"] == "DeploymentFailed"
    assert "ZeroDivisionError" in status["error"]["message"]
    assert arm.get(arm.deployment("dep-ep", "red")).json()["properties"]["provisioningState"] == (
        "Failed"
    )


def test_a_missing_scoring_script_fails_in_the_storage_initializer(
    arm: Arm, ids: dict[str, str]
) -> None:
    body = arm.deployment_body(ids)
    body["properties"]["codeConfiguration"]["scoringScript"] = "other.py"
    reply = arm.put(arm.deployment("dep-ep", "nos"), body)
    status = arm.wait(reply.headers["Azure-AsyncOperation"])
    assert status["status"] == "Failed"
    assert "other.py" in status["error"]["message"]


def test_deployment_body_has_sku_scale_settings_probes_and_request_settings(
    arm: Arm, ids: dict[str, str]
) -> None:
    shown = arm.create_deployment("dep-ep", "blue", ids)
    assert shown["id"] == arm.deployment("dep-ep", "blue")
    assert (
        shown["type"] == "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments"
    )
    assert shown["sku"] == {"name": "Default", "capacity": 1}
    assert {"createdAt", "lastModifiedAt"} <= set(shown["systemData"])
    properties = shown["properties"]
    assert properties["endpointComputeType"] == "Managed"
    assert properties["scaleSettings"] == {"scaleType": "Default"}
    assert properties["requestSettings"] == {
        "maxConcurrentRequestsPerInstance": 1,
        "requestTimeout": "PT5S",
        "maxQueueWait": "PT0.5S",
    }
    probe = {
        "initialDelay": "PT10S",
        "period": "PT10S",
        "timeout": "PT2S",
        "successThreshold": 1,
        "failureThreshold": 30,
    }
    assert properties["livenessProbe"] == probe
    assert properties["readinessProbe"] == probe
    assert properties["model"] == ids["models"]
    assert isinstance(properties["properties"], dict)


def test_asset_references_may_be_short_names(arm: Arm, ids: dict[str, str]) -> None:
    body = arm.deployment_body(
        ids,
        model="azureml:sk:1",
        codeConfiguration={"codeId": "azureml:score:1", "scoringScript": "score.py"},
        environmentId="azureml:env@latest",
    )
    reply = arm.put(arm.deployment("dep-ep", "short"), body)
    assert reply.status_code == 201, reply.text
    assert reply.json()["properties"]["environmentId"] == ids["environments"]


def test_the_sdk_wire_body_is_accepted_with_settings_in_iso_durations(
    arm: Arm, backend: FakeBackend, ids: dict[str, str]
) -> None:
    body = arm.deployment_body(
        ids,
        properties={},
        environmentVariables={"X": "1"},
        appInsightsEnabled=False,
        requestSettings={
            "maxQueueWait": "PT0.5S",
            "maxConcurrentRequestsPerInstance": 2,
            "requestTimeout": "PT3S",
        },
        livenessProbe={
            "failureThreshold": 30,
            "successThreshold": 1,
            "timeout": "PT2S",
            "period": "PT10S",
            "initialDelay": "PT10S",
        },
    )
    reply = arm.put(arm.deployment("dep-ep", "sdk"), body)
    arm.wait(reply.headers["Azure-AsyncOperation"])
    spec = backend.applied[-1]
    assert spec.requests.request_timeout_ms == 3000
    assert spec.requests.max_concurrent_requests_per_instance == 2
    assert spec.environment_variables == {"X": "1"}


@pytest.mark.parametrize(
    ("change", "target"),
    [
        ({"model": "azureml:nope:1"}, "properties.model"),
        ({"environmentId": "azureml:env:9"}, "properties.environmentId"),
        ({"codeConfiguration": None}, "properties.codeConfiguration"),
        (
            {"codeConfiguration": {"scoringScript": "score.py"}},
            "properties.codeConfiguration.codeId",
        ),
        (
            {"codeConfiguration": {"codeId": "azureml:score:1", "scoringScript": "../x.py"}},
            "properties.codeConfiguration.scoringScript",
        ),
        ({"model": "azureml://registries/r/models/m/versions/1"}, "properties.model"),
        ({"endpointComputeType": "Serverless"}, "properties.endpointComputeType"),
        (
            {"requestSettings": {"requestTimeout": "PT10M"}},
            "properties.requestSettings.requestTimeout",
        ),
        (
            {"requestSettings": {"requestTimeout": "ten"}},
            "properties.requestSettings.requestTimeout",
        ),
        ({"livenessProbe": {"successThreshold": 2}}, "properties.livenessProbe.successThreshold"),
        ({"readinessProbe": {"period": "PT0S"}}, "properties.readinessProbe.period"),
        (
            {
                "scaleSettings": {
                    "scaleType": "TargetUtilization",
                    "minInstances": 5,
                    "maxInstances": 2,
                }
            },
            "properties.scaleSettings.minInstances",
        ),
    ],
)
def test_deployment_validation_is_400_naming_the_field(
    arm: Arm, ids: dict[str, str], change: dict[str, Any], target: str
) -> None:
    body = arm.deployment_body(ids, **change)
    reply = arm.put(arm.deployment("dep-ep", "bad"), body)
    assert reply.status_code == 400, reply.text
    assert _error(reply)["target"] == target
    assert target.rsplit(".", 1)[-1] in _error(reply)["message"]


def test_instance_count_is_bounded(arm: Arm, ids: dict[str, str]) -> None:
    body = arm.deployment_body(ids)
    body["sku"]["capacity"] = 51
    assert _error(arm.put(arm.deployment("dep-ep", "big"), body))["target"] == "sku.capacity"


def test_deploying_an_asset_the_caller_may_not_read_is_403(
    arm: Arm, access: FakeAccess, ids: dict[str, str]
) -> None:
    access.denied_actions.add("microsoft.machinelearningservices/workspaces/models/versions/read")
    reply = arm.put(arm.deployment("dep-ep", "sneaky"), arm.deployment_body(ids))
    assert reply.status_code == 403
    assert ids["models"] in _error(reply)["message"]


def test_deployment_of_a_missing_endpoint_is_404(arm: Arm, ids: dict[str, str]) -> None:
    reply = arm.put(arm.deployment("no-such-ep", "blue"), arm.deployment_body(ids))
    assert reply.status_code == 404


def test_list_get_logs_and_skus(arm: Arm, ids: dict[str, str]) -> None:
    arm.create_deployment("dep-ep", "blue", ids)
    arm.create_deployment("dep-ep", "green", ids)
    listed = arm.get(arm.endpoint("dep-ep") + "/deployments").json()["value"]
    assert [item["name"] for item in listed] == ["blue", "green"]
    logs = arm.post(arm.deployment("dep-ep", "blue") + "/getLogs", {"tail": 3})
    assert logs.status_code == 200
    assert logs.json()["content"].splitlines() == [
        f"{ContainerType.INFERENCE_SERVER.value}: line {i}" for i in (7, 8, 9)
    ]
    storage = arm.post(
        arm.deployment("dep-ep", "blue") + "/getLogs",
        {"containerType": "storageinitializer", "tail": 1},
    )
    assert storage.json()["content"].startswith("StorageInitializer")
    no_body = arm.post(arm.deployment("dep-ep", "blue") + "/getLogs")
    assert no_body.status_code == 200
    assert len(no_body.json()["content"].splitlines()) == 10
    skus = arm.get(arm.deployment("dep-ep", "blue") + "/skus").json()["value"]
    assert skus[0]["sku"]["name"] == "Default"


def test_patch_changes_instance_count_and_answers_location(
    arm: Arm, backend: FakeBackend, ids: dict[str, str]
) -> None:
    arm.create_deployment("dep-ep", "blue", ids)
    reply = arm.request("PATCH", arm.deployment("dep-ep", "blue"), json={"sku": {"capacity": 2}})
    assert reply.status_code == 202
    assert arm.wait_location(reply.headers["Location"]).status_code == 200
    assert backend.applied[-1].instance_count == 2
    assert arm.get(arm.deployment("dep-ep", "blue")).json()["sku"]["capacity"] == 2


def test_deleting_a_deployment_with_traffic_is_400_then_works_at_zero(
    arm: Arm, backend: FakeBackend, ids: dict[str, str]
) -> None:
    arm.create_deployment("dep-ep", "blue", ids)
    arm.create_deployment("dep-ep", "green", ids)
    body = {
        "properties": {"authMode": "Key", "traffic": {"blue": 100}, "mirrorTraffic": {"green": 20}}
    }
    assert arm.put(arm.endpoint("dep-ep"), body).status_code == 200
    for name, target in (("blue", "properties.traffic"), ("green", "properties.mirrorTraffic")):
        refused = arm.request("DELETE", arm.deployment("dep-ep", name))
        assert refused.status_code == 400
        assert _error(refused)["target"] == target
    body = {"properties": {"authMode": "Key", "traffic": {"blue": 100, "green": 0}}}
    assert arm.put(arm.endpoint("dep-ep"), body).status_code == 200
    reply = arm.request("DELETE", arm.deployment("dep-ep", "green"))
    assert reply.status_code == 202
    assert arm.wait_location(reply.headers["Location"]).status_code == 200
    assert canonical(arm.deployment("dep-ep", "green")) in backend.removed
    assert arm.get(arm.deployment("dep-ep", "green")).status_code == 404
    assert arm.get(arm.endpoint("dep-ep")).json()["properties"]["traffic"] == {"blue": 100}


def test_deleting_the_endpoint_removes_every_deployment(
    arm: Arm, backend: FakeBackend, ids: dict[str, str]
) -> None:
    arm.create_deployment("dep-ep", "blue", ids)
    arm.create_deployment("dep-ep", "green", ids)
    arm.put(arm.endpoint("dep-ep"), {"properties": {"authMode": "Key", "traffic": {"blue": 100}}})
    reply = arm.request("DELETE", arm.endpoint("dep-ep"))
    assert reply.status_code == 202
    assert arm.wait_location(reply.headers["Location"]).status_code == 200
    assert sorted(backend.removed) == sorted(
        canonical(arm.deployment("dep-ep", name)) for name in ("blue", "green")
    )
    assert arm.get(arm.deployment("dep-ep", "blue")).status_code == 404
    assert arm.get(arm.endpoint("dep-ep")).status_code == 404


def test_a_deployment_in_progress_is_reported_until_the_backend_is_ready(
    arm: Arm, backend: FakeBackend, ids: dict[str, str]
) -> None:
    backend.hold.add("slow")
    reply = arm.put(arm.deployment("dep-ep", "slow"), arm.deployment_body(ids))
    url = reply.headers["Azure-AsyncOperation"]
    for _ in range(5):
        assert (
            arm.client.get(url, headers={"Authorization": "Bearer t-allow"}).json()["status"]
            == "InProgress"
        )
    backend.hold.clear()
    assert arm.wait(url)["status"] == "Succeeded"


def test_an_overtaken_deployment_operation_is_canceled(
    arm: Arm, backend: FakeBackend, ids: dict[str, str]
) -> None:
    backend.hold.add("again")
    first = arm.put(arm.deployment("dep-ep", "again"), arm.deployment_body(ids))
    body = arm.deployment_body(ids)
    body["sku"]["capacity"] = 2
    second = arm.put(arm.deployment("dep-ep", "again"), body)
    first_status = arm.wait(first.headers["Azure-AsyncOperation"])
    assert first_status["status"] == "Canceled"
    assert first_status["error"]["code"] == "OperationCanceled"
    backend.hold.clear()
    assert arm.wait(second.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
    assert backend.applied[-1].instance_count == 2
    assert arm.get(arm.deployment("dep-ep", "again")).json()["properties"]["provisioningState"] == (
        "Succeeded"
    )
