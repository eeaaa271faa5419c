"""Helpers for the directory and OAuth tests (imported by name; no fixtures here)."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from propylon.identity.oauth2 import TokenRequest

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class FakeClock:
    """Monotonic seconds that only move when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def self_signed(key: rsa.RSAPrivateKey, *, days: int = 30) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "propylon test client")])
    start = datetime.now(UTC) - timedelta(minutes=5)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assertion(
    key: rsa.RSAPrivateKey,
    cert: x509.Certificate,
    *,
    client_id: str,
    audience: str,
    alg: str = "PS256",
    thumbprint: str = "x5t#S256",
    lifetime: int = 600,
    **claims: Any,
) -> str:
    """A client assertion as MSAL builds it (RFC 7523 §3)."""
    der = cert.public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der) if thumbprint == "x5t#S256" else hashlib.sha1(der)  # noqa: S324
    now = int(time.time())
    body = {
        "aud": audience,
        "iss": client_id,
        "sub": client_id,
        "exp": now + lifetime,
        "iat": now,
        "nbf": now,
        "jti": str(uuid.uuid4()),
        **claims,
    }
    return jwt.encode(body, key, algorithm=alg, headers={thumbprint: b64url(digest.digest())})


def request(tenant: str, form: dict[str, str], **kwargs: Any) -> TokenRequest:
    kwargs.setdefault("source_address", "192.0.2.10")
    return TokenRequest(tenant=tenant, form=form, **kwargs)
