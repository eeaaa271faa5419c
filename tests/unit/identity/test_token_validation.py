"""Identity-token validation: the round trip and every attack of reference §6.3.

Each refused token must fail with a distinguishable reason, so the server log says why.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from token_support import (
    APP,
    ARM,
    ML,
    NOW,
    OTHER_TENANT,
    TENANT,
    USER,
    Forge,
    b64json,
    b64url,
)

from propylon.errors import ConfigurationError, Unauthenticated
from propylon.identity import (
    ClaimMapping,
    InvalidToken,
    IssuerUrl,
    KeyLookup,
    KeyRing,
    PrincipalClaims,
    PrincipalKind,
    RejectReason,
    SigningKey,
    StaticJwks,
    TokenIssuer,
    TokenValidator,
    TrustedIssuer,
    VerificationKey,
    parse_jwks,
)


def reason_of(validator: TokenValidator, token: str, **kwargs: Any) -> RejectReason:
    kwargs.setdefault("audiences", (ML,))
    kwargs.setdefault("now", NOW)
    with pytest.raises(InvalidToken) as caught:
        validator.validate(token, **kwargs)
    return caught.value.reason


class DictJwks:
    """A key source over a fixed JWKS document (no I/O), for key-level attacks."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.keys = parse_jwks(document)

    def lookup(self, kid: str, now: object) -> KeyLookup:
        return KeyLookup(self.keys.get(kid), refresh=False)

    def refresh(self) -> bool:
        return False


# -- the round trip ---------------------------------------------------------------------------


def test_issued_app_token_validates(issuer: TokenIssuer, validator: TokenValidator) -> None:
    issued = issuer.issue_access_token(TENANT, APP, ML, now=NOW)
    who = validator.validate(issued.token, audiences=(ML,), now=NOW)
    assert (who.oid, who.tid, who.appid, who.idtyp) == (APP.oid, TENANT, APP.app_id, "app")
    assert who.groups == ()
    assert not who.groups_overage
    assert who.expires_at == issued.expires_on
    assert who.issuer == f"https://idp.propylon.test/{TENANT}/v2.0"


def test_issued_user_token_validates_with_groups(
    issuer: TokenIssuer, validator: TokenValidator
) -> None:
    token = issuer.issue_access_token(TENANT, USER, ML, scopes=["user_impersonation"], now=NOW)
    who = validator.validate(token.token, audiences=(ML,), now=NOW)
    assert (who.oid, who.idtyp) == (USER.oid, "user")
    assert who.groups == USER.group_ids
    assert who.claims["upn"] == USER.upn


def test_validate_async_gives_the_same_answer(
    issuer: TokenIssuer, validator: TokenValidator
) -> None:
    token = issuer.issue_access_token(TENANT, APP, ML, now=NOW).token
    who = asyncio.run(validator.validate_async(token, audiences=(ML,), now=NOW))
    assert who.oid == APP.oid


def test_groups_overage_is_reported_not_read_as_no_groups(
    issuer: TokenIssuer, validator: TokenValidator
) -> None:
    many = tuple(f"g{i}" for i in range(201))
    user = PrincipalClaims(oid=USER.oid, kind=PrincipalKind.USER, group_ids=many)
    token = issuer.issue_access_token(TENANT, user, ML, now=NOW).token
    who = validator.validate(token, audiences=(ML,), now=NOW)
    assert who.groups_overage
    assert who.groups == ()


@pytest.mark.parametrize(("issued_for", "accepted"), [(ML, ML + "/"), (ML + "/", ML)])
def test_audience_matches_with_or_without_trailing_slash(
    issuer: TokenIssuer, validator: TokenValidator, issued_for: str, accepted: str
) -> None:
    token = issuer.issue_access_token(TENANT, APP, issued_for, now=NOW).token
    assert validator.validate(token, audiences=(accepted,), now=NOW).oid == APP.oid


def test_a_single_audience_string_is_one_audience_not_characters(
    issuer: TokenIssuer, validator: TokenValidator
) -> None:
    token = issuer.issue_access_token(TENANT, APP, ML, now=NOW).token
    assert validator.validate(token, audiences=ML, now=NOW).oid == APP.oid


def test_idtyp_is_derived_from_scp_when_the_issuer_omits_it(
    forge: Forge, validator: TokenValidator
) -> None:
    user = forge(claims={"scp": "user_impersonation"}, drop=("idtyp",))
    app = forge(drop=("idtyp",))
    assert validator.validate(user, audiences=(ML,), now=NOW).idtyp == "user"
    assert validator.validate(app, audiences=(ML,), now=NOW).idtyp == "app"


# -- §6.3 #1 alg none, #2 key confusion, #3 algorithm substitution ----------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_refused(forge: Forge, validator: TokenValidator, alg: str) -> None:
    token = forge(header={"alg": alg}, signature=b"")
    assert token.endswith(".")
    assert reason_of(validator, token) is RejectReason.ALG_NONE


@pytest.mark.parametrize("secret_form", ["pem", "jwk"])
def test_hs256_signed_with_our_public_key_is_refused(
    validator: TokenValidator, active_key: SigningKey, secret_form: str, forge: Forge
) -> None:
    if secret_form == "pem":
        secret = active_key.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        secret = json.dumps(active_key.public_jwk()).encode()
    unsigned = forge(header={"alg": "HS256"}, signature=b"x").rsplit(".", 1)[0]
    mac = hmac.new(secret, unsigned.encode(), hashlib.sha256).digest()
    assert reason_of(validator, f"{unsigned}.{b64url(mac)}") is RejectReason.ALG_NOT_ALLOWED


@pytest.mark.parametrize("alg", ["PS256", "ES256", "RS512"])
def test_other_asymmetric_algorithms_are_refused_by_the_allow_list(
    forge: Forge, validator: TokenValidator, alg: str
) -> None:
    token = forge(header={"alg": alg}, signature=b"\x00" * 64)
    assert reason_of(validator, token) is RejectReason.ALG_NOT_ALLOWED


def test_alg_must_fit_the_jwk_even_when_both_are_allowed(
    keyring: KeyRing, urls: IssuerUrl, forge: Forge
) -> None:
    lenient = TrustedIssuer(
        urls.template, StaticJwks(keyring), audiences=(ML,), algorithms=("RS256", "PS256", "ES256")
    )
    validator = TokenValidator([lenient])
    attacker_ec = ec.generate_private_key(ec.SECP256R1())
    es = forge(header={"alg": "ES256"}, key=attacker_ec)
    assert reason_of(validator, es) is RejectReason.KEY_ALGORITHM_MISMATCH
    ps = forge(header={"alg": "PS256"})  # our RSA key, but the JWK says RS256
    assert reason_of(validator, ps) is RejectReason.KEY_ALGORITHM_MISMATCH


@pytest.mark.parametrize("alg", ["HS256", "none", "RS1"])
def test_symmetric_or_unknown_algorithms_cannot_be_trusted(
    keyring: KeyRing, urls: IssuerUrl, alg: str
) -> None:
    with pytest.raises(ConfigurationError, match="cannot be trusted"):
        TrustedIssuer(urls.template, StaticJwks(keyring), audiences=(ML,), algorithms=(alg,))


# -- §6.3 #4 kid injection, #5 keys in headers ------------------------------------------------


@pytest.mark.parametrize(
    "kid", ["../../dev/null", "x' UNION SELECT kid FROM keys--", "$(rm -rf /)", "0"]
)
def test_kid_is_only_a_dictionary_key(forge: Forge, validator: TokenValidator, kid: str) -> None:
    assert reason_of(validator, forge(header={"kid": kid})) is RejectReason.UNKNOWN_KID


def test_token_without_kid_is_refused(forge: Forge, validator: TokenValidator) -> None:
    token = forge(header={"kid": None})
    assert reason_of(validator, token) is RejectReason.MISSING_KID


@pytest.mark.parametrize("name", ["jku", "x5u", "x5c", "jwk"])
def test_key_headers_are_refused_even_on_a_correctly_signed_token(
    forge: Forge, validator: TokenValidator, active_key: SigningKey, name: str
) -> None:
    values = {
        "jku": "https://attacker.test/jwks",
        "x5u": "https://attacker.test/cert.pem",
        "x5c": active_key.public_jwk()["x5c"],
        "jwk": active_key.public_jwk(),
    }
    token = forge(header={name: values[name]})
    assert reason_of(validator, token) is RejectReason.HEADER_KEY_INJECTION


def test_embedded_attacker_jwk_never_verifies(
    forge: Forge, validator: TokenValidator, private_keys: list[rsa.RSAPrivateKey]
) -> None:
    attacker = SigningKey.from_private_key(private_keys[3], created_at=NOW, not_before_use=NOW)
    token = forge(
        header={"kid": attacker.kid, "jwk": attacker.public_jwk()}, key=attacker.private_key
    )
    assert reason_of(validator, token) is RejectReason.HEADER_KEY_INJECTION


# -- a valid signature from a key that is not ours --------------------------------------------


def test_attacker_key_with_its_own_kid_is_unknown(
    forge: Forge, validator: TokenValidator, private_keys: list[rsa.RSAPrivateKey]
) -> None:
    attacker = SigningKey.from_private_key(private_keys[3], created_at=NOW, not_before_use=NOW)
    token = forge(header={"kid": attacker.kid}, key=attacker.private_key)
    assert reason_of(validator, token) is RejectReason.UNKNOWN_KID


def test_attacker_key_claiming_our_kid_fails_the_signature(
    forge: Forge, validator: TokenValidator, private_keys: list[rsa.RSAPrivateKey]
) -> None:
    token = forge(key=private_keys[3])
    assert reason_of(validator, token) is RejectReason.BAD_SIGNATURE


# -- §6.3 #7 audience, #8 issuer and tenant, #9 signing-key issuer ------------------------------


@pytest.mark.parametrize("aud", [ARM, "https://graph.microsoft.com", "propylon:endpoint:/x"])
def test_token_for_another_resource_is_refused(
    issuer: TokenIssuer, validator: TokenValidator, aud: str
) -> None:
    token = issuer.issue_access_token(TENANT, APP, aud, now=NOW).token
    assert reason_of(validator, token) is RejectReason.WRONG_AUDIENCE


def test_audience_must_also_be_one_the_issuer_is_trusted_for(
    keyring: KeyRing, urls: IssuerUrl, issuer: TokenIssuer
) -> None:
    ml_only = TokenValidator([TrustedIssuer(urls.template, StaticJwks(keyring), audiences=(ML,))])
    token = issuer.issue_access_token(TENANT, APP, ARM, now=NOW).token
    assert reason_of(ml_only, token, audiences=(ARM,)) is RejectReason.WRONG_AUDIENCE


def test_untrusted_issuer_is_refused(forge: Forge, validator: TokenValidator) -> None:
    for iss in (
        f"https://sts.windows.net/{TENANT}/",
        f"https://login.microsoftonline.com/{TENANT}/v2.0",
        f"https://idp.propylon.test/{TENANT}/v1.0",
        f"https://idp.propylon.test.attacker.test/{TENANT}/v2.0",
    ):
        assert reason_of(validator, forge(claims={"iss": iss})) is RejectReason.UNTRUSTED_ISSUER


def test_other_tenant_of_a_single_tenant_trust_is_untrusted(
    keyring: KeyRing, urls: IssuerUrl, issuer: TokenIssuer
) -> None:
    only_a = TokenValidator(
        [TrustedIssuer(urls(TENANT), StaticJwks(keyring), audiences=(ML,), tenant_id=TENANT)]
    )
    token = issuer.issue_access_token(OTHER_TENANT, APP, ML, now=NOW).token
    assert reason_of(only_a, token) is RejectReason.UNTRUSTED_ISSUER


def test_issuer_tenant_segment_must_equal_tid(forge: Forge, validator: TokenValidator) -> None:
    token = forge(claims={"tid": OTHER_TENANT})  # iss says TENANT, signed by our own key
    assert reason_of(validator, token) is RejectReason.TENANT_MISMATCH


def test_tid_must_match_a_pinned_tenant(keyring: KeyRing, urls: IssuerUrl, forge: Forge) -> None:
    pinned = TokenValidator(
        [TrustedIssuer(urls(TENANT), StaticJwks(keyring), audiences=(ML,), tenant_id=TENANT)]
    )
    assert reason_of(pinned, forge(claims={"tid": OTHER_TENANT})) is RejectReason.TENANT_MISMATCH


def test_signing_key_issuer_must_match_the_token_issuer(
    private_keys: list[rsa.RSAPrivateKey], urls: IssuerUrl, forge: Forge
) -> None:
    external = SigningKey.from_private_key(private_keys[1], created_at=NOW, not_before_use=NOW)
    jwk = external.public_jwk() | {"issuer": f"{urls.base_url}/{OTHER_TENANT}/v2.0"}
    validator = TokenValidator(
        [TrustedIssuer(urls.template, DictJwks({"keys": [jwk]}), audiences=(ML,))]
    )
    token = forge(header={"kid": external.kid}, key=external.private_key)
    assert reason_of(validator, token) is RejectReason.KEY_ISSUER_MISMATCH
    templated = external.public_jwk() | {"issuer": urls.template}
    validator = TokenValidator(
        [TrustedIssuer(urls.template, DictJwks({"keys": [templated]}), audiences=(ML,))]
    )
    assert validator.validate(token, audiences=(ML,), now=NOW).tid == TENANT


# -- §6.3 #10–12 time ---------------------------------------------------------------------------


def test_expired_token_is_refused(issuer: TokenIssuer, validator: TokenValidator) -> None:
    token = issuer.issue_access_token(TENANT, APP, ML, now=NOW - timedelta(hours=2)).token
    assert reason_of(validator, token) is RejectReason.EXPIRED


def test_not_yet_valid_token_is_refused(forge: Forge, validator: TokenValidator) -> None:
    future = int(NOW.timestamp()) + 120
    assert reason_of(validator, forge(claims={"nbf": future})) is RejectReason.NOT_YET_VALID
    assert reason_of(validator, forge(claims={"iat": future})) is RejectReason.NOT_YET_VALID


def test_leeway_applies_to_both_sides(forge: Forge, validator: TokenValidator) -> None:
    now = int(NOW.timestamp())
    assert validator.validate(forge(claims={"exp": now - 59}), audiences=(ML,), now=NOW)
    assert validator.validate(forge(claims={"nbf": now + 59}), audiences=(ML,), now=NOW)
    assert reason_of(validator, forge(claims={"exp": now - 61})) is RejectReason.EXPIRED
    assert reason_of(validator, forge(claims={"nbf": now + 61})) is RejectReason.NOT_YET_VALID


def test_four_minutes_of_skew_pass_only_with_a_five_minute_leeway(
    own_trust: TrustedIssuer, forge: Forge
) -> None:
    token = forge(claims={"exp": int(NOW.timestamp()) - 240})
    assert TokenValidator([own_trust], leeway_s=300).validate(token, audiences=(ML,), now=NOW)
    assert reason_of(TokenValidator([own_trust], leeway_s=60), token) is RejectReason.EXPIRED


@pytest.mark.parametrize("leeway", [-1, 301])
def test_leeway_is_bounded(own_trust: TrustedIssuer, leeway: int) -> None:
    with pytest.raises(ConfigurationError, match="leeway"):
        TokenValidator([own_trust], leeway_s=leeway)


# -- §6.3 #13 required claims, #14 tampering, #15 malformed ---------------------------------------


@pytest.mark.parametrize("claim", ["exp", "iss", "aud", "tid", "oid"])
def test_missing_required_claim_is_refused(
    forge: Forge, validator: TokenValidator, claim: str
) -> None:
    assert reason_of(validator, forge(drop=(claim,))) is RejectReason.MISSING_CLAIM


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"exp": "tomorrow"}, "exp"),
        ({"exp": True}, "exp"),
        ({"oid": 42}, "oid"),
        ({"tid": ["a"]}, "tid"),
        ({"aud": [ML, 1]}, "aud"),
        ({"groups": "admins"}, "groups"),
    ],
)
def test_ill_typed_claims_are_refused(
    forge: Forge, validator: TokenValidator, claims: dict[str, Any], why: str
) -> None:
    assert reason_of(validator, forge(claims=claims)) is RejectReason.INVALID_CLAIM, why


def test_tampered_payload_fails_the_signature(
    issuer: TokenIssuer, validator: TokenValidator
) -> None:
    header, _, signature = issuer.issue_access_token(TENANT, APP, ML, now=NOW).token.split(".")
    forged_claims = dict(issuer.issue_access_token(TENANT, USER, ML, now=NOW).claims)
    forged_claims["oid"] = "00000000-0000-0000-0000-00000000dead"
    token = f"{header}.{b64json(forged_claims)}.{signature}"
    assert reason_of(validator, token) is RejectReason.BAD_SIGNATURE


def test_stripped_signature_is_refused(issuer: TokenIssuer, validator: TokenValidator) -> None:
    token = issuer.issue_access_token(TENANT, APP, ML, now=NOW).token
    stripped = token.rsplit(".", 1)[0] + "."
    assert reason_of(validator, stripped) is RejectReason.BAD_SIGNATURE


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d.e",
        "e30.e30.e30.e30",
        "!!!.e30.AA",
        "e30.e30=.AA",
        f"{b64json([1])}.e30.AA",
        "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.AA",
        "x" * (33 * 1024),
    ],
)
def test_malformed_compact_serialisation_is_refused(validator: TokenValidator, token: str) -> None:
    assert reason_of(validator, token) is RejectReason.MALFORMED


def test_duplicate_json_members_are_refused(forge: Forge, validator: TokenValidator) -> None:
    good = forge()
    header, payload, signature = good.split(".")
    duplicated = b64url(b'{"alg":"RS256","alg":"none"}')
    assert reason_of(validator, f"{duplicated}.{payload}.{signature}") is RejectReason.MALFORMED
    dup_payload = b64url(f'{{"iss":"x","iss":"https://idp.propylon.test/{TENANT}/v2.0"}}'.encode())
    assert reason_of(validator, f"{header}.{dup_payload}.{signature}") is RejectReason.MALFORMED


def test_crit_header_is_refused(forge: Forge, validator: TokenValidator) -> None:
    token = forge(header={"crit": ["exp"], "exp": 1})
    assert reason_of(validator, token) is RejectReason.CRIT_UNSUPPORTED


def test_other_token_types_are_refused(forge: Forge, validator: TokenValidator) -> None:
    assert reason_of(validator, forge(header={"typ": "aml+jwt"})) is RejectReason.WRONG_TOKEN_TYPE
    assert reason_of(validator, forge(header={"typ": "JWE"})) is RejectReason.WRONG_TOKEN_TYPE
    assert validator.validate(forge(header={"typ": "at+jwt"}), audiences=(ML,), now=NOW)


# -- the directory hook --------------------------------------------------------------------------


def test_disabled_principal_is_refused(own_trust: TrustedIssuer, issuer: TokenIssuer) -> None:
    asked: list[tuple[str, str]] = []

    def is_active(tid: str, oid: str) -> bool:
        asked.append((tid, oid))
        return False

    validator = TokenValidator([own_trust], principal_is_active=is_active)
    token = issuer.issue_access_token(TENANT, APP, ML, now=NOW).token
    assert reason_of(validator, token) is RejectReason.PRINCIPAL_INACTIVE
    assert asked == [(TENANT, APP.oid)]


# -- errors and configuration ------------------------------------------------------------------


def test_refusal_is_a_401_with_an_invalid_token_challenge_and_no_detail(
    forge: Forge, validator: TokenValidator
) -> None:
    with pytest.raises(Unauthenticated) as caught:
        validator.validate(forge(header={"kid": "../../etc/passwd"}), audiences=(ML,), now=NOW)
    error = caught.value
    assert error.status == 401
    assert error.code == "AuthenticationFailed"
    assert error.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert "passwd" not in error.message
    assert isinstance(error, InvalidToken)
    assert "passwd" in error.detail


def test_external_issuer_without_tenant_claim_uses_its_pinned_tenant(
    private_keys: list[rsa.RSAPrivateKey], forge: Forge
) -> None:
    external = SigningKey.from_private_key(private_keys[1], created_at=NOW, not_before_use=NOW)
    trusted = TrustedIssuer(
        "https://keycloak.test/realms/ml",
        DictJwks({"keys": [external.public_jwk()]}),
        audiences=(ML,),
        tenant_id=TENANT,
        claim_mapping=ClaimMapping(oid="sub", tid=None, app_id=("azp",)),
    )
    token = forge(
        header={"kid": external.kid},
        claims={"iss": "https://keycloak.test/realms/ml", "sub": "user-7"},
        drop=("tid", "oid"),
        key=external.private_key,
    )
    who = TokenValidator([trusted]).validate(token, audiences=(ML,), now=NOW)
    assert (who.tid, who.oid, who.appid) == (TENANT, "user-7", APP.app_id)


def test_trusted_issuer_configuration_is_checked(keyring: KeyRing, urls: IssuerUrl) -> None:
    jwks = StaticJwks(keyring)
    with pytest.raises(ConfigurationError, match="no audience"):
        TrustedIssuer(urls.template, jwks, audiences=())
    with pytest.raises(ConfigurationError, match="tuple"):
        TrustedIssuer(urls.template, jwks, audiences=ML)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="tenant_id"):
        TrustedIssuer("https://x.test", jwks, audiences=(ML,), claim_mapping=ClaimMapping(tid=None))
    same = TrustedIssuer(urls(TENANT), jwks, audiences=(ML,))
    with pytest.raises(ConfigurationError, match="twice"):
        TokenValidator([same, TrustedIssuer(urls(TENANT), jwks, audiences=(ARM,))])


def test_static_jwks_verification_key_carries_the_rs256_public_key(
    keyring: KeyRing, active_key: SigningKey
) -> None:
    found = StaticJwks(keyring).lookup(active_key.kid, NOW)
    assert found == KeyLookup(VerificationKey.from_signing_key(active_key), refresh=False)
    assert found.key is not None
    assert found.key.alg == "RS256"


def test_lifetime_shorter_issuer_token_still_round_trips(keyring: KeyRing, urls: IssuerUrl) -> None:
    short = TokenIssuer(keyring, urls, lifetime=(timedelta(minutes=1), timedelta(minutes=1)))
    validator = TokenValidator([TrustedIssuer(urls.template, StaticJwks(keyring), audiences=(ML,))])
    token = short.issue_access_token(TENANT, APP, ML, now=NOW).token
    assert (
        validator.validate(token, audiences=(ML,), now=NOW + timedelta(seconds=90)).oid == APP.oid
    )
    later = NOW + timedelta(seconds=121)
    assert reason_of(validator, token, now=later) is RejectReason.EXPIRED
