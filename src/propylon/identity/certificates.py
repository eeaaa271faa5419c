"""X.509 certificates registered for client assertions, and their thumbprints.

A client names the certificate that signed its assertion by thumbprint in the JWS header
(RFC 7515 §4.1.7 ``x5t``: base64url SHA-1 of the DER; §4.1.8 ``x5t#S256``: SHA-256). Graph's
``keyCredential.customKeyIdentifier`` shows the SHA-1 thumbprint as upper-case hex, the form
``az`` and the portal print.

Example::

    cert = load_certificate(pem_text)
    cert.matches(x5t=header.get("x5t"), x5t_s256=header.get("x5t#S256"))
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["Certificate", "load_certificate"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


@dataclass(frozen=True)
class Certificate:
    """A parsed certificate with the thumbprints clients use to name it."""

    certificate: x509.Certificate = field(repr=False)
    der: bytes = field(repr=False)

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def sha1(self) -> bytes:
        return hashlib.sha1(self.der, usedforsecurity=False).digest()

    @property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.der).digest()

    @property
    def sha1_hex(self) -> str:
        return self.sha1.hex().upper()

    @property
    def x5t(self) -> str:
        return _b64url(self.sha1)

    @property
    def x5t_s256(self) -> str:
        return _b64url(self.sha256)

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        key = self.certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("Only RSA certificates can sign client assertions.")
        return key

    def matches(self, *, x5t: object = None, x5t_s256: object = None) -> bool:
        """Does a JWS header's ``x5t`` or ``x5t#S256`` name this certificate?"""
        if isinstance(x5t_s256, str):
            digest = _b64url_decode(x5t_s256)
            return digest is not None and hmac.compare_digest(digest, self.sha256)
        if isinstance(x5t, str):
            digest = _b64url_decode(x5t)
            if digest is not None and len(digest) == 20:
                return hmac.compare_digest(digest, self.sha1)
            # Some clients send the hex thumbprint (ADAL did).
            return x5t.upper() == self.sha1_hex
        return False


def load_certificate(data: bytes | str | x509.Certificate) -> Certificate:
    """Parse PEM, DER, or base64 DER (Graph's ``keyCredential.key``); only RSA keys of 2048 bits
    or more are accepted, as for our own signing keys."""
    if isinstance(data, x509.Certificate):
        cert = data
    else:
        raw = data.encode("ascii", "replace") if isinstance(data, str) else data
        try:
            if b"-----BEGIN CERTIFICATE-----" in raw:
                cert = x509.load_pem_x509_certificate(raw)
            else:
                try:
                    cert = x509.load_der_x509_certificate(raw)
                except ValueError:
                    cert = x509.load_der_x509_certificate(base64.b64decode(raw, validate=False))
        except (ValueError, binascii.Error):
            raise ValueError("The key is not an X.509 certificate (PEM or base64 DER).") from None
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
        raise ValueError("The certificate must hold an RSA public key of at least 2048 bits.")
    return Certificate(cert, cert.public_bytes(serialization.Encoding.DER))
