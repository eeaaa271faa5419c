"""The OAuth 2.0 Device Authorization Grant (RFC 8628), Entra-shaped.

1. The client POSTs ``client_id`` + ``scope`` to ``/{tenant}/oauth2/v2.0/devicecode``
   (§3.1) and gets ``device_code``, ``user_code``, ``verification_uri``, ``expires_in``
   (900 s, Entra's 15 minutes), ``interval`` (5 s) and a ``message`` to show (§3.2; Entra does
   not support ``verification_uri_complete``, reference §3.8).
2. The user opens the verification URI (our ``/device`` page), enters the user code and signs
   in; :meth:`DeviceFlow.approve` binds the code to them (or :meth:`DeviceFlow.deny`).
3. The client polls the token endpoint with ``grant_type=urn:ietf:params:oauth:grant-type:
   device_code`` (§3.4) and gets, per §3.5: ``authorization_pending`` while waiting,
   ``slow_down`` (and an interval 5 s longer) when polling faster than the interval,
   ``access_denied`` after a denial, ``expired_token`` after expiry, then the tokens — once.

User codes are 8 characters from RFC 8628 §6.1's 20 consonants (34 bits), shown ``BCDF-GHJK``
and accepted in any case with or without the dash; guessing one also takes a user's password,
and the page is rate-limited like every sign-in. Device codes (256 bits) are stored hashed.

Example::

    flow = DeviceFlow(db, verification_uri="https://idp:8080/device")
    started = flow.start(tid, client_id, "https://ml.azure.com/.default offline_access")
    flow.approve(started["user_code"], user_oid)
    grant = flow.redeem(started["device_code"], client_id=client_id, tenant_id=tid)
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from propylon.errors import OAuthError
from propylon.store import Database, as_utc, fast_hash, utcnow
from propylon.store.models import DeviceCode

__all__ = ["DeviceAuthorization", "DeviceFlow", "DeviceGrant", "normalize_user_code"]

#: RFC 8628 §6.1: no vowels (no words), no easily confused characters.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
#: RFC 8628 §3.5: each slow_down adds 5 seconds to the interval.
SLOW_DOWN_STEP = 5
# Polls up to this much early still count as on time (MSAL allows itself 1 s of skew).
_POLL_TOLERANCE = timedelta(seconds=1)


class DeviceCodeStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    REDEEMED = "redeemed"


@dataclass(frozen=True)
class DeviceAuthorization:
    """A pending request as the verification page shows it."""

    user_code: str
    tenant_id: str
    client_id: str
    scope: str
    expires_at: datetime


@dataclass(frozen=True)
class DeviceGrant:
    """An approved device code, redeemed: who approved it, for which scope."""

    principal_id: str
    tenant_id: str
    client_id: str
    scope: str


def normalize_user_code(text: str) -> str:
    """``bcdf-ghjk`` → ``BCDFGHJK``: case, spaces and dashes do not matter to users."""
    return "".join(ch for ch in text.upper() if ch not in " -\t")


def display_user_code(code: str) -> str:
    half = len(code) // 2
    return f"{code[:half]}-{code[half:]}"


def _error(code: str, description: str) -> OAuthError:
    return OAuthError(code, description)


class DeviceFlow:
    def __init__(
        self,
        db: Database,
        *,
        verification_uri: str,
        lifetime: timedelta = timedelta(minutes=15),
        interval: int = 5,
    ) -> None:
        self._db = db
        self.verification_uri = verification_uri
        self.lifetime = lifetime
        self.interval = interval

    def start(
        self, tenant_id: str, client_id: str, scope: str, *, now: datetime | None = None
    ) -> dict[str, Any]:
        """Create a device authorization; the RFC 8628 §3.2 response body."""
        moment = now or utcnow()
        device_code = secrets.token_urlsafe(32)
        for _ in range(5):
            user_code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))
            try:
                with self._db.transaction() as session:
                    session.execute(delete(DeviceCode).where(DeviceCode.expires_at < moment))
                    session.add(
                        DeviceCode(
                            device_code_hash=fast_hash(device_code),
                            user_code=user_code,
                            tenant_id=tenant_id,
                            client_id=client_id,
                            scope=scope,
                            status=DeviceCodeStatus.PENDING.value,
                            principal_id=None,
                            interval=self.interval,
                            last_poll_at=None,
                            expires_at=moment + self.lifetime,
                        )
                    )
                break
            except IntegrityError:
                continue  # a user code collision: draw again
        else:  # pragma: no cover — 5 collisions in a 2.5e10 space
            raise OAuthError(
                "temporarily_unavailable", "Could not allocate a user code.", status=503
            )
        shown = display_user_code(user_code)
        return {
            "device_code": device_code,
            "user_code": shown,
            "verification_uri": self.verification_uri,
            "expires_in": int(self.lifetime.total_seconds()),
            "interval": self.interval,
            "message": (
                f"To sign in, use a web browser to open the page {self.verification_uri} "
                f"and enter the code {shown} to authenticate."
            ),
        }

    def pending(self, user_code: str, *, now: datetime | None = None) -> DeviceAuthorization | None:
        """The pending authorization a user code names, if it is still open."""
        moment = now or utcnow()
        with self._db.reader() as session:
            row = session.scalar(
                select(DeviceCode).where(DeviceCode.user_code == normalize_user_code(user_code))
            )
        if (
            row is None
            or row.status != DeviceCodeStatus.PENDING
            or as_utc(row.expires_at) <= moment
        ):
            return None
        return DeviceAuthorization(
            display_user_code(row.user_code),
            row.tenant_id,
            row.client_id,
            row.scope,
            as_utc(row.expires_at),
        )

    def approve(self, user_code: str, principal_id: str, *, now: datetime | None = None) -> bool:
        return self._decide(user_code, DeviceCodeStatus.APPROVED, principal_id, now)

    def deny(self, user_code: str, *, now: datetime | None = None) -> bool:
        return self._decide(user_code, DeviceCodeStatus.DENIED, None, now)

    def _decide(
        self,
        user_code: str,
        status: DeviceCodeStatus,
        principal_id: str | None,
        now: datetime | None,
    ) -> bool:
        moment = now or utcnow()
        with self._db.transaction() as session:
            row = session.scalar(
                select(DeviceCode).where(DeviceCode.user_code == normalize_user_code(user_code))
            )
            if (
                row is None
                or row.status != DeviceCodeStatus.PENDING
                or as_utc(row.expires_at) <= moment
            ):
                return False
            row.status = status.value
            row.principal_id = principal_id
        return True

    def redeem(
        self,
        device_code: str,
        *,
        client_id: str,
        tenant_id: str,
        now: datetime | None = None,
    ) -> DeviceGrant:
        """One poll of the token endpoint (RFC 8628 §3.4–3.5); the grant once approved."""
        moment = now or utcnow()
        # The poll's bookkeeping (last poll, longer interval) must commit even when the answer
        # is an error, so the outcome is decided inside the transaction and raised after it.
        outcome: DeviceGrant | OAuthError
        with self._db.transaction() as session:
            row = session.get(DeviceCode, fast_hash(device_code))
            if row is None or row.client_id != client_id or row.tenant_id != tenant_id:
                outcome = _error(
                    "invalid_grant",
                    "AADSTS70019: The device code is invalid or was not issued to this client.",
                )
            elif as_utc(row.expires_at) <= moment:
                outcome = _error(
                    "expired_token",
                    "AADSTS70020: The device code expired; start the sign-in again.",
                )
            else:
                outcome = self._poll(row, moment)
        if isinstance(outcome, OAuthError):
            raise outcome
        return outcome

    @staticmethod
    def _poll(row: DeviceCode, moment: datetime) -> DeviceGrant | OAuthError:
        previous = as_utc(row.last_poll_at) if row.last_poll_at else None
        row.last_poll_at = moment
        if row.status == DeviceCodeStatus.DENIED:
            return _error("access_denied", "AADSTS70021: The user declined the sign-in.")
        if row.status == DeviceCodeStatus.PENDING:
            minimum = timedelta(seconds=row.interval) - _POLL_TOLERANCE
            if previous is not None and moment - previous < minimum:
                row.interval += SLOW_DOWN_STEP
                return _error(
                    "slow_down",
                    f"Polling too fast; wait at least {row.interval} seconds between polls.",
                )
            return _error(
                "authorization_pending",
                "AADSTS70016: The user has not yet completed the sign-in.",
            )
        principal_id = row.principal_id
        if row.status != DeviceCodeStatus.APPROVED or principal_id is None:
            return _error("invalid_grant", "AADSTS70019: The device code was already used.")
        row.status = DeviceCodeStatus.REDEEMED.value
        return DeviceGrant(principal_id, row.tenant_id, row.client_id, row.scope)
