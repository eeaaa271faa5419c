"""The service's rules: each failure is a 400 naming the field and the reason."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from propylon.control.schemas import (
    ManagedServiceIdentity,
    OnlineEndpointBody,
    ProbeSettingsBody,
    RequestSettingsBody,
    ScaleSettingsBody,
    SkuBody,
)
from propylon.control.validation import (
    bad_request_from,
    check_name,
    identity_type,
    normalize_capacity,
    normalize_mirror_traffic,
    normalize_probe,
    normalize_request_settings,
    normalize_scale_settings,
    normalize_traffic,
)
from propylon.errors import BadRequest

DEPLOYMENTS = {"blue": "blue", "green": "Green", "red": "red"}


@pytest.mark.parametrize("name", ["abc", "my-endpoint", "a1-b2", "A" * 32])
def test_good_names_pass(name: str) -> None:
    check_name(name, what="endpoint")


@pytest.mark.parametrize("name", ["ab", "a" * 33, "1ab", "-ab", "ab-", "a_b", "a.b", "a b"])
def test_bad_names_are_400_on_name(name: str) -> None:
    with pytest.raises(BadRequest) as caught:
        check_name(name, what="endpoint")
    assert caught.value.target == "name"
    assert repr(name) in caught.value.message


def test_traffic_is_keyed_by_the_deployments_own_names() -> None:
    assert normalize_traffic({"BLUE": 40, "green": 60}, DEPLOYMENTS) == {"blue": 40, "Green": 60}
    assert normalize_traffic({"blue": 0}, DEPLOYMENTS) == {"blue": 0}
    assert normalize_traffic(None, DEPLOYMENTS) == {}


@pytest.mark.parametrize(
    ("traffic", "words"),
    [
        ({"blue": 50}, "sums to 50"),
        ({"gray": 100}, "does not exist"),
        ({"blue": 101}, "between 0 and 100"),
        ({"blue": -1, "green": 101}, "between 0 and 100"),
    ],
)
def test_bad_traffic_is_400_on_traffic(traffic: dict[str, int], words: str) -> None:
    with pytest.raises(BadRequest, match=words) as caught:
        normalize_traffic(traffic, DEPLOYMENTS)
    assert caught.value.target == "properties.traffic"


def test_mirror_traffic_rules() -> None:
    assert normalize_mirror_traffic({"green": 50}, {"blue": 100}, DEPLOYMENTS) == {"Green": 50}
    for mirror, words in (
        ({"green": 51}, "between 0 and 50"),
        ({"blue": 10}, "live traffic"),
        ({"red": 5, "green": 5}, "one deployment"),
        ({"gray": 5}, "does not exist"),
    ):
        with pytest.raises(BadRequest, match=words) as caught:
            normalize_mirror_traffic(mirror, {"blue": 100}, DEPLOYMENTS)
        assert caught.value.target == "properties.mirrorTraffic"


def test_identity_types_are_read_in_any_case_and_default_to_system_assigned() -> None:
    assert identity_type(None) == "SystemAssigned"
    assert identity_type(ManagedServiceIdentity(type="systemAssigned")) == "SystemAssigned"
    assert identity_type(ManagedServiceIdentity(type="none")) == "None"
    with pytest.raises(BadRequest) as caught:
        identity_type(ManagedServiceIdentity(type="UserAssigned"))
    assert caught.value.target == "identity.userAssignedIdentities"
    with pytest.raises(BadRequest) as caught:
        identity_type(ManagedServiceIdentity(type="Robot"))
    assert caught.value.target == "identity.type"


def test_probe_defaults_are_azures_and_ranges_are_checked() -> None:
    assert normalize_probe(None, target="p", liveness=True) == {
        "initialDelay": "PT10S",
        "period": "PT10S",
        "timeout": "PT2S",
        "successThreshold": 1,
        "failureThreshold": 30,
    }
    assert (
        normalize_probe(ProbeSettingsBody(period="PT1M"), target="p", liveness=False)["period"]
        == "PT1M"
    )
    with pytest.raises(BadRequest) as caught:
        normalize_probe(ProbeSettingsBody(timeout="PT0.5S"), target="p", liveness=False)
    assert caught.value.target == "p.timeout"
    with pytest.raises(BadRequest) as caught:
        normalize_probe(ProbeSettingsBody(failure_threshold=0), target="p", liveness=False)
    assert caught.value.target == "p.failureThreshold"


def test_request_settings_are_bounded_by_the_managed_timeout() -> None:
    assert (
        normalize_request_settings(RequestSettingsBody(request_timeout="PT3M"))["requestTimeout"]
        == "PT3M"
    )
    with pytest.raises(BadRequest, match="at most PT3M"):
        normalize_request_settings(RequestSettingsBody(request_timeout="PT181S"))
    with pytest.raises(BadRequest) as caught:
        normalize_request_settings(RequestSettingsBody(max_concurrent_requests_per_instance=0))
    assert caught.value.target == "properties.requestSettings.maxConcurrentRequestsPerInstance"


def test_capacity_and_scale_settings() -> None:
    assert normalize_capacity(None) == {"name": "Default", "capacity": 1}
    assert normalize_capacity(SkuBody(name="default", capacity=3)) == {
        "name": "default",
        "capacity": 3,
    }
    with pytest.raises(BadRequest):
        normalize_capacity(SkuBody(capacity=0))
    assert normalize_scale_settings(None, 2) == {"scaleType": "Default"}
    auto = normalize_scale_settings(
        ScaleSettingsBody(scale_type="TargetUtilization", max_instances=4), 2
    )
    assert auto == {
        "scaleType": "TargetUtilization",
        "minInstances": 1,
        "maxInstances": 4,
        "pollingInterval": "PT1S",
        "targetUtilizationPercentage": 70,
    }


def test_pydantic_errors_become_one_400_naming_the_first_field() -> None:
    with pytest.raises(ValidationError) as caught:
        OnlineEndpointBody.model_validate(
            {"properties": {"authMode": "Basic", "traffic": {"a": "x"}}}
        )
    error = bad_request_from(caught.value.errors())
    assert error.status == 400
    assert error.code == "InvalidRequestContent"
    assert error.target == "properties.authMode"
    assert "must be one of Key, AMLToken, AADToken" in error.message
    assert {d["target"] for d in error.details or []} == {
        "properties.authMode",
        "properties.traffic.a",
    }
