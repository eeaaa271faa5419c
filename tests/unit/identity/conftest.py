"""Fixtures for the token core: a key ring, an issuer, a validator, and a token forger.

RSA key generation is the slow part, so a few private keys are made once per session and the
key rings are built from them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from token_support import APP, ARM, BASE_URL, ML, NOW, TENANT, Forge, b64json, b64url

from propylon.identity import (
    IssuerUrl,
    KeyRing,
    SigningKey,
    StaticJwks,
    TokenIssuer,
    TokenValidator,
    TrustedIssuer,
)


@pytest.fixture(scope="session")
def private_keys() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(4)]


@pytest.fixture
def active_key(private_keys: list[rsa.RSAPrivateKey]) -> SigningKey:
    start = NOW - timedelta(days=1)
    return SigningKey.from_private_key(private_keys[0], created_at=start, not_before_use=start)


@pytest.fixture
def keyring(active_key: SigningKey) -> KeyRing:
    return KeyRing([active_key])


@pytest.fixture
def urls() -> IssuerUrl:
    return IssuerUrl(BASE_URL)


@pytest.fixture
def issuer(keyring: KeyRing, urls: IssuerUrl) -> TokenIssuer:
    return TokenIssuer(keyring, urls)


@pytest.fixture
def own_trust(keyring: KeyRing, urls: IssuerUrl) -> TrustedIssuer:
    return TrustedIssuer(
        urls.template, StaticJwks(keyring), audiences=(ML, ARM), endpoint_tokens=True
    )


@pytest.fixture
def validator(own_trust: TrustedIssuer) -> TokenValidator:
    return TokenValidator([own_trust])


@pytest.fixture
def forge(active_key: SigningKey, urls: IssuerUrl) -> Forge:
    """Build a token from raw parts: any header, any claims, signed (RS256 by default) or not.

    Defaults give a token our validator accepts, so each test changes one thing.
    """

    def build(
        *,
        header: dict[str, Any] | None = None,
        claims: dict[str, Any] | None = None,
        drop: tuple[str, ...] = (),
        key: rsa.RSAPrivateKey | None = None,
        signature: bytes | None = None,
    ) -> str:
        full_header = {"typ": "JWT", "alg": "RS256", "kid": active_key.kid}
        full_header.update(header or {})
        iat = int(NOW.timestamp())
        full_claims: dict[str, Any] = {
            "aud": ML,
            "iss": urls(TENANT),
            "iat": iat,
            "nbf": iat,
            "exp": iat + 3600,
            "tid": TENANT,
            "oid": APP.oid,
            "sub": APP.oid,
            "appid": APP.app_id,
            "azp": APP.app_id,
            "idtyp": "app",
            "ver": "2.0",
        }
        full_claims.update(claims or {})
        for name in drop:
            full_claims.pop(name, None)
        signing_input = f"{b64json(full_header)}.{b64json(full_claims)}"
        if signature is None:
            algorithm = jwt.get_algorithm_by_name(full_header["alg"])
            signature = algorithm.sign(signing_input.encode(), key or active_key.private_key)
        return f"{signing_input}.{b64url(signature)}"

    return build
