"""Who may score: each auth mode with the right and every kind of wrong credential, 401 vs 403."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from gateway_support import (
    Answer,
    StaticTables,
    call,
    deployment,
    endpoint,
    endpoint_id,
    make_gateway,
    serving,
)

from propylon.errors import Forbidden, Unauthenticated
from propylon.gateway import SCORE_ACTION, Authenticator, AuthMode, Endpoint
from propylon.gateway.testing import StaticAccess

E1_KEYS = (b"primary-key-e1", b"secondary-key-e1")
E2_KEYS = (b"primary-key-e2", b"secondary-key-e2")


def key_endpoint(
    name: str = "e1", keys: tuple[bytes, ...] = E1_KEYS, *, local_auth_disabled: bool = False
) -> Endpoint:
    return endpoint(
        name,
        deployments=[deployment("blue", endpoint=name)],
        keys=keys,
        local_auth_disabled=local_auth_disabled,
    )


def token_endpoint(
    name: str,
    mode: AuthMode,
    *,
    keys: tuple[bytes, ...] = (),
    local_auth_disabled: bool = False,
) -> Endpoint:
    return endpoint(
        name,
        deployments=[deployment("blue", endpoint=name)],
        auth_mode=mode,
        keys=keys,
        local_auth_disabled=local_auth_disabled,
    )


def access_double() -> StaticAccess:
    access = StaticAccess()
    access.add_identity_token("aad-alice", oid="alice-oid", appid="alice-app")
    access.add_identity_token("aad-mallory", oid="mallory-oid")
    access.grant("alice-oid", endpoint_id("aad1"))
    access.add_endpoint_token("aml-for-aml1", endpoint_id("aml1"), oid="bob-oid")
    access.add_endpoint_token("aml-for-aml2", endpoint_id("aml2"))
    return access


def score(
    tmp_path: Path,
    headers: dict[str, str],
    *endpoints: Endpoint,
    name: str = "e1",
    access: StaticAccess | None = None,
) -> Answer:
    async def scenario() -> Answer:
        gw = make_gateway(*endpoints, access=access or access_double(), tmp_path=tmp_path)
        async with serving(gw):
            return await call(gw, "POST", f"/endpoints/{name}/score", headers=headers, body=b"{}")

    return asyncio.run(scenario())


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": "Bearer primary-key-e1"},
        {"authorization": "Bearer secondary-key-e1"},
        {"authorization": "bearer primary-key-e1"},
        {"api-key": "primary-key-e1"},
        {"api-key": "secondary-key-e1", "authorization": "Bearer secondary-key-e1"},
    ],
    ids=["primary", "secondary", "lower-case-scheme", "api-key", "both-headers"],
)
def test_either_key_opens_a_key_endpoint(tmp_path: Path, headers: dict[str, str]) -> None:
    assert score(tmp_path, headers, key_endpoint()).status == 200


def test_missing_credential_is_401_with_a_bare_challenge(tmp_path: Path) -> None:
    answer = score(tmp_path, {}, key_endpoint())
    assert answer.status == 401
    assert answer.header("www-authenticate") == 'Bearer realm="e1"'


@pytest.mark.parametrize(
    "authorization", ["Basic cHJpbWFyeS1rZXktZTE=", "Bearer", "primary-key-e1"]
)
def test_malformed_authorization_is_401(tmp_path: Path, authorization: str) -> None:
    answer = score(tmp_path, {"authorization": authorization}, key_endpoint())
    assert answer.status == 401
    assert answer.header("www-authenticate") is not None


def test_another_endpoints_key_is_401_with_invalid_token(tmp_path: Path) -> None:
    answer = score(
        tmp_path,
        {"authorization": "Bearer primary-key-e2"},
        key_endpoint(),
        key_endpoint("e2", E2_KEYS),
    )
    assert answer.status == 401
    assert answer.header("www-authenticate") == 'Bearer realm="e1", error="invalid_token"'
    assert answer.json()["error"]["code"] == "key_auth_access_denied"


def test_a_regenerated_key_stops_working_and_the_new_one_works(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int, int]:
        gw = make_gateway(key_endpoint(), tmp_path=tmp_path)
        async with serving(gw):
            old = {"authorization": "Bearer primary-key-e1"}
            before = (await call(gw, "POST", "/endpoints/e1/score", headers=old)).status
            tables: StaticTables = gw.tables  # type: ignore[assignment]
            tables.set(key_endpoint(keys=(b"regenerated-key", E1_KEYS[1])))
            after = (await call(gw, "POST", "/endpoints/e1/score", headers=old)).status
            new = {"authorization": "Bearer regenerated-key"}
            renewed = (await call(gw, "POST", "/endpoints/e1/score", headers=new)).status
            return before, after, renewed

    assert asyncio.run(scenario()) == (200, 401, 200)


@pytest.mark.parametrize("mode", [AuthMode.AAD_TOKEN, AuthMode.AML_TOKEN])
def test_a_key_on_a_token_endpoint_is_401(tmp_path: Path, mode: AuthMode) -> None:
    e = token_endpoint("t1", mode, keys=E1_KEYS)
    answer = score(tmp_path, {"authorization": "Bearer primary-key-e1"}, e, name="t1")
    assert answer.status == 401
    assert 'error="invalid_token"' in (answer.header("www-authenticate") or "")


@pytest.mark.parametrize("token", ["aad-alice", "aml-for-aml1"])
def test_a_token_on_a_key_endpoint_is_401(tmp_path: Path, token: str) -> None:
    answer = score(tmp_path, {"authorization": f"Bearer {token}"}, key_endpoint())
    assert answer.status == 401


def test_an_aml_token_opens_its_own_endpoint(tmp_path: Path) -> None:
    e = token_endpoint("aml1", AuthMode.AML_TOKEN)
    answer = score(tmp_path, {"authorization": "Bearer aml-for-aml1"}, e, name="aml1")
    assert answer.status == 200


def test_an_aml_token_of_another_endpoint_is_401(tmp_path: Path) -> None:
    e = token_endpoint("aml1", AuthMode.AML_TOKEN)
    answer = score(tmp_path, {"authorization": "Bearer aml-for-aml2"}, e, name="aml1")
    assert answer.status == 401


def test_an_aml_token_of_a_deleted_endpoint_does_not_open_its_namesake() -> None:
    access = StaticAccess()
    minted = access.mint_endpoint_token(endpoint_id("aml1"), endpoint_uid="generation-1")
    bearer = f"Bearer {minted['accessToken']}".encode()
    auth = Authenticator(access)
    first = endpoint("aml1", auth_mode=AuthMode.AML_TOKEN, uid="generation-1")
    assert auth.check(first, bearer, None).auth_type is AuthMode.AML_TOKEN
    reborn = endpoint("aml1", auth_mode=AuthMode.AML_TOKEN, uid="generation-2")
    with pytest.raises(Unauthenticated):
        auth.check(reborn, bearer, None)  # the first endpoint's cached verdict is not reused


def test_an_identity_token_on_an_aml_token_endpoint_is_401(tmp_path: Path) -> None:
    e = token_endpoint("aml1", AuthMode.AML_TOKEN)
    answer = score(tmp_path, {"authorization": "Bearer aad-alice"}, e, name="aml1")
    assert answer.status == 401


def test_an_aml_token_on_an_aad_endpoint_is_401(tmp_path: Path) -> None:
    e = token_endpoint("aad1", AuthMode.AAD_TOKEN)
    answer = score(tmp_path, {"authorization": "Bearer aml-for-aml1"}, e, name="aad1")
    assert answer.status == 401


def test_an_identity_token_with_the_score_action_opens_an_aad_endpoint(tmp_path: Path) -> None:
    e = token_endpoint("aad1", AuthMode.AAD_TOKEN)
    assert score(tmp_path, {"authorization": "Bearer aad-alice"}, e, name="aad1").status == 200


def test_rbac_refusal_is_403_naming_action_and_scope(tmp_path: Path) -> None:
    e = token_endpoint("aad1", AuthMode.AAD_TOKEN)
    answer = score(tmp_path, {"authorization": "Bearer aad-mallory"}, e, name="aad1")
    assert answer.status == 403
    error = answer.json()["error"]
    assert error["code"] == "AuthorizationFailed"
    assert SCORE_ACTION in error["message"]
    assert endpoint_id("aad1") in error["message"]
    assert answer.header("www-authenticate") is None


def test_an_unknown_identity_token_is_401(tmp_path: Path) -> None:
    e = token_endpoint("aad1", AuthMode.AAD_TOKEN)
    answer = score(tmp_path, {"authorization": "Bearer forged"}, e, name="aad1")
    assert answer.status == 401
    assert answer.header("www-authenticate") == 'Bearer realm="aad1", error="invalid_token"'


def test_disable_local_auth_refuses_keys_but_not_identity_tokens(tmp_path: Path) -> None:
    keyed = key_endpoint(local_auth_disabled=True)
    answer = score(tmp_path, {"authorization": "Bearer primary-key-e1"}, keyed)
    assert answer.status == 401
    assert "disableLocalAuth" in answer.json()["error"]["message"]
    aml = token_endpoint("aml1", AuthMode.AML_TOKEN, local_auth_disabled=True)
    assert score(tmp_path, {"authorization": "Bearer aml-for-aml1"}, aml, name="aml1").status == 401
    aad = token_endpoint("aad1", AuthMode.AAD_TOKEN, local_auth_disabled=True)
    assert score(tmp_path, {"authorization": "Bearer aad-alice"}, aad, name="aad1").status == 200


def test_token_verdicts_are_cached_until_the_change_feed_speaks() -> None:
    access = access_double()
    auth = Authenticator(access)
    e = token_endpoint("aad1", AuthMode.AAD_TOKEN)
    for _ in range(5):
        auth.check(e, b"Bearer aad-alice", None)
    assert access.calls["authenticate"] == 1
    assert access.calls["allowed"] == 1
    access.revoke("alice-oid", endpoint_id("aad1"))
    auth.check(e, b"Bearer aad-alice", None)  # still cached: no change batch yet
    auth.forget()  # what a change-feed batch does
    with pytest.raises(Forbidden):
        auth.check(e, b"Bearer aad-alice", None)


def test_a_cached_verdict_expires_with_its_token() -> None:
    access = access_double()
    now = [4_102_444_700.0]
    auth = Authenticator(access, clock=lambda: now[0])
    e = token_endpoint("aad1", AuthMode.AAD_TOKEN)
    auth.check(e, b"Bearer aad-alice", None)
    now[0] = 4_102_444_801.0  # past the token's exp: verified again (and still accepted here)
    auth.check(e, b"Bearer aad-alice", None)
    assert access.calls["authenticate"] == 2


def test_tokens_are_refused_when_no_access_control_is_configured() -> None:
    auth = Authenticator(None)
    e = token_endpoint("aad1", AuthMode.AAD_TOKEN)
    with pytest.raises(Unauthenticated):
        auth.check(e, b"Bearer aad-alice", None)


def test_identities_name_the_caller_never_the_credential() -> None:
    auth = Authenticator(access_double())
    keyed = auth.check(key_endpoint(), b"Bearer primary-key-e1", None)
    assert (keyed.auth_type, keyed.identity_data) == (AuthMode.KEY, "key")
    aad = auth.check(token_endpoint("aad1", AuthMode.AAD_TOKEN), b"Bearer aad-alice", None)
    assert (aad.identity_data, aad.appid) == ("alice-oid", "alice-app")
