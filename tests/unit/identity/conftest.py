"""Fixtures for the token core (a key ring, an issuer, a validator, a token forger) and for the
store-backed parts (a SQLite directory, the token endpoint with its throttle and audit log).

RSA key generation is the slow part, so a few private keys are made once per session and the
key rings are built from them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from identity_support import FakeClock
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
from propylon.identity.audit import SignInAudit
from propylon.identity.client_auth import ClientAuthenticator
from propylon.identity.device_flow import DeviceFlow
from propylon.identity.directory import Directory
from propylon.identity.oauth2 import TokenEndpoint
from propylon.identity.provider import KnownResources
from propylon.identity.refresh_tokens import RefreshTokens
from propylon.identity.throttle import SignInLimit, SignInThrottle
from propylon.store import Database


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


# -- the store-backed parts: directory, token endpoint, managed identity ---------------------


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A fresh, migrated SQLite store."""
    database = Database.connect(f"sqlite:///{tmp_path / 'state.db'}")
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def directory(db: Database) -> Directory:
    return Directory(db, default_tenant=TENANT)


@pytest.fixture
def audit(tmp_path: Path) -> SignInAudit:
    return SignInAudit(tmp_path / "logs" / "signins.jsonl")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def throttle(clock: FakeClock) -> SignInThrottle:
    return SignInThrottle(
        per_account=SignInLimit(3, 60.0), per_address=SignInLimit(10, 300.0), clock=clock
    )


@pytest.fixture
def device_flow(db: Database) -> DeviceFlow:
    return DeviceFlow(db, verification_uri=f"{BASE_URL}/device")


@pytest.fixture
def endpoint(
    issuer: TokenIssuer,
    directory: Directory,
    db: Database,
    device_flow: DeviceFlow,
    throttle: SignInThrottle,
    audit: SignInAudit,
) -> TokenEndpoint:
    return TokenEndpoint(
        issuer=issuer,
        directory=directory,
        clients=ClientAuthenticator(directory),
        refresh_tokens=RefreshTokens(db),
        device_flow=device_flow,
        throttle=throttle,
        audit=audit,
        is_known_resource=KnownResources(directory),
    )


@pytest.fixture
def validator_with_directory(own_trust: TrustedIssuer, directory: Directory) -> TokenValidator:
    return TokenValidator([own_trust], principal_is_active=directory.is_active)
