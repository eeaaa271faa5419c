"""Online endpoints over HTTP: LRO protocol, ETags, validation, keys, auth, case-insensitivity."""

from __future__ import annotations

import concurrent.futures
import uuid
from typing import Any

import pytest
from control_support import DENY, Arm, FakeAccess

from propylon.control.keys import key_secret_name
from propylon.identity.directory import PRINCIPALS_CHANGE
from propylon.store import canonical, utcnow
from propylon.store.models import Principal


def _error(reply: Any) -> dict[str, Any]:
    assert reply.status_code >= 400, reply.text
    error: dict[str, Any] = reply.json()["error"]
    return error


# --- long-running operations -------------------------------------------------------------------


def test_put_answers_201_with_azure_async_operation_mirrored_in_properties(arm: Arm) -> None:
    reply = arm.put(
        arm.endpoint("lro-ep"), {"location": "local", "properties": {"authMode": "Key"}}
    )
    assert reply.status_code == 201
    url = reply.headers["Azure-AsyncOperation"]
    assert url.startswith("http://testserver/subscriptions/")
    assert "/mfeOperationsStatus/" in url
    assert "api-version=2023-04-01" in url
    assert reply.headers["x-ms-async-operation-timeout"] == "PT1H"
    assert reply.headers["ETag"]
    assert reply.json()["properties"]["properties"]["AzureAsyncOperationUri"] == url
    status = arm.wait(url)
    assert set(status) >= {"id", "name", "status", "startTime", "endTime"}
    assert status["status"] == "Succeeded"


def test_second_put_answers_200_and_updating(arm: Arm) -> None:
    arm.create_endpoint("upd-ep")
    reply = arm.put(
        arm.endpoint("upd-ep"), {"location": "local", "properties": {"authMode": "Key"}}
    )
    assert reply.status_code == 200
    assert reply.json()["properties"]["provisioningState"] == "Updating"
    arm.wait(reply.headers["Azure-AsyncOperation"])
    assert arm.get(arm.endpoint("upd-ep")).json()["properties"]["provisioningState"] == "Succeeded"


def test_patch_answers_202_with_location_and_switches_auth_mode(arm: Arm) -> None:
    arm.create_endpoint("patch-ep", "Key")
    reply = arm.request(
        "PATCH",
        arm.endpoint("patch-ep"),
        json={"properties": {"authMode": "AMLToken"}, "tags": {"a": "b"}},
    )
    assert reply.status_code == 202
    assert reply.headers["Retry-After"] == "1"
    assert "/mfeOperationResults/" in reply.headers["Location"]
    done = arm.wait_location(reply.headers["Location"])
    assert done.status_code == 200
    assert done.json()["status"] == "Succeeded"
    shown = arm.get(arm.endpoint("patch-ep")).json()
    assert shown["properties"]["authMode"] == "AMLToken"
    assert shown["tags"] == {"a": "b"}


def test_delete_answers_202_then_location_200_and_a_missing_endpoint_204(arm: Arm) -> None:
    arm.create_endpoint("del-ep")
    reply = arm.request("DELETE", arm.endpoint("del-ep"))
    assert reply.status_code == 202
    assert arm.wait_location(reply.headers["Location"]).status_code == 200
    assert arm.get(arm.endpoint("del-ep")).status_code == 404
    assert arm.request("DELETE", arm.endpoint("del-ep")).status_code == 204


def _principal_changes(arm: Arm, oid: str, since: int) -> int:
    """How many principals changes for ``oid`` the change feed carries after ``since``."""
    changes = arm.ctx.db.changes_since(since)
    return sum(c.kind == PRINCIPALS_CHANGE and c.key == oid.lower() for c in changes)


def test_delete_removes_keys_identity_and_frees_the_name(arm: Arm) -> None:
    start = arm.ctx.db.revision()
    created = arm.create_endpoint("gone-ep")
    principal = created["identity"]["principalId"]
    # directory caches on every replica hear of the identity's creation and of its deletion
    assert _principal_changes(arm, principal, start) == 1
    eid = canonical(arm.endpoint("gone-ep"))
    before_delete = arm.ctx.db.revision()
    reply = arm.request("DELETE", arm.endpoint("gone-ep"))
    arm.wait_location(reply.headers["Location"])
    assert arm.ctx.vault.get(key_secret_name(eid, "primary")) is None
    with arm.ctx.db.reader() as session:
        assert session.get(Principal, principal) is None
    assert _principal_changes(arm, principal, before_delete) == 1
    arm.create_endpoint("gone-ep")


def test_aml_tokens_are_bound_to_a_uid_kept_by_updates_and_new_for_a_namesake(
    arm: Arm, access: FakeAccess
) -> None:
    def uid() -> str:
        shown = arm.get(arm.endpoint("uid-ep")).json()["properties"]["properties"]
        value: str = shown["propylon.endpointuid"]
        return value

    def token_uid() -> str | None:
        assert arm.post(arm.endpoint("uid-ep") + "/token").status_code == 200
        return access.minted_uids[-1]

    arm.create_endpoint("uid-ep", "AMLToken")
    first = uid()
    uuid.UUID(first)
    assert token_uid() == first
    echoed = {"properties": {"authMode": "AMLToken", "properties": {"propylon.endpointUid": "x"}}}
    assert arm.put(arm.endpoint("uid-ep"), echoed).status_code == 200
    assert uid() == first
    reply = arm.request("DELETE", arm.endpoint("uid-ep"))
    arm.wait_location(reply.headers["Location"])
    arm.create_endpoint("uid-ep", "AMLToken")
    assert uid() != first
    assert token_uid() == uid()


def test_system_assigned_identity_is_a_managed_identity_principal(arm: Arm) -> None:
    created = arm.create_endpoint("mi-ep")
    with arm.ctx.db.reader() as session:
        principal = session.get(Principal, created["identity"]["principalId"])
    assert principal is not None
    assert principal.kind == "managedIdentity"
    assert principal.tenant_id == arm.ctx.tenancy.tenant_id
    assert principal.body == {"appId": principal.name, "xms_mirid": arm.endpoint("mi-ep")}


def test_operation_status_needs_read_on_the_resource(arm: Arm, access: FakeAccess) -> None:
    reply = arm.put(arm.endpoint("op-ep"), {"location": "local", "properties": {"authMode": "Key"}})
    url = reply.headers["Azure-AsyncOperation"]
    denied = arm.client.get(url, headers={"Authorization": f"Bearer {DENY}"})
    assert denied.status_code == 403
    assert "onlineEndpoints/read" in denied.json()["error"]["message"]


# --- ETags and concurrency ---------------------------------------------------------------------


def test_put_with_stale_if_match_is_412_and_changes_nothing(arm: Arm) -> None:
    arm.create_endpoint("etag-ep")
    first = arm.get(arm.endpoint("etag-ep"))
    etag = first.headers["ETag"]
    body = {"location": "local", "tags": {"v": "1"}, "properties": {"authMode": "Key"}}
    assert arm.put(arm.endpoint("etag-ep"), body, headers={"If-Match": etag}).status_code == 200
    body["tags"] = {"v": "2"}
    stale = arm.put(arm.endpoint("etag-ep"), body, headers={"If-Match": etag})
    assert stale.status_code == 412
    assert _error(stale)["code"] == "PreconditionFailed"
    assert arm.get(arm.endpoint("etag-ep")).json()["tags"] == {"v": "1"}
    assert (
        arm.request("DELETE", arm.endpoint("etag-ep"), headers={"If-Match": etag}).status_code
        == 412
    )


def test_if_none_match_star_creates_only(arm: Arm) -> None:
    arm.create_endpoint("inm-ep")
    body = {"location": "local", "properties": {"authMode": "Key"}}
    reply = arm.put(arm.endpoint("inm-ep"), body, headers={"If-None-Match": "*"})
    assert reply.status_code == 412


def test_concurrent_puts_with_etags_never_lose_an_update(arm: Arm) -> None:
    arm.create_endpoint("race-ep")
    writers = 8

    def add_tag(index: int) -> int:
        attempts = 0
        while True:
            attempts += 1
            current = arm.get(arm.endpoint("race-ep"))
            tags = {**current.json()["tags"], f"w{index}": "1"}
            body = {"location": "local", "tags": tags, "properties": {"authMode": "Key"}}
            reply = arm.put(
                arm.endpoint("race-ep"), body, headers={"If-Match": current.headers["ETag"]}
            )
            if reply.status_code == 200:
                return attempts
            assert reply.status_code == 412, reply.text

    with concurrent.futures.ThreadPoolExecutor(writers) as pool:
        attempts = list(pool.map(add_tag, range(writers)))
    final = arm.get(arm.endpoint("race-ep")).json()["tags"]
    assert final == {f"w{i}": "1" for i in range(writers)}
    assert sum(attempts) >= writers


def test_concurrent_puts_with_one_etag_let_exactly_one_win(arm: Arm) -> None:
    arm.create_endpoint("one-ep")
    etag = arm.get(arm.endpoint("one-ep")).headers["ETag"]

    def put(index: int) -> int:
        body = {"location": "local", "tags": {"by": str(index)}, "properties": {"authMode": "Key"}}
        return arm.put(arm.endpoint("one-ep"), body, headers={"If-Match": etag}).status_code

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        codes = sorted(pool.map(put, range(6)))
    assert codes == [200, 412, 412, 412, 412, 412]


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("ab", "3 to 32"),
        ("1abc", "begin with a letter"),
        ("a" * 33, "3 to 32"),
        ("ab_c", "hyphens"),
    ],
)
def test_endpoint_name_rules_are_400_naming_the_field(arm: Arm, name: str, reason: str) -> None:
    reply = arm.put(arm.endpoint(name), {"location": "local", "properties": {"authMode": "Key"}})
    error = _error(reply)
    assert reply.status_code == 400
    assert error["target"] == "name"
    assert reason in error["message"]


def test_endpoint_names_are_unique_on_the_server(arm: Arm) -> None:
    arm.create_endpoint("unique-ep")
    rg = f"/subscriptions/{arm.sub}/resourceGroups/other-rg"
    assert arm.put(rg, {"location": "local"}).status_code == 201
    ws = f"{rg}/providers/Microsoft.MachineLearningServices/workspaces/other-ws"
    assert arm.put(ws, {"location": "local"}).status_code == 201
    reply = arm.put(f"{ws}/onlineEndpoints/UNIQUE-EP", {"properties": {"authMode": "Key"}})
    assert reply.status_code == 400
    assert _error(reply)["target"] == "name"
    assert "already in use" in _error(reply)["message"]


def test_auth_mode_must_be_known_and_is_case_insensitive(arm: Arm) -> None:
    bad = arm.put(
        arm.endpoint("auth-ep"), {"location": "local", "properties": {"authMode": "Basic"}}
    )
    assert bad.status_code == 400
    assert _error(bad)["target"] == "properties.authMode"
    assert "Key, AMLToken, AADToken" in _error(bad)["message"]
    missing = arm.put(arm.endpoint("auth-ep"), {"location": "local", "properties": {}})
    assert _error(missing)["target"] == "properties.authMode"
    assert "required" in _error(missing)["message"]
    good = arm.put(arm.endpoint("auth-ep"), {"properties": {"authMode": "amltoken"}})
    assert good.json()["properties"]["authMode"] == "AMLToken"


def test_malformed_json_is_400_naming_the_body(arm: Arm) -> None:
    reply = arm.request(
        "PUT",
        arm.endpoint("json-ep"),
        content=b'{"properties": {"authMode": ',
        headers={"Content-Type": "application/json"},
    )
    assert reply.status_code == 400
    assert _error(reply)["code"] == "InvalidRequestContent"
    assert _error(reply)["target"] == "body"
    assert "not valid JSON" in _error(reply)["message"]


@pytest.mark.parametrize(
    ("traffic", "mirror", "target", "words"),
    [
        ({"ghost": 100}, {}, "properties.traffic", "does not exist"),
        ({"blue": 60, "green": 30}, {}, "properties.traffic", "sum up to 100"),
        ({"blue": 100}, {"green": 60}, "properties.mirrorTraffic", "between 0 and 50"),
        ({"blue": 100}, {"blue": 10}, "properties.mirrorTraffic", "live traffic"),
        ({"blue": 100}, {"green": 10, "red": 10}, "properties.mirrorTraffic", "one deployment"),
    ],
)
def test_traffic_rules_are_400_naming_the_field(
    arm: Arm, traffic: dict[str, int], mirror: dict[str, int], target: str, words: str
) -> None:
    arm.create_endpoint("traffic-ep")
    ids = arm.register_assets()
    for name in ("blue", "green", "red"):
        arm.create_deployment("traffic-ep", name, ids)
    body = {"properties": {"authMode": "Key", "traffic": traffic, "mirrorTraffic": mirror}}
    reply = arm.put(arm.endpoint("traffic-ep"), body)
    assert reply.status_code == 400
    assert _error(reply)["target"] == target
    assert words in _error(reply)["message"]


def test_traffic_at_creation_is_refused_and_all_zero_is_fine(arm: Arm) -> None:
    reply = arm.put(
        arm.endpoint("new-ep"), {"properties": {"authMode": "Key", "traffic": {"blue": 100}}}
    )
    assert _error(reply)["target"] == "properties.traffic"
    arm.create_endpoint("zero-ep")
    ids = arm.register_assets()
    arm.create_deployment("zero-ep", "blue", ids)
    body = {"properties": {"authMode": "Key", "traffic": {"BLUE": 0}}}
    assert arm.put(arm.endpoint("zero-ep"), body).status_code == 200
    body = {"properties": {"authMode": "Key", "traffic": {"BLUE": 100}}}
    assert arm.put(arm.endpoint("zero-ep"), body).json()["properties"]["traffic"] == {"blue": 100}


def test_server_owned_properties_echoed_back_by_the_sdk_are_accepted(arm: Arm) -> None:
    created = arm.create_endpoint("echo-ep", properties={"team": "ml"})
    echoed = {
        "location": created["location"],
        "identity": {"type": "SystemAssigned"},
        "properties": {
            **created["properties"],
            "properties": {
                **created["properties"]["properties"],
                "createdBy": "me",
                "createdAt": "2024-01-01T00:00:00.000000+0000",
            },
        },
    }
    reply = arm.put(arm.endpoint("echo-ep"), echoed)
    assert reply.status_code == 200
    properties = reply.json()["properties"]["properties"]
    assert properties["team"] == "ml"
    assert "createdBy" not in properties
    assert reply.json()["identity"]["principalId"] == created["identity"]["principalId"]


# --- response shapes ---------------------------------------------------------------------------


def test_endpoint_body_has_every_field_the_official_client_reads(arm: Arm) -> None:
    shown = arm.create_endpoint("shape-ep", description="d")
    assert shown["id"] == arm.endpoint("shape-ep")
    assert shown["name"] == "shape-ep"
    assert shown["type"] == "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
    assert shown["kind"] == "Managed"
    assert {"createdAt", "lastModifiedAt", "createdBy"} <= set(shown["systemData"])
    properties = shown["properties"]
    assert properties["traffic"] == {}
    assert properties["mirrorTraffic"] == {}
    assert isinstance(properties["properties"], dict)
    assert properties["properties"]["azureml.onlineendpointid"] == canonical(
        arm.endpoint("shape-ep")
    )
    assert "keys" not in properties
    listed = arm.get(f"{arm.ws}/onlineEndpoints").json()["value"]
    assert [item["name"] for item in listed] == ["shape-ep"]


def test_paths_match_case_insensitively_and_keep_the_name(arm: Arm) -> None:
    arm.create_endpoint("Case-Ep")
    path = (
        arm.endpoint("Case-Ep")
        .replace("resourceGroups", "RESOURCEGROUPS")
        .replace("onlineEndpoints", "onlineendpoints")
        .replace("Microsoft.MachineLearningServices", "microsoft.machinelearningservices")
    )
    reply = arm.get(path)
    assert reply.status_code == 200
    assert reply.json()["name"] == "Case-Ep"
    assert arm.get(arm.endpoint("case-ep")).json()["name"] == "Case-Ep"
    assert (
        arm.post(path.replace("onlineendpoints", "ONLINEENDPOINTS") + "/LISTKEYS").status_code
        == 200
    )


def test_any_api_version_is_accepted(arm: Arm) -> None:
    arm.create_endpoint("api-ep")
    for version in ("2022-02-01-preview", "2025-12-01", "1999-01-01"):
        assert arm.get(arm.endpoint("api-ep"), params={"api-version": version}).status_code == 200


# --- keys, tokens and local auth -----------------------------------------------------------------


def test_regenerate_invalidates_one_key_and_keeps_the_other(arm: Arm) -> None:
    arm.create_endpoint("regen-ep")
    before = arm.post(arm.endpoint("regen-ep") + "/listKeys").json()
    reply = arm.post(arm.endpoint("regen-ep") + "/regenerateKeys", {"keyType": "Secondary"})
    assert reply.status_code == 202
    assert arm.wait_location(reply.headers["Location"]).status_code == 200
    after = arm.post(arm.endpoint("regen-ep") + "/listKeys").json()
    assert after["primaryKey"] == before["primaryKey"]
    assert after["secondaryKey"] != before["secondaryKey"]


def test_regenerate_with_the_current_value_gives_a_fresh_key_as_the_sdk_expects(arm: Arm) -> None:
    arm.create_endpoint("sdk-ep")
    before = arm.post(arm.endpoint("sdk-ep") + "/listKeys").json()
    body = {"keyType": "primary", "keyValue": before["primaryKey"]}
    arm.post(arm.endpoint("sdk-ep") + "/regenerateKeys", body)
    after = arm.post(arm.endpoint("sdk-ep") + "/listKeys").json()
    assert after["primaryKey"] != before["primaryKey"]
    assert after["secondaryKey"] == before["secondaryKey"]


def test_a_chosen_key_value_must_be_strong(arm: Arm) -> None:
    arm.create_endpoint("weak-ep")
    weak = arm.post(
        arm.endpoint("weak-ep") + "/regenerateKeys",
        {"keyType": "Primary", "keyValue": "password123"},
    )
    assert weak.status_code == 400
    assert _error(weak)["target"] == "keyValue"
    strong = "Zq3xV9mKp2Lr8Tn4Wb6Yc1Hd5Jf7Gs0Qe"
    body = {"keyType": "Primary", "keyValue": strong}
    assert arm.post(arm.endpoint("weak-ep") + "/regenerateKeys", body).status_code == 202
    assert arm.post(arm.endpoint("weak-ep") + "/listKeys").json()["primaryKey"] == strong


def test_bad_key_type_is_400_naming_it(arm: Arm) -> None:
    arm.create_endpoint("kt-ep")
    reply = arm.post(arm.endpoint("kt-ep") + "/regenerateKeys", {"keyType": "Tertiary"})
    assert _error(reply)["target"] == "keyType"


def test_disable_local_auth_refuses_key_endpoints_and_credentials(arm: Arm) -> None:
    arm.create_endpoint("before-ep", "Key")
    workspace = arm.get(arm.ws).json()
    body = {"location": workspace["location"], "properties": {"disableLocalAuth": True}}
    assert arm.put(arm.ws, body).status_code == 200
    for mode in ("Key", "AMLToken"):
        reply = arm.put(arm.endpoint("after-ep"), {"properties": {"authMode": mode}})
        assert reply.status_code == 400
        assert _error(reply)["code"] == "LocalAuthDisabled"
        assert _error(reply)["target"] == "properties.authMode"
    assert (
        arm.put(arm.endpoint("after-ep"), {"properties": {"authMode": "AADToken"}}).status_code
        == 201
    )
    keys = arm.post(arm.endpoint("before-ep") + "/listKeys")
    assert keys.status_code == 400
    assert "disables local authentication" in _error(keys)["message"]


# --- authentication and authorization ------------------------------------------------------------


def test_no_token_is_401_and_a_denied_caller_gets_403_naming_action_and_scope(arm: Arm) -> None:
    unauthenticated = arm.client.get(arm.endpoint("x-ep"), params={"api-version": "2023-04-01"})
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["WWW-Authenticate"].startswith("Bearer")
    denied = arm.as_(DENY).put(arm.endpoint("x-ep"), {"properties": {"authMode": "Key"}})
    assert denied.status_code == 403
    error = _error(denied)
    assert error["code"] == "AuthorizationFailed"
    assert "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/write" in error["message"]
    assert arm.endpoint("x-ep") in error["message"]


@pytest.mark.parametrize(
    ("method", "suffix", "action"),
    [
        ("GET", "", "onlineEndpoints/read"),
        ("DELETE", "", "onlineEndpoints/delete"),
        ("POST", "/listKeys", "onlineEndpoints/listKeys/action"),
        ("POST", "/token", "onlineEndpoints/token/action"),
    ],
)
def test_each_endpoint_call_checks_its_action_at_the_endpoint_scope(
    arm: Arm, access: FakeAccess, method: str, suffix: str, action: str
) -> None:
    arm.create_endpoint("authz-ep")
    access.checks.clear()
    arm.request(method, arm.endpoint("authz-ep") + suffix, headers={"Content-Length": "0"})
    assert access.checks[0] == (
        f"Microsoft.MachineLearningServices/workspaces/{action}",
        arm.endpoint("authz-ep"),
    )


def _user_assigned_identity(arm: Arm, name: str) -> tuple[str, Principal]:
    uai = (
        f"/subscriptions/{arm.sub}/resourceGroups/{arm.rg}"
        f"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    )
    principal = Principal(
        id=str(uuid.uuid4()),
        tenant_id=arm.ctx.tenancy.tenant_id,
        kind="managedIdentity",
        name=str(uuid.uuid4()),
        display_name=name,
        enabled=True,
        body={"appId": "x", "xms_mirid": uai},
        created_at=utcnow(),
    )
    with arm.ctx.db.transaction() as session:
        session.add(principal)
    return uai, principal


def test_a_user_assigned_identity_is_attached_with_its_ids(arm: Arm) -> None:
    uai, principal = _user_assigned_identity(arm, "uai-1")
    body = {
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {uai.lower(): {}}},
        "properties": {"authMode": "Key"},
    }
    reply = arm.put(arm.endpoint("uai-ep"), body)
    assert reply.status_code == 201, reply.text
    assigned = reply.json()["identity"]["userAssignedIdentities"][uai.lower()]
    assert assigned == {"principalId": principal.id, "clientId": principal.name}
    unknown = {**body, "identity": {"type": "UserAssigned", "userAssignedIdentities": {"/x/y": {}}}}
    reply = arm.put(arm.endpoint("uai-ep"), unknown)
    assert _error(reply)["target"] == "identity.userAssignedIdentities"


def test_attaching_a_user_assigned_identity_needs_the_assign_action(
    arm: Arm, access: FakeAccess
) -> None:
    uai, _ = _user_assigned_identity(arm, "uai-2")
    access.denied_actions.add("microsoft.managedidentity/userassignedidentities/assign/action")
    body = {
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {uai: {}}},
        "properties": {"authMode": "Key"},
    }
    reply = arm.put(arm.endpoint("uai-ep2"), body)
    assert reply.status_code == 403
    assert "userAssignedIdentities/assign/action" in _error(reply)["message"]
    assert arm.get(arm.endpoint("uai-ep2")).status_code == 404
