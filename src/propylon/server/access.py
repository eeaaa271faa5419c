"""Who is calling and may they: the one place both planes authenticate and authorize.

``AccessControl`` joins token validation (``identity``), the directory (groups, disabled
principals) and the RBAC engine (``authz``). The control plane calls it through the FastAPI
dependency :func:`current_caller` and :meth:`AccessControl.require`; the gateway calls
:meth:`AccessControl.authenticate` and :meth:`AccessControl.decide` directly on its hot path.

Example::

    caller = access.authenticate(token, audiences=MANAGEMENT_AUDIENCES)
    access.require(caller, "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/write",
                   endpoint_scope)   # raises Forbidden (403 AuthorizationFailed) when denied
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastapi import Request

from propylon.authz import CachedAuthorizer, Decision
from propylon.errors import Unauthenticated
from propylon.identity import TokenIssuer, TokenValidator

__all__ = [
    "DATA_PLANE_AUDIENCES",
    "MANAGEMENT_AUDIENCES",
    "AccessControl",
    "Caller",
    "GroupResolver",
    "PlatformAccess",
    "bearer_token",
    "current_caller",
]

log = logging.getLogger("propylon.access")

MANAGEMENT_AUDIENCES = ("https://management.azure.com", "https://management.core.windows.net")
DATA_PLANE_AUDIENCES = ("https://ml.azure.com",)


@dataclass(frozen=True)
class Caller:
    """An authenticated principal: object id and tenant, never names (reference §3.6)."""

    oid: str
    tid: str
    appid: str | None
    kind: str  # "user" | "app" | "managed_identity"
    groups: frozenset[str] = frozenset()
    claims: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


class AccessControl(Protocol):
    def authenticate(self, token: str, *, audiences: tuple[str, ...]) -> Caller:
        """Validate an identity-provider token; raise Unauthenticated with the reason."""
        ...

    def require(self, caller: Caller, action: str, scope: str) -> None:
        """Raise Forbidden (AuthorizationFailed, naming action and scope) unless allowed."""
        ...

    def allowed(self, caller: Caller, action: str, scope: str) -> bool: ...

    def validate_endpoint_token(self, token: str, endpoint_id: str) -> None:
        """Accept an ``aml_token`` minted for exactly this endpoint, else raise Unauthenticated."""
        ...

    def mint_endpoint_token(
        self, endpoint_id: str, *, requested_by: str | None = None
    ) -> dict[str, Any]:
        """``{"accessToken", "expiryTimeUtc", "refreshAfterTimeUtc", "tokenType"}`` for the
        control plane's ``POST …/onlineEndpoints/{name}/token``; ``requested_by`` is the oid
        the gateway's traffic log shows for requests made with the token."""
        ...


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer …`` header (RFC 6750 §2.1)."""
    if not authorization:
        raise Unauthenticated(
            "Authentication failed: the request has no Authorization header.",
            code="AuthenticationFailed",
        )
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "Authentication failed: the Authorization header must be 'Bearer <token>'.",
            code="InvalidAuthenticationToken",
        )
    return token.strip()


def current_caller(request: Request) -> Caller:
    """FastAPI dependency: the caller of a control-plane request (management audience)."""
    access: AccessControl = request.app.state.ctx.services["access"]
    token = bearer_token(request.headers.get("authorization"))
    return access.authenticate(token, audiences=MANAGEMENT_AUDIENCES)


class GroupResolver(Protocol):
    def groups_of(self, oid: str) -> frozenset[str]:
        """Every group ``oid`` belongs to, transitively."""
        ...


class PlatformAccess:
    """The server's :class:`AccessControl`: identity validator + directory + cached RBAC.

    Group membership comes from the directory (transitive, fresh through the change feed) for
    principals of our own tenants, so removing a member takes effect within a second even for
    tokens whose ``groups`` claim is older; tokens of external issuers bring their ``groups``.
    """

    def __init__(
        self,
        validator: TokenValidator,
        issuer: TokenIssuer,
        authorizer: CachedAuthorizer,
        groups: GroupResolver,
        *,
        tenant_id: str,
    ) -> None:
        self._validator = validator
        self._issuer = issuer
        self._authorizer = authorizer
        self._groups = groups
        self._tenant_id = tenant_id

    def authenticate(self, token: str, *, audiences: tuple[str, ...]) -> Caller:
        validated = self._validator.validate(token, audiences=audiences)
        claims = validated.claims
        own = validated.tid == self._tenant_id
        groups = self._groups.groups_of(validated.oid) if own else frozenset(validated.groups or ())
        idtyp = claims.get("idtyp")
        kind = (
            "managed_identity" if claims.get("xms_mirid") else ("app" if idtyp == "app" else "user")
        )
        return Caller(
            oid=validated.oid,
            tid=validated.tid,
            appid=validated.appid,
            kind=kind,
            groups=groups,
            claims=dict(claims),
        )

    def decide(self, caller: Caller, action: str, scope: str) -> Decision:
        return self._authorizer.authorize(caller.oid, caller.groups, action, scope)

    def allowed(self, caller: Caller, action: str, scope: str) -> bool:
        return self.decide(caller, action, scope).allowed

    def require(self, caller: Caller, action: str, scope: str) -> None:
        decision = self.decide(caller, action, scope)
        if not decision.allowed:
            log.info(
                "authorization refused",
                extra={"oid": caller.oid, "action": action, "scope": scope, "why": decision.reason},
            )
            raise decision.to_error(caller.oid, caller.appid)

    def validate_endpoint_token(self, token: str, endpoint_id: str) -> None:
        self._validator.validate_endpoint_token(token, endpoint_id)

    def mint_endpoint_token(
        self, endpoint_id: str, *, requested_by: str | None = None
    ) -> dict[str, Any]:
        token = self._issuer.issue_endpoint_token(
            endpoint_id, tenant_id=self._tenant_id, requested_by=requested_by
        )
        return token.as_body()
