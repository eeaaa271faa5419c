"""Hypothesis strategies for random RBAC worlds: a small scope tree, a vocabulary of actions, and
patterns cut from them, so that random draws hit, miss and nearly miss."""

from __future__ import annotations

import random

from hypothesis import strategies as st

from propylon.authz import (
    BUILTIN_ROLES,
    EVERYONE,
    DenyAssignment,
    Permission,
    RoleAssignment,
    RoleDefinition,
    role_definition_resource_id,
)

ML = "Microsoft.MachineLearningServices"
SUB1 = "/subscriptions/00000000-0000-0000-0000-000000000001"
SUB2 = "/subscriptions/00000000-0000-0000-0000-000000000002"
RG1 = f"{SUB1}/resourceGroups/rg1"
RG10 = f"{SUB1}/resourceGroups/rg10"
WS1 = f"{RG1}/providers/{ML}/workspaces/ws1"
WS2 = f"{RG1}/providers/{ML}/workspaces/ws10"
SCOPES = [
    "/",
    SUB1,
    SUB2,
    RG1,
    RG10,
    f"{SUB2}/resourceGroups/rg1",
    WS1,
    WS2,
    f"{RG10}/providers/{ML}/workspaces/ws1",
    f"{WS1}/onlineEndpoints/ep1",
    f"{WS1}/onlineEndpoints/ep10",
    f"{WS2}/onlineEndpoints/ep1",
    f"{WS1}/onlineEndpoints/ep1/deployments/blue",
    "/providers/Microsoft.Management/managementGroups/mg1",
]
ACTIONS = [
    f"{ML}/workspaces/onlineEndpoints/score/action",
    f"{ML}/workspaces/onlineEndpoints/read",
    f"{ML}/workspaces/onlineEndpoints/write",
    f"{ML}/workspaces/onlineEndpoints/delete",
    f"{ML}/workspaces/onlineendpoints/listkeys/action",
    f"{ML}/workspaces/onlineendpoints/token/action",
    f"{ML}/workspaces/onlineEndpoints/deployments/write",
    f"{ML}/workspaces/read",
    f"{ML}/workspaces/write",
    f"{ML}/workspaces/listKeys/action",
    f"{ML}/workspaces/computes/listKeys/action",
    "Microsoft.Authorization/roleAssignments/write",
    "Microsoft.Authorization/roleAssignments/read",
    "Microsoft.CognitiveServices/accounts/OpenAI/deployments/chat/completions/action",
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
    "a/a",
    "aba",
]
FIXED_PATTERNS = [
    "*",
    "*/read",
    "*/write",
    "*/delete",
    "*/action",
    f"{ML}/*",
    f"{ML}/workspaces/*/action",
    f"{ML}/workspaces/*/read",
    f"{ML}/workspaces/onlineEndpoints/*",
    "Microsoft.CognitiveServices/*",
    "a*a",
]
PRINCIPALS = ["alice", "bob"]
GROUPS = ["g1", "g2", "g3"]
BUILTIN_IDS = [r.id for r in BUILTIN_ROLES]


def _case_variants(values: list[str]) -> list[str]:
    """Each value as written, lower, upper, and scrambled twice (fixed seeds, so runs repeat)."""
    rng = random.Random(20240207)
    out: list[str] = []
    for value in values:
        out += [value, value.lower(), value.upper()]
        for _ in range(2):
            out.append("".join(c.swapcase() if rng.random() < 0.5 else c for c in value))
    return out


def cased(values: list[str]) -> st.SearchStrategy[str]:
    """One of ``values`` with its letters' case scrambled; one draw, so worlds stay cheap."""
    return st.sampled_from(_case_variants(values))


SCOPE_VARIANTS = [
    *_case_variants(SCOPES),
    *(v + "/" for v in _case_variants(SCOPES) if v != "/"),
]


def scopes() -> st.SearchStrategy[str]:
    return st.sampled_from(SCOPE_VARIANTS)


def assigned_scopes() -> st.SearchStrategy[str]:
    """Where assignments and denies sit: often high up, so they reach many requests."""
    return st.one_of(cased(["/", SUB1, RG1, WS1]), scopes())


def requested_scopes() -> st.SearchStrategy[str]:
    """What requests name: often deep, so several assignments are ancestors."""
    deep = [f"{WS1}/onlineEndpoints/ep1", f"{WS1}/onlineEndpoints/ep1/deployments/blue", WS1]
    return st.one_of(cased(deep), scopes())


def _pattern_pool() -> list[str]:
    """Exact actions, actions with a slice cut out for one ``*`` (or two), common wildcards."""
    rng = random.Random(74428)
    pool = _case_variants(FIXED_PATTERNS)
    for action in _case_variants(ACTIONS):
        pool.append(action)
        for _ in range(4):
            i = rng.randrange(len(action) + 1)
            j = rng.randrange(i, len(action) + 1)
            cut = action[:i] + "*" + action[j:]
            pool.append(cut)
            if rng.random() < 0.25:
                k = rng.randrange(len(cut) + 1)
                pool.append(cut[:k] + "*" + cut[k:])
        # Cuts at '/' boundaries, the shapes real roles use.
        parts = action.split("/")
        for n in range(1, len(parts)):
            pool.append("/".join(parts[:n]) + "/*")
            pool.append("/".join([*parts[:n], "*", parts[-1]]))
    return pool


PATTERNS = _pattern_pool()


def patterns() -> st.SearchStrategy[str]:
    """Half broad wildcards (so grants and denies often apply), half the cut-out pool."""
    return st.one_of(cased(FIXED_PATTERNS), st.sampled_from(PATTERNS))


def pattern_lists() -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(patterns(), max_size=3).map(tuple)


@st.composite
def permissions(draw: st.DrawFn) -> Permission:
    return Permission(
        actions=draw(pattern_lists()),
        not_actions=draw(pattern_lists()),
        data_actions=draw(pattern_lists()),
        not_data_actions=draw(pattern_lists()),
    )


@st.composite
def custom_roles(draw: st.DrawFn, index: int) -> RoleDefinition:
    return RoleDefinition(
        id=f"c0000000-0000-0000-0000-{index:012d}",
        role_name=f"custom {index}",
        permissions=tuple(draw(st.lists(permissions(), min_size=1, max_size=3))),
    )


def identities() -> st.SearchStrategy[str]:
    return cased([*PRINCIPALS, *GROUPS])


@st.composite
def worlds(
    draw: st.DrawFn, *, with_denies: bool = True
) -> tuple[list[RoleDefinition], list[RoleAssignment], list[DenyAssignment]]:
    roles = [draw(custom_roles(i)) for i in range(draw(st.integers(0, 4)))]
    role_ids = [r.id for r in roles] + BUILTIN_IDS + ["dead0000-0000-0000-0000-000000000000"]
    assignments = []
    for n in range(draw(st.integers(0, 12))):
        role_id = draw(st.sampled_from(role_ids))
        form = draw(st.sampled_from(["guid", "upper", "tenant-id", "subscription-id"]))
        if form == "upper":
            role_id = role_id.upper()
        elif form == "tenant-id":
            role_id = role_definition_resource_id(role_id)
        elif form == "subscription-id":
            role_id = role_definition_resource_id(role_id, SUB1)
        assignments.append(
            RoleAssignment(f"a{n}", draw(assigned_scopes()), role_id, draw(identities()), "User")
        )
    denies = []
    if with_denies:
        for n in range(draw(st.integers(0, 3))):
            permission = draw(permissions())
            if not permission.actions and not permission.data_actions:
                # ARM requires one of Actions or DataActions in a deny (reference §1.4).
                permission = Permission(
                    actions=(draw(patterns()),), not_actions=permission.not_actions
                )
            denies.append(
                DenyAssignment(
                    id=f"d{n}",
                    scope=draw(assigned_scopes()),
                    actions=permission.actions,
                    not_actions=permission.not_actions,
                    data_actions=permission.data_actions,
                    not_data_actions=permission.not_data_actions,
                    principal_ids=tuple(
                        draw(
                            st.lists(st.sampled_from([EVERYONE, *PRINCIPALS, *GROUPS]), max_size=3)
                        )
                    ),
                    excluded_principal_ids=tuple(draw(st.lists(identities(), max_size=2))),
                    apply_to_children=draw(st.booleans()),
                )
            )
    return roles, assignments, denies


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, list[str], str, str, bool]:
    principal = draw(cased(PRINCIPALS))
    groups = draw(st.lists(cased(GROUPS), max_size=3))
    return principal, groups, draw(cased(ACTIONS)), draw(requested_scopes()), draw(st.booleans())
