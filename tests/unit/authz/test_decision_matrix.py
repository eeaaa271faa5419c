"""Who may do what to an online endpoint: every built-in role and the seed's two custom roles
against every online-endpoint operation (reference §2, §2.1, §2.2), plus the conformance vectors
of reference §6.2.

The expectations are written out by hand from the role JSON, not computed by the engine.
"""

from __future__ import annotations

import pytest

from propylon.authz import (
    BUILTIN_ROLES,
    BUILTIN_ROLES_BY_NAME,
    EVERYONE,
    DenyAssignment,
    Permission,
    Policy,
    RoleAssignment,
    RoleDefinition,
    role_from_powershell,
    validate_custom_role,
)
from propylon.errors import BadRequest

from . import seed_roles

ML = "Microsoft.MachineLearningServices"
SUB = f"/subscriptions/{seed_roles.SUBSCRIPTION_ID}"
RG = f"{SUB}/resourceGroups/{seed_roles.RESOURCE_GROUP}"
WS = f"{RG}/providers/{ML}/workspaces/ws-prod"
EP = f"{WS}/onlineEndpoints/churn"
OTHER_WS = f"{RG}/providers/{ML}/workspaces/ws-dev"
OTHER_EP = f"{OTHER_WS}/onlineEndpoints/churn"

# Reference §2.1, casing exactly as published (it is inconsistent, which is the point).
OPERATIONS = {
    "read": f"{ML}/workspaces/onlineEndpoints/read",
    "write": f"{ML}/workspaces/onlineEndpoints/write",
    "delete": f"{ML}/workspaces/onlineEndpoints/delete",
    "regenerateKeys": f"{ML}/workspaces/onlineendpoints/regeneratekeys/action",
    "score": f"{ML}/workspaces/onlineEndpoints/score/action",
    "token": f"{ML}/workspaces/onlineendpoints/token/action",
    "listKeys": f"{ML}/workspaces/onlineendpoints/listkeys/action",
    "checkNameAvailability": f"{ML}/workspaces/onlineEndpoints/checkNameAvailability/read",
    "deployments/read": f"{ML}/workspaces/onlineEndpoints/deployments/read",
    "deployments/getlogs": f"{ML}/workspaces/onlineendpoints/deployments/getlogs/action",
    "deployments/write": f"{ML}/workspaces/onlineEndpoints/deployments/write",
    "deployments/delete": f"{ML}/workspaces/onlineEndpoints/deployments/delete",
    "deployments/checkNameAvailability": (
        f"{ML}/workspaces/onlineEndpoints/deployments/checkNameAvailability/read"
    ),
    "deployments/operationresults": (
        f"{ML}/workspaces/onlineendpoints/deployments/operationresults/read"
    ),
    "deployments/operationsstatus": (
        f"{ML}/workspaces/onlineendpoints/deployments/operationsstatus/read"
    ),
    "deployments/skus": f"{ML}/workspaces/onlineEndpoints/deployments/skus/read",
    "operationresults": f"{ML}/workspaces/onlineendpoints/operationresults/read",
    "operationsstatus": f"{ML}/workspaces/onlineendpoints/operationsstatus/read",
}
ALL = frozenset(OPERATIONS)
READS = frozenset(op for op, action in OPERATIONS.items() if action.endswith("/read"))
NOTHING: frozenset[str] = frozenset()

CONTROL_PLANE_ROLE = role_from_powershell(seed_roles.load(seed_roles.CONTROL_PLANE_ROLE_JSON))
SCORING_ROLE = role_from_powershell(seed_roles.load(seed_roles.SCORING_ROLE_JSON))
ROLES: dict[str, RoleDefinition] = {
    **{r.role_name: r for r in BUILTIN_ROLES},
    CONTROL_PLANE_ROLE.role_name: CONTROL_PLANE_ROLE,
    SCORING_ROLE.role_name: SCORING_ROLE,
}

EXPECTED_AT_WORKSPACE: dict[str, frozenset[str]] = {
    "Owner": ALL,  # actions: *
    "Contributor": ALL,  # * minus Microsoft.Authorization/… and a few others
    "Reader": READS,  # */read
    "User Access Administrator": READS,  # */read, Microsoft.Authorization/*, Microsoft.Support/*
    "Role Based Access Control Administrator": READS,
    # workspaces/*/{read,action,delete,write}; its notActions name only workspace, compute,
    # hub and feature-store operations, never an online endpoint's.
    "AzureML Data Scientist": ALL,
    "Azure AI Developer": ALL,
    "AzureML Compute Operator": NOTHING,  # computes/*, notebooks/vm/*
    "Azure AI Inference Deployment Operator": NOTHING,  # Microsoft.Resources/deployments/* …
    "Cognitive Services User": NOTHING,
    "Cognitive Services Contributor": NOTHING,
    CONTROL_PLANE_ROLE.role_name: frozenset(
        {"write", "delete", "read", "token", "listKeys", "regenerateKeys"}
    ),
    # onlineEndpoints/*/action: every POST action under an endpoint, keys included.
    SCORING_ROLE.role_name: frozenset(
        {"score", "token", "listKeys", "regenerateKeys", "deployments/getlogs"}
    ),
}


def test_matrix_covers_every_role() -> None:
    assert set(EXPECTED_AT_WORKSPACE) == set(ROLES)


def test_seed_roles_are_valid_custom_roles() -> None:
    validate_custom_role(CONTROL_PLANE_ROLE)
    validate_custom_role(SCORING_ROLE)


def policy_with(role: RoleDefinition, scope: str = WS, principal: str = "alice") -> Policy:
    custom = [role] if role.is_custom else []
    return Policy(custom, [RoleAssignment("a1", scope, role.id, principal)])


@pytest.mark.parametrize("op", sorted(OPERATIONS))
@pytest.mark.parametrize("role_name", sorted(ROLES))
def test_role_at_workspace_against_endpoint_operation(role_name: str, op: str) -> None:
    policy = policy_with(ROLES[role_name])
    expected = op in EXPECTED_AT_WORKSPACE[role_name]
    decision = policy.authorize("alice", [], OPERATIONS[op], EP)
    assert decision.allowed is expected, decision.reason
    # A workspace-scoped assignment opens nothing in another workspace.
    assert not policy.authorize("alice", [], OPERATIONS[op], OTHER_EP).allowed


@pytest.mark.parametrize("role_name", sorted(ROLES))
def test_roles_grant_nothing_to_someone_else(role_name: str) -> None:
    policy = policy_with(ROLES[role_name])
    assert not any(policy.authorize("mallory", [], a, EP).allowed for a in OPERATIONS.values())


def test_data_scientist_manages_and_scores_endpoints_in_its_workspace_only() -> None:
    policy = policy_with(BUILTIN_ROLES_BY_NAME["AzureML Data Scientist"])
    for op in ("write", "read", "delete", "token", "listKeys", "regenerateKeys", "score"):
        assert policy.authorize("alice", [], OPERATIONS[op], EP).allowed
        assert not policy.authorize("alice", [], OPERATIONS[op], OTHER_EP).allowed


def test_seed_control_plane_role_cannot_score() -> None:
    policy = policy_with(CONTROL_PLANE_ROLE, RG)
    assert not policy.authorize("alice", [], OPERATIONS["score"], EP).allowed
    assert policy.authorize("alice", [], OPERATIONS["listKeys"], EP).allowed


def test_seed_scoring_role_can_score_but_not_write() -> None:
    policy = policy_with(SCORING_ROLE, RG)
    assert policy.authorize("alice", [], OPERATIONS["score"], EP).allowed
    assert not policy.authorize("alice", [], OPERATIONS["write"], EP).allowed


def test_reader_cannot_list_keys() -> None:
    policy = policy_with(BUILTIN_ROLES_BY_NAME["Reader"], SUB)
    assert policy.authorize("alice", [], OPERATIONS["read"], EP).allowed
    assert not policy.authorize("alice", [], OPERATIONS["listKeys"], EP).allowed


def test_contributor_cannot_assign_roles_but_owner_can() -> None:
    write = "Microsoft.Authorization/roleAssignments/write"
    contributor = policy_with(BUILTIN_ROLES_BY_NAME["Contributor"], RG)
    assert not contributor.authorize("alice", [], write, WS).allowed
    owner = policy_with(BUILTIN_ROLES_BY_NAME["Owner"], RG)
    assert owner.authorize("alice", [], write, WS).allowed


def test_role_assignment_administrators_can_assign_roles() -> None:
    write = "Microsoft.Authorization/roleAssignments/write"
    for name in ("User Access Administrator", "Role Based Access Control Administrator"):
        assert policy_with(BUILTIN_ROLES_BY_NAME[name], SUB).authorize("alice", [], write, WS)


def test_group_member_inherits_the_groups_role_only_when_the_group_is_presented() -> None:
    policy = policy_with(BUILTIN_ROLES_BY_NAME["AzureML Data Scientist"], WS, "ml-team")
    assert policy.authorize("bob", ["ml-team"], OPERATIONS["score"], EP).allowed
    assert not policy.authorize("bob", [], OPERATIONS["score"], EP).allowed


# --- reference §6.2 conformance vectors -----------------------------------------------------------

DS = BUILTIN_ROLES_BY_NAME["AzureML Data Scientist"]
SCORE = OPERATIONS["score"]
CHAT = "Microsoft.CognitiveServices/accounts/OpenAI/deployments/chat/completions/action"
ACCOUNT = f"{RG}/providers/Microsoft.CognitiveServices/accounts/oai"


def test_vector_01_data_scientist_at_workspace_scores_inherited_at_endpoint() -> None:
    assert policy_with(DS).authorize("alice", [], SCORE, EP).allowed


def test_vector_02_data_scientist_cannot_write_the_workspace() -> None:
    assert not policy_with(DS).authorize("alice", [], f"{ML}/workspaces/write", WS).allowed


def test_vector_03_data_scientist_lists_endpoint_keys() -> None:
    action = f"{ML}/workspaces/onlineEndpoints/listKeys/action"
    assert policy_with(DS).authorize("alice", [], action, EP).allowed


def test_vector_04_data_scientist_cannot_list_compute_keys() -> None:
    action = f"{ML}/workspaces/computes/listKeys/action"
    assert not policy_with(DS).authorize("alice", [], action, WS).allowed


def test_vector_05_another_role_grants_what_not_actions_removed() -> None:
    writer = RoleDefinition(
        id="7d0a5b1e-2c3f-4a4b-9c5d-6e7f80910a1b",
        role_name="Workspace writer",
        permissions=(Permission(actions=(f"{ML}/workspaces/write",)),),
        assignable_scopes=(RG,),
    )
    policy = Policy(
        [writer],
        [RoleAssignment("a1", WS, DS.id, "alice"), RoleAssignment("a2", WS, writer.id, "alice")],
    )
    assert policy.authorize("alice", [], f"{ML}/workspaces/write", WS).allowed


def test_vector_06_reader_cannot_score() -> None:
    assert not policy_with(BUILTIN_ROLES_BY_NAME["Reader"], SUB).authorize("alice", [], SCORE, EP)


def test_vector_07_contributor_scores_but_cannot_write_role_assignments() -> None:
    policy = policy_with(BUILTIN_ROLES_BY_NAME["Contributor"], RG)
    assert policy.authorize("alice", [], SCORE, EP).allowed
    assert not policy.authorize(
        "alice", [], "Microsoft.Authorization/roleAssignments/write", EP
    ).allowed


def test_vector_08_owner_has_no_data_actions() -> None:
    policy = policy_with(BUILTIN_ROLES_BY_NAME["Owner"], SUB)
    assert not policy.authorize("alice", [], CHAT, ACCOUNT, data_action=True).allowed


def test_vector_09_cognitive_services_user_has_the_data_action() -> None:
    policy = policy_with(BUILTIN_ROLES_BY_NAME["Cognitive Services User"], ACCOUNT)
    assert policy.authorize("alice", [], CHAT, ACCOUNT, data_action=True).allowed


def test_vector_10_cognitive_services_contributor_has_no_data_actions() -> None:
    policy = policy_with(BUILTIN_ROLES_BY_NAME["Cognitive Services Contributor"], ACCOUNT)
    assert not policy.authorize("alice", [], CHAT, ACCOUNT, data_action=True).allowed


def test_vector_11_inference_deployment_operator_cannot_score() -> None:
    policy = policy_with(BUILTIN_ROLES_BY_NAME["Azure AI Inference Deployment Operator"])
    assert not policy.authorize("alice", [], SCORE, EP).allowed


def test_vector_12_resource_group_prefix_is_not_ancestry() -> None:
    policy = policy_with(DS, f"{SUB}/resourceGroups/rg1")
    endpoint = f"{SUB}/resourceGroups/rg10/providers/{ML}/workspaces/ws/onlineEndpoints/e"
    assert not policy.authorize("alice", [], SCORE, endpoint).allowed


def test_vector_13_action_and_scope_case_do_not_matter() -> None:
    action = "MICROSOFT.machinelearningservices/Workspaces/ONLINEENDPOINTS/score/ACTION"
    assert policy_with(DS).authorize("alice", [], action, EP.swapcase()).allowed


def test_vector_14_deny_everyone_but_admin_on_deletes() -> None:
    policy = Policy(
        assignments=[
            RoleAssignment("o1", SUB, BUILTIN_ROLES_BY_NAME["Owner"].id, "admin"),
            RoleAssignment("o2", SUB, BUILTIN_ROLES_BY_NAME["Owner"].id, "alice"),
        ],
        denies=[
            DenyAssignment(
                "deny-deletes",
                RG,
                actions=("*/delete",),
                principal_ids=(EVERYONE,),
                excluded_principal_ids=("admin",),
            )
        ],
    )
    assert not policy.authorize("alice", [], OPERATIONS["delete"], EP).allowed
    assert policy.authorize("admin", [], OPERATIONS["delete"], EP).allowed


def test_vector_15_deny_not_applied_to_children() -> None:
    policy = Policy(
        assignments=[RoleAssignment("o", SUB, BUILTIN_ROLES_BY_NAME["Owner"].id, "alice")],
        denies=[DenyAssignment("d", RG, actions=("*",), apply_to_children=False)],
    )
    assert policy.authorize("alice", [], OPERATIONS["delete"], EP).allowed
    assert not policy.authorize("alice", [], OPERATIONS["delete"], RG).allowed


def test_vector_16_custom_role_with_two_wildcards_is_rejected() -> None:
    role = RoleDefinition(
        id="7d0a5b1e-2c3f-4a4b-9c5d-6e7f80910a1c",
        role_name="Cost queries",
        permissions=(Permission(actions=("Microsoft.CostManagement/*/query/*",)),),
        assignable_scopes=(SUB,),
    )
    with pytest.raises(BadRequest) as raised:
        validate_custom_role(role)
    assert raised.value.code == "InvalidActionOrNotAction"


def test_vector_17_transitive_group_membership_grants_when_resolved() -> None:
    """User ∈ G ∈ G2, G2 holds the role: the caller passes the transitive closure {G, G2}."""
    policy = policy_with(DS, WS, "g2")
    assert policy.authorize("alice", ["g", "g2"], SCORE, EP).allowed
    assert not policy.authorize("alice", ["g"], SCORE, EP).allowed


def test_vector_18_group_overage_unresolved_grants_nothing() -> None:
    """An overage token carries no groups; until the directory resolves them, fail closed."""
    policy = policy_with(DS, WS, "g")
    assert not policy.authorize("alice", [], SCORE, EP).allowed
    assert policy.authorize("alice", ["g"], SCORE, EP).allowed


def test_vector_19_compute_operator_cannot_read_the_workspace() -> None:
    policy = policy_with(BUILTIN_ROLES_BY_NAME["AzureML Compute Operator"])
    assert not policy.authorize("alice", [], f"{ML}/workspaces/read", WS).allowed


def test_vector_20_data_scientist_can_read_its_workspace() -> None:
    """Open question of reference §1.2: ``workspaces/*/read`` covers ``workspaces/read`` (a
    Data Scientist must GET the workspace before every PUT, as az ml and azure-ai-ml do), while
    the role's ``notActions`` still keep ``workspaces/write`` and ``/delete`` away."""
    assert policy_with(DS).authorize("alice", [], f"{ML}/workspaces/read", WS).allowed
    assert not policy_with(DS).authorize("alice", [], f"{ML}/workspaces/write", WS).allowed
    assert not policy_with(DS).authorize("alice", [], f"{ML}/workspaces/delete", WS).allowed
