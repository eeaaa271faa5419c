"""An obviously-correct RBAC evaluator to compare the engine with.

It is the pseudocode of the reference's Appendix A, line for line: loop over every deny and every
assignment, translate each pattern to a regular expression on every call, decide ancestry by
string prefix on '/' boundaries. Slow on purpose; only the tests use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from propylon.authz import EVERYONE, DenyAssignment, Permission, RoleAssignment, RoleDefinition


def norm(scope: str) -> str:
    lowered = scope.lower()
    return lowered.rstrip("/") or "/"


def is_ancestor(ancestor: str, scope: str) -> bool:
    a, r = norm(ancestor), norm(scope)
    if a == "/":
        return True
    return r == a or r.startswith(a + "/")


def _variants(pattern: str) -> set[str]:
    """The pattern with each ``/*/`` either kept or collapsed to ``/``, in every combination."""
    index = pattern.find("/*/")
    if index < 0:
        return {pattern}
    head, tail = pattern[:index], pattern[index + 3 :]
    return {head + sep + rest for sep in ("/*/", "/") for rest in _variants(tail)}


def match(pattern: str, action: str) -> bool:
    """Glob: ``*`` spans ``/``, and ``/*/`` may also stand for one ``/`` (tried by brute force)."""
    lowered = action.lower()
    return any(
        re.fullmatch(".*".join(re.escape(p) for p in v.split("*")), lowered, re.DOTALL)
        for v in _variants(pattern.lower())
    )


def grants(permission: Permission, action: str, data_action: bool) -> bool:
    allow = permission.data_actions if data_action else permission.actions
    deny = permission.not_data_actions if data_action else permission.not_actions
    return any(match(p, action) for p in allow) and not any(match(n, action) for n in deny)


def role_guid(role_definition_id: str) -> str:
    return role_definition_id.rstrip("/").rsplit("/", 1)[-1].lower()


def deny_applies(
    deny: DenyAssignment, ids: set[str], action: str, scope: str, data_action: bool
) -> bool:
    if not is_ancestor(deny.scope, scope):
        return False
    if not deny.apply_to_children and norm(deny.scope) != norm(scope):
        return False
    targets = {p.lower() for p in deny.principal_ids}
    excluded = {p.lower() for p in deny.excluded_principal_ids}
    hit = (EVERYONE in targets or bool(targets & ids)) and not (excluded & ids)
    permission = Permission(
        deny.actions, deny.not_actions, deny.data_actions, deny.not_data_actions
    )
    return hit and grants(permission, action, data_action)


def assignment_grants(
    assignment: RoleAssignment,
    roles: dict[str, RoleDefinition],
    ids: set[str],
    action: str,
    scope: str,
    data_action: bool,
) -> bool:
    role = roles.get(role_guid(assignment.role_definition_id))
    return (
        role is not None
        and assignment.principal_id.lower() in ids
        and is_ancestor(assignment.scope, scope)
        and any(grants(p, action, data_action) for p in role.permissions)
    )


def role_table(definitions: Iterable[RoleDefinition]) -> dict[str, RoleDefinition]:
    return {r.id.lower(): r for r in definitions}


def authorize(
    definitions: Iterable[RoleDefinition],
    assignments: Sequence[RoleAssignment],
    denies: Sequence[DenyAssignment],
    principal_id: str,
    group_ids: Iterable[str],
    action: str,
    scope: str,
    data_action: bool = False,
) -> bool:
    roles = role_table(definitions)
    ids = {principal_id.lower(), *(g.lower() for g in group_ids)}
    if any(deny_applies(d, ids, action, scope, data_action) for d in denies):
        return False
    return any(assignment_grants(a, roles, ids, action, scope, data_action) for a in assignments)
