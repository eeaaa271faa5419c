"""Who is calling and may they: the one place both planes authenticate and authorize.

``AccessControl`` joins token validation (``identity``), the directory (groups, disabled
principals) and the RBAC engine (``authz``). The control plane calls it through the FastAPI
dependency :func:`current_caller` and :meth:`AccessControl.require`; the gateway calls
:meth:`AccessControl.authenticate` and :meth:`AccessControl.allowed` directly on its hot path.

RBAC matches on object ids, so the tenant decides whose object ids a token may speak for
(reference §3.6 step 7, "authorize on ``oid`` + ``tid``"):

* **Our tenants** (those the directory holds): the caller is the directory object ``oid``;
  its groups come from the directory (transitive, fresh through the change feed), never from
  the token.
* **A trusted external tenant**: its issuer answers for its own principals only. A token whose
  ``oid`` is the object id of anything in our directory (a user, group, service principal or
  managed identity, of any of our tenants) is refused as unauthenticated: letting it through
  would give it that object's role assignments, and its ``oid`` would reach the traffic log,
  ``createdBy`` and the Permissions API as ours. Object ids of our directory in its ``groups``
  claim are dropped, so it cannot join one of our groups either.

A principal of a trusted external tenant is granted a role by an ordinary role assignment whose
``principalId`` is its ``oid`` in its home tenant (or the id of one of its home tenant's groups
that its tokens carry in ``groups``); ARM's ``principalId`` is a bare GUID, with no tenant.
Entra object ids are random GUIDs, so a real external principal never collides with ours; a
collision means the other issuer is lying. Two limits follow from keying on the bare id: the
role assignments a deleted principal of ours leaves behind (orphaned, as in Azure) look like
an external principal's, so delete them with the principal; and every trusted external issuer
could name any external principal's id, so trust only issuers you would let do that.

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
from propylon.identity import TokenIssuer, TokenValidator, ValidatedToken

__all__ = [
    "DATA_PLANE_AUDIENCES",
    "MANAGEMENT_AUDIENCES",
    "AccessControl",
    "Caller",
    "DirectoryView",
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

    def validate_endpoint_token(
        self, token: str, endpoint_id: str, *, endpoint_uid: str | None = None
    ) -> None:
        """Accept an ``aml_token`` minted for exactly this endpoint, else raise Unauthenticated.

        ``endpoint_uid`` is the endpoint's uid (None only for an endpoint stored before uids):
        a token minted for an earlier endpoint of the same name is refused."""
        ...

    def mint_endpoint_token(
        self,
        endpoint_id: str,
        *,
        endpoint_uid: str | None = None,
        requested_by: str | None = None,
        requester_tid: str | None = None,
    ) -> dict[str, Any]:
        """``{"accessToken", "expiryTimeUtc", "refreshAfterTimeUtc", "tokenType"}`` for the
        control plane's ``POST …/onlineEndpoints/{name}/token``, bound to the endpoint's
        ``endpoint_uid``; ``requested_by`` is the oid the gateway's traffic log shows for
        requests made with the token, of tenant ``requester_tid`` (ours when None)."""
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


class DirectoryView(Protocol):
    """What access control asks the directory (:class:`~propylon.identity.Directory`)."""

    def owns_tenant(self, tenant_id: str) -> bool:
        """Is ``tenant_id`` one of our tenants (as opposed to a trusted external issuer's)?"""
        ...

    def holds(self, oid: str) -> bool:
        """Is ``oid`` the object id of one of our directory's objects, in any of our tenants?"""
        ...

    def groups_of(self, oid: str) -> frozenset[str]:
        """Every group ``oid`` belongs to, transitively."""
        ...


class PlatformAccess:
    """The server's :class:`AccessControl`: identity validator + directory + cached RBAC.

    Group membership comes from the directory (transitive, fresh through the change feed) for
    principals of our own tenants, so removing a member takes effect within a second even for
    tokens whose ``groups`` claim is older; tokens of external issuers bring their ``groups``,
    less any of our object ids (see the module docstring).
    """

    def __init__(
        self,
        validator: TokenValidator,
        issuer: TokenIssuer,
        authorizer: CachedAuthorizer,
        directory: DirectoryView,
        *,
        tenant_id: str,
    ) -> None:
        self._validator = validator
        self._issuer = issuer
        self._authorizer = authorizer
        self._directory = directory
        self._tenant_id = tenant_id

    def authenticate(self, token: str, *, audiences: tuple[str, ...]) -> Caller:
        validated = self._validator.validate(token, audiences=audiences)
        claims = validated.claims
        if self._directory.owns_tenant(validated.tid):
            groups = self._directory.groups_of(validated.oid)
        else:
            groups = self._external_groups(validated)
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

    def _external_groups(self, validated: ValidatedToken) -> frozenset[str]:
        """The groups of a trusted external tenant's caller, once it is known not to be ours."""
        if self._directory.holds(validated.oid):
            log.warning(
                "external token names one of our object ids; refused",
                extra={"oid": validated.oid, "tid": validated.tid, "issuer": validated.issuer},
            )
            raise Unauthenticated(
                f"Authentication failed: a token of tenant '{validated.tid}' cannot act for an "
                "object of this directory.",
                code="InvalidAuthenticationToken",
            )
        claimed = frozenset(validated.groups or ())
        ours = frozenset(group for group in claimed if self._directory.holds(group))
        if ours:
            log.warning(
                "external token claims our groups; they are ignored",
                extra={"oid": validated.oid, "tid": validated.tid, "groups": sorted(ours)},
            )
        return claimed - ours

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

    def validate_endpoint_token(
        self, token: str, endpoint_id: str, *, endpoint_uid: str | None = None
    ) -> None:
        self._validator.validate_endpoint_token(token, endpoint_id, endpoint_uid=endpoint_uid)

    def mint_endpoint_token(
        self,
        endpoint_id: str,
        *,
        endpoint_uid: str | None = None,
        requested_by: str | None = None,
        requester_tid: str | None = None,
    ) -> dict[str, Any]:
        """An aml_token; one requested by a principal of a trusted external tenant says so
        (``requester_tid``), since that principal is not in our directory for the validator's
        is-it-still-active check, which applies to our principals only."""
        foreign = requester_tid is not None and not self._directory.owns_tenant(requester_tid)
        token = self._issuer.issue_endpoint_token(
            endpoint_id,
            tenant_id=self._tenant_id,
            requested_by=requested_by,
            requester_tid=requester_tid if foreign else None,
            endpoint_uid=endpoint_uid,
        )
        return token.as_body()
