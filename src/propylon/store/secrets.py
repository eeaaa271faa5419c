"""Secrets at rest: sealing with the master key and slow salted hashes.

Two kinds of secret, two treatments (DESIGN "Secrets"):

* retrievable secrets (endpoint keys, signing private keys) are sealed with AES-256-GCM under the
  master key; the slot name is the associated data, so a ciphertext moved to another slot fails;
* verify-only secrets (passwords, client secrets, refresh tokens) are stored as scrypt hashes
  (RFC 7914) with a random salt and compared in constant time.

Example::

    sealer = Sealer(MasterKey.generate().material)
    blob = sealer.seal("endpoint/x/primary", b"s3cret")
    assert sealer.open("endpoint/x/primary", blob) == b"s3cret"
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from propylon.errors import ConfigurationError

__all__ = ["MasterKey", "Sealer", "UnsealError", "fast_hash", "hash_secret", "verify_secret"]

_NONCE_BYTES = 12
_VERSION = b"\x01"
# scrypt cost: ~50 ms and 16 MiB per hash on a laptop core; slow enough against offline guessing,
# cheap enough for a token endpoint that is rate limited anyway.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


class UnsealError(Exception):
    """A ciphertext did not open: wrong master key, wrong slot, or tampered data."""


@dataclass(frozen=True)
class MasterKey:
    material: bytes

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(AESGCM.generate_key(bit_length=256))

    @classmethod
    def parse(cls, text: str, *, source: str) -> MasterKey:
        try:
            material = base64.urlsafe_b64decode(text.strip().encode() + b"==")
        except ValueError:
            raise ConfigurationError(f"{source} is not base64.") from None
        if len(material) != 32:
            raise ConfigurationError(f"{source} must hold 32 bytes (base64), not {len(material)}.")
        return cls(material)

    def encoded(self) -> str:
        return base64.urlsafe_b64encode(self.material).decode().rstrip("=")

    @classmethod
    def load_or_create(cls, path: Path, env_value: str | None) -> MasterKey:
        """The key from ``PROPYLON_MASTER_KEY`` if set, else ``path`` (created 0600 if absent)."""
        if env_value:
            return cls.parse(env_value, source="PROPYLON_MASTER_KEY")
        if path.exists():
            return cls.parse(path.read_text(), source=str(path))
        key = cls.generate()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key.encoded() + "\n")
        return key


class Sealer:
    """AES-256-GCM sealing bound to a slot name (associated data)."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, slot: str, plaintext: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, slot.encode())

    def open(self, slot: str, blob: bytes) -> bytes:
        if len(blob) < 1 + _NONCE_BYTES or blob[:1] != _VERSION:
            raise UnsealError(f"secret {slot!r} has an unknown format")
        nonce, ciphertext = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, ciphertext, slot.encode())
        except InvalidTag:
            raise UnsealError(f"secret {slot!r} does not open with this master key") from None


def hash_secret(secret: str) -> str:
    """A self-describing scrypt hash: ``scrypt$N$r$p$salt$hash`` (base64)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        secret.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    enc = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${enc(salt).decode()}${enc(digest).decode()}"


def verify_secret(secret: str, stored: str) -> bool:
    """Constant-time check of ``secret`` against a :func:`hash_secret` value."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(
        secret.encode(),
        salt=base64.b64decode(salt),
        n=int(n),
        r=int(r),
        p=int(p),
        dklen=32,
    )
    return hmac.compare_digest(candidate, base64.b64decode(digest))


def fast_hash(value: str) -> str:
    """SHA-256 hex of a high-entropy random token (refresh token, device code): a lookup key.

    A slow hash adds nothing for 256-bit random values and would make lookups impossible.
    """
    return hashlib.sha256(value.encode()).hexdigest()
