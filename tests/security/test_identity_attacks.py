"""Attacks on the sign-in side of the identity provider, against a live server.

Wrong secrets, disabled principals (new sign-ins and tokens already issued), brute force,
stolen refresh tokens, forged client assertions, the managed-identity endpoint without its
secret — and the audit log that records it all without recording any secret.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from propylon.testing import RunningServer

pytestmark = pytest.mark.slow

ARM = "https://management.azure.com"
ML = "https://ml.azure.com"
CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client(base_url=server.control_url) as client:
        yield client


@pytest.fixture(scope="module")
def tenant(server: RunningServer) -> str:
    return str(server.bootstrap["tenant_id"])


@pytest.fixture(scope="module")
def token_url(tenant: str) -> str:
    return f"/{tenant}/oauth2/v2.0/token"


def client_credentials(
    http: httpx.Client, token_url: str, client_id: str, secret: str, resource: str = ARM
) -> httpx.Response:
    return http.post(
        token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": f"{resource}/.default",
        },
    )


@pytest.fixture(scope="module")
def graph(server: RunningServer, http: httpx.Client, token_url: str) -> Iterator[httpx.Client]:
    boot = server.bootstrap
    token = client_credentials(
        http, token_url, boot["admin_client_id"], boot["admin_client_secret"]
    ).json()["access_token"]
    with server.client(
        base_url=server.control_url, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        yield client


def new_application(graph: httpx.Client, name: str) -> tuple[dict[str, Any], str]:
    app = graph.post("/v1.0/applications", json={"displayName": name}).json()
    secret = graph.post(f"/v1.0/applications/{app['id']}/addPassword", json={}).json()
    return app, secret["secretText"]


def test_wrong_secret_is_invalid_client_with_a_challenge(
    server: RunningServer, http: httpx.Client, token_url: str
) -> None:
    response = client_credentials(http, token_url, server.bootstrap["admin_client_id"], "guess")
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")
    assert "guess" not in response.text


def test_disabled_principal_cannot_sign_in_and_its_tokens_stop_working(
    graph: httpx.Client, http: httpx.Client, token_url: str
) -> None:
    app, secret = new_application(graph, "soon-disabled")
    token = client_credentials(http, token_url, app["appId"], secret).json()["access_token"]
    me = {"Authorization": f"Bearer {token}"}
    # The token is valid: the directory call fails on RBAC (403), not on authentication.
    assert http.get("/v1.0/users", headers=me).status_code == 403

    sp = graph.get(
        "/v1.0/servicePrincipals", params={"$filter": f"appId eq '{app['appId']}'"}
    ).json()["value"][0]
    assert (
        graph.patch(
            f"/v1.0/servicePrincipals/{sp['id']}", json={"accountEnabled": False}
        ).status_code
        == 204
    )

    refused = client_credentials(http, token_url, app["appId"], secret)
    assert (refused.status_code, refused.json()["error"]) == (400, "unauthorized_client")
    old_token = http.get("/v1.0/users", headers=me)
    assert old_token.status_code == 401
    assert "disabled or no longer exists" in old_token.json()["error"]["message"]


def test_deleted_user_tokens_and_refresh_tokens_stop_working(
    graph: httpx.Client, http: httpx.Client, token_url: str
) -> None:
    user = graph.post(
        "/v1.0/users",
        json={
            "displayName": "Mallory",
            "userPrincipalName": "mallory@contoso.test",
            "passwordProfile": {"password": PASSWORD},
        },
    ).json()
    body = http.post(
        token_url,
        data={
            "grant_type": "password",
            "client_id": CLI,
            "username": "mallory@contoso.test",
            "password": PASSWORD,
            "scope": f"{ARM}/.default offline_access",
        },
    ).json()
    me = {"Authorization": f"Bearer {body['access_token']}"}
    assert http.get("/v1.0/users", headers=me).status_code == 403

    assert graph.delete(f"/v1.0/users/{user['id']}").status_code == 204

    assert http.get("/v1.0/users", headers=me).status_code == 401
    refreshed = http.post(
        token_url,
        data={
            "grant_type": "refresh_token",
            "client_id": CLI,
            "refresh_token": body["refresh_token"],
        },
    )
    assert (refreshed.status_code, refreshed.json()["error"]) == (400, "invalid_grant")


def test_a_replayed_refresh_token_revokes_the_whole_session(
    graph: httpx.Client, http: httpx.Client, token_url: str
) -> None:
    graph.post(
        "/v1.0/users",
        json={
            "displayName": "Victor",
            "userPrincipalName": "victor@contoso.test",
            "passwordProfile": {"password": PASSWORD},
        },
    )
    first = http.post(
        token_url,
        data={
            "grant_type": "password",
            "client_id": CLI,
            "username": "victor@contoso.test",
            "password": PASSWORD,
            "scope": f"{ML}/.default offline_access",
        },
    ).json()["refresh_token"]
    refresh = {"grant_type": "refresh_token", "client_id": CLI, "refresh_token": first}
    legitimate = http.post(token_url, data=refresh).json()["refresh_token"]

    stolen = http.post(token_url, data=refresh)  # the attacker replays the old one
    assert stolen.json()["error"] == "invalid_grant"
    after = http.post(token_url, data={**refresh, "refresh_token": legitimate})
    assert after.json()["error"] == "invalid_grant"  # the session is gone for both


def test_client_assertion_signed_by_an_unregistered_key_is_refused(
    graph: httpx.Client, http: httpx.Client, token_url: str, server: RunningServer
) -> None:
    app, _ = new_application(graph, "assertion-target")
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    forged = jwt.encode(
        {
            "aud": f"{server.control_url}{token_url}",
            "iss": app["appId"],
            "sub": app["appId"],
            "exp": now + 300,
            "iat": now,
            "jti": str(uuid.uuid4()),
        },
        attacker,
        algorithm="RS256",
        headers={"x5t": "AAAAAAAAAAAAAAAAAAAAAAAAAAA"},
    )
    response = http.post(
        token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": app["appId"],
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": forged,
            "scope": f"{ARM}/.default",
        },
    )
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")


def test_managed_identity_endpoint_needs_the_instance_secret(http: httpx.Client) -> None:
    params = {"api-version": "2019-08-01", "resource": ML}
    assert http.get("/msi/token", params=params).status_code == 401
    guessed = http.get("/msi/token", params=params, headers={"X-IDENTITY-HEADER": "guess"})
    assert guessed.status_code == 401
    proxied = http.get(
        "/msi/token",
        params=params,
        headers={"X-IDENTITY-HEADER": "guess", "X-Forwarded-For": "203.0.113.9"},
    )
    assert proxied.status_code == 400


def test_brute_force_is_throttled_even_for_the_right_secret(
    graph: httpx.Client, http: httpx.Client, token_url: str
) -> None:
    app, secret = new_application(graph, "brute-force-target")
    statuses = [
        client_credentials(http, token_url, app["appId"], f"guess-{n}").status_code
        for n in range(12)
    ]
    assert statuses[:10] == [401] * 10
    assert statuses[10:] == [429, 429]

    locked = client_credentials(http, token_url, app["appId"], secret)
    assert locked.status_code == 429
    assert locked.json()["error"] == "slow_down"
    assert 1 <= int(locked.headers["retry-after"]) <= 60


def test_audit_log_has_every_sign_in_and_no_secret(server: RunningServer) -> None:
    log = server.data_dir / "logs" / "signins.jsonl"
    events = [json.loads(line) for line in log.read_text().splitlines()]
    results = {(e["grant_type"], e["result"], e.get("error")) for e in events}
    assert ("client_credentials", "success", None) in results
    assert ("client_credentials", "failure", "invalid_client") in results
    assert ("client_credentials", "failure", "unauthorized_client") in results
    assert ("client_credentials", "failure", "slow_down") in results
    assert ("password", "success", None) in results
    assert ("refresh_token", "failure", "invalid_grant") in results
    assert all(
        e["source_address"] == "127.0.0.1" for e in events if e["grant_type"] != "managed_identity"
    )
    assert oct(log.stat().st_mode & 0o777) == "0o600"

    text = log.read_text()
    for secret in (server.bootstrap["admin_client_secret"], PASSWORD, "guess-3"):
        assert secret not in text
    assert "eyJ" not in text  # no token either
