"""Signing keys: RFC 7638 kid, Entra-shaped public JWK with x5c, PEM round trip."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from token_support import NOW, b64url

from propylon.identity import SigningKey, jwk_thumbprint

RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJE"
    "CPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Q"
    "vzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6"
    "WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)


def test_thumbprint_matches_the_rfc7638_example() -> None:
    public_key = jwt.algorithms.RSAAlgorithm.from_jwk({"kty": "RSA", "n": RFC7638_N, "e": "AQAB"})
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert jwk_thumbprint(public_key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_generated_key_is_rsa_2048_with_thumbprint_kid() -> None:
    key = SigningKey.generate(NOW)
    assert key.private_key.key_size == 2048
    assert key.kid == jwk_thumbprint(key.public_key)
    assert key.not_before_use == NOW
    assert key.retired_at is None


def test_public_jwk_has_entra_shape_and_no_private_material(active_key: SigningKey) -> None:
    jwk = active_key.public_jwk()
    assert set(jwk) == {"kty", "use", "alg", "kid", "x5t", "n", "e", "x5c"}
    assert (jwk["kty"], jwk["use"], jwk["alg"], jwk["kid"]) == (
        "RSA",
        "sig",
        "RS256",
        active_key.kid,
    )
    assert jwk["e"] == "AQAB"
    public = jwt.algorithms.RSAAlgorithm.from_jwk(jwk)
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.public_numbers() == active_key.public_key.public_numbers()


def test_x5c_is_a_self_signed_certificate_of_the_same_key_and_x5t_its_sha1(
    active_key: SigningKey,
) -> None:
    jwk = active_key.public_jwk()
    der = base64.b64decode(jwk["x5c"][0])
    cert = x509.load_der_x509_certificate(der)
    cert_key = cert.public_key()
    assert isinstance(cert_key, rsa.RSAPublicKey)
    assert cert_key.public_numbers() == active_key.public_key.public_numbers()
    cert.verify_directly_issued_by(cert)
    assert jwk["x5t"] == b64url(hashlib.sha1(der, usedforsecurity=False).digest())


def test_pem_round_trip_keeps_kid_x5t_and_times(active_key: SigningKey) -> None:
    retired = NOW + timedelta(hours=1)
    again = SigningKey.from_pem(
        active_key.private_pem(),
        created_at=active_key.created_at,
        not_before_use=active_key.not_before_use,
        retired_at=retired,
    )
    assert again.kid == active_key.kid
    assert again.x5t == active_key.x5t
    assert again.public_jwk()["x5c"] == active_key.public_jwk()["x5c"]
    assert again.retired_at == retired


def test_private_pem_is_unencrypted_pkcs8(active_key: SigningKey) -> None:
    pem = active_key.private_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_repr_never_shows_the_private_key(active_key: SigningKey) -> None:
    assert "PRIVATE" not in repr(active_key)
    assert "private_key" not in repr(active_key)


def test_from_pem_rejects_non_rsa_weak_and_garbage_keys() -> None:
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    weak_pem = rsa.generate_private_key(
        public_exponent=65537,
        key_size=1024,  # noqa: S505 — the loader must refuse a weak key
    ).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    for pem in (ec_pem, weak_pem, b"not a pem"):
        with pytest.raises(ValueError, match="signing key"):
            SigningKey.from_pem(pem, created_at=NOW, not_before_use=NOW)


def test_naive_datetimes_are_refused(private_keys: list[rsa.RSAPrivateKey]) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SigningKey.from_private_key(
            private_keys[0], created_at=NOW.replace(tzinfo=None), not_before_use=NOW
        )
