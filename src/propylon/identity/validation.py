"""Validating bearer tokens: identity-provider access tokens and aml_tokens.

Pure functions over data plus the key lookups of :mod:`propylon.identity.jwks`; no web framework.
The steps follow reference §3.6 (Entra: how a resource server validates) and RFC 8725 (JWT BCP),
and every rejection is an :class:`~propylon.identity.trust.InvalidToken` (a 401) whose
:class:`RejectReason` is for the server log and whose message is for the client:

1. compact JWS only: three base64url segments, JSON objects without duplicate members, at most
   32 KiB (RFC 7515 §3.1; JWE and JSON serialisation are refused);
2. header: ``alg`` never ``none``; no ``crit`` (we understand no extensions, RFC 7515 §4.1.11);
   no ``jku``/``x5u``/``x5c``/``jwk`` (keys never come from the token, RFC 8725 §3.10); ``typ``
   says which kind of token this is (RFC 8725 §3.11);
3. issuer: the unverified ``iss`` selects a :class:`TrustedIssuer` exactly (or through Entra's
   ``{tenantid}`` template, whose segment must equal ``tid``); everything else is untrusted;
4. algorithm: the header ``alg`` must be in that issuer's allow-list, which can hold asymmetric
   algorithms only — the RS256→HS256 key-confusion attack has nowhere to go;
5. key: ``kid`` is only a dictionary key into that issuer's JWKS; an unknown ``kid`` triggers at
   most one rate-limited refresh; the JWK's ``kty``/``alg`` must fit the header ``alg`` and its
   ``issuer`` (if any) must match ``iss``;
6. signature, verified by PyJWT's algorithm implementation;
7. claims, with a leeway (default 60 s, at most 300 s) on ``exp``/``nbf``/``iat``: ``exp`` is
   required; ``aud`` must be one the resource accepts *and* the issuer is trusted for
   (``https://ml.azure.com`` and ``https://ml.azure.com/`` are the same); ``tid`` and ``oid``
   are required and ``tid`` must be the issuer's tenant;
8. the directory: ``principal_is_active(tid, oid)`` refuses disabled or deleted principals.

Time claims are checked here rather than by ``jwt.decode`` because PyJWT reads the wall clock
and cannot be given ``now``, which key-rotation and expiry tests need.

Example::

    ours = TrustedIssuer(IssuerUrl(base).template, StaticJwks(ring),
                         audiences=("https://ml.azure.com", "https://management.azure.com"),
                         endpoint_tokens=True)
    validator = TokenValidator([ours], principal_is_active=directory.is_active)
    who = validator.validate(bearer, audiences=("https://ml.azure.com",))
    authz.check(who.tid, who.oid, who.groups, action, scope)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import jwt

from propylon.errors import ConfigurationError
from propylon.identity.jwks import VerificationKey
from propylon.identity.tokens import ENDPOINT_TOKEN_TYPE, ENDPOINT_TOKEN_USE, endpoint_audience
from propylon.identity.trust import (
    ASYMMETRIC_ALGORITHMS,
    TENANT_PLACEHOLDER,
    InvalidToken,
    RejectReason,
    TrustedIssuer,
    ValidatedEndpointToken,
    ValidatedToken,
)

__all__ = ["TokenValidator"]

MAX_LEEWAY_S = 300
MAX_TOKEN_BYTES = 32 * 1024

_KEY_HEADERS = ("jku", "x5u", "x5c", "jwk")
_IDENTITY_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


PrincipalCheck = Callable[[str, str], bool]


@dataclass(frozen=True)
class _Candidate:
    """A token that passed the structural, header and issuer checks; signature not yet verified."""

    header: Mapping[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes
    issuer: TrustedIssuer
    iss: str
    tid: str
    kid: str
    alg: str


class TokenValidator:
    """Validates bearer tokens against a set of trusted issuers; see the module docstring.

    Thread-safe and usable from async code: :meth:`validate` does I/O only to refresh an
    external issuer's JWKS for an unknown ``kid`` (rate-limited); :meth:`validate_async` moves
    that refresh to a worker thread.
    """

    def __init__(
        self,
        trusted_issuers: Iterable[TrustedIssuer],
        *,
        leeway_s: int = 60,
        principal_is_active: PrincipalCheck | None = None,
    ) -> None:
        if not 0 <= leeway_s <= MAX_LEEWAY_S:
            raise ConfigurationError(
                f"Token clock-skew leeway must be 0–{MAX_LEEWAY_S} s, not {leeway_s}."
            )
        self.leeway_s = leeway_s
        self.principal_is_active = principal_is_active
        self._exact: dict[str, TrustedIssuer] = {}
        self._templates: list[TrustedIssuer] = []
        for trusted in trusted_issuers:
            if trusted.is_template:
                self._templates.append(trusted)
            elif self._exact.setdefault(trusted.issuer, trusted) is not trusted:
                raise ConfigurationError(f"Issuer {trusted.issuer} is trusted twice.")

    # -- identity tokens -------------------------------------------------------------------

    def validate(
        self, token: str, *, audiences: Collection[str], now: datetime | None = None
    ) -> ValidatedToken:
        """Validate an identity-provider access token for a resource accepting ``audiences``.

        Raises InvalidToken (401) with the reason.
        """
        moment = _now(now)
        candidate = self._inspect(token, endpoint_token=False)
        key = self._resolve_key(candidate, moment)
        return self._accept_identity(candidate, key, audiences, moment)

    async def validate_async(
        self, token: str, *, audiences: Collection[str], now: datetime | None = None
    ) -> ValidatedToken:
        """:meth:`validate` for the event loop: a JWKS refresh runs in a worker thread."""
        moment = _now(now)
        candidate = self._inspect(token, endpoint_token=False)
        key = await self._resolve_key_async(candidate, moment)
        return self._accept_identity(candidate, key, audiences, moment)

    # -- aml_tokens ------------------------------------------------------------------------

    def validate_endpoint_token(
        self,
        token: str,
        endpoint_id: str,
        *,
        endpoint_uid: str | None = None,
        now: datetime | None = None,
    ) -> ValidatedEndpointToken:
        """Validate an aml_token for the endpoint with ARM id ``endpoint_id``.

        Only issuers marked ``endpoint_tokens`` (our own) are considered. When ``endpoint_uid``
        is given, a token minted for an earlier endpoint of the same name is refused.
        """
        moment = _now(now)
        candidate = self._inspect(token, endpoint_token=True)
        key = self._resolve_key(candidate, moment)
        return self._accept_endpoint(candidate, key, endpoint_id, endpoint_uid, moment)

    async def validate_endpoint_token_async(
        self,
        token: str,
        endpoint_id: str,
        *,
        endpoint_uid: str | None = None,
        now: datetime | None = None,
    ) -> ValidatedEndpointToken:
        moment = _now(now)
        candidate = self._inspect(token, endpoint_token=True)
        key = await self._resolve_key_async(candidate, moment)
        return self._accept_endpoint(candidate, key, endpoint_id, endpoint_uid, moment)

    # -- steps 1–4: structure, header, issuer, algorithm -----------------------------------

    def _inspect(self, token: object, *, endpoint_token: bool) -> _Candidate:
        if not isinstance(token, str) or not token:
            raise InvalidToken(RejectReason.MALFORMED, "empty or not a string")
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken(RejectReason.MALFORMED, f"longer than {MAX_TOKEN_BYTES} bytes")
        segments = token.split(".")
        if len(segments) != 3:
            kind = " (a JWE?)" if len(segments) == 5 else ""
            raise InvalidToken(RejectReason.MALFORMED, f"{len(segments)} segments, not 3{kind}")
        header = _decode_json_segment(segments[0], "header")
        self._check_header(header, endpoint_token=endpoint_token)
        claims = _decode_json_segment(segments[1], "payload")
        signature = _b64url_decode(segments[2], "signature")
        if not signature:
            raise InvalidToken(RejectReason.BAD_SIGNATURE, "empty signature")

        token_use = claims.get("token_use")
        if endpoint_token and token_use != ENDPOINT_TOKEN_USE:
            raise InvalidToken(RejectReason.WRONG_TOKEN_TYPE, f"token_use is {token_use!r}")
        if not endpoint_token and token_use is not None:
            raise InvalidToken(RejectReason.WRONG_TOKEN_TYPE, f"token_use is {token_use!r}")

        iss = claims.get("iss")
        if not isinstance(iss, str) or not iss:
            raise InvalidToken(RejectReason.MISSING_CLAIM, "no iss")
        trusted, tid = self._select_issuer(iss, claims)
        if endpoint_token and not trusted.endpoint_tokens:
            raise InvalidToken(
                RejectReason.UNTRUSTED_ISSUER, f"{iss} is not trusted for aml_tokens"
            )

        alg = header["alg"]
        if alg not in trusted.algorithms:
            raise InvalidToken(
                RejectReason.ALG_NOT_ALLOWED, f"alg {alg!r} not in {trusted.algorithms}"
            )
        kid = header.get("kid", header.get("x5t"))
        if not isinstance(kid, str) or not kid:
            raise InvalidToken(RejectReason.MISSING_KID, "no kid or x5t in the header")
        return _Candidate(
            header=MappingProxyType(header),
            claims=claims,
            signing_input=f"{segments[0]}.{segments[1]}".encode("ascii"),
            signature=signature,
            issuer=trusted,
            iss=iss,
            tid=tid,
            kid=kid,
            alg=alg,
        )

    @staticmethod
    def _check_header(header: Mapping[str, Any], *, endpoint_token: bool) -> None:
        alg = header.get("alg")
        if not isinstance(alg, str) or not alg:
            raise InvalidToken(RejectReason.MALFORMED, "no alg in the header")
        if alg.lower() == "none":
            raise InvalidToken(RejectReason.ALG_NONE, f"alg {alg!r}")
        injected = [name for name in _KEY_HEADERS if name in header]
        if injected:
            raise InvalidToken(
                RejectReason.HEADER_KEY_INJECTION, f"key header(s) {injected} in the token"
            )
        if "crit" in header:
            raise InvalidToken(RejectReason.CRIT_UNSUPPORTED, f"crit {header['crit']!r}")
        typ = header.get("typ")
        if typ is not None and not isinstance(typ, str):
            raise InvalidToken(RejectReason.MALFORMED, "typ is not a string")
        if endpoint_token:
            if typ != ENDPOINT_TOKEN_TYPE:
                raise InvalidToken(RejectReason.WRONG_TOKEN_TYPE, f"typ {typ!r}, not aml_token")
        elif typ is not None and typ.lower() not in _IDENTITY_TYPES:
            raise InvalidToken(RejectReason.WRONG_TOKEN_TYPE, f"typ {typ!r}")

    def _select_issuer(self, iss: str, claims: Mapping[str, Any]) -> tuple[TrustedIssuer, str]:
        exact = self._exact.get(iss)
        if exact is not None:
            tid = self._tenant_of(exact, claims)
            if exact.tenant_id is not None and tid != exact.tenant_id:
                raise InvalidToken(
                    RejectReason.TENANT_MISMATCH, f"tid {tid!r} but {iss} is {exact.tenant_id!r}"
                )
            return exact, tid
        for template in self._templates:
            segment = template.tenant_segment(iss)
            if segment is None:
                continue
            tid = self._tenant_of(template, claims)
            # Entra: the issuer's tenant segment must equal tid (reference §3.3).
            if segment != tid:
                raise InvalidToken(
                    RejectReason.TENANT_MISMATCH, f"iss tenant {segment!r} but tid {tid!r}"
                )
            if template.tenant_id is not None and tid != template.tenant_id:
                raise InvalidToken(
                    RejectReason.TENANT_MISMATCH, f"tenant {tid!r} is not {template.tenant_id!r}"
                )
            return template, tid
        raise InvalidToken(RejectReason.UNTRUSTED_ISSUER, f"iss {iss!r} is not trusted")

    @staticmethod
    def _tenant_of(trusted: TrustedIssuer, claims: Mapping[str, Any]) -> str:
        name = trusted.claim_mapping.tid
        if name is None:
            return trusted.tenant_id or ""
        tid = claims.get(name)
        if tid is None:
            raise InvalidToken(RejectReason.MISSING_CLAIM, f"no {name}")
        if not isinstance(tid, str) or not tid:
            raise InvalidToken(RejectReason.INVALID_CLAIM, f"{name} is not a string")
        return tid

    # -- step 5: the key -------------------------------------------------------------------

    def _resolve_key(self, candidate: _Candidate, now: datetime) -> VerificationKey:
        source = candidate.issuer.jwks
        found = source.lookup(candidate.kid, now)
        if found.refresh:
            source.refresh()
            found = source.lookup(candidate.kid, now)
        return self._check_key(candidate, found.key)

    async def _resolve_key_async(self, candidate: _Candidate, now: datetime) -> VerificationKey:
        source = candidate.issuer.jwks
        found = source.lookup(candidate.kid, now)
        if found.refresh:
            await asyncio.to_thread(source.refresh)
            found = source.lookup(candidate.kid, now)
        return self._check_key(candidate, found.key)

    @staticmethod
    def _check_key(candidate: _Candidate, key: VerificationKey | None) -> VerificationKey:
        if key is None:
            raise InvalidToken(
                RejectReason.UNKNOWN_KID,
                f"kid {candidate.kid[:80]!r} is not a key of {candidate.iss}",
            )
        family = ASYMMETRIC_ALGORITHMS[candidate.alg]
        if key.kty != family or (key.alg is not None and key.alg != candidate.alg):
            raise InvalidToken(
                RejectReason.KEY_ALGORITHM_MISMATCH,
                f"alg {candidate.alg} with a {key.kty} key for {key.alg or 'any alg'}",
            )
        if key.issuer is not None and key.issuer.replace(TENANT_PLACEHOLDER, candidate.tid) != (
            candidate.iss
        ):
            raise InvalidToken(
                RejectReason.KEY_ISSUER_MISMATCH, f"key issuer {key.issuer} ≠ {candidate.iss}"
            )
        return key

    # -- steps 6–8: signature, claims, directory ------------------------------------------

    def _verify(self, candidate: _Candidate, key: VerificationKey, now: datetime) -> int:
        algorithm = jwt.get_algorithm_by_name(candidate.alg)
        try:
            prepared = algorithm.prepare_key(key.public_key)
            valid = algorithm.verify(candidate.signing_input, prepared, candidate.signature)
        except (jwt.InvalidKeyError, TypeError, ValueError) as exc:
            raise InvalidToken(RejectReason.KEY_ALGORITHM_MISMATCH, str(exc)) from None
        if not valid:
            raise InvalidToken(RejectReason.BAD_SIGNATURE, f"signature by kid {key.kid} invalid")
        return self._check_times(candidate.claims, now)

    def _check_times(self, claims: Mapping[str, Any], now: datetime) -> int:
        moment = now.timestamp()
        exp = _numeric_claim(claims, "exp", required=True)
        if exp is None or moment >= exp + self.leeway_s:
            raise InvalidToken(RejectReason.EXPIRED, f"exp {exp} at {int(moment)}")
        for name in ("nbf", "iat"):
            value = _numeric_claim(claims, name, required=False)
            if value is not None and value > moment + self.leeway_s:
                raise InvalidToken(RejectReason.NOT_YET_VALID, f"{name} {value} at {int(moment)}")
        return int(exp)

    def _accept_identity(
        self,
        candidate: _Candidate,
        key: VerificationKey,
        audiences: Collection[str],
        now: datetime,
    ) -> ValidatedToken:
        expires_at = self._verify(candidate, key, now)
        claims = candidate.claims
        trusted = candidate.issuer
        if isinstance(audiences, str):
            audiences = (audiences,)
        accepted = _normalized(audiences) & _normalized(trusted.audiences)
        if not _audience_matches(claims, accepted):
            raise InvalidToken(
                RejectReason.WRONG_AUDIENCE, f"aud {claims.get('aud')!r} not in {sorted(accepted)}"
            )
        mapping = trusted.claim_mapping
        oid = claims.get(mapping.oid)
        if oid is None:
            raise InvalidToken(RejectReason.MISSING_CLAIM, f"no {mapping.oid}")
        if not isinstance(oid, str) or not oid:
            raise InvalidToken(RejectReason.INVALID_CLAIM, f"{mapping.oid} is not a string")
        groups, overage = _groups(claims, mapping.groups)
        appid = next((claims[n] for n in mapping.app_id if isinstance(claims.get(n), str)), None)
        idtyp = claims.get(mapping.idtyp)
        if idtyp not in ("user", "app"):
            # Entra emits idtyp only on request; delegated (user) tokens are those with scp.
            idtyp = "user" if "scp" in claims else "app"
        self._check_principal(candidate.tid, oid)
        return ValidatedToken(
            oid=oid,
            tid=candidate.tid,
            appid=appid,
            idtyp=idtyp,
            groups=groups,
            groups_overage=overage,
            issuer=candidate.iss,
            expires_at=expires_at,
            claims=MappingProxyType(claims),
        )

    def _accept_endpoint(
        self,
        candidate: _Candidate,
        key: VerificationKey,
        endpoint_id: str,
        endpoint_uid: str | None,
        now: datetime,
    ) -> ValidatedEndpointToken:
        expires_at = self._verify(candidate, key, now)
        claims = candidate.claims
        expected = endpoint_audience(endpoint_id)
        if claims.get("aud") != expected:
            raise InvalidToken(
                RejectReason.WRONG_ENDPOINT, f"aud {claims.get('aud')!r}, expected {expected!r}"
            )
        if endpoint_uid is not None and claims.get("endpoint_uid") != endpoint_uid:
            raise InvalidToken(
                RejectReason.WRONG_ENDPOINT,
                f"endpoint_uid {claims.get('endpoint_uid')!r}, expected {endpoint_uid!r}",
            )
        oid = claims.get("oid")
        if oid is not None and not isinstance(oid, str):
            raise InvalidToken(RejectReason.INVALID_CLAIM, "oid is not a string")
        if oid is not None and claims.get("requester_tid") is None:
            # the requester is one of our principals: disabling or deleting it ends its tokens
            self._check_principal(candidate.tid, oid)
        return ValidatedEndpointToken(
            audience=expected,
            tid=candidate.tid,
            oid=oid,
            expires_at=expires_at,
            claims=MappingProxyType(claims),
        )

    def _check_principal(self, tid: str, oid: str) -> None:
        if self.principal_is_active is not None and not self.principal_is_active(tid, oid):
            raise InvalidToken(
                RejectReason.PRINCIPAL_INACTIVE, f"principal {oid} in {tid} is not active"
            )


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime.")
    return now


def _b64url_decode(segment: str, what: str) -> bytes:
    # Strict base64url without padding (RFC 7515 §2): the stdlib decoder would skip
    # characters outside the alphabet.
    if not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise InvalidToken(RejectReason.MALFORMED, f"{what} is not base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken(RejectReason.MALFORMED, f"{what} is not base64url") from None


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            # RFC 7515 §5.2 / RFC 8725: parsers must reject duplicate member names.
            raise ValueError(f"duplicate member {name!r}")
        result[name] = value
    return result


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _decode_json_segment(segment: str, what: str) -> dict[str, Any]:
    raw = _b64url_decode(segment, what)
    try:
        value = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidToken(RejectReason.MALFORMED, f"{what}: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidToken(RejectReason.MALFORMED, f"{what} is not a JSON object")
    return value


def _numeric_claim(claims: Mapping[str, Any], name: str, *, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise InvalidToken(RejectReason.MISSING_CLAIM, f"no {name}")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(RejectReason.INVALID_CLAIM, f"{name} is not a NumericDate")
    return float(value)


def _normalize_audience(audience: str) -> str:
    # reference §3.2: v1 aud is the resource URI as requested, with or without the final slash.
    if "://" in audience and audience.endswith("/"):
        return audience[:-1]
    return audience


def _normalized(audiences: Iterable[str]) -> set[str]:
    return {_normalize_audience(a) for a in audiences}


def _audience_matches(claims: Mapping[str, Any], accepted: set[str]) -> bool:
    aud = claims.get("aud")
    if aud is None:
        raise InvalidToken(RejectReason.MISSING_CLAIM, "no aud")
    values = [aud] if isinstance(aud, str) else aud
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InvalidToken(RejectReason.INVALID_CLAIM, "aud is not a string or strings")
    return any(_normalize_audience(v) in accepted for v in values)


def _groups(claims: Mapping[str, Any], name: str) -> tuple[tuple[str, ...], bool]:
    claim_names = claims.get("_claim_names")
    if isinstance(claim_names, Mapping) and name in claim_names:
        return (), True
    groups = claims.get(name, [])
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise InvalidToken(RejectReason.INVALID_CLAIM, f"{name} is not a list of strings")
    return tuple(groups), False
