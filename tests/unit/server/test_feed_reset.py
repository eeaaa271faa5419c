"""A server that missed changes because they were pruned before it read them (cut off from the
store for longer than the change feed keeps rows) reloads everything its followers cache."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from propylon.config import Settings
from propylon.gateway.testing import StoreSeeder
from propylon.identity.keys import KeyRing
from propylon.identity.keystore import KeyStore, ensure_keys
from propylon.server.app import build_context, create_gateway_app
from propylon.server.context import ServerContext
from propylon.store import utcnow
from propylon.store.models import RoleAssignmentRow

READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[ServerContext]:
    context = build_context(Settings(data_dir=tmp_path / "data", tls=False).validated())
    create_gateway_app(context)  # the gateway's followers too
    yield context
    context.db.dispose()


def test_every_follower_reloads_after_missing_pruned_changes(ctx: ServerContext) -> None:
    tenant = ctx.tenancy.tenant_id
    directory = ctx.services["directory"]
    policy = ctx.services["policy"].authorizer
    tables = ctx.services["gateway"].tables
    keyring = ctx.services["identity"].keyring
    seed = StoreSeeder(ctx.resources, ctx.vault, ctx.tenancy.workspace_id)
    seed.endpoint("e1", keys=("k1", "k2"))
    app = directory.create_application(tenant, "app")
    ctx.feed.poll()
    assert directory.is_active(tenant, app.id)  # cached
    assert tables.current.endpoints["e1"].keys == (b"k1", b"k2")
    assignments = policy.policy.assignment_count

    # Another replica writes while this one is cut off from the store…
    directory_elsewhere = type(directory)(ctx.db, default_tenant=tenant)
    directory_elsewhere.set_enabled(app.id, False, tenant_id=tenant)
    seed.keys("e1", "k3", "k4")
    with ctx.db.transaction() as session:
        session.add(
            RoleAssignmentRow(
                id="6f2b9c1e-0000-4000-8000-000000000001",
                scope="/",
                role_definition_id=READER,
                principal_id=app.id,
                principal_type="ServicePrincipal",
                body={},
                created_at=utcnow(),
            )
        )
        ctx.db.record_change(session, "roleassignments", "/")
    elsewhere = KeyRing()
    ensure_keys(KeyStore(ctx.db, ctx.sealer), elsewhere)
    new_key = KeyStore(ctx.db, ctx.sealer).rotate(elsewhere)
    # …and those changes are pruned before it is back: only the newest row is kept, an
    # unrelated write after them.
    seed.endpoint("unrelated")
    ctx.db.prune_changes(utcnow() + timedelta(seconds=1))
    assert [c.kind for c in ctx.db.changes_since(0)] == ["onlineendpoints"]

    ctx.feed.poll()

    assert not directory.is_active(tenant, app.id)
    assert tables.current.endpoints["e1"].keys == (b"k3", b"k4")
    assert policy.policy.assignment_count == assignments + 1
    assert new_key.kid in {key.kid for key in keyring.all_keys()}
