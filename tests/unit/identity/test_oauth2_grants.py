"""The token endpoint's grants against a real SQLite directory (no HTTP)."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote_plus

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from identity_support import JWT_BEARER, FakeClock, assertion, request, self_signed
from token_support import ARM, BASE_URL, ML, TENANT

from propylon.errors import OAuthError
from propylon.identity import TokenValidator
from propylon.identity.audit import SignInAudit
from propylon.identity.directory import Directory, DirectoryObject
from propylon.identity.oauth2 import GRANT_DEVICE_CODE, TokenEndpoint
from propylon.store import Database

TOKEN_URL = f"{BASE_URL}/{TENANT}/oauth2/v2.0/token"
CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
PASSWORD = "correct horse battery"


@pytest.fixture
def app(directory: Directory) -> tuple[DirectoryObject, str]:
    app = directory.create_application(TENANT, "scorer")
    secret = directory.credentials.add_secret(app.id, tenant_id=TENANT).secret_text
    assert secret is not None
    return app, secret


@pytest.fixture
def alice(directory: Directory) -> DirectoryObject:
    return directory.create_user(TENANT, "alice@contoso.test", "Alice", PASSWORD)


def cc_form(client_id: str, secret: str, scope: str = f"{ML}/.default") -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": secret,
        "scope": scope,
    }


def password_form(username: str = "alice@contoso.test", password: str = PASSWORD) -> dict[str, str]:
    return {
        "grant_type": "password",
        "client_id": CLI,
        "username": username,
        "password": password,
        "scope": f"{ARM}/.default offline_access openid profile",
        "client_info": "1",
    }


def raises(code: str, status: int = 400) -> pytest.RaisesExc[OAuthError]:
    return pytest.raises(OAuthError, check=lambda e: (e.code, e.status) == (code, status))


# -- client credentials -------------------------------------------------------------------------


def test_client_secret_post_gets_an_app_token_for_the_default_scope(
    endpoint: TokenEndpoint,
    app: tuple[DirectoryObject, str],
    validator_with_directory: TokenValidator,
) -> None:
    sp, secret = app
    body = endpoint.token(request(TENANT, cc_form(sp.name, secret)))

    assert body["token_type"] == "Bearer"
    assert body["scope"] == f"{ML}/.default"
    assert body["expires_in"] == body["ext_expires_in"] >= 3600
    assert "refresh_token" not in body
    assert "client_info" not in body
    assert "id_token" not in body
    who = validator_with_directory.validate(body["access_token"], audiences=[ML])
    assert (who.oid, who.appid, who.idtyp) == (sp.id, sp.name, "app")


def test_client_secret_basic_is_accepted_with_urlencoded_parts(
    endpoint: TokenEndpoint, app: tuple[DirectoryObject, str]
) -> None:
    sp, secret = app
    basic = base64.b64encode(f"{quote_plus(sp.name)}:{quote_plus(secret)}".encode()).decode()
    form = {"grant_type": "client_credentials", "scope": f"{ARM}/.default"}
    body = endpoint.token(request(TENANT, form, authorization=f"Basic {basic}"))
    assert jwt.decode(body["access_token"], options={"verify_signature": False})["aud"] == ARM


def test_wrong_secret_is_invalid_client_with_401(
    endpoint: TokenEndpoint, app: tuple[DirectoryObject, str]
) -> None:
    sp, _ = app
    with raises("invalid_client", 401) as caught:
        endpoint.token(request(TENANT, cc_form(sp.name, "not-the-secret")))
    assert caught.value.headers["WWW-Authenticate"].startswith("Basic")


def test_unknown_client_is_invalid_client(endpoint: TokenEndpoint) -> None:
    with raises("invalid_client", 401):
        endpoint.token(request(TENANT, cc_form("00000000-0000-0000-0000-00000000abcd", "x" * 40)))


def test_expired_secret_no_longer_authenticates(
    endpoint: TokenEndpoint, directory: Directory, db: Database
) -> None:
    from datetime import timedelta

    from propylon.store import utcnow

    sp = directory.create_application(TENANT, "old")
    then = utcnow() - timedelta(days=10)
    old = directory.credentials.add_secret(
        sp.id, tenant_id=TENANT, end=then + timedelta(days=1), now=then
    )
    with raises("invalid_client", 401):
        endpoint.token(request(TENANT, cc_form(sp.name, old.secret_text or "")))


def test_two_client_authentication_methods_are_refused(
    endpoint: TokenEndpoint, app: tuple[DirectoryObject, str]
) -> None:
    sp, secret = app
    basic = base64.b64encode(f"{sp.name}:{secret}".encode()).decode()
    with raises("invalid_request"):
        endpoint.token(request(TENANT, cc_form(sp.name, secret), authorization=f"Basic {basic}"))


def test_disabled_application_cannot_sign_in(
    endpoint: TokenEndpoint, directory: Directory, app: tuple[DirectoryObject, str]
) -> None:
    sp, secret = app
    directory.set_enabled(sp.id, False, tenant_id=TENANT)
    with raises("unauthorized_client"):
        endpoint.token(request(TENANT, cc_form(sp.name, secret)))


@pytest.mark.parametrize(
    ("scope", "code"),
    [
        (f"{ML}/user_impersonation", "invalid_scope"),
        (f"{ML}/.default {ARM}/.default", "invalid_scope"),
        ("https://vault.azure.net/.default", "invalid_scope"),
        ("openid", "invalid_scope"),
        ("User.Read", "invalid_scope"),
    ],
)
def test_client_credentials_scope_errors(
    endpoint: TokenEndpoint, app: tuple[DirectoryObject, str], scope: str, code: str
) -> None:
    sp, secret = app
    with raises(code):
        endpoint.token(request(TENANT, cc_form(sp.name, secret, scope)))


def test_v1_resource_form_returns_v1_shaped_response(
    endpoint: TokenEndpoint, app: tuple[DirectoryObject, str]
) -> None:
    sp, secret = app
    form = {
        "grant_type": "client_credentials",
        "client_id": sp.name,
        "client_secret": secret,
        "resource": f"{ML}/",
    }
    body = endpoint.token(request(TENANT, form, v1=True))
    assert body["resource"] == f"{ML}/"
    assert isinstance(body["expires_on"], str)
    assert body["expires_in"].isdigit()
    assert jwt.decode(body["access_token"], options={"verify_signature": False})["aud"] == f"{ML}/"


def test_registered_application_is_a_known_resource(
    endpoint: TokenEndpoint, directory: Directory, app: tuple[DirectoryObject, str]
) -> None:
    sp, secret = app
    api = directory.create_application(TENANT, "api", identifier_uris=["api://my-api"])
    for resource in (f"api://{api.name}", "api://my-api", api.name):
        body = endpoint.token(request(TENANT, cc_form(sp.name, secret, f"{resource}/.default")))
        claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        assert claims["aud"] == resource


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"client_id": "x"}, "invalid_request"),
        ({"grant_type": "authorization_code", "client_id": "x"}, "unsupported_grant_type"),
        ({"grant_type": "client_credentials", "scope": f"{ML}/.default"}, "invalid_request"),
    ],
)
def test_malformed_requests_use_rfc6749_codes(
    endpoint: TokenEndpoint, form: dict[str, str], code: str
) -> None:
    with raises(code):
        endpoint.token(request(TENANT, form))


def test_unknown_tenant_is_invalid_request(
    endpoint: TokenEndpoint, app: tuple[DirectoryObject, str]
) -> None:
    sp, secret = app
    with raises("invalid_request"):
        endpoint.token(request("11111111-2222-3333-4444-555555555555", cc_form(sp.name, secret)))


# -- client assertions (RFC 7523) ---------------------------------------------------------------


@pytest.fixture
def cert_app(
    directory: Directory, private_keys: list[rsa.RSAPrivateKey]
) -> tuple[DirectoryObject, rsa.RSAPrivateKey, object]:
    key = private_keys[2]
    cert = self_signed(key)
    sp = directory.create_application(TENANT, "cert-app")
    directory.credentials.add_certificate(sp.id, cert, tenant_id=TENANT)
    return sp, key, cert


def assertion_form(client_id: str, token: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_assertion_type": JWT_BEARER,
        "client_assertion": token,
        "scope": f"{ML}/.default",
    }


@pytest.mark.parametrize(("alg", "thumbprint"), [("PS256", "x5t#S256"), ("RS256", "x5t")])
def test_client_assertion_signed_by_registered_certificate(
    endpoint: TokenEndpoint,
    cert_app: tuple[DirectoryObject, rsa.RSAPrivateKey, object],
    alg: str,
    thumbprint: str,
) -> None:
    sp, key, cert = cert_app
    token = assertion(
        key, cert, client_id=sp.name, audience=TOKEN_URL, alg=alg, thumbprint=thumbprint
    )  # type: ignore[arg-type]
    body = endpoint.token(
        request(TENANT, assertion_form(sp.name, token), assertion_audiences=(TOKEN_URL,))
    )
    assert jwt.decode(body["access_token"], options={"verify_signature": False})["oid"] == sp.id


def test_client_assertion_may_omit_client_id(
    endpoint: TokenEndpoint, cert_app: tuple[DirectoryObject, rsa.RSAPrivateKey, object]
) -> None:
    sp, key, cert = cert_app
    form = assertion_form(sp.name, assertion(key, cert, client_id=sp.name, audience=TOKEN_URL))  # type: ignore[arg-type]
    del form["client_id"]
    body = endpoint.token(request(TENANT, form, assertion_audiences=(TOKEN_URL,)))
    assert body["access_token"]


@pytest.mark.parametrize(
    "variant",
    ["wrong_audience", "expired", "too_long", "iss_not_client", "unregistered_key", "hs256"],
)
def test_bad_client_assertions_are_invalid_client(
    endpoint: TokenEndpoint,
    cert_app: tuple[DirectoryObject, rsa.RSAPrivateKey, object],
    private_keys: list[rsa.RSAPrivateKey],
    variant: str,
) -> None:
    sp, key, cert = cert_app
    kwargs: dict[str, object] = {"client_id": sp.name, "audience": TOKEN_URL}
    if variant == "wrong_audience":
        kwargs["audience"] = f"{BASE_URL}/other/oauth2/v2.0/token"
    elif variant == "expired":
        kwargs["lifetime"] = -600
    elif variant == "too_long":
        kwargs["lifetime"] = 7 * 24 * 3600
    elif variant == "iss_not_client":
        kwargs["iss"] = "someone-else"
    if variant == "unregistered_key":
        other = private_keys[3]
        token = assertion(other, self_signed(other), **kwargs)  # type: ignore[arg-type]
    elif variant == "hs256":
        token = jwt.encode(
            {"iss": sp.name, "sub": sp.name, "aud": TOKEN_URL, "exp": 2**40},
            "k" * 32,
            algorithm="HS256",
        )
    else:
        token = assertion(key, cert, **kwargs)  # type: ignore[arg-type]
    with raises("invalid_client", 401):
        endpoint.token(
            request(TENANT, assertion_form(sp.name, token), assertion_audiences=(TOKEN_URL,))
        )


# -- password, refresh tokens -------------------------------------------------------------------


def test_password_grant_returns_user_token_refresh_token_id_token_and_client_info(
    endpoint: TokenEndpoint,
    alice: DirectoryObject,
    directory: Directory,
    validator_with_directory: TokenValidator,
) -> None:
    team = directory.create_group(TENANT, "ml team")
    directory.add_member(team.id, alice.id, tenant_id=TENANT)
    body = endpoint.token(request(TENANT, password_form()))

    who = validator_with_directory.validate(body["access_token"], audiences=[ARM])
    assert (who.oid, who.idtyp, who.appid, who.groups) == (alice.id, "user", CLI, (team.id,))
    assert who.claims["scp"] == "user_impersonation"
    assert who.claims["upn"] == "alice@contoso.test"
    assert body["scope"] == f"{ARM}/user_impersonation {ARM}/.default"
    assert body["refresh_token"]
    id_claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert (id_claims["aud"], id_claims["preferred_username"], id_claims["oid"]) == (
        CLI,
        "alice@contoso.test",
        alice.id,
    )
    info = json.loads(base64.urlsafe_b64decode(body["client_info"] + "=="))
    assert info == {"uid": alice.id, "utid": TENANT}


def test_password_grant_is_case_insensitive_in_the_user_name(
    endpoint: TokenEndpoint, alice: DirectoryObject
) -> None:
    body = endpoint.token(request(TENANT, password_form("ALICE@Contoso.test")))
    assert jwt.decode(body["access_token"], options={"verify_signature": False})["oid"] == alice.id


@pytest.mark.parametrize("username", ["alice@contoso.test", "nobody@contoso.test"])
def test_wrong_password_or_unknown_user_is_the_same_invalid_grant(
    endpoint: TokenEndpoint, alice: DirectoryObject, username: str
) -> None:
    with raises("invalid_grant") as caught:
        endpoint.token(request(TENANT, password_form(username, "wrong password!")))
    assert "AADSTS50126" in caught.value.message


def test_disabled_user_cannot_sign_in_even_with_the_right_password(
    endpoint: TokenEndpoint, alice: DirectoryObject, directory: Directory
) -> None:
    directory.set_enabled(alice.id, False, tenant_id=TENANT)
    with raises("invalid_grant") as caught:
        endpoint.token(request(TENANT, password_form()))
    assert "AADSTS50057" in caught.value.message


def test_password_grant_from_confidential_client_needs_its_secret(
    endpoint: TokenEndpoint, alice: DirectoryObject, app: tuple[DirectoryObject, str]
) -> None:
    sp, secret = app
    form = {**password_form(), "client_id": sp.name}
    with raises("invalid_client", 401):
        endpoint.token(request(TENANT, form))
    body = endpoint.token(request(TENANT, {**form, "client_secret": secret}))
    assert jwt.decode(body["access_token"], options={"verify_signature": False})["azp"] == sp.name


def test_refresh_token_rotates_and_reuse_revokes_the_family(
    endpoint: TokenEndpoint, alice: DirectoryObject
) -> None:
    first = endpoint.token(request(TENANT, password_form()))["refresh_token"]
    refresh = {
        "grant_type": "refresh_token",
        "client_id": CLI,
        "refresh_token": first,
        "scope": f"{ML}/.default openid offline_access",
    }
    second = endpoint.token(request(TENANT, refresh))
    assert jwt.decode(second["access_token"], options={"verify_signature": False})["aud"] == ML
    assert second["refresh_token"] != first

    with raises("invalid_grant") as caught:  # the rotated token, presented again
        endpoint.token(request(TENANT, refresh))
    assert "already used" in caught.value.message
    with raises("invalid_grant"):  # … and its successor died with it
        endpoint.token(request(TENANT, {**refresh, "refresh_token": second["refresh_token"]}))


def test_refresh_token_without_resource_keeps_the_original_resource(
    endpoint: TokenEndpoint, alice: DirectoryObject
) -> None:
    rt = endpoint.token(request(TENANT, password_form()))["refresh_token"]
    body = endpoint.token(
        request(
            TENANT,
            {
                "grant_type": "refresh_token",
                "client_id": CLI,
                "refresh_token": rt,
                "scope": "openid offline_access",
            },
        )
    )
    assert jwt.decode(body["access_token"], options={"verify_signature": False})["aud"] == ARM


def test_refresh_token_is_bound_to_its_client(
    endpoint: TokenEndpoint, alice: DirectoryObject
) -> None:
    rt = endpoint.token(request(TENANT, password_form()))["refresh_token"]
    other = "1950a258-227b-4e31-a9cf-717495945fc2"
    with raises("invalid_grant"):
        endpoint.token(
            request(
                TENANT, {"grant_type": "refresh_token", "client_id": other, "refresh_token": rt}
            )
        )


@pytest.mark.parametrize("change", ["disable", "reset_password", "delete"])
def test_refresh_tokens_die_with_the_account(
    endpoint: TokenEndpoint, alice: DirectoryObject, directory: Directory, change: str
) -> None:
    rt = endpoint.token(request(TENANT, password_form()))["refresh_token"]
    if change == "disable":
        directory.set_enabled(alice.id, False, tenant_id=TENANT)
    elif change == "reset_password":
        directory.update(alice.id, tenant_id=TENANT, password="another long password")
    else:
        directory.delete(alice.id, tenant_id=TENANT)
    with raises("invalid_grant"):
        endpoint.token(
            request(TENANT, {"grant_type": "refresh_token", "client_id": CLI, "refresh_token": rt})
        )


# -- device code (RFC 8628) ---------------------------------------------------------------------


def start_device_flow(endpoint: TokenEndpoint) -> dict[str, object]:
    form = {"client_id": CLI, "scope": f"{ML}/.default offline_access openid profile"}
    return endpoint.device_authorization(request(TENANT, form))


def poll(endpoint: TokenEndpoint, device_code: object) -> dict[str, object]:
    form = {
        "grant_type": GRANT_DEVICE_CODE,
        "client_id": CLI,
        "device_code": str(device_code),
        "client_info": "1",
    }
    return endpoint.token(request(TENANT, form))


def test_device_authorization_response_has_the_rfc8628_fields(endpoint: TokenEndpoint) -> None:
    started = start_device_flow(endpoint)
    assert set(started) == {
        "device_code",
        "user_code",
        "verification_uri",
        "expires_in",
        "interval",
        "message",
    }
    assert started["verification_uri"] == f"{BASE_URL}/device"
    assert (started["expires_in"], started["interval"]) == (900, 5)
    assert str(started["user_code"]) in str(started["message"])


def test_device_code_pending_then_slow_down_then_tokens_once(
    endpoint: TokenEndpoint, alice: DirectoryObject
) -> None:
    started = start_device_flow(endpoint)
    with raises("authorization_pending"):
        poll(endpoint, started["device_code"])
    with raises("slow_down"):
        poll(endpoint, started["device_code"])  # at once again: faster than the interval
    assert endpoint.device_flow.approve(str(started["user_code"]).lower(), alice.id)

    body = poll(endpoint, started["device_code"])
    assert (
        jwt.decode(str(body["access_token"]), options={"verify_signature": False})["oid"]
        == alice.id
    )
    assert body["refresh_token"]
    assert body["id_token"]
    assert body["client_info"]
    with raises("invalid_grant"):
        poll(endpoint, started["device_code"])


def test_declined_device_code_is_access_denied(endpoint: TokenEndpoint) -> None:
    started = start_device_flow(endpoint)
    assert endpoint.device_flow.deny(str(started["user_code"]))
    with raises("access_denied"):
        poll(endpoint, started["device_code"])


def test_expired_device_code_is_expired_token(endpoint: TokenEndpoint, db: Database) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from propylon.store import utcnow
    from propylon.store.models import DeviceCode

    started = start_device_flow(endpoint)
    with db.transaction() as session:
        session.execute(update(DeviceCode).values(expires_at=utcnow() - timedelta(seconds=1)))
    with raises("expired_token"):
        poll(endpoint, started["device_code"])


def test_device_code_is_bound_to_its_client(endpoint: TokenEndpoint) -> None:
    started = start_device_flow(endpoint)
    form = {
        "grant_type": GRANT_DEVICE_CODE,
        "client_id": "1950a258-227b-4e31-a9cf-717495945fc2",
        "device_code": str(started["device_code"]),
    }
    with raises("invalid_grant"):
        endpoint.token(request(TENANT, form))


def test_device_flow_needs_a_public_client(
    endpoint: TokenEndpoint, app: tuple[DirectoryObject, str]
) -> None:
    sp, _ = app
    with raises("invalid_client", 401):
        endpoint.device_authorization(
            request(TENANT, {"client_id": sp.name, "scope": f"{ML}/.default"})
        )


def test_registered_public_client_may_use_user_flows(
    endpoint: TokenEndpoint, directory: Directory, alice: DirectoryObject
) -> None:
    public = directory.create_application(TENANT, "tool", public_client=True)
    body = endpoint.token(request(TENANT, {**password_form(), "client_id": public.name}))
    assert (
        jwt.decode(body["access_token"], options={"verify_signature": False})["appid"]
        == public.name
    )


# -- throttling and audit -----------------------------------------------------------------------


def test_failed_client_sign_ins_are_throttled_even_with_the_right_secret(
    endpoint: TokenEndpoint, app: tuple[DirectoryObject, str], clock: FakeClock
) -> None:
    sp, secret = app
    for _ in range(3):
        with raises("invalid_client", 401):
            endpoint.token(request(TENANT, cc_form(sp.name, "guess")))
    with raises("slow_down", 429) as caught:
        endpoint.token(request(TENANT, cc_form(sp.name, secret)))
    assert 1 <= int(caught.value.headers["Retry-After"]) <= 60
    clock.advance(61)
    assert endpoint.token(request(TENANT, cc_form(sp.name, secret)))["access_token"]


def test_failed_password_sign_ins_are_throttled_per_user_not_per_public_client(
    endpoint: TokenEndpoint, alice: DirectoryObject, directory: Directory
) -> None:
    directory.create_user(TENANT, "bob@contoso.test", "Bob", PASSWORD)
    for _ in range(3):
        with raises("invalid_grant"):
            endpoint.token(request(TENANT, password_form(password="nope nope")))
    with raises("slow_down", 429):
        endpoint.token(request(TENANT, password_form()))
    assert endpoint.token(request(TENANT, password_form("bob@contoso.test")))["access_token"]


def test_audit_log_records_every_attempt_and_never_a_secret(
    endpoint: TokenEndpoint,
    app: tuple[DirectoryObject, str],
    alice: DirectoryObject,
    audit: SignInAudit,
) -> None:
    sp, secret = app
    endpoint.token(request(TENANT, cc_form(sp.name, secret), request_id="r-1"))
    with raises("invalid_client", 401):
        endpoint.token(request(TENANT, cc_form(sp.name, "wrong-secret-value")))
    with raises("invalid_grant"):
        endpoint.token(request(TENANT, password_form(password="my-secret-guess")))
    body = endpoint.token(request(TENANT, password_form()))

    events = audit.read()
    assert [(e["grant_type"], e["result"]) for e in events] == [
        ("client_credentials", "success"),
        ("client_credentials", "failure"),
        ("password", "failure"),
        ("password", "success"),
    ]
    assert events[0]["principal_id"] == sp.id
    assert events[0]["request_id"] == "r-1"
    assert events[1]["error"] == "invalid_client"
    assert events[1]["source_address"] == "192.0.2.10"
    assert events[3]["username"] == "alice@contoso.test"
    assert events[3]["principal_id"] == alice.id
    text = audit.path.read_text()
    for secret_value in (
        secret,
        "wrong-secret-value",
        "my-secret-guess",
        PASSWORD,
        body["refresh_token"],
        body["access_token"],
    ):
        assert secret_value not in text
