"""Decision semantics: denies first, grants OR-ed, notActions per entry, data vs control plane,
explanations, the Permissions API view, and the decision cache (reference §1.3, §1.4, §1.9)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from propylon.authz import (
    BUILTIN_ROLES_BY_NAME,
    EVERYONE,
    CachedAuthorizer,
    DenyAssignment,
    Permission,
    Policy,
    RoleAssignment,
    RoleDefinition,
    role_definition_resource_id,
)
from propylon.errors import BadRequest

ML = "Microsoft.MachineLearningServices"
SUB = "/subscriptions/11111111-1111-1111-1111-111111111111"
RG = f"{SUB}/resourceGroups/rg"
WS = f"{RG}/providers/{ML}/workspaces/ws"
EP = f"{WS}/onlineEndpoints/ep"
SCORE = f"{ML}/workspaces/onlineEndpoints/score/action"
DELETE = f"{ML}/workspaces/onlineEndpoints/delete"
READ = f"{ML}/workspaces/onlineEndpoints/read"
CHAT = "Microsoft.CognitiveServices/accounts/OpenAI/deployments/chat/completions/action"

OWNER = BUILTIN_ROLES_BY_NAME["Owner"].id
READER = BUILTIN_ROLES_BY_NAME["Reader"].id
DATA_SCIENTIST = BUILTIN_ROLES_BY_NAME["AzureML Data Scientist"].id
COG_USER = BUILTIN_ROLES_BY_NAME["Cognitive Services User"].id


def grant(principal: str, role: str, scope: str, assignment_id: str = "a1") -> RoleAssignment:
    return RoleAssignment(assignment_id, scope, role, principal)


def test_no_assignments_means_no_access_with_a_reason() -> None:
    decision = Policy().authorize("alice", [], SCORE, EP)
    assert not decision.allowed
    assert not decision
    assert decision.matched_assignment_id is None
    assert "No role assignment of principal 'alice'" in decision.reason
    assert SCORE in decision.reason


def test_assignment_applies_to_its_scope_and_descendants_not_siblings() -> None:
    policy = Policy(assignments=[grant("alice", OWNER, WS)])
    assert policy.authorize("alice", [], SCORE, EP).allowed
    assert policy.authorize("alice", [], SCORE, WS).allowed
    assert not policy.authorize("alice", [], SCORE, RG).allowed
    assert not policy.authorize("alice", [], SCORE, f"{RG}/providers/{ML}/workspaces/ws2").allowed


def test_allow_decision_explains_assignment_role_entry_and_pattern() -> None:
    policy = Policy(assignments=[grant("alice", DATA_SCIENTIST, WS, "assign-7")])
    decision = policy.authorize("alice", [], SCORE, EP)
    assert decision.allowed
    assert decision.matched_assignment_id == "assign-7"
    assert decision.matched_role == "AzureML Data Scientist"
    assert decision.matched_permission_index == 0
    assert decision.matched_pattern == f"{ML}/workspaces/*/action"
    assert decision.deny_assignment_id is None
    assert "assign-7" in decision.reason
    assert "AzureML Data Scientist" in decision.reason
    assert f"'{ML}/workspaces/*/action'" in decision.reason


def test_principal_and_role_ids_compare_case_insensitively() -> None:
    policy = Policy(assignments=[grant("ALICE-OID", DATA_SCIENTIST.upper(), WS.upper())])
    assert policy.authorize("alice-oid", [], SCORE.upper(), EP.lower()).allowed


def test_full_role_definition_id_resolves_to_the_role() -> None:
    full = role_definition_resource_id(READER, SUB)
    policy = Policy(assignments=[grant("alice", full, SUB)])
    assert policy.authorize("alice", [], READ, EP).allowed


def test_assignment_of_an_unknown_role_grants_nothing_and_is_reported() -> None:
    ghost = grant("alice", "99999999-9999-9999-9999-999999999999", SUB)
    policy = Policy(assignments=[ghost])
    assert not policy.authorize("alice", [], READ, EP).allowed
    assert policy.dangling_assignments == (ghost,)
    assert policy.assignment_count == 0


def test_not_actions_subtract_only_within_their_own_entry() -> None:
    role = RoleDefinition(
        id="c0000000-0000-0000-0000-000000000001",
        role_name="two entries",
        permissions=(
            Permission(actions=(f"{ML}/*",), not_actions=(DELETE,)),
            Permission(actions=(DELETE,)),
        ),
    )
    policy = Policy([role], [grant("alice", role.id, WS)])
    decision = policy.authorize("alice", [], DELETE, EP)
    assert decision.allowed
    assert decision.matched_permission_index == 1


def test_not_actions_of_one_role_do_not_remove_another_roles_grant() -> None:
    """§6.2 vector 5: NotActions is not a deny."""
    custom = RoleDefinition(
        id="c0000000-0000-0000-0000-000000000002",
        role_name="workspace writer",
        permissions=(Permission(actions=(f"{ML}/workspaces/write",)),),
    )
    policy = Policy(
        [custom], [grant("alice", DATA_SCIENTIST, WS, "ds"), grant("alice", custom.id, WS, "c")]
    )
    decision = policy.authorize("alice", [], f"{ML}/workspaces/write", WS)
    assert decision.allowed
    assert decision.matched_assignment_id == "c"


def test_control_plane_star_never_grants_data_actions() -> None:
    policy = Policy(assignments=[grant("alice", OWNER, SUB)])
    decision = policy.authorize("alice", [], CHAT, SUB, data_action=True)
    assert not decision.allowed
    assert decision.data_action
    assert "only dataActions are consulted" in decision.reason


def test_data_actions_do_not_grant_control_plane_actions() -> None:
    role = RoleDefinition(
        id="c0000000-0000-0000-0000-000000000003",
        role_name="data only",
        permissions=(Permission(data_actions=("*",)),),
    )
    policy = Policy([role], [grant("alice", role.id, SUB)])
    assert policy.authorize("alice", [], CHAT, SUB, data_action=True).allowed
    assert not policy.authorize("alice", [], CHAT, SUB).allowed


def test_not_data_actions_subtract_from_data_actions() -> None:
    role = RoleDefinition(
        id="c0000000-0000-0000-0000-000000000004",
        role_name="openai but not chat",
        permissions=(
            Permission(
                data_actions=("Microsoft.CognitiveServices/*",),
                not_data_actions=("Microsoft.CognitiveServices/*/chat/completions/action",),
            ),
        ),
    )
    policy = Policy([role], [grant("alice", role.id, SUB)])
    assert not policy.authorize("alice", [], CHAT, SUB, data_action=True).allowed
    embeddings = "Microsoft.CognitiveServices/accounts/OpenAI/deployments/embeddings/action"
    assert policy.authorize("alice", [], embeddings, SUB, data_action=True).allowed


def test_group_assignment_applies_only_when_the_group_id_is_presented() -> None:
    policy = Policy(assignments=[grant("group-ds", DATA_SCIENTIST, WS, "g")])
    decision = policy.authorize("bob", ["GROUP-DS"], SCORE, EP)
    assert decision.allowed
    assert "through group 'group-ds'" in decision.reason
    assert not policy.authorize("bob", [], SCORE, EP).allowed
    assert not policy.authorize("bob", ["other-group"], SCORE, EP).allowed


def test_direct_grant_is_explained_before_a_group_grant_at_the_same_scope() -> None:
    policy = Policy(
        assignments=[grant("g", OWNER, WS, "via-group"), grant("bob", OWNER, WS, "direct")]
    )
    assert policy.authorize("bob", ["g"], SCORE, EP).matched_assignment_id == "direct"


def test_nearest_scope_grant_is_explained_first() -> None:
    policy = Policy(assignments=[grant("bob", OWNER, SUB, "far"), grant("bob", OWNER, EP, "near")])
    assert policy.authorize("bob", [], SCORE, EP).matched_assignment_id == "near"


# --- deny assignments ----------------------------------------------------------------------------


DENY_DELETES = DenyAssignment(id="d1", scope=RG, actions=("*/delete",))


def deny(**changes: Any) -> DenyAssignment:
    return replace(DENY_DELETES, **changes)


def test_deny_takes_precedence_over_owner() -> None:
    policy = Policy(assignments=[grant("admin", OWNER, SUB)], denies=[deny()])
    decision = policy.authorize("admin", [], DELETE, EP)
    assert not decision.allowed
    assert decision.deny_assignment_id == "d1"
    assert decision.matched_pattern == "*/delete"
    assert "deny assignment 'd1'" in decision.reason
    assert policy.authorize("admin", [], READ, EP).allowed


def test_deny_everyone_spares_excluded_principals() -> None:
    """§6.2 vector 14."""
    policy = Policy(
        assignments=[grant("admin", OWNER, SUB, "o1"), grant("eve", OWNER, SUB, "o2")],
        denies=[deny(principal_ids=(EVERYONE,), excluded_principal_ids=("ADMIN",))],
    )
    assert policy.authorize("admin", [], DELETE, EP).allowed
    assert not policy.authorize("eve", [], DELETE, EP).allowed


def test_deny_exclusion_by_group_spares_its_members() -> None:
    policy = Policy(
        assignments=[grant("eve", OWNER, SUB)],
        denies=[deny(excluded_principal_ids=("break-glass",))],
    )
    assert policy.authorize("eve", ["break-glass"], DELETE, EP).allowed


def test_deny_listing_a_group_hits_its_members_only() -> None:
    policy = Policy(
        assignments=[grant("eve", OWNER, SUB, "o1"), grant("bob", OWNER, SUB, "o2")],
        denies=[deny(principal_ids=("contractors",))],
    )
    assert not policy.authorize("eve", ["contractors"], DELETE, EP).allowed
    assert policy.authorize("bob", ["staff"], DELETE, EP).allowed


def test_deny_without_children_applies_only_at_its_own_scope() -> None:
    """§6.2 vector 15: DoNotApplyToChildScopes."""
    policy = Policy(assignments=[grant("eve", OWNER, SUB)], denies=[deny(apply_to_children=False)])
    assert policy.authorize("eve", [], DELETE, EP).allowed
    assert not policy.authorize("eve", [], DELETE, RG.upper() + "/").allowed


def test_deny_at_a_sibling_scope_does_not_apply() -> None:
    policy = Policy(
        assignments=[grant("eve", OWNER, SUB)],
        denies=[deny(scope=f"{SUB}/resourceGroups/rg2")],
    )
    assert policy.authorize("eve", [], DELETE, EP).allowed


def test_deny_not_actions_carve_exceptions_out_of_the_deny() -> None:
    policy = Policy(
        assignments=[grant("eve", OWNER, SUB)],
        denies=[deny(actions=("*",), not_actions=("*/read",))],
    )
    assert policy.authorize("eve", [], READ, EP).allowed
    assert not policy.authorize("eve", [], SCORE, EP).allowed


def test_control_plane_deny_does_not_block_data_actions() -> None:
    policy = Policy(assignments=[grant("eve", COG_USER, SUB)], denies=[deny(actions=("*",))])
    assert policy.authorize("eve", [], CHAT, EP, data_action=True).allowed
    data_deny = Policy(
        assignments=[grant("eve", COG_USER, SUB)], denies=[deny(data_actions=("*",))]
    )
    assert not data_deny.authorize("eve", [], CHAT, EP, data_action=True).allowed


def test_deny_never_grants() -> None:
    policy = Policy(denies=[deny(excluded_principal_ids=("eve",))])
    assert not policy.authorize("eve", [], DELETE, EP).allowed


# --- errors ---------------------------------------------------------------------------------------


def test_malformed_scope_is_a_bad_request_not_a_refusal() -> None:
    with pytest.raises(BadRequest):
        Policy().authorize("alice", [], SCORE, "subscriptions/x")


def test_empty_action_is_a_bad_request() -> None:
    with pytest.raises(BadRequest):
        Policy().authorize("alice", [], "", EP)


def test_refusal_renders_arm_authorization_failed() -> None:
    error = Policy().authorize("oid-1", [], SCORE, EP).to_error("oid-1", client_id="app-1")
    assert error.status == 403
    assert error.code == "AuthorizationFailed"
    assert error.message == (
        f"The client 'app-1' with object id 'oid-1' does not have authorization to perform action "
        f"'{SCORE}' over scope '{EP}' or the scope is invalid. If access was recently granted, "
        "please refresh your credentials."
    )


def test_deny_refusal_names_the_deny_assignment() -> None:
    policy = Policy(assignments=[grant("eve", OWNER, SUB)], denies=[deny()])
    error = policy.authorize("eve", [], DELETE, EP).to_error("eve")
    assert "deny assignment with id 'd1'" in error.message


# --- the Permissions API view ---------------------------------------------------------------------


def test_permissions_for_lists_entries_of_every_applicable_role_once() -> None:
    policy = Policy(
        assignments=[
            grant("alice", READER, SUB, "r1"),
            grant("team", READER, RG, "r2"),
            grant("team", DATA_SCIENTIST, WS, "ds"),
            grant("alice", OWNER, f"{SUB}/resourceGroups/other", "o"),
        ]
    )
    permissions = policy.permissions_for("alice", ["team"], EP)
    assert permissions == [
        BUILTIN_ROLES_BY_NAME["AzureML Data Scientist"].permissions[0],
        BUILTIN_ROLES_BY_NAME["Reader"].permissions[0],
    ]
    assert policy.permissions_for("alice", [], f"{SUB}/resourceGroups/other") == [
        BUILTIN_ROLES_BY_NAME["Owner"].permissions[0],
        BUILTIN_ROLES_BY_NAME["Reader"].permissions[0],
    ]


def test_assignments_for_lists_inherited_assignments_nearest_first() -> None:
    policy = Policy(
        assignments=[grant("alice", READER, SUB, "r1"), grant("team", DATA_SCIENTIST, WS, "ds")]
    )
    ids = [a.id for a in policy.assignments_for("alice", ["team"], EP)]
    assert ids == ["ds", "r1"]


def test_role_lookup_and_custom_override_of_a_builtin_id() -> None:
    pinned = RoleDefinition(
        id=READER,
        role_name="Reader",
        role_type="BuiltInRole",
        permissions=(Permission(("x/read",)),),
    )
    policy = Policy([pinned], [grant("alice", READER, SUB)])
    assert policy.role(READER) is pinned
    assert policy.role("nope") is None
    assert not policy.authorize("alice", [], READ, EP).allowed
    assert Policy(include_builtin_roles=False).role(READER) is None
    assert len(Policy().role_definitions) == len(BUILTIN_ROLES_BY_NAME)


# --- the decision cache ---------------------------------------------------------------------------


def test_cached_authorizer_returns_the_same_decision_and_counts_hits() -> None:
    policy = Policy(assignments=[grant("alice", DATA_SCIENTIST, WS)])
    authorizer = CachedAuthorizer(policy)
    first = authorizer.authorize("alice", ["g1", "g2"], SCORE, EP)
    second = authorizer.authorize("alice", ("g2", "g1"), SCORE, EP)
    assert first.allowed
    assert second is first
    assert authorizer.cache_info() == (1, 1, 1)


def test_cache_keys_on_data_action_too() -> None:
    authorizer = CachedAuthorizer(Policy(assignments=[grant("alice", OWNER, SUB)]))
    assert authorizer.authorize("alice", [], CHAT, SUB).allowed
    assert not authorizer.authorize("alice", [], CHAT, SUB, data_action=True).allowed


def test_replacing_the_policy_drops_every_cached_decision() -> None:
    authorizer = CachedAuthorizer(Policy(assignments=[grant("alice", DATA_SCIENTIST, WS)]))
    assert authorizer.authorize("alice", [], SCORE, EP).allowed
    revoked = Policy(revision=2)
    authorizer.replace(revoked)
    assert authorizer.policy is revoked
    assert authorizer.cache_info() == (0, 0, 0)
    assert not authorizer.authorize("alice", [], SCORE, EP).allowed


def test_cache_is_bounded() -> None:
    authorizer = CachedAuthorizer(Policy(), maxsize=3)
    for i in range(10):
        authorizer.authorize(f"p{i}", [], SCORE, EP)
    assert authorizer.cache_info()[2] == 3


def test_cached_authorizer_does_not_cache_bad_requests() -> None:
    authorizer = CachedAuthorizer(Policy())
    for _ in range(2):
        with pytest.raises(BadRequest):
            authorizer.authorize("alice", [], SCORE, "bad")
    assert authorizer.cache_info()[2] == 0


def test_cached_authorizer_serves_permissions_from_the_current_policy() -> None:
    authorizer = CachedAuthorizer(Policy())
    authorizer.replace(Policy(assignments=[grant("alice", READER, SUB)]))
    assert authorizer.permissions_for("alice", [], EP) == [
        BUILTIN_ROLES_BY_NAME["Reader"].permissions[0]
    ]
