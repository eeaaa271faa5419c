"""PlatformAccess: whose object ids a token may speak for (tid + oid, reference §3.6 step 7).

Real parts throughout: our built-in issuer and a trusted external one (tenant B), each with its
own signing key, the validator, a SQLite directory and the RBAC engine. Only the role
assignments are written straight into a :class:`Policy`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from propylon.authz import BUILTIN_ROLES_BY_NAME, CachedAuthorizer, Policy, RoleAssignment
from propylon.errors import Unauthenticated
from propylon.identity import (
    Directory,
    DirectoryObject,
    IssuerUrl,
    KeyRing,
    PrincipalClaims,
    PrincipalKind,
    SigningKey,
    StaticJwks,
    TokenIssuer,
    TokenValidator,
    TrustedIssuer,
)
from propylon.server.access import DATA_PLANE_AUDIENCES, PlatformAccess
from propylon.store import Database

OURS = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OUR_SECOND = "3c1d1c44-7f0e-4a55-9f5e-2a8c2b0f6a01"  # a second tenant of our directory
TENANT_B = "fa15d692-e9c7-4460-a743-29f2956fd429"
ML = DATA_PLANE_AUDIENCES[0]
WS = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w"
SCORE = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/score/action"
ENDPOINT = f"{WS}/onlineEndpoints/e1"


def _issuer(base: str) -> tuple[TokenIssuer, KeyRing, IssuerUrl]:
    start = datetime.now(UTC) - timedelta(days=1)
    keyring = KeyRing([SigningKey.generate(start)])
    urls = IssuerUrl(base)
    return TokenIssuer(keyring, urls), keyring, urls


@dataclass
class Scene:
    access: PlatformAccess
    directory: Directory
    authorizer: CachedAuthorizer
    ours: TokenIssuer
    tenant_b: TokenIssuer

    def grant_score(self, principal_id: str) -> None:
        role = BUILTIN_ROLES_BY_NAME["AzureML Data Scientist"]
        assignment = RoleAssignment(str(uuid.uuid4()), WS, role.id, principal_id)
        self.authorizer.replace(Policy(assignments=[*self._assignments, assignment]))
        self._assignments.append(assignment)

    def our_token(self, who: DirectoryObject, *, tenant: str = OURS) -> str:
        kind = PrincipalKind.USER if who.upn else PrincipalKind.APP
        principal = PrincipalClaims(oid=who.id, kind=kind, app_id=who.client_id or "cli")
        return self.ours.issue_access_token(tenant, principal, ML).token

    def b_token(self, oid: str, *, groups: tuple[str, ...] = ()) -> str:
        principal = PrincipalClaims(oid=oid, kind=PrincipalKind.APP, app_id=oid, group_ids=groups)
        return self.tenant_b.issue_access_token(TENANT_B, principal, ML).token

    def may_score(self, token: str) -> bool:
        caller = self.access.authenticate(token, audiences=DATA_PLANE_AUDIENCES)
        return self.access.allowed(caller, SCORE, ENDPOINT)

    def __post_init__(self) -> None:
        self._assignments: list[RoleAssignment] = []


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[Scene]:
    db = Database.connect(f"sqlite:///{tmp_path / 'state.db'}")
    db.migrate()
    directory = Directory(db, default_tenant=OURS)
    ours, our_keys, our_urls = _issuer("https://idp.propylon.test")
    tenant_b, b_keys, b_urls = _issuer("https://idp.tenant-b.test")
    validator = TokenValidator(
        [
            TrustedIssuer(
                our_urls.template, StaticJwks(our_keys), audiences=(ML,), endpoint_tokens=True
            ),
            TrustedIssuer(b_urls.template, StaticJwks(b_keys), audiences=(ML,), tenant_id=TENANT_B),
        ],
        principal_is_active=directory.is_active,
    )
    authorizer = CachedAuthorizer(Policy())
    access = PlatformAccess(validator, ours, authorizer, directory, tenant_id=OURS)
    yield Scene(access, directory, authorizer, ours, tenant_b)
    db.dispose()


# --- our own tenants ------------------------------------------------------------------------------


def test_our_principal_is_authorized_by_its_oid_with_groups_from_the_directory(
    scene: Scene,
) -> None:
    alice = scene.directory.create_user(OURS, "alice@contoso.test", "Alice", "correct horse")
    team = scene.directory.create_group(OURS, "team")
    scene.directory.add_member(team.id, alice.id, tenant_id=OURS)
    scene.grant_score(team.id)
    caller = scene.access.authenticate(scene.our_token(alice), audiences=DATA_PLANE_AUDIENCES)
    assert (caller.oid, caller.tid, caller.groups) == (alice.id, OURS, {team.id})
    assert scene.access.allowed(caller, SCORE, ENDPOINT)


def test_a_principal_of_our_second_tenant_is_ours_too(scene: Scene) -> None:
    app = scene.directory.create_application(OUR_SECOND, "second-tenant-app")
    scene.grant_score(app.id)
    assert scene.may_score(scene.our_token(app, tenant=OUR_SECOND))


# --- a trusted external tenant ------------------------------------------------------------------


def test_an_external_principal_is_granted_by_an_assignment_to_its_own_oid(scene: Scene) -> None:
    outsider = str(uuid.uuid4())
    assert not scene.may_score(scene.b_token(outsider))
    scene.grant_score(outsider)
    caller = scene.access.authenticate(scene.b_token(outsider), audiences=DATA_PLANE_AUDIENCES)
    assert (caller.oid, caller.tid) == (outsider, TENANT_B)
    assert scene.access.allowed(caller, SCORE, ENDPOINT)


def test_an_external_principal_is_granted_through_a_group_of_its_own_tenant(scene: Scene) -> None:
    b_group = str(uuid.uuid4())
    scene.grant_score(b_group)
    assert scene.may_score(scene.b_token(str(uuid.uuid4()), groups=(b_group,)))


@pytest.mark.parametrize("kind", ["user", "service principal", "managed identity", "group"])
def test_an_external_token_bearing_one_of_our_object_ids_is_refused(
    scene: Scene, kind: str
) -> None:
    directory = scene.directory
    ours = {
        "user": lambda: directory.create_user(OURS, "bob@contoso.test", "Bob", "correct horse"),
        "service principal": lambda: directory.create_application(OURS, "app"),
        "managed identity": lambda: directory.create_managed_identity(
            OURS, "mi", resource_id=f"{WS}/onlineEndpoints/e1"
        ),
        "group": lambda: directory.create_group(OURS, "team"),
    }[kind]()
    scene.grant_score(ours.id)
    for oid in (ours.id, ours.id.upper()):  # RBAC compares object ids case-insensitively
        with pytest.raises(Unauthenticated, match="cannot act for an object of this directory"):
            scene.access.authenticate(scene.b_token(oid), audiences=DATA_PLANE_AUDIENCES)


def test_our_groups_in_an_external_tokens_groups_claim_are_dropped(scene: Scene) -> None:
    team = scene.directory.create_group(OURS, "team")
    carol = scene.directory.create_user(OURS, "carol@contoso.test", "Carol", "correct horse")
    b_group = str(uuid.uuid4())
    scene.grant_score(team.id)
    scene.grant_score(carol.id)  # a user's id in ``groups`` must not count either
    claimed = (team.id, carol.id.upper(), b_group)
    token = scene.b_token(str(uuid.uuid4()), groups=claimed)
    caller = scene.access.authenticate(token, audiences=DATA_PLANE_AUDIENCES)
    assert caller.groups == {b_group}
    assert not scene.access.allowed(caller, SCORE, ENDPOINT)
