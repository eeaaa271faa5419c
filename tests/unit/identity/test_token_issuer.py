"""Access tokens are shaped like Entra's (reference §3.1–3.5) and carry our issuer string."""

from __future__ import annotations

from datetime import timedelta

import pytest
from token_support import APP, ARM, BASE_URL, ML, NOW, TENANT, USER, split

from propylon.identity import (
    GROUPS_OVERAGE_LIMIT,
    IssuerUrl,
    KeyRing,
    PrincipalClaims,
    PrincipalKind,
    SigningKey,
    TokenIssuer,
)

MI_RESOURCE = (
    "/subscriptions/s/resourcegroups/rg/providers/Microsoft.ManagedIdentity/"
    "userAssignedIdentities/scorer"
)


def test_issuer_string_is_base_tenant_v2(urls: IssuerUrl) -> None:
    assert urls(TENANT) == f"{BASE_URL}/{TENANT}/v2.0"
    assert IssuerUrl(BASE_URL + "/").for_tenant(TENANT) == urls(TENANT)
    assert urls.template == f"{BASE_URL}/{{tenantid}}/v2.0"


@pytest.mark.parametrize("tenant", ["", "a/b", "../x", "t?x=1"])
def test_issuer_url_refuses_tenant_ids_that_are_not_path_segments(
    urls: IssuerUrl, tenant: str
) -> None:
    with pytest.raises(ValueError, match="tenant"):
        urls(tenant)


def test_header_is_rs256_jwt_with_kid_and_x5t(issuer: TokenIssuer, active_key: SigningKey) -> None:
    header, _ = split(issuer.issue_access_token(TENANT, APP, ML, now=NOW).token)
    assert header == {"typ": "JWT", "alg": "RS256", "kid": active_key.kid, "x5t": active_key.x5t}


def test_app_token_claims(issuer: TokenIssuer, urls: IssuerUrl) -> None:
    issued = issuer.issue_access_token(TENANT, APP, ML, now=NOW)
    _, claims = split(issued.token)
    assert claims == dict(issued.claims)
    iat = int(NOW.timestamp())
    assert claims["aud"] == ML
    assert claims["iss"] == urls(TENANT)
    assert claims["iat"] == claims["nbf"] == iat
    assert claims["exp"] == issued.expires_on == iat + issued.expires_in
    assert (claims["tid"], claims["oid"], claims["sub"]) == (TENANT, APP.oid, APP.oid)
    assert claims["appid"] == claims["azp"] == APP.app_id
    assert claims["idtyp"] == "app"
    assert claims["ver"] == "2.0"
    assert len(claims["uti"]) == 22
    assert not {"name", "upn", "scp", "groups", "xms_mirid"} & set(claims)


def test_audience_is_the_resource_exactly_as_requested(issuer: TokenIssuer) -> None:
    for audience in (ML, ML + "/", ARM):
        assert (
            split(issuer.issue_access_token(TENANT, APP, audience, now=NOW).token)[1]["aud"]
            == audience
        )


def test_user_token_has_name_upn_scp_groups_and_pairwise_sub(issuer: TokenIssuer) -> None:
    token = issuer.issue_access_token(TENANT, USER, ML, scopes=["user_impersonation"], now=NOW)
    claims = dict(token.claims)
    assert claims["idtyp"] == "user"
    assert claims["name"] == USER.display_name
    assert claims["upn"] == USER.upn
    assert claims["scp"] == "user_impersonation"
    assert claims["groups"] == list(USER.group_ids)
    assert claims["sub"] != USER.oid
    other_client = PrincipalClaims(oid=USER.oid, kind=PrincipalKind.USER, app_id="other-client")
    assert (
        issuer.issue_access_token(TENANT, other_client, ML, now=NOW).claims["sub"]
        != (claims["sub"])
    )


def test_managed_identity_token_is_app_typed_with_xms_mirid(issuer: TokenIssuer) -> None:
    mi = PrincipalClaims(
        oid="5b1c0b1e-0000-0000-0000-000000000001",
        kind=PrincipalKind.MANAGED_IDENTITY,
        app_id="5b1c0b1e-0000-0000-0000-000000000002",
        mi_resource_id=MI_RESOURCE,
    )
    claims = issuer.issue_access_token(TENANT, mi, ML, now=NOW).claims
    assert claims["idtyp"] == "app"
    assert claims["xms_mirid"] == MI_RESOURCE
    assert claims["sub"] == mi.oid


def test_app_roles_go_into_roles_and_app_scopes_are_not_scp(issuer: TokenIssuer) -> None:
    claims = issuer.issue_access_token(
        TENANT, APP, ML, scopes=["user_impersonation"], roles=["Score"], now=NOW
    ).claims
    assert claims["roles"] == ["Score"]
    assert "scp" not in claims


def test_default_lifetime_is_60_to_90_minutes_with_jitter(issuer: TokenIssuer) -> None:
    lifetimes = {issuer.issue_access_token(TENANT, APP, ML, now=NOW).expires_in for _ in range(40)}
    assert all(3600 <= seconds <= 5400 for seconds in lifetimes)
    assert len(lifetimes) > 1


def test_lifetime_range_is_configurable(keyring: KeyRing, urls: IssuerUrl) -> None:
    fixed = TokenIssuer(keyring, urls, lifetime=(timedelta(minutes=5), timedelta(minutes=5)))
    assert fixed.issue_access_token(TENANT, APP, ML, now=NOW).expires_in == 300


def test_every_token_has_a_fresh_uti(issuer: TokenIssuer) -> None:
    utis = {issuer.issue_access_token(TENANT, APP, ML, now=NOW).claims["uti"] for _ in range(20)}
    assert len(utis) == 20


def test_up_to_200_groups_are_inline(issuer: TokenIssuer) -> None:
    groups = tuple(f"group-{i:03d}" for i in range(GROUPS_OVERAGE_LIMIT))
    user = PrincipalClaims(oid=USER.oid, kind=PrincipalKind.USER, group_ids=groups)
    claims = issuer.issue_access_token(TENANT, user, ML, now=NOW).claims
    assert claims["groups"] == list(groups)
    assert "_claim_names" not in claims


def test_more_than_200_groups_become_the_overage_pointer(
    issuer: TokenIssuer, urls: IssuerUrl
) -> None:
    groups = tuple(f"group-{i:03d}" for i in range(GROUPS_OVERAGE_LIMIT + 1))
    user = PrincipalClaims(oid=USER.oid, kind=PrincipalKind.USER, group_ids=groups)
    claims = issuer.issue_access_token(TENANT, user, ML, now=NOW).claims
    assert "groups" not in claims
    assert claims["_claim_names"] == {"groups": "src1"}
    endpoint = claims["_claim_sources"]["src1"]["endpoint"]
    assert endpoint == f"{urls(TENANT)}/users/{USER.oid}/getMemberObjects"


def test_an_empty_audience_is_refused(issuer: TokenIssuer) -> None:
    with pytest.raises(ValueError, match="audience"):
        issuer.issue_access_token(TENANT, APP, "", now=NOW)
