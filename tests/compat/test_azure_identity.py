"""The official clients (azure-identity 1.27, MSAL 1.39) against a real Propylon server.

Every credential is pointed at the server exactly as reference §5.2 says a custom authority is:
``authority=<server>``, ``disable_instance_discovery=True`` (MSAL: ``instance_discovery=False``),
the server's CA in ``REQUESTS_CA_BUNDLE``/``SSL_CERT_FILE``. Tokens are then checked the way a
relying party would: discovery → JWKS → :class:`~propylon.identity.TokenValidator`.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msal
import pytest
import uvicorn
from azure.identity import (
    CertificateCredential,
    ClientSecretCredential,
    UsernamePasswordCredential,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from propylon.config import Settings
from propylon.identity import RemoteJwks, TokenValidator, TrustedIssuer, ValidatedToken
from propylon.identity.provider import IdentityProvider
from propylon.runtime.base import DeploymentSpec, IdentitySpec
from propylon.server.app import build_context, create_control_app
from propylon.testing import RunningServer, free_port, wait_until

pytestmark = pytest.mark.slow

ML = "https://ml.azure.com"
ARM = "https://management.azure.com"
CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
PASSWORD = "correct horse battery staple"


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def trust_server_ca(server: RunningServer) -> Iterator[None]:
    """What a user does: point requests (azure-core, MSAL) and OpenSSL at the server's CA."""
    assert server.ca_cert is not None
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REQUESTS_CA_BUNDLE", server.ca_cert)
        patch.setenv("SSL_CERT_FILE", server.ca_cert)
        yield


@pytest.fixture(scope="module")
def tenant(server: RunningServer) -> str:
    return str(server.bootstrap["tenant_id"])


@pytest.fixture(scope="module")
def admin(server: RunningServer, tenant: str) -> ClientSecretCredential:
    boot = server.bootstrap
    return ClientSecretCredential(
        tenant,
        boot["admin_client_id"],
        boot["admin_client_secret"],
        authority=server.control_url,
        disable_instance_discovery=True,
    )


@pytest.fixture(scope="module")
def graph(server: RunningServer, admin: ClientSecretCredential) -> Iterator[httpx.Client]:
    """Microsoft Graph-shaped directory calls as the bootstrap admin (Owner at ``/``)."""
    token = admin.get_token(f"{ARM}/.default").token
    with server.client(
        base_url=server.control_url, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        yield client


@pytest.fixture(scope="module")
def validator(server: RunningServer, tenant: str) -> Iterator[TokenValidator]:
    """A relying party that trusts the server through its discovery document only."""
    discovery = f"{server.control_url}/{tenant}/v2.0/.well-known/openid-configuration"
    http = httpx.Client(verify=server.verify)
    issuer = httpx.get(discovery, verify=server.verify).json()["issuer"]
    trusted = TrustedIssuer(
        issuer,
        RemoteJwks.from_discovery(discovery, client=http),
        audiences=(ML, ARM),
        tenant_id=tenant,
    )
    yield TokenValidator([trusted])
    http.close()


@pytest.fixture(scope="module")
def user(graph: httpx.Client) -> dict[str, Any]:
    response = graph.post(
        "/v1.0/users",
        json={
            "accountEnabled": True,
            "displayName": "Grace Hopper",
            "userPrincipalName": "grace@contoso.test",
            "mailNickname": "grace",
            "passwordProfile": {"forceChangePasswordNextSignIn": False, "password": PASSWORD},
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def certificate_files(tmp_path: Path) -> tuple[Path, x509.Certificate]:
    """A self-signed client certificate and its key in one PEM file (what az ad sp writes)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "compat-client")])
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "client.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    return path, cert


# -- service principals -----------------------------------------------------------------------


def test_client_secret_credential_gets_an_ml_token(
    admin: ClientSecretCredential, server: RunningServer, tenant: str, validator: TokenValidator
) -> None:
    token = admin.get_token(f"{ML}/.default")

    who: ValidatedToken = validator.validate(token.token, audiences=[ML])
    boot = server.bootstrap
    assert (who.tid, who.appid, who.idtyp) == (tenant, boot["admin_client_id"], "app")
    assert who.claims["aud"] == ML
    assert who.claims["iss"] == f"{server.control_url}/{tenant}/v2.0"
    assert 3600 <= token.expires_on - who.claims["iat"] <= 5400
    header = json.loads(base64.urlsafe_b64decode(token.token.split(".")[0] + "=="))
    assert header["alg"] == "RS256"
    assert header["kid"]


@pytest.mark.parametrize("send_chain", [False, True])
def test_certificate_credential_signs_in_with_a_registered_certificate(
    graph: httpx.Client,
    server: RunningServer,
    tenant: str,
    validator: TokenValidator,
    tmp_path: Path,
    send_chain: bool,
) -> None:
    app = graph.post("/v1.0/applications", json={"displayName": f"cert-{send_chain}"}).json()
    pem, cert = certificate_files(tmp_path)
    key = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    added = graph.post(
        f"/v1.0/applications/{app['id']}/addKey",
        json={"keyCredential": {"type": "AsymmetricX509Cert", "usage": "Verify", "key": key}},
    )
    assert added.status_code == 200, added.text

    credential = CertificateCredential(
        tenant,
        app["appId"],
        certificate_path=str(pem),
        send_certificate_chain=send_chain,
        authority=server.control_url,
        disable_instance_discovery=True,
    )
    who = validator.validate(credential.get_token(f"{ARM}/.default").token, audiences=[ARM])
    assert (who.appid, who.idtyp) == (app["appId"], "app")


def test_msal_confidential_client_and_its_token_cache(
    server: RunningServer, tenant: str, validator: TokenValidator
) -> None:
    boot = server.bootstrap
    app = msal.ConfidentialClientApplication(
        boot["admin_client_id"],
        client_credential=boot["admin_client_secret"],
        authority=f"{server.control_url}/{tenant}",
        instance_discovery=False,
    )
    first = app.acquire_token_for_client([f"{ML}/.default"])
    assert "access_token" in first, first
    assert first["token_source"] == "identity_provider"
    assert (
        validator.validate(first["access_token"], audiences=[ML]).appid == boot["admin_client_id"]
    )
    second = app.acquire_token_for_client([f"{ML}/.default"])
    assert second["token_source"] == "cache"
    assert second["access_token"] == first["access_token"]
    assert app.get_accounts() == []  # app-only tokens name no account


def test_msal_reports_a_wrong_secret_as_invalid_client(server: RunningServer, tenant: str) -> None:
    app = msal.ConfidentialClientApplication(
        server.bootstrap["admin_client_id"],
        client_credential="not-the-secret",
        authority=f"{server.control_url}/{tenant}",
        instance_discovery=False,
    )
    result = app.acquire_token_for_client([f"{ML}/.default"])
    assert result["error"] == "invalid_client"
    assert "AADSTS7000215" in result["error_description"]


# -- users ------------------------------------------------------------------------------------


def test_device_code_flow_end_to_end_through_the_verification_page(
    server: RunningServer, tenant: str, user: dict[str, Any], validator: TokenValidator
) -> None:
    app = msal.PublicClientApplication(
        CLI, authority=f"{server.control_url}/{tenant}", instance_discovery=False
    )
    flow = app.initiate_device_flow(scopes=[f"{ARM}/.default"])
    assert flow["verification_uri"] == f"{server.control_url}/device"
    assert flow["user_code"] in flow["message"]

    with server.client() as browser:
        page = browser.get(flow["verification_uri"])
        assert page.status_code == 200
        assert 'name="user_code"' in page.text
        approved = browser.post(
            flow["verification_uri"],
            data={
                "user_code": flow["user_code"],
                "username": "grace@contoso.test",
                "password": PASSWORD,
                "action": "approve",
            },
        )
    assert approved.status_code == 200
    assert "signed in" in approved.text

    result = app.acquire_token_by_device_flow(flow)
    assert "access_token" in result, result
    who = validator.validate(result["access_token"], audiences=[ARM])
    assert (who.oid, who.idtyp, who.appid) == (user["id"], "user", CLI)
    assert result["id_token_claims"]["preferred_username"] == "grace@contoso.test"

    [account] = app.get_accounts()
    assert account["username"] == "grace@contoso.test"
    assert account["home_account_id"] == f"{user['id']}.{tenant}"  # from client_info
    refreshed = app.acquire_token_silent([f"{ML}/.default"], account=account)
    assert refreshed is not None
    assert refreshed["token_source"] == "identity_provider"
    assert validator.validate(refreshed["access_token"], audiences=[ML]).oid == user["id"]


@pytest.fixture
def no_user_realm_probe() -> Iterator[None]:
    """MSAL asks ``https://{host}/common/userrealm/…`` before a password grant, dropping the
    authority's port (msal ``authority.py`` ``user_realm_discovery``): on a server that is not
    on 443 the probe cannot connect. MSAL's own escape hatch is its per-host skip list."""
    skip = msal.authority.Authority._domains_without_user_realm_discovery
    skip.add("127.0.0.1")
    yield
    skip.discard("127.0.0.1")


@pytest.mark.usefixtures("no_user_realm_probe")
def test_password_grant_with_azure_identity(
    server: RunningServer, tenant: str, user: dict[str, Any], validator: TokenValidator
) -> None:
    with pytest.warns(DeprecationWarning, match="deprecated"):
        credential = UsernamePasswordCredential(
            CLI,
            "grace@contoso.test",
            PASSWORD,
            tenant_id=tenant,
            authority=server.control_url,
            disable_instance_discovery=True,
        )
    with pytest.warns(DeprecationWarning, match="deprecated"):
        token = credential.get_token(f"{ML}/.default")
    assert validator.validate(token.token, audiences=[ML]).oid == user["id"]


def test_password_grant_over_plain_http(
    server: RunningServer, tenant: str, user: dict[str, Any]
) -> None:
    form = {
        "grant_type": "password",
        "client_id": CLI,
        "username": "GRACE@contoso.test",
        "password": PASSWORD,
        "scope": f"{ML}/.default offline_access openid profile",
        "client_info": "1",
    }
    with server.client() as client:
        body = client.post(f"{server.control_url}/{tenant}/oauth2/v2.0/token", data=form).json()
        assert {"access_token", "refresh_token", "id_token", "client_info"} <= set(body)
        assert body["scope"] == f"{ML}/user_impersonation {ML}/.default"
        wrong = client.post(
            f"{server.control_url}/{tenant}/oauth2/v2.0/token",
            data={**form, "password": "not the password"},
        )
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")


# -- managed identity (served in this process, where the broker lives) ------------------------


@pytest.fixture(scope="module")
def inproc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, IdentityProvider, Any]]:
    """A control plane served over TLS from a thread of this process, so the test can ask its
    broker for an instance's secret as the runtime does."""
    port = free_port()
    settings = Settings(data_dir=tmp_path_factory.mktemp("mi") / "data", port=port).validated()
    ctx = build_context(settings)
    assert ctx.tls is not None
    config = uvicorn.Config(
        create_control_app(ctx),
        host="127.0.0.1",
        port=port,
        ssl_certfile=str(ctx.tls.cert),
        ssl_keyfile=str(ctx.tls.key),
        log_config=None,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    tls = ssl.create_default_context(cafile=str(ctx.tls.ca_cert))

    def healthy() -> bool:
        try:
            return httpx.get(f"{ctx.control_url}/healthz", verify=tls).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, timeout=30)
    yield ctx.control_url, ctx.services["identity"], ctx
    server.should_exit = True
    thread.join(timeout=10)
    ctx.db.dispose()


def run_managed_identity_credential(env: dict[str, str], *args: str) -> dict[str, Any]:
    script = (
        "import json, sys\n"
        "from azure.identity import ManagedIdentityCredential\n"
        "kwargs = json.loads(sys.argv[1])\n"
        "token = ManagedIdentityCredential(**kwargs).get_token('https://ml.azure.com/.default')\n"
        "print(json.dumps({'token': token.token, 'expires_on': token.expires_on}))\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("IDENTITY_", "MSI_"))}
    result = subprocess.run(
        [sys.executable, "-c", script, *(args or ("{}",))],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    body: dict[str, Any] = json.loads(result.stdout)
    return body


def deployment_spec(identity: IdentitySpec) -> DeploymentSpec:
    endpoint = (
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/"
        "workspaces/ws/onlineEndpoints/e1"
    )
    return DeploymentSpec(
        deployment_id=f"{endpoint}/deployments/blue",
        endpoint_id=endpoint,
        endpoint_name="e1",
        name="blue",
        code_dir=None,
        scoring_script="score.py",
        model_dir=None,
        identity=identity,
    )


@pytest.mark.parametrize("protocol", ["app_service", "azure_ml"])
def test_managed_identity_credential_in_an_instance_process(
    inproc: tuple[str, IdentityProvider, Any], protocol: str
) -> None:
    _, provider, ctx = inproc
    tid = ctx.tenancy.tenant_id
    endpoint = (
        f"/subscriptions/{ctx.tenancy.subscription_id}/resourceGroups/rg/providers/"
        f"Microsoft.MachineLearningServices/workspaces/ws/onlineEndpoints/e-{protocol}"
    )
    mi = provider.directory.create_managed_identity(
        tid, f"e-{protocol}", resource_id=endpoint, user_assigned=False
    )
    env = ctx.services["identity_env"](
        deployment_spec(IdentitySpec(mi.id, mi.name, tid)), f"{protocol}-0"
    )
    assert env["SSL_CERT_FILE"] == str(ctx.tls.ca_cert)
    if protocol == "azure_ml":
        env = {k: v for k, v in env.items() if not k.startswith("IDENTITY_")}

    body = run_managed_identity_credential(env)

    validator: TokenValidator = ctx.services["validator"]
    who = validator.validate(body["token"], audiences=[ML])
    assert (who.oid, who.appid, who.claims["xms_mirid"]) == (mi.id, mi.name, endpoint)


def test_user_assigned_identity_is_selected_by_client_id(
    inproc: tuple[str, IdentityProvider, Any],
) -> None:
    _, provider, ctx = inproc
    tid = ctx.tenancy.tenant_id
    rid = (
        f"/subscriptions/{ctx.tenancy.subscription_id}/resourceGroups/rg/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/uai"
    )
    mi = provider.directory.create_managed_identity(tid, "uai", resource_id=rid)
    env = ctx.services["identity_env"](deployment_spec(IdentitySpec(mi.id, mi.name, tid)), "uai-0")

    body = run_managed_identity_credential(env, json.dumps({"client_id": mi.name}))
    assert ctx.services["validator"].validate(body["token"], audiences=[ML]).oid == mi.id

    script_fails = subprocess.run(
        [
            sys.executable,
            "-c",
            "from azure.identity import ManagedIdentityCredential as M\n"
            "M(client_id='00000000-0000-0000-0000-000000000001').get_token('https://ml.azure.com/.default')",
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert script_fails.returncode != 0
    assert "not assigned" in script_fails.stderr
