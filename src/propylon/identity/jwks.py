"""Where a validator finds the public keys of a trusted issuer.

A :class:`JwksSource` answers "which key has this ``kid``?" from memory and says whether a
refresh is worth trying; only :meth:`JwksSource.refresh` may do I/O. So the validator's hot path
never blocks on the network: it refreshes only for an unknown ``kid`` (or a key set older than
its TTL), and no more often than the source's rate limit allows.

- :class:`StaticJwks` serves our own :class:`~propylon.identity.keys.KeyRing`: always current,
  no I/O, never asks for a refresh.
- :class:`RemoteJwks` serves an external issuer from its ``jwks_uri`` (or its OpenID discovery
  document) over httpx, following Entra's signing-key-rollover guidance: keys cached by ``kid``
  with a 24 h TTL, a synchronous refresh on an unknown ``kid`` no more than every 5 minutes, and
  the last good keys kept when a fetch fails.

Keys come only from configured URLs, never from a token's ``jku``/``x5u``/``x5c``/``jwk``
headers (RFC 8725 §3.10). This is the only module of ``propylon.identity`` that uses httpx; its
exceptions are converted to a failed refresh here.

Example::

    entra = RemoteJwks.from_discovery(
        "https://login.microsoftonline.com/{tid}/v2.0/.well-known/openid-configuration")
    found = entra.lookup(kid, now)
    if found.key is None and found.refresh:
        entra.refresh()
        found = entra.lookup(kid, now)
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from propylon.identity.keys import KeyRing, SigningKey

__all__ = [
    "JwksSource",
    "KeyLookup",
    "RemoteJwks",
    "StaticJwks",
    "VerificationKey",
    "parse_jwks",
]

_log = logging.getLogger(__name__)

_MIN_RSA_BITS = 2048
_MAX_DOCUMENT_BYTES = 1 << 20


@dataclass(frozen=True)
class VerificationKey:
    """A public key a trusted issuer signs with, as published in its JWKS.

    ``alg`` and ``issuer`` are the JWK's optional members: when present, a token must use that
    algorithm and (Entra's multi-tenant rule) carry that ``iss``, ``{tenantid}`` substituted.
    """

    kid: str
    kty: str
    public_key: PublicKeyTypes = field(repr=False, compare=False)
    alg: str | None = None
    issuer: str | None = None

    @classmethod
    def from_signing_key(cls, key: SigningKey) -> VerificationKey:
        return cls(kid=key.kid, kty="RSA", public_key=key.public_key, alg="RS256")


class KeyLookup(NamedTuple):
    """The answer of :meth:`JwksSource.lookup`.

    ``refresh`` is True when calling :meth:`JwksSource.refresh` may change the answer (the kid is
    unknown or the cache is stale) *and* the source's rate limit allows a fetch now.
    """

    key: VerificationKey | None
    refresh: bool


class JwksSource(Protocol):
    """The keys of one trusted issuer."""

    def lookup(self, kid: str, now: datetime) -> KeyLookup:
        """Find the key by ``kid`` in memory. Never does I/O."""
        ...

    def refresh(self) -> bool:
        """Fetch the key set now if the rate limit allows; True when a fetch succeeded.

        May block on I/O; from async code run it in a thread. Never raises for a failed fetch:
        the last good keys stay in use.
        """
        ...


class StaticJwks:
    """Our own key ring as a key source: always current, no I/O.

    Pending and retired-but-not-expired keys validate; expired keys don't (see
    :mod:`propylon.identity.keys`).
    """

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring
        self._converted: dict[str, VerificationKey] = {}

    def lookup(self, kid: str, now: datetime) -> KeyLookup:
        key = self.keyring.verification_key(kid, now)
        if key is None:
            return KeyLookup(None, refresh=False)
        converted = self._converted.get(kid)
        if converted is None:
            converted = VerificationKey.from_signing_key(key)
            self._converted[kid] = converted
        return KeyLookup(converted, refresh=False)

    def refresh(self) -> bool:
        return False


def parse_jwks(document: object) -> dict[str, VerificationKey]:
    """The usable signing keys of a JWKS document, by ``kid``.

    Skips (and logs) entries that are not signature keys, carry private material, lack a
    ``kid``, are RSA below 2048 bits, or cannot be read; one bad entry never drops the others.
    Raises ValueError when the document is not a JWKS at all.
    """
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document: no 'keys' array")
    keys: dict[str, VerificationKey] = {}
    for entry in document["keys"]:
        parsed = _parse_jwk(entry)
        if parsed is not None and parsed.kid not in keys:
            keys[parsed.kid] = parsed
    return keys


def _parse_jwk(entry: object) -> VerificationKey | None:
    if not isinstance(entry, Mapping):
        return None
    kid, kty, alg, issuer = (entry.get(name) for name in ("kid", "kty", "alg", "issuer"))
    if not (isinstance(kid, str) and kid and isinstance(kty, str)):
        _log.warning("jwks: skipping a key without kid or kty")
        return None
    # Encryption keys, private keys and symmetric secrets never verify tokens.
    if entry.get("use", "sig") != "sig" or "d" in entry or kty == "oct":
        _log.warning("jwks: skipping key %r (not a public signature key)", kid)
        return None
    try:
        public_key = jwt.PyJWK(dict(entry)).key
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        _log.warning("jwks: skipping key %r: %s", kid, exc)
        return None
    weak = isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < _MIN_RSA_BITS
    if weak or (alg is not None and not isinstance(alg, str)):
        _log.warning("jwks: skipping key %r: weak RSA key or bad alg", kid)
        return None
    return VerificationKey(
        kid=kid,
        kty=kty,
        public_key=public_key,
        alg=alg,
        issuer=issuer if isinstance(issuer, str) else None,
    )


class RemoteJwks:
    """The keys of an external issuer, fetched from its ``jwks_uri`` and cached.

    - keys are cached by ``kid``; a successful fetch replaces the whole set (a key removed
      upstream stops validating);
    - the set is stale after ``ttl`` (24 h); a stale set still answers but asks for a refresh;
    - refreshes (successful or not) are at least ``min_refresh_interval`` (5 min) apart, so a
      flood of tokens with made-up ``kid`` values costs one fetch per interval;
    - a failed fetch keeps the last good keys.

    Pass ``client`` to share an ``httpx.Client`` (proxies, CA bundle); otherwise one is created
    lazily and closed by :meth:`close`. ``clock`` is monotonic seconds, for tests.
    """

    def __init__(
        self,
        jwks_uri: str | None = None,
        *,
        discovery_url: str | None = None,
        client: httpx.Client | None = None,
        ttl: timedelta = timedelta(hours=24),
        min_refresh_interval: timedelta = timedelta(minutes=5),
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (jwks_uri is None) == (discovery_url is None):
            raise ValueError("Give exactly one of jwks_uri and discovery_url.")
        self.jwks_uri = jwks_uri
        self.discovery_url = discovery_url
        self._client = client
        self._owns_client = client is None
        self._ttl_s = ttl.total_seconds()
        self._interval_s = min_refresh_interval.total_seconds()
        self._timeout_s = timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, VerificationKey] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None

    @classmethod
    def from_discovery(cls, discovery_url: str, **kwargs: Any) -> RemoteJwks:
        """Find ``jwks_uri`` in an OpenID discovery document (fetched on first refresh)."""
        return cls(discovery_url=discovery_url, **kwargs)

    def lookup(self, kid: str, now: datetime) -> KeyLookup:
        key = self._keys.get(kid)
        stale = self._fetched_at is None or self._clock() - self._fetched_at >= self._ttl_s
        return KeyLookup(key, refresh=(key is None or stale) and self._may_attempt())

    def refresh(self) -> bool:
        with self._lock:
            # Another thread may have fetched while this one waited for the lock.
            if not self._may_attempt():
                return False
            self._attempted_at = self._clock()
            try:
                keys = parse_jwks(self._get_json(self._resolve_jwks_uri()))
            except (httpx.HTTPError, ValueError) as exc:
                if self.discovery_url is not None:
                    # The jwks_uri may have moved: read the discovery document again next time.
                    self.jwks_uri = None
                _log.warning(
                    "jwks: fetch from %s failed, keeping %d cached keys: %s",
                    self.jwks_uri or self.discovery_url,
                    len(self._keys),
                    exc,
                )
                return False
            if not keys:
                _log.warning("jwks: %s lists no usable keys; keeping cached keys", self.jwks_uri)
                return False
            self._keys = keys
            self._fetched_at = self._clock()
            return True

    def close(self) -> None:
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def _may_attempt(self) -> bool:
        return self._attempted_at is None or self._clock() - self._attempted_at >= self._interval_s

    def _resolve_jwks_uri(self) -> str:
        if self.jwks_uri is None and self.discovery_url is not None:
            discovery = self._get_json(self.discovery_url)
            uri = discovery.get("jwks_uri") if isinstance(discovery, Mapping) else None
            if not isinstance(uri, str) or not uri:
                raise ValueError("the discovery document has no jwks_uri")
            self.jwks_uri = uri
        if self.jwks_uri is None:
            raise ValueError("no jwks_uri configured")
        return self.jwks_uri

    def _get_json(self, url: str) -> Any:
        if self._client is None:
            self._client = httpx.Client(timeout=self._timeout_s)
        with self._client.stream(
            "GET", url, headers={"Accept": "application/json"}, timeout=self._timeout_s
        ) as response:
            response.raise_for_status()
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > _MAX_DOCUMENT_BYTES:
                    raise ValueError(f"{url} answered with more than {_MAX_DOCUMENT_BYTES} bytes")
        return json.loads(bytes(body))
