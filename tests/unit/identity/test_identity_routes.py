"""The identity provider's HTTP surface, in process: discovery, JWKS, token errors, the device
page, the MSI route, and the Graph routes with the RBAC actions they ask for."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from propylon.config import Settings
from propylon.errors import Forbidden
from propylon.identity.provider import IdentityProvider
from propylon.runtime.base import IdentitySpec
from propylon.server.access import Caller
from propylon.server.app import build_context, create_control_app
from propylon.server.context import ServerContext

ML = "https://ml.azure.com"
CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"


class RecordingAccess:
    """Lets every caller in, or refuses the actions in ``refuse``; remembers what was asked."""

    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self.asked: list[tuple[str, str]] = []
        self.refuse: set[str] = set()

    def authenticate(self, token: str, *, audiences: tuple[str, ...]) -> Caller:
        return Caller(oid="admin-oid", tid=self.tenant_id, appid=None, kind="app")

    def require(self, caller: Caller, action: str, scope: str) -> None:
        self.asked.append((action, scope))
        if action in self.refuse:
            raise Forbidden(f"does not have authorization to perform action '{action}'")


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerContext]:
    data_dir = tmp_path_factory.mktemp("identity-routes")
    context = build_context(Settings(data_dir=data_dir, tls=False).validated())
    yield context
    context.db.dispose()


@pytest.fixture(scope="module")
def client(ctx: ServerContext) -> Iterator[TestClient]:
    with TestClient(create_control_app(ctx), base_url="http://127.0.0.1:8080") as test_client:
        yield test_client


@pytest.fixture
def access(ctx: ServerContext) -> Iterator[RecordingAccess]:
    previous = ctx.services.get("access")
    recording = RecordingAccess(ctx.tenancy.tenant_id)
    ctx.services["access"] = recording
    yield recording
    ctx.services["access"] = previous


@pytest.fixture
def provider(ctx: ServerContext) -> IdentityProvider:
    identity: IdentityProvider = ctx.services["identity"]
    return identity


AUTH = {"Authorization": "Bearer stub"}


def test_services_are_registered_for_the_other_parts(ctx: ServerContext) -> None:
    for name in ("identity", "issuer", "validator", "directory", "mi_broker", "identity_env"):
        assert name in ctx.services
    assert callable(ctx.services["identity_env"])


def test_discovery_issuer_matches_the_tokens_and_names_every_endpoint(
    client: TestClient, ctx: ServerContext
) -> None:
    tid = ctx.tenancy.tenant_id
    v2 = client.get(f"/{tid}/v2.0/.well-known/openid-configuration").json()
    base = ctx.control_url
    assert v2["issuer"] == f"{base}/{tid}/v2.0"
    assert v2["token_endpoint"] == f"{base}/{tid}/oauth2/v2.0/token"
    assert v2["device_authorization_endpoint"] == f"{base}/{tid}/oauth2/v2.0/devicecode"
    assert v2["jwks_uri"] == f"{base}/{tid}/discovery/v2.0/keys"
    assert "private_key_jwt" in v2["token_endpoint_auth_methods_supported"]
    assert v2["id_token_signing_alg_values_supported"] == ["RS256"]
    v1 = client.get(f"/{tid}/.well-known/openid-configuration").json()
    assert v1["token_endpoint"] == f"{base}/{tid}/oauth2/token"
    common = client.get("/common/v2.0/.well-known/openid-configuration").json()
    assert common["issuer"] == f"{base}/{{tenantid}}/v2.0"


def test_unknown_tenant_discovery_is_a_400(client: TestClient) -> None:
    response = client.get(
        "/00000000-0000-0000-0000-000000000000/v2.0/.well-known/openid-configuration"
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_tenant"


def test_jwks_publishes_the_signing_key(client: TestClient, ctx: ServerContext) -> None:
    keys = client.get(f"/{ctx.tenancy.tenant_id}/discovery/v2.0/keys").json()["keys"]
    assert keys
    assert {"kid", "x5t", "n", "e", "x5c"} <= set(keys[0])
    assert client.get("/common/discovery/keys").json()["keys"] == keys


def test_token_errors_are_rfc6749_bodies_not_arm_bodies(
    client: TestClient, ctx: ServerContext
) -> None:
    url = f"/{ctx.tenancy.tenant_id}/oauth2/v2.0/token"
    response = client.post(
        url,
        data={
            "grant_type": "client_credentials",
            "client_id": "nobody",
            "client_secret": "x" * 20,
            "scope": f"{ML}/.default",
        },
    )
    body = response.json()
    assert response.status_code == 401
    assert body["error"] == "invalid_client"
    assert body["error_codes"] == [700016]
    assert body["trace_id"]
    assert response.headers["cache-control"] == "no-store"
    assert client.post(url, data={"grant_type": "nope"}).json()["error"] == "unsupported_grant_type"
    assert client.post(url, json={"grant_type": "password"}).json()["error"] == "invalid_request"
    repeated = client.post(
        url,
        content="grant_type=password&grant_type=password",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert repeated.json()["error_description"] == "The parameter 'grant_type' is repeated."


def test_authorize_endpoint_says_redirect_flows_are_not_served(
    client: TestClient, ctx: ServerContext
) -> None:
    response = client.get(f"/{ctx.tenancy.tenant_id}/oauth2/v2.0/authorize")
    assert (response.status_code, response.json()["error"]) == (400, "unsupported_response_type")


def test_user_realm_says_managed(client: TestClient) -> None:
    assert client.get("/common/userrealm/a@b.c?api-version=1.0").json()["account_type"] == "Managed"


def test_device_page_approves_a_code(
    client: TestClient, ctx: ServerContext, provider: IdentityProvider
) -> None:
    tid = ctx.tenancy.tenant_id
    provider.directory.create_user(tid, "dora@contoso.test", "Dora <b>", "correct horse battery")
    started = client.post(
        f"/{tid}/oauth2/v2.0/devicecode",
        data={"client_id": CLI, "scope": f"{ML}/.default openid offline_access"},
    ).json()

    page = client.get("/device", params={"code": started["user_code"]})
    assert page.status_code == 200
    assert started["user_code"] in page.text
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]

    wrong = client.post(
        "/device",
        data={
            "user_code": started["user_code"],
            "username": "dora@contoso.test",
            "password": "nope nope",
            "action": "approve",
        },
    )
    assert wrong.status_code == 401
    assert "incorrect" in wrong.text
    done = client.post(
        "/device",
        data={
            "user_code": started["user_code"].lower().replace("-", ""),
            "username": "dora@contoso.test",
            "password": "correct horse battery",
            "action": "approve",
        },
    )
    assert done.status_code == 200
    assert "signed in" in done.text
    assert "Azure CLI" in done.text

    token = client.post(
        f"/{tid}/oauth2/v2.0/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "client_id": CLI,
            "device_code": started["device_code"],
        },
    )
    assert token.status_code == 200
    assert token.json()["refresh_token"]


def test_device_page_escapes_what_it_echoes(client: TestClient) -> None:
    page = client.get("/device", params={"code": '"><script>alert(1)</script>'})
    assert "<script>" not in page.text
    assert "&lt;script&gt;" in page.text


def test_msi_route_speaks_both_protocols(
    client: TestClient, ctx: ServerContext, provider: IdentityProvider
) -> None:
    rid = (
        f"/subscriptions/{ctx.tenancy.subscription_id}/resourceGroups/rg/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/route-mi"
    )
    mi = provider.directory.create_managed_identity(
        ctx.tenancy.tenant_id, "route-mi", resource_id=rid
    )
    _, secret = provider.mi_broker.register(
        "i-1", IdentitySpec(mi.id, mi.name, ctx.tenancy.tenant_id)
    )

    app_service = client.get(
        "/msi/token",
        params={"api-version": "2019-08-01", "resource": ML},
        headers={"X-IDENTITY-HEADER": secret},
    )
    assert app_service.status_code == 200
    assert app_service.json()["client_id"] == mi.name
    azure_ml = client.get(
        "/msi/token",
        params={"api-version": "2017-09-01", "resource": ML, "clientid": mi.name},
        headers={"secret": secret},
    )
    assert azure_ml.status_code == 200
    refused = client.get(
        "/msi/token",
        params={"api-version": "2019-08-01", "resource": ML},
        headers={"X-IDENTITY-HEADER": "guess"},
    )
    assert refused.status_code == 401
    assert {"error", "error_description", "statusCode", "message"} <= set(refused.json())


# -- Graph routes and the RBAC actions they require --------------------------------------------


def test_graph_user_lifecycle(client: TestClient, access: RecordingAccess) -> None:
    created = client.post(
        "/v1.0/users",
        headers=AUTH,
        json={
            "accountEnabled": True,
            "displayName": "Erin",
            "userPrincipalName": "erin@contoso.test",
            "passwordProfile": {"password": "correct horse battery"},
        },
    )
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["userPrincipalName"] == "erin@contoso.test"
    assert "password" not in created.text

    assert client.get("/v1.0/users/erin@contoso.test", headers=AUTH).json()["id"] == user["id"]
    listed = client.get(
        "/v1.0/users", headers=AUTH, params={"$filter": "userPrincipalName eq 'ERIN@contoso.test'"}
    ).json()
    assert [u["id"] for u in listed["value"]] == [user["id"]]
    assert (
        client.patch(
            f"/v1.0/users/{user['id']}", headers=AUTH, json={"accountEnabled": False}
        ).status_code
        == 204
    )
    assert client.get(f"/v1.0/users/{user['id']}", headers=AUTH).json()["accountEnabled"] is False
    assert client.delete(f"/v1.0/users/{user['id']}", headers=AUTH).status_code == 204
    missing = client.get(f"/v1.0/users/{user['id']}", headers=AUTH)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "Request_ResourceNotFound"

    assert [a for a, _ in access.asked] == [
        "Microsoft.Directory/users/write",
        "Microsoft.Directory/users/read",
        "Microsoft.Directory/users/read",
        "Microsoft.Directory/users/write",
        "Microsoft.Directory/users/read",
        "Microsoft.Directory/users/delete",
        "Microsoft.Directory/users/read",
    ]
    assert {scope for _, scope in access.asked} == {"/"}


def test_graph_groups_and_nested_members(
    client: TestClient, access: RecordingAccess, provider: IdentityProvider, ctx: ServerContext
) -> None:
    fred = provider.directory.create_user(
        ctx.tenancy.tenant_id, "fred@contoso.test", "Fred", "correct horse battery"
    )
    outer = client.post(
        "/v1.0/groups",
        headers=AUTH,
        json={
            "displayName": "outer",
            "mailNickname": "outer",
            "securityEnabled": True,
            "mailEnabled": False,
        },
    ).json()
    inner = client.post("/v1.0/groups", headers=AUTH, json={"displayName": "inner"}).json()
    for group, member in ((outer["id"], inner["id"]), (inner["id"], fred.id)):
        ref = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{member}"}
        assert (
            client.post(f"/v1.0/groups/{group}/members/$ref", headers=AUTH, json=ref).status_code
            == 204
        )
    members = client.get(f"/v1.0/groups/{outer['id']}/members", headers=AUTH).json()["value"]
    assert [(m["id"], m["@odata.type"]) for m in members] == [
        (inner["id"], "#microsoft.graph.group")
    ]
    transitive = client.post(
        f"/v1.0/users/{fred.id}/getMemberObjects", headers=AUTH, json={"securityEnabledOnly": True}
    ).json()["value"]
    assert set(transitive) == {outer["id"], inner["id"]}
    assert (
        client.delete(
            f"/v1.0/groups/{inner['id']}/members/{fred.id}/$ref", headers=AUTH
        ).status_code
        == 204
    )
    assert provider.directory.groups_of(fred.id) == frozenset()
    assert "Microsoft.Directory/groups/write" in {a for a, _ in access.asked}


def test_graph_application_with_secret_and_certificate(
    client: TestClient, access: RecordingAccess
) -> None:
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from identity_support import self_signed

    app = client.post("/v1.0/applications", headers=AUTH, json={"displayName": "scorer"}).json()
    assert re.fullmatch(r"[0-9a-f-]{36}", app["appId"])
    assert app["id"] != app["appId"]
    secret = client.post(
        f"/v1.0/applications/{app['id']}/addPassword",
        headers=AUTH,
        json={"passwordCredential": {"displayName": "ci"}},
    ).json()
    assert secret["secretText"]
    assert secret["hint"] == secret["secretText"][:3]

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = self_signed(key).public_bytes(serialization.Encoding.DER)
    added = client.post(
        f"/v1.0/applications/{app['id']}/addKey",
        headers=AUTH,
        json={
            "keyCredential": {
                "type": "AsymmetricX509Cert",
                "usage": "Verify",
                "key": base64.b64encode(der).decode(),
            }
        },
    )
    assert added.status_code == 200, added.text

    shown = client.get(f"/v1.0/applications/{app['id']}", headers=AUTH).json()
    assert [p["secretText"] for p in shown["passwordCredentials"]] == [None]
    assert [k["customKeyIdentifier"] for k in shown["keyCredentials"]] == [
        added.json()["customKeyIdentifier"]
    ]
    sp = client.get(
        "/v1.0/servicePrincipals", headers=AUTH, params={"$filter": f"appId eq '{app['appId']}'"}
    ).json()["value"][0]
    assert (
        client.post("/v1.0/servicePrincipals", headers=AUTH, json={"appId": app["appId"]}).json()[
            "id"
        ]
        == sp["id"]
    )
    assert (
        client.patch(
            f"/v1.0/servicePrincipals/{sp['id']}", headers=AUTH, json={"accountEnabled": False}
        ).status_code
        == 204
    )
    assert (
        client.get(f"/v1.0/servicePrincipals/{sp['id']}", headers=AUTH).json()["accountEnabled"]
        is False
    )
    assert (
        client.post(
            f"/v1.0/applications/{app['id']}/removePassword",
            headers=AUTH,
            json={"keyId": secret["keyId"]},
        ).status_code
        == 204
    )
    assert client.delete(f"/v1.0/applications/{app['id']}", headers=AUTH).status_code == 204
    assert {a for a, _ in access.asked} >= {
        "Microsoft.Directory/applications/write",
        "Microsoft.Directory/applications/read",
        "Microsoft.Directory/applications/delete",
        "Microsoft.Directory/servicePrincipals/read",
        "Microsoft.Directory/servicePrincipals/write",
    }


def test_graph_refuses_without_the_action(client: TestClient, access: RecordingAccess) -> None:
    access.refuse.add("Microsoft.Directory/users/write")
    response = client.post(
        "/v1.0/users",
        headers=AUTH,
        json={
            "displayName": "x",
            "userPrincipalName": "x@y.z",
            "passwordProfile": {"password": "correct horse battery"},
        },
    )
    assert response.status_code == 403


def test_graph_rejects_bad_input_naming_the_field(
    client: TestClient, access: RecordingAccess
) -> None:
    response = client.post(
        "/v1.0/users",
        headers=AUTH,
        json={"displayName": "x", "passwordProfile": {"password": "correct horse battery"}},
    )
    assert response.status_code == 400
    assert "userPrincipalName" in response.json()["error"]["message"]
    response = client.get(
        "/v1.0/users", headers=AUTH, params={"$filter": "startswith(displayName,'a')"}
    )
    assert response.status_code == 400


def test_arm_user_assigned_identity(
    client: TestClient, access: RecordingAccess, ctx: ServerContext
) -> None:
    group = (
        f"/subscriptions/{ctx.tenancy.subscription_id}/resourceGroups/{ctx.tenancy.resource_group}"
    )
    url = f"{group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/uai-1"
    created = client.put(
        url,
        headers=AUTH,
        params={"api-version": "2023-01-31"},
        json={"location": "local", "tags": {"a": "b"}},
    )
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    assert body["id"] == url
    assert body["type"] == "Microsoft.ManagedIdentity/userAssignedIdentities"
    assert set(body["properties"]) == {"tenantId", "principalId", "clientId"}
    again = client.put(url, headers=AUTH, json={"location": "local", "tags": {"c": "d"}})
    assert again.status_code == 200
    assert again.json()["properties"] == body["properties"]
    listed = client.get(
        f"{group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities", headers=AUTH
    ).json()
    assert [i["name"] for i in listed["value"]] == ["uai-1"]
    assert client.delete(url, headers=AUTH).status_code == 200
    assert client.get(url, headers=AUTH).status_code == 404
    assert ("Microsoft.ManagedIdentity/userAssignedIdentities/write", url) in access.asked
    missing_group = url.replace(ctx.tenancy.resource_group, "nope-rg")
    assert client.put(missing_group, headers=AUTH, json={}).status_code == 404
