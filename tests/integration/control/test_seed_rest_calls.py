"""The REST calls of seed 003 (authenticate clients for online endpoints), host changed only."""

from __future__ import annotations

from control_support import Arm, FakeAccess


def test_seed_003_put_endpoint_with_aad_token_then_get_token_and_list_keys(
    arm: Arm, access: FakeAccess
) -> None:
    # PUT …/onlineEndpoints/$ENDPOINT_NAME?api-version=2023-04-01 exactly as the seed sends it.
    body = {
        "identity": {"type": "systemAssigned"},
        "properties": {"authMode": "AADToken"},
        "location": "local",
    }
    created = arm.put(arm.endpoint("my-aad-auth-endp1"), body)
    assert created.status_code == 201
    document = created.json()
    assert document["properties"]["authMode"] == "AADToken"
    assert document["properties"]["provisioningState"] == "Creating"
    assert document["identity"]["type"] == "SystemAssigned"
    assert document["identity"]["principalId"]
    assert document["identity"]["tenantId"] == arm.ctx.tenancy.tenant_id
    assert arm.wait(created.headers["Azure-AsyncOperation"])["status"] == "Succeeded"

    shown = arm.get(arm.endpoint("my-aad-auth-endp1"))
    assert shown.status_code == 200
    properties = shown.json()["properties"]
    assert properties["provisioningState"] == "Succeeded"
    assert properties["scoringUri"] == f"{arm.ctx.gateway_url}/endpoints/my-aad-auth-endp1/score"
    assert properties["swaggerUri"].endswith("/endpoints/my-aad-auth-endp1/swagger.json")

    # POST …/token and …/listKeys with Content-Length: 0: an AADToken endpoint has neither.
    token = arm.post(arm.endpoint("my-aad-auth-endp1") + "/token")
    assert token.status_code == 400
    assert token.json()["error"]["target"] == "properties.authMode"
    assert "AMLToken" in token.json()["error"]["message"]
    keys = arm.post(arm.endpoint("my-aad-auth-endp1") + "/listKeys")
    assert keys.status_code == 400
    assert "authMode Key" in keys.json()["error"]["message"]
    assert access.minted == []


def test_seed_003_token_and_keys_for_the_auth_modes_that_have_them(arm: Arm) -> None:
    arm.create_endpoint("aml-endp", "AMLToken")
    token = arm.post(arm.endpoint("aml-endp") + "/token")
    assert token.status_code == 200
    assert set(token.json()) == {"accessToken", "expiryTimeUtc", "refreshAfterTimeUtc", "tokenType"}
    assert token.json()["accessToken"].endswith("/onlineendpoints/aml-endp")

    arm.create_endpoint("key-endp", "Key")
    keys = arm.post(arm.endpoint("key-endp") + "/listKeys")
    assert keys.status_code == 200
    assert set(keys.json()) == {"primaryKey", "secondaryKey"}
    assert len(keys.json()["primaryKey"]) >= 43
    assert keys.json()["primaryKey"] != keys.json()["secondaryKey"]
