"""Minting the tokens of the built-in issuer: Entra-shaped access tokens and ``aml_token``\\s.

**Issuer string.** One per tenant, ``{base_url}/{tenant_id}/v2.0`` (:class:`IssuerUrl`), the
same string the tenant's discovery document at
``{base_url}/{tenant_id}/v2.0/.well-known/openid-configuration`` announces as ``issuer`` —
the path azure-identity/MSAL probe for a custom authority. Tokens say ``ver: "2.0"``.

**Access tokens** (:meth:`TokenIssuer.issue_access_token`) follow Entra's access-token claims
reference (reference §3.1–3.4): RS256, header ``typ``/``alg``/``kid``/``x5t``; ``aud`` is the
resource exactly as requested (``https://ml.azure.com``, as Entra does for that v1 resource even
though our issuer string is v2-shaped); both ``appid`` (v1) and ``azp`` (v2) name the client;
``idtyp`` is always present (``app`` for service principals and managed identities); more than
200 groups become the overage pointer ``_claim_names``/``_claim_sources``. The lifetime is drawn
uniformly from 60–90 min, Entra's default, so a fleet of clients does not refresh in lockstep.

**Endpoint tokens** (:meth:`TokenIssuer.issue_endpoint_token`, ``auth_mode: aml_token``) are
bound to one endpoint: ``aud`` is :func:`endpoint_audience` of its ARM id, and they are
explicitly typed (RFC 8725 §3.11) with header ``typ: aml+jwt`` and claim
``token_use: aml_token``, which identity-token validation rejects — so neither kind can stand in
for the other. They live 1 h and should be refreshed after 30 min: the reference leaves the
lifetime open (it suggests 24 h/12 h); a bearer credential that no revocation list covers should
be short, and the refresh is one cheap control-plane call per client per half hour. Half-life
refresh matches MSAL's convention.

Example::

    issuer = TokenIssuer(ring, IssuerUrl("https://propylon.example"))
    issued = issuer.issue_access_token(
        tid, PrincipalClaims(oid=sp_oid, kind=PrincipalKind.APP, app_id=client_id),
        "https://ml.azure.com")
    body = {"access_token": issued.token, "expires_in": issued.expires_in, ...}
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import jwt

from propylon.errors import ConfigurationError
from propylon.identity.keys import SIGNING_ALGORITHM, KeyRing

__all__ = [
    "ENDPOINT_TOKEN_TYPE",
    "ENDPOINT_TOKEN_USE",
    "GROUPS_OVERAGE_LIMIT",
    "EndpointToken",
    "IssuedToken",
    "IssuerUrl",
    "PrincipalClaims",
    "PrincipalKind",
    "TokenIssuer",
    "endpoint_audience",
]

#: JWT header ``typ`` of an aml_token (RFC 8725 §3.11 explicit typing).
ENDPOINT_TOKEN_TYPE = "aml+jwt"  # noqa: S105 — a JWT type name, not a secret
#: Claim ``token_use`` of an aml_token; identity tokens never carry it.
ENDPOINT_TOKEN_USE = "aml_token"  # noqa: S105 — a claim value, not a secret
#: Entra: more groups than this in a JWT are replaced by the overage pointer (reference §3.4).
GROUPS_OVERAGE_LIMIT = 200

_TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime.")
    return now


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def endpoint_audience(endpoint_resource_id: str) -> str:
    """The ``aud`` of aml_tokens for one endpoint: ``propylon:endpoint:{lower-cased ARM id}``.

    ARM ids are case-insensitive, so the id is lower-cased and stripped of a trailing slash.

    >>> endpoint_audience("/subscriptions/S/resourceGroups/RG/providers/"
    ...     "Microsoft.MachineLearningServices/workspaces/W/onlineEndpoints/E")
    'propylon:endpoint:/subscriptions/s/resourcegroups/rg/providers/microsoft.machinelearningservices/workspaces/w/onlineendpoints/e'
    """
    normalized = endpoint_resource_id.strip().rstrip("/").lower()
    if not normalized.startswith("/subscriptions/") or "/onlineendpoints/" not in normalized:
        raise ValueError(f"{endpoint_resource_id!r} is not an online endpoint's ARM id.")
    return f"propylon:endpoint:{normalized}"


@dataclass(frozen=True)
class IssuerUrl:
    """The issuer strings of the built-in issuer, one per tenant.

    >>> urls = IssuerUrl("https://idp.example:8080/")
    >>> urls("72f988bf-86f1-41af-91ab-2d7cd011db47")
    'https://idp.example:8080/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0'
    >>> urls.template
    'https://idp.example:8080/{tenantid}/v2.0'
    """

    base_url: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        if not self.base_url.startswith(("https://", "http://")):
            raise ValueError(f"The issuer base URL must be http(s), not {self.base_url!r}.")

    def __call__(self, tenant_id: str) -> str:
        return self.for_tenant(tenant_id)

    def for_tenant(self, tenant_id: str) -> str:
        if not _TENANT_ID.fullmatch(tenant_id):
            raise ValueError(f"{tenant_id!r} is not a tenant id.")
        return f"{self.base_url}/{tenant_id}/v2.0"

    @property
    def template(self) -> str:
        """The issuer with Entra's ``{tenantid}`` placeholder, for a multi-tenant trust."""
        return f"{self.base_url}/{{tenantid}}/v2.0"


class PrincipalKind(StrEnum):
    USER = "user"
    APP = "app"
    MANAGED_IDENTITY = "managed_identity"


@dataclass(frozen=True)
class PrincipalClaims:
    """What the directory knows about the subject of a token.

    ``app_id`` is the client application the token is issued to (``appid``/``azp``): the
    service principal's own client id for apps, the public client (e.g. the CLI) for users.
    ``group_ids`` are the transitive memberships. ``mi_resource_id`` is the ARM id of a managed
    identity (``xms_mirid``).
    """

    oid: str
    kind: PrincipalKind
    app_id: str | None = None
    display_name: str | None = None
    upn: str | None = None
    group_ids: tuple[str, ...] = ()
    mi_resource_id: str | None = None


@dataclass(frozen=True)
class IssuedToken:
    """An access token and what the token endpoint reports about it."""

    token: str = field(repr=False)
    expires_on: int
    expires_in: int
    claims: Mapping[str, Any]


@dataclass(frozen=True)
class EndpointToken:
    """An aml_token as ``POST …/onlineEndpoints/{name}/token`` returns it (epoch seconds)."""

    access_token: str = field(repr=False)
    expiry_time_utc: int
    refresh_after_time_utc: int
    claims: Mapping[str, Any]
    token_type: str = "Bearer"  # noqa: S105 — RFC 6750 token type, not a secret

    def as_body(self) -> dict[str, Any]:
        """The ARM ``EndpointAuthToken`` body."""
        return {
            "accessToken": self.access_token,
            "expiryTimeUtc": self.expiry_time_utc,
            "refreshAfterTimeUtc": self.refresh_after_time_utc,
            "tokenType": self.token_type,
        }


class TokenIssuer:
    """Signs access tokens and aml_tokens with the key ring's active key.

    ``lifetime`` is the (min, max) range an access token's lifetime is drawn from; every
    lifetime must fit in the key ring's ``max_token_lifetime``, or a retired key could leave the
    JWKS while tokens it signed are still valid.
    """

    def __init__(
        self,
        keyring: KeyRing,
        issuer_for_tenant: Callable[[str], str],
        *,
        lifetime: tuple[timedelta, timedelta] = (timedelta(minutes=60), timedelta(minutes=90)),
        endpoint_token_lifetime: timedelta = timedelta(hours=1),
        endpoint_token_refresh_after: timedelta = timedelta(minutes=30),
        groups_overage_endpoint: Callable[[str, str], str] | None = None,
    ) -> None:
        low, high = lifetime
        if not timedelta(0) < low <= high:
            raise ConfigurationError(f"Token lifetime range {low}–{high} is not a valid range.")
        if not timedelta(0) < endpoint_token_refresh_after < endpoint_token_lifetime:
            raise ConfigurationError(
                "The aml_token refresh-after time must be positive and before its expiry."
            )
        longest = max(high, endpoint_token_lifetime)
        if longest > keyring.max_token_lifetime:
            raise ConfigurationError(
                f"Token lifetime {longest} exceeds the key ring's max_token_lifetime "
                f"{keyring.max_token_lifetime}; retired keys would leave the JWKS too early."
            )
        self.keyring = keyring
        self.issuer_for_tenant = issuer_for_tenant
        self._lifetime_s = (int(low.total_seconds()), int(high.total_seconds()))
        self._endpoint_lifetime_s = int(endpoint_token_lifetime.total_seconds())
        self._endpoint_refresh_s = int(endpoint_token_refresh_after.total_seconds())
        self._overage_endpoint = groups_overage_endpoint or self._default_overage_endpoint

    def issue_access_token(
        self,
        tenant_id: str,
        principal: PrincipalClaims,
        audience: str,
        *,
        scopes: Sequence[str] | None = None,
        roles: Sequence[str] | None = None,
        now: datetime | None = None,
    ) -> IssuedToken:
        """An access token for ``principal`` in ``tenant_id``, for the resource ``audience``.

        ``scopes`` become ``scp`` (delegated, users only, as Entra); ``roles`` become ``roles``.
        """
        if not audience:
            raise ValueError("An access token needs an audience.")
        moment = _now(now)
        iat = int(moment.timestamp())
        low, high = self._lifetime_s
        exp = iat + low + secrets.randbelow(high - low + 1)
        is_user = principal.kind is PrincipalKind.USER
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": self.issuer_for_tenant(tenant_id),
            "iat": iat,
            "nbf": iat,
            "exp": exp,
            "tid": tenant_id,
            "oid": principal.oid,
            "sub": self._subject(principal),
            "idtyp": "user" if is_user else "app",
            "ver": "2.0",
            "uti": _b64url(secrets.token_bytes(16)),
        }
        if principal.app_id is not None:
            claims["appid"] = principal.app_id
            claims["azp"] = principal.app_id
        if is_user:
            if principal.display_name is not None:
                claims["name"] = principal.display_name
            if principal.upn is not None:
                claims["upn"] = principal.upn
            if scopes:
                claims["scp"] = " ".join(scopes)
        if roles:
            claims["roles"] = list(roles)
        if principal.kind is PrincipalKind.MANAGED_IDENTITY and principal.mi_resource_id:
            claims["xms_mirid"] = principal.mi_resource_id
        if len(principal.group_ids) > GROUPS_OVERAGE_LIMIT:
            claims["_claim_names"] = {"groups": "src1"}
            claims["_claim_sources"] = {
                "src1": {"endpoint": self._overage_endpoint(tenant_id, principal.oid)}
            }
        elif principal.group_ids:
            claims["groups"] = list(principal.group_ids)
        token = self._sign(claims, typ="JWT", now=moment)
        return IssuedToken(
            token=token,
            expires_on=exp,
            expires_in=exp - iat,
            claims=MappingProxyType(claims),
        )

    def issue_id_token(
        self,
        tenant_id: str,
        principal: PrincipalClaims,
        client_id: str,
        *,
        nonce: str | None = None,
        now: datetime | None = None,
    ) -> str:
        """An OpenID Connect ID token (OIDC Core §2) for a signed-in user, audience the client.

        Carries what MSAL reads to name the account: ``oid``, ``tid``, ``preferred_username``,
        ``name``; ``sub`` is the same pairwise value as in the access token.
        """
        if principal.kind is not PrincipalKind.USER:
            raise ValueError("ID tokens are issued for users only.")
        moment = _now(now)
        iat = int(moment.timestamp())
        claims: dict[str, Any] = {
            "aud": client_id,
            "iss": self.issuer_for_tenant(tenant_id),
            "iat": iat,
            "nbf": iat,
            "exp": iat + self._lifetime_s[0],
            "tid": tenant_id,
            "oid": principal.oid,
            "sub": self._subject(dataclasses.replace(principal, app_id=client_id)),
            "ver": "2.0",
            "uti": _b64url(secrets.token_bytes(16)),
        }
        if principal.upn is not None:
            claims["preferred_username"] = principal.upn
        if principal.display_name is not None:
            claims["name"] = principal.display_name
        if nonce is not None:
            claims["nonce"] = nonce
        return self._sign(claims, typ="JWT", now=moment)

    def issue_endpoint_token(
        self,
        endpoint_resource_id: str,
        *,
        tenant_id: str,
        requested_by: str | None = None,
        requester_tid: str | None = None,
        endpoint_uid: str | None = None,
        now: datetime | None = None,
    ) -> EndpointToken:
        """An aml_token for one endpoint.

        ``requested_by`` is the ``oid`` of the caller of ``…/token`` (kept for the traffic log),
        ``requester_tid`` its tenant when that is not ours (a trusted external issuer's);
        ``endpoint_uid``, the endpoint's immutable id, stops a token from opening an endpoint
        deleted and re-created under the same name.
        """
        moment = _now(now)
        iat = int(moment.timestamp())
        claims: dict[str, Any] = {
            "aud": endpoint_audience(endpoint_resource_id),
            "iss": self.issuer_for_tenant(tenant_id),
            "iat": iat,
            "nbf": iat,
            "exp": iat + self._endpoint_lifetime_s,
            "tid": tenant_id,
            "token_use": ENDPOINT_TOKEN_USE,
            "uti": _b64url(secrets.token_bytes(16)),
        }
        if requested_by is not None:
            claims["oid"] = requested_by
        if requester_tid is not None:
            claims["requester_tid"] = requester_tid
        if endpoint_uid is not None:
            claims["endpoint_uid"] = endpoint_uid
        token = self._sign(claims, typ=ENDPOINT_TOKEN_TYPE, now=moment)
        return EndpointToken(
            access_token=token,
            expiry_time_utc=claims["exp"],
            refresh_after_time_utc=iat + self._endpoint_refresh_s,
            claims=MappingProxyType(claims),
        )

    def _sign(self, claims: dict[str, Any], *, typ: str, now: datetime) -> str:
        key = self.keyring.signing_key(now)
        headers = {"typ": typ, "kid": key.kid, "x5t": key.x5t}
        return jwt.encode(claims, key.private_key, algorithm=SIGNING_ALGORITHM, headers=headers)

    @staticmethod
    def _subject(principal: PrincipalClaims) -> str:
        # Entra's sub is pairwise per application for users and equals oid for app-only tokens.
        if principal.kind is PrincipalKind.USER and principal.app_id is not None:
            digest = hashlib.sha256(f"{principal.app_id}|{principal.oid}".encode()).digest()
            return _b64url(digest)
        return principal.oid

    def _default_overage_endpoint(self, tenant_id: str, oid: str) -> str:
        # Graph-shaped (users/{id}/getMemberObjects) under our issuer; validators never follow
        # it — ValidatedToken.groups_overage makes authz resolve groups from the directory.
        return f"{self.issuer_for_tenant(tenant_id)}/users/{oid}/getMemberObjects"
