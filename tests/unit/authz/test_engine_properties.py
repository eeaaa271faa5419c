"""The engine agrees with the obviously-correct reference evaluator on random worlds: random
custom roles (wildcards, notActions, data actions), assignments to users and groups at random
scopes in random case, deny assignments with exclusions and ``apply_to_children``."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from propylon.authz import (
    BUILTIN_ROLES,
    CachedAuthorizer,
    DenyAssignment,
    Policy,
    RoleAssignment,
    RoleDefinition,
)

from . import reference
from .strategies import requests, worlds

World = tuple[list[RoleDefinition], list[RoleAssignment], list[DenyAssignment]]
Request = tuple[str, list[str], str, str, bool]

PROPERTY = settings(max_examples=200, deadline=None)


@PROPERTY
@given(world=worlds(), batch=st.lists(requests(), min_size=1, max_size=8))
def test_decisions_agree_with_reference(world: World, batch: list[Request]) -> None:
    roles, assignments, denies = world
    policy = Policy(roles, assignments, denies)
    every_role = reference.role_table([*BUILTIN_ROLES, *roles])
    for principal, groups, action, scope, data in batch:
        decision = policy.authorize(principal, groups, action, scope, data_action=data)
        expected = reference.authorize(
            every_role.values(), assignments, denies, principal, groups, action, scope, data
        )
        assert decision.allowed == expected, decision.reason
        ids = {principal.lower(), *(g.lower() for g in groups)}
        if decision.allowed:
            # The explanation names an assignment that really grants.
            (matched,) = [a for a in assignments if a.id == decision.matched_assignment_id]
            assert reference.assignment_grants(matched, every_role, ids, action, scope, data)
            role = every_role[reference.role_guid(matched.role_definition_id)]
            assert decision.matched_role == role.role_name
            assert decision.matched_permission_index is not None
            assert decision.matched_pattern is not None
            entry = role.permissions[decision.matched_permission_index]
            assert reference.grants(entry, action, data)
            assert reference.match(decision.matched_pattern, action)
        elif decision.deny_assignment_id is not None:
            (hit,) = [d for d in denies if d.id == decision.deny_assignment_id]
            assert reference.deny_applies(hit, ids, action, scope, data)


@PROPERTY
@given(world=worlds(with_denies=False), batch=st.lists(requests(), min_size=1, max_size=8))
def test_permissions_api_grants_exactly_what_authorize_grants_without_denies(
    world: World, batch: list[Request]
) -> None:
    roles, assignments, _ = world
    policy = Policy(roles, assignments)
    for principal, groups, action, scope, data in batch:
        effective = policy.permissions_for(principal, groups, scope)
        granted = any(reference.grants(p, action, data) for p in effective)
        assert (
            granted == policy.authorize(principal, groups, action, scope, data_action=data).allowed
        )
        assert len(effective) == len(set(effective))


@PROPERTY
@given(world=worlds(), batch=st.lists(requests(), min_size=1, max_size=6))
def test_cached_decisions_equal_fresh_ones_across_a_policy_replacement(
    world: World, batch: list[Request]
) -> None:
    roles, assignments, denies = world
    old = Policy(roles, assignments, denies)
    # The replacement revokes every other assignment and one deny, and adds nothing back.
    new = Policy(roles, assignments[::2], denies[1:])
    authorizer = CachedAuthorizer(old, maxsize=4)
    for principal, groups, action, scope, data in batch * 2:
        got = authorizer.authorize(principal, groups, action, scope, data_action=data)
        assert got == old.authorize(principal, groups, action, scope, data_action=data)
    authorizer.replace(new)
    for principal, groups, action, scope, data in batch:
        got = authorizer.authorize(principal, groups, action, scope, data_action=data)
        assert got == new.authorize(principal, groups, action, scope, data_action=data)


@PROPERTY
@given(world=worlds(), request=requests())
def test_adding_a_deny_never_turns_a_refusal_into_an_allow(world: World, request: Request) -> None:
    roles, assignments, denies = world
    principal, groups, action, scope, data = request
    without = Policy(roles, assignments)
    with_denies = Policy(roles, assignments, denies)
    if with_denies.authorize(principal, groups, action, scope, data_action=data).allowed:
        assert without.authorize(principal, groups, action, scope, data_action=data).allowed


@PROPERTY
@given(world=worlds(with_denies=False), request=requests())
def test_adding_an_assignment_never_turns_an_allow_into_a_refusal(
    world: World, request: Request
) -> None:
    roles, assignments, _ = world
    principal, groups, action, scope, data = request
    if not assignments:
        return
    fewer = Policy(roles, assignments[:-1])
    more = Policy(roles, assignments)
    if fewer.authorize(principal, groups, action, scope, data_action=data).allowed:
        assert more.authorize(principal, groups, action, scope, data_action=data).allowed
