"""What token validation works with: the issuers we trust and how their claims map, what an
accepted token says, and why a refused one was refused (:mod:`propylon.identity.validation` does
the checking).

A :class:`TrustedIssuer` is configuration — an exact ``iss`` or an Entra-style ``{tenantid}``
template, its keys, the audiences and the asymmetric algorithms it may use. An accepted token
becomes a :class:`ValidatedToken` (an identity) or a :class:`ValidatedEndpointToken` (an
aml_token); a refused one raises :class:`InvalidToken`, a 401 whose :class:`RejectReason` goes to
the server log and whose message — the same for every signature problem, so that it tells an
attacker nothing — goes to the client. Example::

    ours = TrustedIssuer("https://idp.test/{tenantid}/v2.0", StaticJwks(ring),
                         audiences=("https://ml.azure.com",), endpoint_tokens=True)
    raise InvalidToken(RejectReason.EXPIRED, "exp 1790000000 < now")
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from propylon.errors import ConfigurationError, Unauthenticated
from propylon.identity.jwks import JwksSource

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "TENANT_PLACEHOLDER",
    "ClaimMapping",
    "InvalidToken",
    "RejectReason",
    "TrustedIssuer",
    "ValidatedEndpointToken",
    "ValidatedToken",
]

TENANT_PLACEHOLDER = "{tenantid}"

# The algorithms an issuer may be trusted with, and the key type each needs.
ASYMMETRIC_ALGORITHMS = {
    "RS256": "RSA",
    "RS384": "RSA",
    "RS512": "RSA",
    "PS256": "RSA",
    "PS384": "RSA",
    "PS512": "RSA",
    "ES256": "EC",
    "ES384": "EC",
    "ES512": "EC",
    "EdDSA": "OKP",
}


class RejectReason(StrEnum):
    """Why a token was refused; logged server-side, never needed by the client."""

    MALFORMED = "malformed"
    ALG_NONE = "alg_none"
    ALG_NOT_ALLOWED = "alg_not_allowed"
    CRIT_UNSUPPORTED = "crit_unsupported"
    HEADER_KEY_INJECTION = "header_key_injection"
    WRONG_TOKEN_TYPE = "wrong_token_type"  # noqa: S105 — a reason name, not a secret
    UNTRUSTED_ISSUER = "untrusted_issuer"
    MISSING_KID = "missing_kid"
    UNKNOWN_KID = "unknown_kid"
    KEY_ALGORITHM_MISMATCH = "key_algorithm_mismatch"
    KEY_ISSUER_MISMATCH = "key_issuer_mismatch"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    WRONG_AUDIENCE = "wrong_audience"
    WRONG_ENDPOINT = "wrong_endpoint"
    TENANT_MISMATCH = "tenant_mismatch"
    MISSING_CLAIM = "missing_claim"
    INVALID_CLAIM = "invalid_claim"
    PRINCIPAL_INACTIVE = "principal_inactive"


_CLIENT_MESSAGES: dict[RejectReason, str] = {
    RejectReason.EXPIRED: "The access token has expired.",
    RejectReason.NOT_YET_VALID: "The access token is not valid yet.",
    RejectReason.WRONG_AUDIENCE: "The access token was not issued for this resource.",
    RejectReason.WRONG_ENDPOINT: "The access token was not issued for this endpoint.",
    RejectReason.UNTRUSTED_ISSUER: "The access token was not issued by a trusted issuer.",
    RejectReason.TENANT_MISMATCH: "The access token's tenant does not match its issuer.",
    RejectReason.WRONG_TOKEN_TYPE: "This kind of token is not accepted here.",
    RejectReason.PRINCIPAL_INACTIVE: "The token's principal is disabled or no longer exists.",
    RejectReason.MISSING_CLAIM: "The access token lacks a required claim.",
    RejectReason.INVALID_CLAIM: "The access token has an invalid claim.",
}
_SIGNATURE_MESSAGE = "The access token's signature cannot be verified."
_CLIENT_MESSAGES.update(
    dict.fromkeys(
        (
            RejectReason.ALG_NONE,
            RejectReason.ALG_NOT_ALLOWED,
            RejectReason.UNKNOWN_KID,
            RejectReason.MISSING_KID,
            RejectReason.KEY_ALGORITHM_MISMATCH,
            RejectReason.KEY_ISSUER_MISMATCH,
            RejectReason.BAD_SIGNATURE,
        ),
        _SIGNATURE_MESSAGE,
    )
)


class InvalidToken(Unauthenticated):
    """A refused bearer token (401) with the RFC 6750 §3 ``invalid_token`` challenge.

    ``reason`` and ``detail`` are for the server log; the message is safe for the client.
    """

    def __init__(self, reason: RejectReason, detail: str) -> None:
        message = _CLIENT_MESSAGES.get(reason, "The access token is malformed.")
        super().__init__(
            message,
            challenge=f'Bearer error="invalid_token", error_description="{message}"',
        )
        self.reason = reason
        self.detail = detail

    def __repr__(self) -> str:
        return f"InvalidToken({self.reason.value!r}, {self.detail!r})"


@dataclass(frozen=True)
class ClaimMapping:
    """Which claims of an issuer's tokens carry the identity.

    Defaults are Entra's. ``tid=None`` is for issuers without a tenant claim: the trusted
    issuer's ``tenant_id`` is used. ``app_id`` lists candidates, first present wins.
    """

    oid: str = "oid"
    tid: str | None = "tid"
    app_id: tuple[str, ...] = ("appid", "azp")
    groups: str = "groups"
    idtyp: str = "idtyp"


@dataclass(frozen=True)
class TrustedIssuer:
    """An issuer whose tokens we accept, the keys it signs with and what it may be used for.

    ``issuer`` is the exact ``iss`` or an Entra-style template containing ``{tenantid}`` (then
    ``iss`` must equal it with the token's ``tid`` substituted). ``tenant_id`` pins the tenant;
    a template without one accepts every tenant, so only use that for our own issuer, whose
    directory check refuses unknown principals. ``audiences`` are the resources this issuer may
    mint tokens for. ``endpoint_tokens`` marks our own issuer, the only one whose aml_tokens
    count.
    """

    issuer: str
    jwks: JwksSource
    audiences: tuple[str, ...]
    tenant_id: str | None = None
    algorithms: tuple[str, ...] = ("RS256",)
    claim_mapping: ClaimMapping = field(default_factory=ClaimMapping)
    endpoint_tokens: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.audiences, str):
            raise ConfigurationError("TrustedIssuer.audiences must be a tuple, not a string.")
        if not self.audiences:
            raise ConfigurationError(f"Trusted issuer {self.issuer} accepts no audience.")
        if not self.algorithms:
            raise ConfigurationError(f"Trusted issuer {self.issuer} allows no algorithm.")
        for alg in self.algorithms:
            if alg not in ASYMMETRIC_ALGORITHMS:
                # RFC 8725 §3.1: never mix symmetric algorithms (or none) into an allow-list
                # whose keys are public.
                raise ConfigurationError(
                    f"Algorithm {alg!r} cannot be trusted for {self.issuer}; "
                    f"allowed: {', '.join(ASYMMETRIC_ALGORITHMS)}."
                )
        if self.issuer.count(TENANT_PLACEHOLDER) > 1:
            raise ConfigurationError(f"Issuer template {self.issuer} has several placeholders.")
        if self.claim_mapping.tid is None and self.tenant_id is None:
            raise ConfigurationError(
                f"Trusted issuer {self.issuer} has no tenant claim, so it needs a tenant_id."
            )

    @property
    def is_template(self) -> bool:
        return TENANT_PLACEHOLDER in self.issuer

    def tenant_segment(self, iss: str) -> str | None:
        """For a template: the ``{tenantid}`` part of ``iss`` if ``iss`` has its shape."""
        prefix, _, suffix = self.issuer.partition(TENANT_PLACEHOLDER)
        if len(iss) <= len(prefix) + len(suffix):
            return None
        if not (iss.startswith(prefix) and iss.endswith(suffix)):
            return None
        segment = iss[len(prefix) : len(iss) - len(suffix)]
        return segment if segment and "/" not in segment else None


@dataclass(frozen=True)
class ValidatedToken:
    """Who an accepted identity token speaks for. Authorize on ``tid`` + ``oid`` only.

    ``groups_overage`` is True when the token carried the overage pointer instead of
    ``groups``: resolve memberships from the directory, never assume "no groups" (reference
    §3.4). ``appid`` identifies an app only when ``idtyp == "app"`` (reference §3.6).
    """

    oid: str
    tid: str
    appid: str | None
    idtyp: str
    groups: tuple[str, ...]
    groups_overage: bool
    issuer: str
    expires_at: int
    claims: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class ValidatedEndpointToken:
    """An accepted aml_token: the endpoint it opens and who requested it."""

    audience: str
    tid: str
    oid: str | None
    expires_at: int
    claims: Mapping[str, Any] = field(repr=False)
