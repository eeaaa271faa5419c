"""The managed-identity broker: per-instance secrets, identity selection, instance env."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from token_support import ML, TENANT

from propylon.errors import OAuthError
from propylon.identity import TokenIssuer, TokenValidator
from propylon.identity.audit import SignInAudit
from propylon.identity.directory import Directory, DirectoryObject
from propylon.identity.managed_identity import MiBroker, identity_env_for
from propylon.identity.provider import KnownResources
from propylon.runtime.base import DeploymentSpec, IdentitySpec

ENDPOINT = (
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/"
    "workspaces/ws/onlineEndpoints/e1"
)
APP_SERVICE = {"api-version": "2019-08-01", "resource": ML}


@pytest.fixture
def identity(directory: Directory) -> DirectoryObject:
    return directory.create_managed_identity(
        TENANT, "e1", resource_id=ENDPOINT, user_assigned=False
    )


@pytest.fixture
def spec(identity: DirectoryObject) -> IdentitySpec:
    return IdentitySpec(identity.id, identity.name, TENANT)


@pytest.fixture
def broker(issuer: TokenIssuer, directory: Directory, audit: SignInAudit) -> MiBroker:
    return MiBroker(
        endpoint_url="https://idp.test/msi/token",
        issuer=issuer,
        directory=directory,
        is_known_resource=KnownResources(directory),
        audit=audit,
    )


def test_a_registered_instance_gets_a_token_for_its_identity(
    broker: MiBroker, spec: IdentitySpec, validator_with_directory: TokenValidator
) -> None:
    url, secret = broker.register("blue-0", spec)
    body = broker.token(secret=secret, params=APP_SERVICE)

    assert url == "https://idp.test/msi/token"
    assert set(body) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert int(body["expires_on"]) > time.time() + 3000
    assert (body["resource"], body["client_id"]) == (ML, spec.client_id)
    who = validator_with_directory.validate(body["access_token"], audiences=[ML])
    assert (who.oid, who.appid, who.idtyp) == (spec.principal_id, spec.client_id, "app")
    assert who.claims["xms_mirid"] == ENDPOINT


def test_the_azure_ml_msi_protocol_is_served_too(broker: MiBroker, spec: IdentitySpec) -> None:
    _, secret = broker.register("blue-0", spec)
    params = {"api-version": "2017-09-01", "resource": ML, "clientid": spec.client_id}
    assert broker.token(secret=secret, params=params)["client_id"] == spec.client_id


@pytest.mark.parametrize("selector", ["client_id", "principal_id", "object_id", "mi_res_id"])
def test_selecting_the_own_identity_works_and_another_is_refused(
    broker: MiBroker, spec: IdentitySpec, selector: str
) -> None:
    _, secret = broker.register("blue-0", spec)
    own = {
        "client_id": spec.client_id,
        "principal_id": spec.principal_id,
        "object_id": spec.principal_id,
        "mi_res_id": ENDPOINT.upper(),
    }[selector]
    assert broker.token(secret=secret, params={**APP_SERVICE, selector: own})["access_token"]
    with pytest.raises(OAuthError, match="not assigned"):
        broker.token(secret=secret, params={**APP_SERVICE, selector: "someone-else"})


@pytest.mark.parametrize(
    ("secret", "params", "status"),
    [
        (None, APP_SERVICE, 401),
        ("guessed", APP_SERVICE, 401),
        ("REAL", {"resource": ML}, 400),
        ("REAL", {"api-version": "2019-08-01"}, 400),
        ("REAL", {**APP_SERVICE, "resource": "https://vault.azure.net"}, 400),
    ],
)
def test_bad_requests_are_refused(
    broker: MiBroker, spec: IdentitySpec, secret: str | None, params: dict[str, str], status: int
) -> None:
    _, real = broker.register("blue-0", spec)
    with pytest.raises(OAuthError) as caught:
        broker.token(secret=real if secret == "REAL" else secret, params=params)
    assert caught.value.status == status


def test_unregistered_and_replaced_secrets_stop_working(
    broker: MiBroker, spec: IdentitySpec
) -> None:
    _, first = broker.register("blue-0", spec)
    _, second = broker.register("blue-0", spec)
    with pytest.raises(OAuthError):
        broker.token(secret=first, params=APP_SERVICE)
    broker.unregister("blue-0")
    with pytest.raises(OAuthError):
        broker.token(secret=second, params=APP_SERVICE)
    assert broker.instances == frozenset()


def test_a_disabled_identity_gets_no_token(
    broker: MiBroker, spec: IdentitySpec, directory: Directory
) -> None:
    _, secret = broker.register("blue-0", spec)
    directory.set_enabled(spec.principal_id, False, tenant_id=TENANT)
    with pytest.raises(OAuthError, match="disabled"):
        broker.token(secret=secret, params=APP_SERVICE)


def test_proxied_requests_are_refused(broker: MiBroker, spec: IdentitySpec) -> None:
    _, secret = broker.register("blue-0", spec)
    with pytest.raises(OAuthError, match="proxy"):
        broker.token(secret=secret, params=APP_SERVICE, forwarded=True)


def test_identity_env_registers_the_instance_and_trusts_the_ca(
    broker: MiBroker, spec: IdentitySpec
) -> None:
    env_for = identity_env_for(broker, ca_cert="/data/tls/ca.pem")
    deployment = DeploymentSpec(
        deployment_id=f"{ENDPOINT}/deployments/blue",
        endpoint_id=ENDPOINT,
        endpoint_name="e1",
        name="blue",
        code_dir=Path("."),
        scoring_script="score.py",
        model_dir=None,
        identity=spec,
    )
    env = env_for(deployment, "blue-0")
    assert env["IDENTITY_ENDPOINT"] == env["MSI_ENDPOINT"] == "https://idp.test/msi/token"
    assert env["IDENTITY_HEADER"] == env["MSI_SECRET"]
    assert env["REQUESTS_CA_BUNDLE"] == env["SSL_CERT_FILE"] == "/data/tls/ca.pem"
    assert env["DEFAULT_IDENTITY_CLIENT_ID"] == spec.client_id
    assert broker.token(secret=env["IDENTITY_HEADER"], params=APP_SERVICE)["access_token"]

    anonymous = identity_env_for(broker, ca_cert=None)(
        DeploymentSpec(**{**deployment.__dict__, "identity": None}), "green-0"
    )
    assert anonymous == {}
