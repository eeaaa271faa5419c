"""aml_tokens: bound to one endpoint, and never interchangeable with identity tokens."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from token_support import APP, ENDPOINT_A, ENDPOINT_B, ML, NOW, TENANT, Forge, split

from propylon.errors import ConfigurationError
from propylon.identity import (
    ENDPOINT_TOKEN_TYPE,
    InvalidToken,
    IssuerUrl,
    KeyRing,
    RejectReason,
    SigningKey,
    StaticJwks,
    TokenIssuer,
    TokenValidator,
    TrustedIssuer,
    endpoint_audience,
)


def endpoint_reason(
    validator: TokenValidator, token: str, endpoint: str, endpoint_uid: str | None = None
) -> RejectReason:
    with pytest.raises(InvalidToken) as caught:
        validator.validate_endpoint_token(token, endpoint, endpoint_uid=endpoint_uid, now=NOW)
    return caught.value.reason


def test_body_has_the_arm_endpoint_auth_token_shape(issuer: TokenIssuer) -> None:
    minted = issuer.issue_endpoint_token(ENDPOINT_A, tenant_id=TENANT, now=NOW)
    body = minted.as_body()
    assert set(body) == {"accessToken", "expiryTimeUtc", "refreshAfterTimeUtc", "tokenType"}
    assert body["tokenType"] == "Bearer"
    iat = int(NOW.timestamp())
    assert body["expiryTimeUtc"] == iat + 3600
    assert body["refreshAfterTimeUtc"] == iat + 1800


def test_token_is_explicitly_typed_and_bound_to_the_endpoint(issuer: TokenIssuer) -> None:
    minted = issuer.issue_endpoint_token(
        ENDPOINT_A, tenant_id=TENANT, requested_by=APP.oid, now=NOW
    )
    header, claims = split(minted.access_token)
    assert header["typ"] == ENDPOINT_TOKEN_TYPE
    assert claims["token_use"] == "aml_token"
    assert claims["aud"] == "propylon:endpoint:" + ENDPOINT_A.lower()
    assert claims["oid"] == APP.oid


def test_endpoint_audience_is_case_insensitive_and_refuses_non_endpoint_ids() -> None:
    assert endpoint_audience(ENDPOINT_A.upper() + "/") == endpoint_audience(ENDPOINT_A)
    with pytest.raises(ValueError, match="ARM id"):
        endpoint_audience("/subscriptions/s/resourceGroups/rg")


def test_token_opens_its_endpoint(issuer: TokenIssuer, validator: TokenValidator) -> None:
    minted = issuer.issue_endpoint_token(
        ENDPOINT_A, tenant_id=TENANT, requested_by=APP.oid, now=NOW
    )
    accepted = validator.validate_endpoint_token(minted.access_token, ENDPOINT_A.upper(), now=NOW)
    assert (accepted.tid, accepted.oid) == (TENANT, APP.oid)
    assert accepted.audience == endpoint_audience(ENDPOINT_A)
    assert accepted.expires_at == minted.expiry_time_utc


def test_token_for_endpoint_a_fails_for_endpoint_b(
    issuer: TokenIssuer, validator: TokenValidator
) -> None:
    token = issuer.issue_endpoint_token(ENDPOINT_A, tenant_id=TENANT, now=NOW).access_token
    assert endpoint_reason(validator, token, ENDPOINT_B) is RejectReason.WRONG_ENDPOINT


def test_token_for_a_deleted_endpoint_of_the_same_name_fails(
    issuer: TokenIssuer, validator: TokenValidator
) -> None:
    token = issuer.issue_endpoint_token(
        ENDPOINT_A, tenant_id=TENANT, endpoint_uid="generation-1", now=NOW
    ).access_token
    assert validator.validate_endpoint_token(
        token, ENDPOINT_A, endpoint_uid="generation-1", now=NOW
    )
    reason = endpoint_reason(validator, token, ENDPOINT_A, endpoint_uid="generation-2")
    assert reason is RejectReason.WRONG_ENDPOINT


def test_identity_token_fails_as_an_aml_token(
    issuer: TokenIssuer, validator: TokenValidator
) -> None:
    identity = issuer.issue_access_token(TENANT, APP, ML, now=NOW).token
    assert endpoint_reason(validator, identity, ENDPOINT_A) is RejectReason.WRONG_TOKEN_TYPE


def test_aml_token_fails_as_an_identity_token(
    issuer: TokenIssuer, validator: TokenValidator
) -> None:
    token = issuer.issue_endpoint_token(ENDPOINT_A, tenant_id=TENANT, now=NOW).access_token
    with pytest.raises(InvalidToken) as caught:
        validator.validate(token, audiences=(ML, endpoint_audience(ENDPOINT_A)), now=NOW)
    assert caught.value.reason is RejectReason.WRONG_TOKEN_TYPE


def test_type_claim_and_header_are_both_required(forge: Forge, validator: TokenValidator) -> None:
    aud = endpoint_audience(ENDPOINT_A)
    claim_only = forge(claims={"aud": aud, "token_use": "aml_token"})
    header_only = forge(header={"typ": ENDPOINT_TOKEN_TYPE}, claims={"aud": aud})
    assert endpoint_reason(validator, claim_only, ENDPOINT_A) is RejectReason.WRONG_TOKEN_TYPE
    assert endpoint_reason(validator, header_only, ENDPOINT_A) is RejectReason.WRONG_TOKEN_TYPE
    with pytest.raises(InvalidToken) as caught:
        validator.validate(claim_only, audiences=(aud,), now=NOW)
    assert caught.value.reason is RejectReason.WRONG_TOKEN_TYPE


def test_only_our_own_issuer_mints_aml_tokens(
    keyring: KeyRing, urls: IssuerUrl, issuer: TokenIssuer
) -> None:
    not_for_aml = TokenValidator(
        [TrustedIssuer(urls.template, StaticJwks(keyring), audiences=(ML,))]
    )
    token = issuer.issue_endpoint_token(ENDPOINT_A, tenant_id=TENANT, now=NOW).access_token
    assert endpoint_reason(not_for_aml, token, ENDPOINT_A) is RejectReason.UNTRUSTED_ISSUER


def test_aml_token_signed_by_another_key_fails(
    urls: IssuerUrl, validator: TokenValidator, private_keys: list[rsa.RSAPrivateKey]
) -> None:
    start = NOW - timedelta(days=1)
    stranger = KeyRing(
        [SigningKey.from_private_key(private_keys[3], created_at=start, not_before_use=start)]
    )
    token = (
        TokenIssuer(stranger, urls)
        .issue_endpoint_token(ENDPOINT_A, tenant_id=TENANT, now=NOW)
        .access_token
    )
    assert endpoint_reason(validator, token, ENDPOINT_A) is RejectReason.UNKNOWN_KID


def test_expired_aml_token_fails(issuer: TokenIssuer, validator: TokenValidator) -> None:
    token = issuer.issue_endpoint_token(
        ENDPOINT_A, tenant_id=TENANT, now=NOW - timedelta(hours=2)
    ).access_token
    assert endpoint_reason(validator, token, ENDPOINT_A) is RejectReason.EXPIRED


def test_aml_token_of_a_disabled_requester_fails(
    own_trust: TrustedIssuer, issuer: TokenIssuer
) -> None:
    validator = TokenValidator([own_trust], principal_is_active=lambda tid, oid: False)
    token = issuer.issue_endpoint_token(
        ENDPOINT_A, tenant_id=TENANT, requested_by=APP.oid, now=NOW
    ).access_token
    assert endpoint_reason(validator, token, ENDPOINT_A) is RejectReason.PRINCIPAL_INACTIVE


def test_refresh_after_must_come_before_expiry(keyring: KeyRing, urls: IssuerUrl) -> None:
    with pytest.raises(ConfigurationError, match="refresh-after"):
        TokenIssuer(
            keyring,
            urls,
            endpoint_token_lifetime=timedelta(minutes=30),
            endpoint_token_refresh_after=timedelta(minutes=30),
        )
