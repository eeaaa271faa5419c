"""The store-backed directory: objects, credentials, transitive groups, and its caches."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from identity_support import self_signed
from token_support import OTHER_TENANT, TENANT

from propylon.errors import BadRequest, NotFound
from propylon.identity.directory import Directory, ObjectKind, transitive_groups
from propylon.store import Database, utcnow

PASSWORD = "correct horse battery"


def test_transitive_groups_follow_nesting_and_survive_cycles() -> None:
    direct = {"u": ["a"], "a": ["b"], "b": ["c", "a"], "c": ["a"]}
    assert transitive_groups(direct, "u") == {"a", "b", "c"}
    assert transitive_groups(direct, "a") == {"b", "c"}
    assert transitive_groups(direct, "nobody") == frozenset()


def test_groups_of_is_transitive_through_the_store(directory: Directory) -> None:
    alice = directory.create_user(TENANT, "alice@contoso.test", "Alice", PASSWORD)
    team, dept, org = (directory.create_group(TENANT, n) for n in ("team", "dept", "org"))
    directory.add_member(team.id, alice.id, tenant_id=TENANT)
    directory.add_member(dept.id, team.id, tenant_id=TENANT)
    directory.add_member(org.id, dept.id, tenant_id=TENANT)
    directory.add_member(team.id, org.id, tenant_id=TENANT)  # a cycle

    assert directory.groups_of(alice.id) == {team.id, dept.id, org.id}
    directory.remove_member(team.id, alice.id, tenant_id=TENANT)
    assert directory.groups_of(alice.id) == frozenset()


def test_membership_errors(directory: Directory) -> None:
    alice = directory.create_user(TENANT, "alice@contoso.test", "Alice", PASSWORD)
    team = directory.create_group(TENANT, "team")
    directory.add_member(team.id, alice.id, tenant_id=TENANT)
    with pytest.raises(BadRequest, match="already exist"):
        directory.add_member(team.id, alice.id, tenant_id=TENANT)
    with pytest.raises(BadRequest, match="itself"):
        directory.add_member(team.id, team.id, tenant_id=TENANT)
    with pytest.raises(NotFound):
        directory.add_member(alice.id, team.id, tenant_id=TENANT)  # a user is not a group
    with pytest.raises(NotFound):
        directory.add_member(team.id, alice.id, tenant_id=OTHER_TENANT)


def test_is_active_follows_enable_disable_and_delete(directory: Directory) -> None:
    sp = directory.create_application(TENANT, "app")
    assert directory.is_active(TENANT, sp.id)
    directory.set_enabled(sp.id, False, tenant_id=TENANT)
    assert not directory.is_active(TENANT, sp.id)
    directory.set_enabled(sp.id, True, tenant_id=TENANT)
    assert directory.is_active(TENANT, sp.id)
    directory.delete(sp.id, tenant_id=TENANT)
    assert not directory.is_active(TENANT, sp.id)
    assert not directory.is_active(TENANT, "00000000-0000-0000-0000-000000000000")


def test_is_active_trusts_tenants_of_external_issuers(directory: Directory) -> None:
    assert directory.is_active(OTHER_TENANT, "any-oid")


def test_holds_knows_every_object_of_every_tenant_until_it_is_deleted(
    directory: Directory,
) -> None:
    user = directory.create_user(TENANT, "alice@contoso.test", "Alice", PASSWORD)
    group = directory.create_group(TENANT, "team")
    elsewhere = directory.create_application("3c1d1c44-7f0e-4a55-9f5e-2a8c2b0f6a01", "app")
    for oid in (user.id, group.id, elsewhere.id, user.id.upper()):
        assert directory.holds(oid)
    assert not directory.holds("00000000-0000-0000-0000-000000000001")
    directory.delete(user.id, tenant_id=TENANT)  # the cached answer is dropped with it
    assert not directory.holds(user.id)


def test_another_replicas_write_reaches_the_cache_through_the_change_feed(
    db: Database, directory: Directory
) -> None:
    other_replica = Directory(db, default_tenant=TENANT)
    sp = directory.create_application(TENANT, "app")
    assert other_replica.is_active(TENANT, sp.id)  # now cached there

    directory.set_enabled(sp.id, False, tenant_id=TENANT)
    assert other_replica.is_active(TENANT, sp.id)  # stale until the feed says so
    other_replica.on_changes(db.changes_since(0))
    assert not other_replica.is_active(TENANT, sp.id)


def test_user_names_are_unique_per_tenant_in_any_case(directory: Directory) -> None:
    directory.create_user(TENANT, "alice@contoso.test", "Alice", PASSWORD)
    with pytest.raises(BadRequest, match="already exists"):
        directory.create_user(TENANT, "ALICE@contoso.test", "Alice 2", PASSWORD)
    assert directory.find_user(TENANT, "Alice@Contoso.Test") is not None
    assert directory.create_user(OTHER_TENANT, "alice@contoso.test", "Alice", PASSWORD)


@pytest.mark.parametrize(
    ("upn", "password"),
    [("alice", PASSWORD), ("alice@", PASSWORD), ("a b@c.d", PASSWORD), ("a@c.d", "short")],
)
def test_invalid_users_are_refused(directory: Directory, upn: str, password: str) -> None:
    with pytest.raises(BadRequest):
        directory.create_user(TENANT, upn, "A", password)


def test_passwords_are_hashed_and_verified(directory: Directory, db: Database) -> None:
    from sqlalchemy import select

    from propylon.store.models import Credential

    alice = directory.create_user(TENANT, "alice@contoso.test", "Alice", PASSWORD)
    assert directory.credentials.verify_password(alice, PASSWORD)
    assert not directory.credentials.verify_password(alice, "wrong password")
    assert not directory.credentials.verify_password(None, PASSWORD)
    with db.reader() as session:
        stored = session.scalars(select(Credential.secret_hash)).one()
    assert stored is not None
    assert stored.startswith("scrypt$")
    assert PASSWORD not in stored


def test_client_secrets_are_shown_once_and_expire(directory: Directory) -> None:
    sp = directory.create_application(TENANT, "app")
    fresh = directory.credentials.add_secret(sp.id, tenant_id=TENANT, display_name="ci")
    assert fresh.secret_text is not None
    assert len(fresh.secret_text) >= 40
    assert fresh.hint == fresh.secret_text[:3]
    assert directory.credentials.verify_client_secret(sp, fresh.secret_text)
    listed = directory.credentials.secrets_of(sp.id)
    assert [s.secret_text for s in listed] == [None]
    assert listed[0].graph()["keyId"] == fresh.key_id

    then = utcnow() - timedelta(days=3)
    old = directory.credentials.add_secret(
        sp.id, tenant_id=TENANT, end=then + timedelta(days=1), now=then
    )
    assert old.secret_text is not None
    assert not directory.credentials.verify_client_secret(sp, old.secret_text)
    with pytest.raises(BadRequest, match="future"):
        directory.credentials.add_secret(
            sp.id, tenant_id=TENANT, end=utcnow() - timedelta(seconds=1)
        )
    directory.credentials.remove(sp.id, fresh.key_id, tenant_id=TENANT)
    assert not directory.credentials.verify_client_secret(sp, fresh.secret_text)


def test_certificates_are_registered_with_their_thumbprints(
    directory: Directory, private_keys: list[rsa.RSAPrivateKey]
) -> None:
    sp = directory.create_application(TENANT, "app")
    cert = self_signed(private_keys[1])
    view = directory.credentials.add_certificate(sp.id, cert, tenant_id=TENANT)
    [(listed, parsed)] = directory.credentials.certificates_of(sp.id)
    assert listed.thumbprint == view.thumbprint == parsed.sha1_hex
    assert parsed.matches(x5t=parsed.x5t)
    assert parsed.matches(x5t_s256=parsed.x5t_s256)
    assert parsed.matches(x5t=parsed.sha1_hex)
    assert not parsed.matches(x5t_s256=parsed.x5t)
    assert view.end is not None
    assert view.end <= cert.not_valid_after_utc
    with pytest.raises(BadRequest):
        directory.credentials.add_certificate(sp.id, "not a certificate", tenant_id=TENANT)


def test_only_applications_hold_client_credentials(directory: Directory) -> None:
    alice = directory.create_user(TENANT, "alice@contoso.test", "Alice", PASSWORD)
    with pytest.raises(BadRequest):
        directory.credentials.add_secret(alice.id, tenant_id=TENANT)


def test_managed_identities_are_found_by_client_id_and_resource_id(directory: Directory) -> None:
    rid = (
        "/subscriptions/s/resourceGroups/rg/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/mi"
    )
    mi = directory.create_managed_identity(TENANT, "mi", resource_id=rid)
    assert mi.kind is ObjectKind.MANAGED_IDENTITY
    assert mi.resource_id == rid
    assert directory.find_client(TENANT, mi.name) == mi
    assert directory.find_managed_identity(TENANT, rid.upper()) == mi


def test_delete_removes_memberships_and_credentials(directory: Directory) -> None:
    sp = directory.create_application(TENANT, "app")
    secret = directory.credentials.add_secret(sp.id, tenant_id=TENANT).secret_text or ""
    team = directory.create_group(TENANT, "team")
    directory.add_member(team.id, sp.id, tenant_id=TENANT)
    directory.delete(team.id, tenant_id=TENANT)
    assert directory.groups_of(sp.id) == frozenset()
    directory.delete(sp.id, tenant_id=TENANT)
    assert not directory.credentials.verify_client_secret(sp, secret)
    with pytest.raises(NotFound):
        directory.delete(sp.id, tenant_id=TENANT)


def test_common_and_organizations_name_the_default_tenant(directory: Directory) -> None:
    assert directory.resolve_tenant("common") == TENANT
    assert directory.resolve_tenant("organizations") == TENANT
    assert directory.resolve_tenant(TENANT.upper()) == TENANT
    assert directory.resolve_tenant(OTHER_TENANT) is None
