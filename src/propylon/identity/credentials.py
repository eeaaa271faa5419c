"""Credentials of directory objects: passwords, client secrets and certificates.

Passwords (``Credential.kind`` ``password``) and client secrets (``secret``) are stored only as
scrypt hashes (:func:`~propylon.store.hash_secret`); a secret keeps its first three characters
as ``hint`` (Graph shows them too), which also picks the few hashes worth checking. A new
client secret's text is returned once and never stored. Certificates (``certificate``) keep
their PEM and SHA-1 thumbprint; their key signs client assertions (RFC 7523). Every check does
one slow hash even when there is nothing to compare with, so "no such user" and "wrong
password" take the same time.

Example::

    credentials = Credentials(db)
    added = credentials.add_secret(sp_oid, tenant_id=tid)     # added.secret_text: shown once
    credentials.verify_client_secret(sp, presented_secret)
"""

from __future__ import annotations

import functools
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from cryptography import x509
from sqlalchemy import select

from propylon.errors import BadRequest, NotFound
from propylon.identity.certificates import Certificate, load_certificate
from propylon.store import Database, as_utc, hash_secret, utcnow, verify_secret
from propylon.store.models import Credential, Principal

__all__ = [
    "DEFAULT_SECRET_LIFETIME",
    "MIN_PASSWORD_LENGTH",
    "Credentials",
    "KeyCredential",
    "PasswordCredential",
    "check_password",
    "password_row",
]

#: Graph's default lifetime of a client secret added without ``endDateTime``.
DEFAULT_SECRET_LIFETIME = timedelta(days=730)
MIN_PASSWORD_LENGTH = 8
# The directory's change kind and principal kind, spelled here to keep this module below it.
_PRINCIPALS_CHANGE = "principals"
_SERVICE_PRINCIPAL = "servicePrincipal"


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


@dataclass(frozen=True)
class PasswordCredential:
    """A client secret as Graph's ``passwordCredential``; ``secret_text`` only when just made."""

    key_id: str
    display_name: str | None
    hint: str | None
    start: datetime
    end: datetime | None
    secret_text: str | None = field(default=None, repr=False)

    def graph(self) -> dict[str, Any]:
        return {
            "customKeyIdentifier": None,
            "displayName": self.display_name,
            "endDateTime": _iso(self.end),
            "hint": self.hint,
            "keyId": self.key_id,
            "secretText": self.secret_text,
            "startDateTime": _iso(self.start),
        }


@dataclass(frozen=True)
class KeyCredential:
    """A certificate as Graph's ``keyCredential`` (public part only)."""

    key_id: str
    display_name: str | None
    thumbprint: str
    start: datetime
    end: datetime | None

    def graph(self) -> dict[str, Any]:
        return {
            "customKeyIdentifier": self.thumbprint,
            "displayName": self.display_name,
            "endDateTime": _iso(self.end),
            "keyId": self.key_id,
            "startDateTime": _iso(self.start),
            "type": "AsymmetricX509Cert",
            "usage": "Verify",
            "key": None,
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else as_utc(moment).isoformat().replace("+00:00", "Z")


class Credentials:
    """The credentials of the directory's objects, by object id."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add_secret(
        self,
        oid: str,
        *,
        tenant_id: str,
        display_name: str | None = None,
        end: datetime | None = None,
        now: datetime | None = None,
    ) -> PasswordCredential:
        """A new client secret; its text is in the answer and nowhere else, ever."""
        moment = now or utcnow()
        end = as_utc(end) if end is not None else moment + DEFAULT_SECRET_LIFETIME
        if end <= moment:
            raise _bad_request("endDateTime must be in the future.")
        secret = _new_client_secret()
        row = password_row(oid, "secret", secret, display_name=display_name, end=end, now=moment)
        self._add(oid, tenant_id, row)
        return PasswordCredential(
            key_id=row.id,
            display_name=display_name,
            hint=row.hint,
            start=moment,
            end=end,
            secret_text=secret,
        )

    def add_certificate(
        self,
        oid: str,
        certificate: bytes | str | x509.Certificate,
        *,
        tenant_id: str,
        display_name: str | None = None,
        end: datetime | None = None,
        now: datetime | None = None,
    ) -> KeyCredential:
        """Register a certificate whose key signs client assertions (RFC 7523)."""
        try:
            cert = load_certificate(certificate)
        except ValueError as exc:
            raise _bad_request(str(exc)) from None
        moment = now or utcnow()
        not_after = as_utc(cert.certificate.not_valid_after_utc)
        end = min(as_utc(end), not_after) if end is not None else not_after
        if end <= moment:
            raise _bad_request("The certificate has expired.")
        row = Credential(
            id=str(uuid.uuid4()),
            principal_id=oid,
            kind="certificate",
            thumbprint=cert.sha1_hex,
            public_pem=cert.pem,
            display_name=display_name or cert.subject,
            expires_at=end,
            created_at=moment,
        )
        self._add(oid, tenant_id, row)
        return KeyCredential(row.id, row.display_name, cert.sha1_hex, moment, end)

    def remove(self, oid: str, key_id: str, *, tenant_id: str) -> None:
        with self._db.transaction() as session:
            principal = session.get(Principal, oid)
            credential = session.get(Credential, key_id)
            if principal is None or principal.tenant_id != tenant_id:
                raise _not_found(oid)
            if credential is None or credential.principal_id != oid:
                raise _not_found(key_id)
            session.delete(credential)
            Database.record_change(session, _PRINCIPALS_CHANGE, oid)

    def secrets_of(self, oid: str) -> list[PasswordCredential]:
        return [
            PasswordCredential(c.id, c.display_name, c.hint, as_utc(c.created_at), _opt(c))
            for c in self._credentials(oid, "secret")
        ]

    def certificates_of(self, oid: str) -> list[tuple[KeyCredential, Certificate]]:
        found = []
        for c in self._credentials(oid, "certificate"):
            view = KeyCredential(
                c.id, c.display_name, c.thumbprint or "", as_utc(c.created_at), _opt(c)
            )
            found.append((view, load_certificate(c.public_pem or "")))
        return found

    # -- verifying ----------------------------------------------------------------------------

    def verify_password(self, user: _HasId | None, password: str) -> bool:
        """Check a user's password; the same work is done when there is no such user."""
        hashes = self._valid_hashes(user.id, "password") if user is not None else []
        return _verify_any(password, hashes)

    def verify_client_secret(self, client: _HasId | None, secret: str) -> bool:
        """Check a client secret against the principal's unexpired secrets."""
        if client is None:
            return _verify_any(secret, [])
        valid = self._valid_hashes_with_hints(client.id, "secret")
        # Only secrets whose hint (their first characters) matches are worth a slow hash.
        candidates = [h for hint, h in valid if hint is None or secret.startswith(hint)]
        return _verify_any(secret, candidates)

    def _valid_hashes(self, oid: str, kind: str) -> list[str]:
        return [h for _, h in self._valid_hashes_with_hints(oid, kind)]

    def _valid_hashes_with_hints(self, oid: str, kind: str) -> list[tuple[str | None, str]]:
        now = utcnow()
        return [
            (c.hint, c.secret_hash)
            for c in self._credentials(oid, kind)
            if c.secret_hash and (c.expires_at is None or as_utc(c.expires_at) > now)
        ]

    def _credentials(self, oid: str, kind: str) -> list[Credential]:
        with self._db.reader() as session:
            rows = session.scalars(
                select(Credential)
                .where(Credential.principal_id == oid, Credential.kind == kind)
                .order_by(Credential.created_at)
            )
            return list(rows)

    def _add(self, oid: str, tenant_id: str, row: Credential) -> None:
        with self._db.transaction() as session:
            principal = session.get(Principal, oid)
            if principal is None or principal.tenant_id != tenant_id:
                raise _not_found(oid)
            if principal.kind != _SERVICE_PRINCIPAL:
                raise _bad_request("Only applications can have client credentials.")
            session.add(row)
            Database.record_change(session, _PRINCIPALS_CHANGE, oid)


def _opt(credential: Credential) -> datetime | None:
    return as_utc(credential.expires_at) if credential.expires_at else None


def _new_client_secret() -> str:
    # Entra-like: 40 characters from a URL-safe alphabet (240 bits).
    return secrets.token_urlsafe(30)


def password_row(
    oid: str,
    kind: str,
    secret: str,
    *,
    display_name: str | None = None,
    end: datetime | None = None,
    now: datetime | None = None,
) -> Credential:
    return Credential(
        id=str(uuid.uuid4()),
        principal_id=oid,
        kind=kind,
        secret_hash=hash_secret(secret),
        hint=secret[:3] if kind == "secret" else None,
        display_name=display_name,
        expires_at=end,
        created_at=now or utcnow(),
    )


def _verify_any(secret: str, hashes: Sequence[str]) -> bool:
    if not hashes:
        verify_secret(secret, _dummy_hash())
        return False
    return any(verify_secret(secret, stored) for stored in hashes)


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against when no credential matches (see the module docstring); made on
    first use, not at import."""
    return hash_secret(secrets.token_urlsafe(16))


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise _bad_request(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")


def _not_found(oid: str) -> NotFound:
    return NotFound(
        f"Resource '{oid}' does not exist or one of its queried reference-property objects "
        "are not present.",
        code="Request_ResourceNotFound",
    )


def _bad_request(message: str) -> BadRequest:
    return BadRequest(message, code="Request_BadRequest")
