"""Refresh tokens (RFC 6749 §1.5, §6): opaque, stored as hashes, rotated on every use.

A refresh token is 256 random bits; the store keeps only its SHA-256 (``fast_hash``) with the
user, tenant, client and scope it was issued for. Redeeming one revokes it and issues its
successor in the same transaction (OAuth 2.0 Security BCP, RFC 9700 §4.14.2): a token
presented after it was rotated means two parties hold it, so every refresh token of that user
and client is revoked and the request fails with ``invalid_grant``. Resetting a user's password,
disabling or deleting them removes their refresh tokens (see the directory).

Lifetime: 90 days, Entra's default inactivity window; each rotation starts a new window.

Example::

    store = RefreshTokens(db)
    token = store.issue(user_oid, tid, client_id, "https://ml.azure.com/.default offline_access")
    grant = store.redeem(token, client_id=client_id, tenant_id=tid)   # checks, no change yet
    successor = store.rotate(grant, scope=grant.scope)               # old one now revoked
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, update

from propylon.errors import OAuthError
from propylon.store import Database, as_utc, fast_hash, utcnow
from propylon.store.models import RefreshToken

__all__ = ["RefreshGrant", "RefreshTokens"]

DEFAULT_LIFETIME = timedelta(days=90)


@dataclass(frozen=True)
class RefreshGrant:
    """A refresh token that passed its checks, not yet rotated."""

    token_hash: str = field(repr=False)
    principal_id: str
    tenant_id: str
    client_id: str
    scope: str


def _invalid_grant(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description)


class RefreshTokens:
    def __init__(self, db: Database, *, lifetime: timedelta = DEFAULT_LIFETIME) -> None:
        self._db = db
        self.lifetime = lifetime

    def issue(
        self,
        principal_id: str,
        tenant_id: str,
        client_id: str,
        scope: str,
        *,
        now: datetime | None = None,
    ) -> str:
        moment = now or utcnow()
        token = secrets.token_urlsafe(32)
        with self._db.transaction() as session:
            # Housekeeping: revoked rows are kept until they expire, for reuse detection.
            session.execute(delete(RefreshToken).where(RefreshToken.expires_at < moment))
            session.add(self._row(token, principal_id, tenant_id, client_id, scope, moment))
        return token

    def redeem(
        self, token: str, *, client_id: str, tenant_id: str, now: datetime | None = None
    ) -> RefreshGrant:
        """Check a presented refresh token; raises ``invalid_grant`` (400) when it is unusable."""
        moment = now or utcnow()
        token_hash = fast_hash(token)
        with self._db.reader() as session:
            row = session.get(RefreshToken, token_hash)
        if row is None or row.tenant_id != tenant_id:
            raise _invalid_grant("AADSTS9002313: The refresh token is invalid or malformed.")
        if row.revoked:
            self.revoke_family(row.principal_id, row.client_id)
            raise _invalid_grant(
                "AADSTS70008: The refresh token was already used; every session of this client "
                "has been revoked. Sign in again."
            )
        if as_utc(row.expires_at) <= moment:
            raise _invalid_grant("AADSTS700082: The refresh token has expired. Sign in again.")
        if row.client_id != client_id:
            # RFC 6749 §6: the token must have been issued to the authenticated client.
            raise _invalid_grant("AADSTS70000: The refresh token was issued to another client.")
        return RefreshGrant(token_hash, row.principal_id, row.tenant_id, row.client_id, row.scope)

    def rotate(self, grant: RefreshGrant, *, scope: str, now: datetime | None = None) -> str:
        """Revoke the redeemed token and issue its successor, atomically."""
        moment = now or utcnow()
        successor = secrets.token_urlsafe(32)
        with self._db.transaction() as session:
            result = session.execute(
                update(RefreshToken)
                .where(RefreshToken.token_hash == grant.token_hash, RefreshToken.revoked.is_(False))
                .values(revoked=True)
            )
            if getattr(result, "rowcount", 0) != 1:
                raced = True
            else:
                raced = False
                session.add(
                    self._row(
                        successor,
                        grant.principal_id,
                        grant.tenant_id,
                        grant.client_id,
                        scope,
                        moment,
                    )
                )
        if raced:
            # Redeemed twice at the same moment: one of the two is not the legitimate holder.
            self.revoke_family(grant.principal_id, grant.client_id)
            raise _invalid_grant("AADSTS70008: The refresh token was already used.")
        return successor

    def revoke_family(self, principal_id: str, client_id: str | None = None) -> None:
        """Revoke every refresh token of a principal (for one client, or all)."""
        with self._db.transaction() as session:
            statement = (
                update(RefreshToken)
                .where(RefreshToken.principal_id == principal_id)
                .values(revoked=True)
            )
            if client_id is not None:
                statement = statement.where(RefreshToken.client_id == client_id)
            session.execute(statement)

    def _row(
        self,
        token: str,
        principal_id: str,
        tenant_id: str,
        client_id: str,
        scope: str,
        now: datetime,
    ) -> RefreshToken:
        return RefreshToken(
            token_hash=fast_hash(token),
            principal_id=principal_id,
            tenant_id=tenant_id,
            client_id=client_id,
            scope=scope,
            revoked=False,
            expires_at=now + self.lifetime,
            created_at=now,
        )
