"""Token-signing keys and the key ring that rotates them.

A :class:`SigningKey` is an RSA-2048 key pair with the times that decide what it may do. A
:class:`KeyRing` holds every key that relying parties must still know about and says, for any
instant, which key signs and which keys verify.

Rotation protocol — *publish before sign, keep after retire*:

1. ``rotate(now)`` adds a **pending** key whose ``not_before_use`` is ``now + publish_delay``.
   It is published in the JWKS at once but signs nothing, so every relying party that caches our
   JWKS (Entra guidance: up to 24 h, refreshed on an unknown ``kid`` at most every 5 min) already
   holds it when the first token signed by it arrives.
2. From ``not_before_use`` on, the newest usable key is **active**: it alone signs. The choice is
   a pure function of the key times, so every replica that shares the keys picks the same key
   without coordination. ``promote(now)`` then stamps ``retired_at`` on the keys it superseded.
3. A **retired** key stays published and keeps validating for ``retention`` =
   ``max_token_lifetime + max_clock_skew`` after ``retired_at``, i.e. until every token it
   signed has expired even for a validator allowing the largest clock skew.
4. After that the key is **expired**: it leaves the JWKS and validates nothing; ``prune(now)``
   drops it so the store can delete it.

Emergencies break step 1 on purpose: ``revoke(kid)`` removes a compromised key at once (its
tokens fail immediately) and ``rotate(now, immediate=True)`` creates a key that signs at once.
``maintain(now)`` runs the whole schedule and reports what the store must persist.

Example::

    ring = KeyRing()
    changes = ring.maintain(now)          # first start: one immediately active key
    store.save(changes)                   # PEM via key.private_pem(); the store encrypts it
    token_key = ring.signing_key(now)
    jwks = ring.jwks(now)                 # {"keys": [...]} for /discovery/v2.0/keys
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cached_property
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from propylon.errors import ServiceUnavailable

__all__ = [
    "KeyRing",
    "KeyRingChanges",
    "KeyState",
    "SigningKey",
    "jwk_thumbprint",
]

RSA_KEY_SIZE = 2048
SIGNING_ALGORITHM = "RS256"
_CERT_VALIDITY = timedelta(days=3650)
_CERT_SUBJECT = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "propylon token signing")])


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_uint(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def _require_aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {moment!r}.")
    return moment


def jwk_thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """The RFC 7638 thumbprint of an RSA public key: base64url(SHA-256 of the canonical JWK).

    RFC 7638 §3.2: only the required members ``e``, ``kty``, ``n``, in lexicographic order, with
    no whitespace.
    """
    numbers = public_key.public_numbers()
    canonical = json.dumps(
        {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)},
        separators=(",", ":"),
        sort_keys=True,
    )
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def _self_signed_certificate(
    private_key: rsa.RSAPrivateKey, kid: str, created_at: datetime
) -> x509.Certificate:
    """A self-signed certificate for ``x5c``/``x5t``, as Entra publishes.

    Deterministic for a given key and creation time (serial derived from the kid, validity from
    ``created_at`` to the second, PKCS#1 v1.5 signature), so only the PEM needs storing and the
    ``x5t`` survives a restart.
    """
    not_before = created_at.astimezone(UTC).replace(microsecond=0)
    serial = int.from_bytes(hashlib.sha256(kid.encode("ascii")).digest()[:16], "big") >> 1
    return (
        x509.CertificateBuilder()
        .subject_name(_CERT_SUBJECT)
        .issuer_name(_CERT_SUBJECT)
        .public_key(private_key.public_key())
        .serial_number(serial or 1)
        .not_valid_before(not_before)
        .not_valid_after(not_before + _CERT_VALIDITY)
        .sign(private_key, hashes.SHA256())
    )


class KeyState(StrEnum):
    """Where a key is in its life; see the module docstring for the protocol."""

    PENDING = "pending"
    ACTIVE = "active"
    RETIRED = "retired"
    EXPIRED = "expired"


@dataclass(frozen=True)
class SigningKey:
    """One RSA signing key and its schedule.

    ``not_before_use`` is when the key may start signing (its publication time plus the publish
    delay); ``retired_at`` is when it stopped. Build with :meth:`generate`,
    :meth:`from_private_key` or :meth:`from_pem`; persist :meth:`private_pem` (encrypted by the
    store) with the three times.

    Example::

        key = SigningKey.generate(now)
        again = SigningKey.from_pem(key.private_pem(), created_at=key.created_at,
                                    not_before_use=key.not_before_use)
        assert again.kid == key.kid and again.x5t == key.x5t
    """

    kid: str
    private_key: rsa.RSAPrivateKey = field(repr=False, compare=False)
    created_at: datetime
    not_before_use: datetime
    retired_at: datetime | None = None
    certificate: x509.Certificate = field(repr=False, compare=False, kw_only=True)

    @classmethod
    def generate(cls, now: datetime, *, not_before_use: datetime | None = None) -> SigningKey:
        """A fresh RSA-2048 key created at ``now``, usable from ``not_before_use`` (default now)."""
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_SIZE)
        return cls.from_private_key(
            private_key,
            created_at=now,
            not_before_use=now if not_before_use is None else not_before_use,
        )

    @classmethod
    def from_private_key(
        cls,
        private_key: rsa.RSAPrivateKey,
        *,
        created_at: datetime,
        not_before_use: datetime,
        retired_at: datetime | None = None,
    ) -> SigningKey:
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise ValueError("A signing key must be an RSA private key.")
        if private_key.key_size < RSA_KEY_SIZE:
            raise ValueError(
                f"A signing key must have at least {RSA_KEY_SIZE} bits, not {private_key.key_size}."
            )
        _require_aware(created_at, "created_at")
        _require_aware(not_before_use, "not_before_use")
        if retired_at is not None:
            _require_aware(retired_at, "retired_at")
        kid = jwk_thumbprint(private_key.public_key())
        return cls(
            kid=kid,
            private_key=private_key,
            created_at=created_at,
            not_before_use=not_before_use,
            retired_at=retired_at,
            certificate=_self_signed_certificate(private_key, kid, created_at),
        )

    @classmethod
    def from_pem(
        cls,
        pem: bytes,
        *,
        created_at: datetime,
        not_before_use: datetime,
        retired_at: datetime | None = None,
    ) -> SigningKey:
        """Load a key written by :meth:`private_pem` (unencrypted PKCS#8)."""
        try:
            private_key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError("The signing key PEM cannot be read.") from exc
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise ValueError("A signing key must be an RSA private key.")
        return cls.from_private_key(
            private_key,
            created_at=created_at,
            not_before_use=not_before_use,
            retired_at=retired_at,
        )

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM; the store encrypts it at rest."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.private_key.public_key()

    @cached_property
    def x5t(self) -> str:
        """base64url SHA-1 thumbprint of the certificate (RFC 7515 §4.1.7), as Entra sends."""
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        return _b64url(hashlib.sha1(der, usedforsecurity=False).digest())

    @cached_property
    def _public_jwk(self) -> dict[str, Any]:
        numbers = self.public_key.public_numbers()
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": SIGNING_ALGORITHM,
            "kid": self.kid,
            "x5t": self.x5t,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
            # RFC 7517 §4.7: standard (not URL-safe) base64 DER.
            "x5c": [base64.b64encode(der).decode("ascii")],
        }

    def public_jwk(self) -> dict[str, Any]:
        """The public JWK as published in our JWKS (Entra's shape, with ``x5c``)."""
        jwk = dict(self._public_jwk)
        jwk["x5c"] = list(jwk["x5c"])
        return jwk

    def retired(self, at: datetime) -> SigningKey:
        return dataclasses.replace(self, retired_at=_require_aware(at, "retired_at"))


@dataclass(frozen=True)
class KeyRingChanges:
    """What :meth:`KeyRing.maintain` changed, for the store to persist."""

    added: tuple[SigningKey, ...] = ()
    retired: tuple[SigningKey, ...] = ()
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.retired or self.removed)


class KeyRing:
    """The signing keys of the built-in issuer; see the module docstring for the protocol.

    Thread-safe: readers see an immutable snapshot; writers swap it under a lock.

    ``max_token_lifetime`` must cover every token the keys sign (the token issuer checks this);
    ``max_clock_skew`` is the largest leeway a validator may apply (300 s, IdentityModel's
    default, is also the ceiling of :class:`~propylon.identity.validation.TokenValidator`).
    """

    def __init__(
        self,
        keys: Iterable[SigningKey] = (),
        *,
        publish_delay: timedelta = timedelta(hours=24),
        rotate_every: timedelta = timedelta(days=30),
        max_token_lifetime: timedelta = timedelta(minutes=90),
        max_clock_skew: timedelta = timedelta(minutes=5),
    ) -> None:
        if publish_delay < timedelta(0) or max_clock_skew < timedelta(0):
            raise ValueError("publish_delay and max_clock_skew must not be negative.")
        if rotate_every <= publish_delay:
            raise ValueError("rotate_every must be longer than publish_delay.")
        if max_token_lifetime <= timedelta(0):
            raise ValueError("max_token_lifetime must be positive.")
        self.publish_delay = publish_delay
        self.rotate_every = rotate_every
        self.max_token_lifetime = max_token_lifetime
        self.max_clock_skew = max_clock_skew
        self._lock = threading.Lock()
        self._keys: tuple[SigningKey, ...] = ()
        self.load(keys)

    @property
    def retention(self) -> timedelta:
        """How long a retired key keeps validating: every token it signed has expired by then."""
        return self.max_token_lifetime + self.max_clock_skew

    # -- reading ---------------------------------------------------------------------------

    def all_keys(self) -> tuple[SigningKey, ...]:
        """Every key held, newest first, whatever its state."""
        return self._keys

    def state(self, key: SigningKey, now: datetime) -> KeyState:
        """The key's state at ``now``; a usable key superseded by a newer one counts as retired."""
        if key.retired_at is not None and key.retired_at <= now:
            if now >= key.retired_at + self.retention:
                return KeyState.EXPIRED
            return KeyState.RETIRED
        if now < key.not_before_use:
            return KeyState.PENDING
        active = self._newest_usable(self._keys, now)
        return KeyState.ACTIVE if active is not None and active.kid == key.kid else KeyState.RETIRED

    def signing_key(self, now: datetime) -> SigningKey:
        """The key that signs at ``now``: the newest usable one.

        Raises ServiceUnavailable when no key is usable (call :meth:`maintain` at start-up).
        """
        key = self._newest_usable(self._keys, now)
        if key is None:
            raise ServiceUnavailable("The token issuer has no active signing key.")
        return key

    def verification_key(self, kid: str, now: datetime) -> SigningKey | None:
        """The key with this ``kid`` if it may validate tokens at ``now`` (not expired)."""
        for key in self._keys:
            if key.kid == kid:
                expired = key.retired_at is not None and now >= key.retired_at + self.retention
                return None if expired else key
        return None

    def published(self, now: datetime) -> tuple[SigningKey, ...]:
        """Pending, active and retired keys: what the JWKS lists and what validates."""
        return tuple(k for k in self._keys if self.state(k, now) is not KeyState.EXPIRED)

    def jwks(self, now: datetime) -> dict[str, Any]:
        """The JWKS document (RFC 7517 §5) for the discovery ``jwks_uri``."""
        return {"keys": [key.public_jwk() for key in self.published(now)]}

    # -- changing --------------------------------------------------------------------------

    def load(self, keys: Iterable[SigningKey]) -> None:
        """Replace every key, e.g. after the store's change feed reported new ones."""
        snapshot = self._sorted(keys)
        with self._lock:
            self._keys = snapshot

    def add(self, key: SigningKey) -> None:
        with self._lock:
            others = [k for k in self._keys if k.kid != key.kid]
            self._keys = self._sorted([*others, key])

    def revoke(self, kid: str) -> bool:
        """Emergency: forget a (compromised) key now; every token it signed fails at once."""
        with self._lock:
            kept = tuple(k for k in self._keys if k.kid != kid)
            found = len(kept) != len(self._keys)
            self._keys = kept
        return found

    def rotate(self, now: datetime, *, immediate: bool = False) -> SigningKey:
        """Create and hold a new key, pending until ``now + publish_delay``.

        ``immediate=True`` (first start, or after :meth:`revoke`) makes it sign at once.
        """
        _require_aware(now, "now")
        start = now if immediate else now + self.publish_delay
        key = SigningKey.generate(now, not_before_use=start)
        self.add(key)
        return key

    def promote(self, now: datetime) -> tuple[SigningKey, ...]:
        """Stamp ``retired_at = now`` on usable keys superseded by a newer usable key."""
        with self._lock:
            active = self._newest_usable(self._keys, now)
            if active is None:
                return ()
            retired: list[SigningKey] = []
            updated: list[SigningKey] = []
            for key in self._keys:
                if key.kid != active.kid and self._usable(key, now):
                    retired.append(key.retired(now))
                    updated.append(retired[-1])
                else:
                    updated.append(key)
            self._keys = self._sorted(updated)
        return tuple(retired)

    def prune(self, now: datetime) -> tuple[str, ...]:
        """Drop expired keys; returns their kids so the store can delete them."""
        with self._lock:
            expired = [k.kid for k in self._keys if self.state(k, now) is KeyState.EXPIRED]
            self._keys = tuple(k for k in self._keys if k.kid not in expired)
        return tuple(expired)

    def maintain(self, now: datetime) -> KeyRingChanges:
        """Run the schedule: bootstrap, rotate when due, promote, prune. Idempotent.

        Call at start-up and periodically (e.g. hourly) on one replica; persist the changes.
        """
        _require_aware(now, "now")
        added: list[SigningKey] = []
        active = self._newest_usable(self._keys, now)
        if active is None:
            added.append(self.rotate(now, immediate=True))
        else:
            pending = [k for k in self._keys if self.state(k, now) is KeyState.PENDING]
            if not pending and now >= active.not_before_use + self.rotate_every - (
                self.publish_delay
            ):
                added.append(self.rotate(now))
        retired = self.promote(now)
        removed = self.prune(now)
        return KeyRingChanges(added=tuple(added), retired=retired, removed=removed)

    # -- internals -------------------------------------------------------------------------

    @staticmethod
    def _usable(key: SigningKey, now: datetime) -> bool:
        return key.not_before_use <= now and (key.retired_at is None or key.retired_at > now)

    @classmethod
    def _newest_usable(cls, keys: Iterable[SigningKey], now: datetime) -> SigningKey | None:
        usable = [k for k in keys if cls._usable(k, now)]
        return max(usable, key=lambda k: (k.not_before_use, k.created_at), default=None)

    @staticmethod
    def _sorted(keys: Iterable[SigningKey]) -> tuple[SigningKey, ...]:
        return tuple(sorted(keys, key=lambda k: (k.not_before_use, k.created_at), reverse=True))
