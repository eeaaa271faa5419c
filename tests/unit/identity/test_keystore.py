"""Signing keys at rest: sealed in the store, loaded by every replica, rotated publish-first."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from propylon.errors import ConfigurationError, NotFound
from propylon.identity import KeyRing, KeyState
from propylon.identity.keystore import (
    SIGNING_KEYS_CHANGE,
    KeyStore,
    ensure_keys,
    follow_changes,
)
from propylon.store import Database, MasterKey, Sealer, utcnow
from propylon.store.models import Change, SigningKeyRow


@pytest.fixture
def sealer() -> Sealer:
    return Sealer(MasterKey.generate().material)


@pytest.fixture
def store(db: Database, sealer: Sealer) -> KeyStore:
    return KeyStore(db, sealer)


def test_a_fresh_store_gets_one_key_that_signs_at_once(store: KeyStore, db: Database) -> None:
    ring = KeyRing()
    changes = ensure_keys(store, ring)

    assert len(changes.added) == 1
    key = ring.signing_key(utcnow())
    assert key.kid == changes.added[0].kid
    with db.reader() as session:
        row = session.scalars(select(SigningKeyRow)).one()
        kinds = [c.kind for c in session.scalars(select(Change))]
    assert row.kid == key.kid
    assert row.state == "active"
    assert b"PRIVATE KEY" not in row.private_sealed  # sealed, not plaintext
    assert SIGNING_KEYS_CHANGE in kinds


def test_a_restart_loads_the_same_key_and_adds_none(
    store: KeyStore, sealer: Sealer, db: Database
) -> None:
    first = KeyRing()
    ensure_keys(store, first)
    again = KeyRing()
    changes = ensure_keys(KeyStore(db, sealer), again)

    assert not changes
    now = utcnow()
    assert again.signing_key(now).kid == first.signing_key(now).kid
    assert again.signing_key(now).x5t == first.signing_key(now).x5t


def test_rotation_publishes_a_pending_key_that_does_not_sign_yet(store: KeyStore) -> None:
    ring = KeyRing()
    ensure_keys(store, ring)
    old = ring.signing_key(utcnow())

    new = store.rotate(ring)

    now = utcnow()
    assert ring.state(new, now) is KeyState.PENDING
    assert ring.signing_key(now).kid == old.kid
    assert {k["kid"] for k in ring.jwks(now)["keys"]} == {old.kid, new.kid}
    later = now + ring.publish_delay + timedelta(seconds=1)
    assert ring.signing_key(later).kid == new.kid


def test_immediate_rotation_signs_at_once_and_keeps_the_old_key_validating(store: KeyStore) -> None:
    ring = KeyRing()
    ensure_keys(store, ring)
    old = ring.signing_key(utcnow())

    new = store.rotate(ring, immediate=True)

    now = utcnow()
    assert ring.signing_key(now).kid == new.kid
    assert ring.state(old, now) is KeyState.RETIRED
    assert ring.verification_key(old.kid, now) is not None
    assert ring.verification_key(old.kid, now + ring.retention + timedelta(seconds=1)) is None


def test_maintenance_prunes_expired_keys_from_the_store(store: KeyStore, db: Database) -> None:
    ring = KeyRing()
    ensure_keys(store, ring)
    old = ring.signing_key(utcnow())
    store.rotate(ring, immediate=True)

    store.maintain(ring, now=utcnow() + ring.retention + timedelta(minutes=1))

    with db.reader() as session:
        kids = set(session.scalars(select(SigningKeyRow.kid)))
    assert old.kid not in kids
    assert len(kids) == 1


def test_followers_reload_when_the_feed_reports_signing_keys(
    store: KeyStore, sealer: Sealer, db: Database
) -> None:
    leader, follower = KeyRing(), KeyRing()
    ensure_keys(store, leader)
    ensure_keys(KeyStore(db, sealer), follower)
    new = store.rotate(leader)
    assert new.kid not in {k.kid for k in follower.all_keys()}

    follow_changes(KeyStore(db, sealer), follower)(db.changes_since(0))

    assert new.kid in {k.kid for k in follower.all_keys()}


def test_a_wrong_master_key_refuses_to_load(store: KeyStore, db: Database) -> None:
    ensure_keys(store, KeyRing())
    stranger = KeyStore(db, Sealer(MasterKey.generate().material))
    with pytest.raises(ConfigurationError, match="does not open"):
        stranger.load()


def test_revoking_a_key_removes_it_and_keeps_one_signing(store: KeyStore, db: Database) -> None:
    ring = KeyRing()
    ensure_keys(store, ring)
    only = ring.signing_key(utcnow())
    pending = store.rotate(ring)

    changes = store.revoke(ring, only.kid)

    now = utcnow()
    assert ring.verification_key(only.kid, now) is None
    assert len(changes.added) == 1
    assert ring.signing_key(now).kid == changes.added[0].kid
    store.revoke(ring, pending.kid)
    assert {k.kid for k in ring.all_keys()} == {changes.added[0].kid}
    with db.reader() as session:
        assert set(session.scalars(select(SigningKeyRow.kid))) == {changes.added[0].kid}
    with pytest.raises(NotFound):
        store.revoke(ring, "no-such-kid")
