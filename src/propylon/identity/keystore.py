"""Signing keys at rest: the :class:`~propylon.identity.keys.KeyRing` kept in ``signing_keys``.

Each key is one :class:`~propylon.store.models.SigningKeyRow`: its PKCS#8 private key sealed
with the master key in slot ``signing-key/{kid}`` (a row copied under another kid fails to
open), ``activated_at`` = the key's ``not_before_use``, ``retired_at``, and ``state`` as of the
last write (informational: the state is a function of the times, see ``keys.py``).

Writers (start-up, the hourly maintenance, ``propylon identity rotate-keys``) work in one
transaction that first updates the ``meta`` row ``signing_keys_lock``: on PostgreSQL that row
lock, on SQLite the write lock taken by that first statement, serialises them, so two replicas
never rotate at once. They read the rows, run the schedule on a scratch ring, write what changed
and record a ``signing_keys`` change; only after the commit is the live ring replaced, so a key
never signs before every replica can read it. Every replica reloads its ring when the change
feed reports ``signing_keys``.

Example::

    store = KeyStore(db, sealer)
    ring = KeyRing()
    store.maintain(ring)                  # first start: one key, active at once
    store.rotate(ring, immediate=False)   # published now, signs after the publish delay
    store.revoke(ring, leaked_kid)        # emergency: gone from every replica at once
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from propylon.errors import ConfigurationError, NotFound
from propylon.identity.keys import KeyRing, KeyRingChanges, KeyState, SigningKey
from propylon.store import RESET, Database, Sealer, UnsealError, as_utc, utcnow
from propylon.store.changes import Subscriber
from propylon.store.models import Change, Meta, SigningKeyRow

__all__ = [
    "SIGNING_KEYS_CHANGE",
    "KeyStore",
    "ensure_keys",
    "follow_changes",
    "maintain_forever",
    "scratch_ring",
]

log = logging.getLogger("propylon.identity.keys")

#: Change-feed kind recorded with every write to ``signing_keys``.
SIGNING_KEYS_CHANGE = "signing_keys"
_LOCK_KEY = "signing_keys_lock"


def _slot(kid: str) -> str:
    return f"signing-key/{kid}"


def scratch_ring(like: KeyRing, keys: Sequence[SigningKey] = ()) -> KeyRing:
    """A ring with the same schedule as ``like`` holding ``keys``."""
    return KeyRing(
        keys,
        publish_delay=like.publish_delay,
        rotate_every=like.rotate_every,
        max_token_lifetime=like.max_token_lifetime,
        max_clock_skew=like.max_clock_skew,
    )


class KeyStore:
    """Loads and saves a key ring; see the module docstring for the locking protocol."""

    def __init__(self, db: Database, sealer: Sealer) -> None:
        self._db = db
        self._sealer = sealer

    # -- reading ---------------------------------------------------------------------------

    def load(self) -> list[SigningKey]:
        with self._db.reader() as session:
            return self._load_in(session)

    def reload(self, ring: KeyRing) -> None:
        """Replace the ring's keys with the stored ones (a follower after a change)."""
        ring.load(self.load())

    def _load_in(self, session: Session) -> list[SigningKey]:
        keys = []
        for row in session.scalars(select(SigningKeyRow)):
            try:
                pem = self._sealer.open(_slot(row.kid), row.private_sealed)
            except UnsealError:
                raise ConfigurationError(
                    f"signing key {row.kid} does not open with this master key."
                ) from None
            created = as_utc(row.created_at)
            keys.append(
                SigningKey.from_pem(
                    pem,
                    created_at=created,
                    not_before_use=as_utc(row.activated_at) if row.activated_at else created,
                    retired_at=as_utc(row.retired_at) if row.retired_at else None,
                )
            )
        return keys

    # -- writing ---------------------------------------------------------------------------

    def maintain(self, ring: KeyRing, now: datetime | None = None) -> KeyRingChanges:
        """Run the ring's schedule against the stored keys; persist and adopt the result."""
        moment = now or utcnow()
        with self._db.transaction() as session:
            self._lock(session, moment)
            scratch = scratch_ring(ring, self._load_in(session))
            changes = scratch.maintain(moment)
            if changes:
                self._persist(session, scratch, changes, moment)
        ring.load(scratch.all_keys())
        if changes:
            log.info(
                "signing keys maintained",
                extra={
                    "added": [k.kid for k in changes.added],
                    "retired": [k.kid for k in changes.retired],
                    "removed": list(changes.removed),
                },
            )
        return changes

    def rotate(
        self, ring: KeyRing, *, immediate: bool = False, now: datetime | None = None
    ) -> SigningKey:
        """Add a new key: published at once, signing after the publish delay (or at once)."""
        moment = now or utcnow()
        with self._db.transaction() as session:
            self._lock(session, moment)
            scratch = scratch_ring(ring, self._load_in(session))
            key = scratch.rotate(moment, immediate=immediate)
            retired = scratch.promote(moment) if immediate else ()
            self._persist(session, scratch, KeyRingChanges(added=(key,), retired=retired), moment)
        ring.load(scratch.all_keys())
        log.info("signing key added", extra={"kid": key.kid, "immediate": immediate})
        return key

    def revoke(self, ring: KeyRing, kid: str, *, now: datetime | None = None) -> KeyRingChanges:
        """Emergency: delete a (compromised) key; tokens it signed fail on every replica at once.

        If no key is left to sign, one is created that signs immediately.
        """
        moment = now or utcnow()
        with self._db.transaction() as session:
            self._lock(session, moment)
            scratch = scratch_ring(ring, self._load_in(session))
            if not scratch.revoke(kid):
                raise NotFound(f"No signing key has the kid {kid!r}.", code="SigningKeyNotFound")
            added: tuple[SigningKey, ...] = ()
            if not any(scratch.state(k, moment) is KeyState.ACTIVE for k in scratch.all_keys()):
                added = (scratch.rotate(moment, immediate=True),)
            changes = KeyRingChanges(added=added, removed=(kid,))
            self._persist(session, scratch, changes, moment)
        ring.load(scratch.all_keys())
        log.warning("signing key revoked", extra={"kid": kid})
        return changes

    def _lock(self, session: Session, now: datetime) -> None:
        # A write first: it takes SQLite's write lock before anything is read (a read-then-write
        # transaction could fail on a stale snapshot) and PostgreSQL's row lock.
        stamp = now.isoformat()
        result = session.execute(update(Meta).where(Meta.key == _LOCK_KEY).values(value=stamp))
        if getattr(result, "rowcount", 0) == 0:
            session.add(Meta(key=_LOCK_KEY, value=stamp))
            session.flush()

    def _persist(
        self, session: Session, ring: KeyRing, changes: KeyRingChanges, now: datetime
    ) -> None:
        for key in changes.added:
            session.add(
                SigningKeyRow(
                    kid=key.kid,
                    private_sealed=self._sealer.seal(_slot(key.kid), key.private_pem()),
                    state=ring.state(key, now).value,
                    created_at=key.created_at,
                    activated_at=key.not_before_use,
                    retired_at=key.retired_at,
                )
            )
        for key in changes.retired:
            row = session.get(SigningKeyRow, key.kid)
            if row is not None:
                row.retired_at = key.retired_at
                row.state = ring.state(key, now).value
        if changes.removed:
            session.execute(delete(SigningKeyRow).where(SigningKeyRow.kid.in_(changes.removed)))
        Database.record_change(session, SIGNING_KEYS_CHANGE, "ring")


def ensure_keys(store: KeyStore, ring: KeyRing) -> KeyRingChanges:
    """Start-up: load the stored keys and make sure one signs (a fresh data dir gets its first).

    Two replicas starting on an empty PostgreSQL database race to create the lock row; the loser
    retries once and then finds the winner's key.
    """
    try:
        return store.maintain(ring)
    except IntegrityError:
        return store.maintain(ring)


def follow_changes(store: KeyStore, ring: KeyRing) -> Subscriber:
    """A change-feed subscriber that reloads ``ring`` whenever the stored keys change."""

    def on_changes(changes: Sequence[Change]) -> None:
        if any(change.kind in (SIGNING_KEYS_CHANGE, RESET) for change in changes):
            store.reload(ring)

    return on_changes


async def maintain_forever(
    store: KeyStore, ring: KeyRing, *, every: timedelta = timedelta(hours=1)
) -> None:
    """Run :meth:`KeyStore.maintain` every ``every`` until cancelled; failures are retried."""
    while True:
        await asyncio.sleep(every.total_seconds())
        try:
            await asyncio.to_thread(store.maintain, ring)
        except Exception:
            log.exception("signing key maintenance failed; retrying at the next interval")
