"""The decision engine: deny assignments, then role assignments, with an explanation.

Semantics (reference §1.3 evaluation order, §1.4, Appendix A ``authorize``):

1. **Deny assignments first.** A deny at scope *D* applies to a request at *R* when *D* is *R* or
   an ancestor of *R*, unless ``apply_to_children`` is false (``DoNotApplyToChildScopes``), in
   which case only at *D* itself. It applies to a caller when its principals hold the caller's id,
   one of the caller's group ids, or the everyone id ``00000000-0000-0000-0000-000000000000``
   (``SystemDefined``), and its excluded principals hold none of them. Inside a deny,
   ``notActions`` carves exceptions out of ``actions`` (reference §1.4, derived). Any applicable
   deny that matches blocks the request: "Deny assignments take precedence over role assignments".
2. **Role assignments, OR-ed.** Every assignment of the caller or one of its groups at *R* or an
   ancestor counts ("Azure RBAC is an additive model"). A role grants when one of its permission
   entries has a matching ``actions`` pattern and no matching ``notActions`` pattern **of the same
   entry** ("NotActions is not a deny rule", reference §1.3).
3. **Control plane and data plane never mix.** With ``data_action=True`` only ``dataActions`` and
   ``notDataActions`` are consulted; ``actions: ["*"]`` grants no data (reference §1.1). Note that
   ``…/onlineEndpoints/score/action`` is a control-plane *action* (reference §2.1): AzureML Data
   Scientist gets it from ``workspaces/*/action``.

A :class:`Policy` is an immutable snapshot with an index *principal id → scope key → assignments*,
so one decision looks up ``len(ancestors) × (1 + len(groups))`` dict entries and evaluates only the
caller's own assignments. :class:`CachedAuthorizer` adds an LRU of decisions that is dropped
whole when the store's change feed swaps in a new snapshot.

Role-assignment ``condition`` (ABAC, reference §1.5) is not modelled: the store must refuse
assignments with conditions rather than let this engine ignore them.

Example::

    >>> from propylon.authz.roles import BUILTIN_ROLES_BY_NAME
    >>> ws = ("/subscriptions/s/resourceGroups/rg"
    ...       "/providers/Microsoft.MachineLearningServices/workspaces/w")
    >>> policy = Policy(assignments=[RoleAssignment(
    ...     "a1", ws, BUILTIN_ROLES_BY_NAME["AzureML Data Scientist"].id, "alice")])
    >>> policy.authorize("alice", (), "Microsoft.MachineLearningServices/workspaces/"
    ...                  "onlineEndpoints/score/action", ws + "/onlineEndpoints/e").allowed
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from propylon.authz.actions import PatternSet
from propylon.authz.roles import BUILTIN_ROLES, Permission, RoleDefinition, role_definition_guid
from propylon.authz.scopes import ancestors, canonical
from propylon.errors import BadRequest, Forbidden

if TYPE_CHECKING:
    from functools import _lru_cache_wrapper

__all__ = [
    "EVERYONE",
    "CachedAuthorizer",
    "Decision",
    "DenyAssignment",
    "Policy",
    "RoleAssignment",
]

EVERYONE = "00000000-0000-0000-0000-000000000000"
"""The ``SystemDefined`` "all principals" id of deny assignments (reference §1.4)."""

# Above this many distinct actions a role's memo is reset; actions come from server code, so a
# real deployment has a few dozen, and the bound only guards against a caller inventing them.
_MEMO_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class RoleAssignment:
    """``principal_id`` holds ``role_definition_id`` (GUID or full id) at ``scope``."""

    id: str
    scope: str
    role_definition_id: str
    principal_id: str
    principal_type: str = "User"


@dataclass(frozen=True, slots=True)
class DenyAssignment:
    """A deny assignment (reference §1.4); ``principal_ids`` may hold group ids and
    :data:`EVERYONE`; ``apply_to_children=False`` is ARM's ``DoNotApplyToChildScopes``."""

    id: str
    scope: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()
    not_data_actions: tuple[str, ...] = ()
    principal_ids: tuple[str, ...] = (EVERYONE,)
    excluded_principal_ids: tuple[str, ...] = ()
    apply_to_children: bool = True

    def __post_init__(self) -> None:
        for name in (
            "actions",
            "not_actions",
            "data_actions",
            "not_data_actions",
            "principal_ids",
            "excluded_principal_ids",
        ):
            object.__setattr__(self, name, tuple(getattr(self, name)))


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one check, with enough detail to explain it to a human.

    ``matched_*`` name the assignment, role, permission entry (index in the role's
    ``permissions``) and pattern that granted access; ``deny_assignment_id`` the deny that blocked.
    """

    allowed: bool
    action: str
    scope: str
    reason: str
    matched_assignment_id: str | None = None
    matched_role: str | None = None
    matched_permission_index: int | None = None
    deny_assignment_id: str | None = None
    matched_pattern: str | None = None
    data_action: bool = False

    def __bool__(self) -> bool:
        return self.allowed

    def to_error(self, principal_id: str, client_id: str | None = None) -> Forbidden:
        """The ARM 403 ``AuthorizationFailed`` for a refusal, in ARM's own wording (reference §1.8).

        The message names the action and the scope but never which roles the caller holds.
        """
        client = client_id or principal_id
        if self.deny_assignment_id is not None:
            message = (
                f"The client '{client}' with object id '{principal_id}' has permission to perform "
                f"action '{self.action}' on scope '{self.scope}'; however, the access is denied "
                f"because of the deny assignment with id '{self.deny_assignment_id}'."
            )
        else:
            message = (
                f"The client '{client}' with object id '{principal_id}' does not have "
                f"authorization to perform action '{self.action}' over scope '{self.scope}' or "
                "the scope is invalid. If access was recently granted, please refresh your "
                "credentials."
            )
        return Forbidden(message)


class _CompiledPermission:
    __slots__ = ("actions", "data_actions", "index", "not_actions", "not_data_actions")

    def __init__(self, index: int, permission: Permission) -> None:
        self.index = index
        self.actions = PatternSet(permission.actions)
        self.not_actions = PatternSet(permission.not_actions)
        self.data_actions = PatternSet(permission.data_actions)
        self.not_data_actions = PatternSet(permission.not_data_actions)

    def grant(self, action: str, data_action: bool) -> str | None:
        """The granting pattern if this entry allows the lower-cased ``action``."""
        if data_action:
            hit = self.data_actions.match(action)
            if hit is None or self.not_data_actions.match(action) is not None:
                return None
            return hit
        hit = self.actions.match(action)
        if hit is None or self.not_actions.match(action) is not None:
            return None
        return hit


class _CompiledRole:
    __slots__ = ("_memo", "definition", "permissions")

    def __init__(self, definition: RoleDefinition) -> None:
        self.definition = definition
        self.permissions = tuple(
            _CompiledPermission(i, p) for i, p in enumerate(definition.permissions)
        )
        self._memo: dict[tuple[str, bool], tuple[int, str] | None] = {}

    def grant(self, action: str, data_action: bool) -> tuple[int, str] | None:
        """``(permission index, pattern)`` of the first entry granting ``action``; memoized,
        because thousands of assignments share a handful of roles and actions."""
        key = (action, data_action)
        try:
            return self._memo[key]
        except KeyError:
            pass
        result = None
        for permission in self.permissions:
            pattern = permission.grant(action, data_action)
            if pattern is not None:
                result = (permission.index, pattern)
                break
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[key] = result
        return result


class _CompiledDeny:
    __slots__ = ("assignment", "everyone", "excluded", "permission", "principals")

    def __init__(self, deny: DenyAssignment) -> None:
        self.assignment = deny
        self.principals = frozenset(p.lower() for p in deny.principal_ids)
        self.everyone = EVERYONE in self.principals
        self.excluded = frozenset(p.lower() for p in deny.excluded_principal_ids)
        self.permission = _CompiledPermission(
            0,
            Permission(deny.actions, deny.not_actions, deny.data_actions, deny.not_data_actions),
        )

    def blocks(self, identities: frozenset[str], action: str, data_action: bool) -> str | None:
        if not self.everyone and self.principals.isdisjoint(identities):
            return None
        if not self.excluded.isdisjoint(identities):
            return None
        return self.permission.grant(action, data_action)


_Grant = tuple[RoleAssignment, _CompiledRole]


def _field(data_action: bool) -> str:
    return "dataActions" if data_action else "actions"


class Policy:
    """An immutable snapshot of role definitions, role assignments and deny assignments.

    Built-in roles are included unless ``include_builtin_roles`` is false; a definition passed in
    with a built-in's GUID replaces it. Assignments whose role is unknown grant nothing and are
    listed in :attr:`dangling_assignments`. Ids (principals, groups, role GUIDs) and scopes are
    compared case-insensitively. ``revision`` is the store revision the snapshot was built from.
    """

    def __init__(
        self,
        role_definitions: Iterable[RoleDefinition] = (),
        assignments: Iterable[RoleAssignment] = (),
        denies: Iterable[DenyAssignment] = (),
        *,
        include_builtin_roles: bool = True,
        revision: int = 0,
    ) -> None:
        self.revision = revision
        roles: dict[str, _CompiledRole] = {}
        for definition in (*(BUILTIN_ROLES if include_builtin_roles else ()), *role_definitions):
            roles[definition.id.lower()] = _CompiledRole(definition)
        self._roles = roles

        index: dict[str, dict[str, list[_Grant]]] = {}
        dangling: list[RoleAssignment] = []
        count = 0
        for assignment in assignments:
            role = roles.get(role_definition_guid(assignment.role_definition_id))
            if role is None:
                dangling.append(assignment)
                continue
            by_scope = index.setdefault(assignment.principal_id.lower(), {})
            by_scope.setdefault(canonical(assignment.scope), []).append((assignment, role))
            count += 1
        self._grants: dict[str, dict[str, tuple[_Grant, ...]]] = {
            principal: {scope: tuple(grants) for scope, grants in by_scope.items()}
            for principal, by_scope in index.items()
        }
        self.assignment_count = count
        self.dangling_assignments: tuple[RoleAssignment, ...] = tuple(dangling)

        deny_index: dict[str, list[_CompiledDeny]] = {}
        for deny in denies:
            deny_index.setdefault(canonical(deny.scope), []).append(_CompiledDeny(deny))
        self._denies = {scope: tuple(ds) for scope, ds in deny_index.items()}

    def role(self, role_id: str) -> RoleDefinition | None:
        """The definition for a GUID or full role-definition id, if the snapshot has it."""
        compiled = self._roles.get(role_definition_guid(role_id))
        return compiled.definition if compiled is not None else None

    @property
    def role_definitions(self) -> tuple[RoleDefinition, ...]:
        return tuple(r.definition for r in self._roles.values())

    def authorize(
        self,
        principal_id: str,
        group_ids: Iterable[str],
        action: str,
        scope: str,
        *,
        data_action: bool = False,
    ) -> Decision:
        """Decide whether ``principal_id`` (member of ``group_ids``, transitively resolved by the
        caller) may perform ``action`` at ``scope``.

        Raises :class:`BadRequest` for a malformed scope or an empty action; never raises for a
        refusal, which is a :class:`Decision` with ``allowed=False``.
        """
        if not action:
            raise BadRequest("An action is required.", code="InvalidAction", target="action")
        chain = ancestors(scope)
        wanted = action.lower()
        principal = principal_id.lower()
        identities = frozenset((principal, *(g.lower() for g in group_ids)))
        if self._denies:
            denied = self._find_deny(chain, identities, wanted, data_action)
            if denied is not None:
                deny, pattern = denied
                return Decision(
                    allowed=False,
                    action=action,
                    scope=scope,
                    reason=(
                        f"Denied by deny assignment '{deny.id}' at scope '{deny.scope}': its "
                        f"{_field(data_action)} pattern '{pattern}' matches '{action}'. Deny "
                        "assignments take precedence over role assignments."
                    ),
                    deny_assignment_id=deny.id,
                    matched_pattern=pattern,
                    data_action=data_action,
                )
        granted = self._find_grant(chain, principal, identities, wanted, data_action)
        if granted is not None:
            assignment, role, index, pattern = granted
            via = (
                ""
                if assignment.principal_id.lower() == principal
                else f" through group '{assignment.principal_id}'"
            )
            return Decision(
                allowed=True,
                action=action,
                scope=scope,
                reason=(
                    f"Allowed by role assignment '{assignment.id}'{via}: role '{role.role_name}' "
                    f"at scope '{assignment.scope}', permission {index}, "
                    f"{_field(data_action)} pattern '{pattern}' matches '{action}'."
                ),
                matched_assignment_id=assignment.id,
                matched_role=role.role_name,
                matched_permission_index=index,
                matched_pattern=pattern,
                data_action=data_action,
            )
        groups = len(identities) - 1
        return Decision(
            allowed=False,
            action=action,
            scope=scope,
            reason=(
                f"No role assignment of principal '{principal_id}'"
                f"{f' or its {groups} group(s)' if groups else ''} at scope '{scope}' or above "
                f"grants the {'data action' if data_action else 'action'} '{action}'"
                + (
                    " (only dataActions are consulted for a data action)."
                    if data_action
                    else " (notActions remove actions only within their own permission entry)."
                )
            ),
            data_action=data_action,
        )

    def _find_deny(
        self, chain: tuple[str, ...], identities: frozenset[str], action: str, data_action: bool
    ) -> tuple[DenyAssignment, str] | None:
        """The first applicable deny assignment blocking ``action``, nearest scope first."""
        for depth, key in enumerate(chain):
            for deny in self._denies.get(key, ()):
                if depth and not deny.assignment.apply_to_children:
                    continue
                pattern = deny.blocks(identities, action, data_action)
                if pattern is not None:
                    return deny.assignment, pattern
        return None

    def _find_grant(
        self,
        chain: tuple[str, ...],
        principal: str,
        identities: frozenset[str],
        action: str,
        data_action: bool,
    ) -> tuple[RoleAssignment, RoleDefinition, int, str] | None:
        """The first assignment granting ``action``: nearest scope first, and at one scope the
        principal's own before its groups', so explanations prefer the direct grant (the order
        never changes the outcome)."""
        own = self._grants.get(principal)
        tables = [] if own is None else [own]
        # Groups in sorted order: a frozenset's iteration order depends on how it was built, and
        # the explanation must not change between a cached and a fresh decision.
        tables.extend(
            table
            for identity in sorted(identities)
            if identity != principal and (table := self._grants.get(identity)) is not None
        )
        for key in chain:
            for table in tables:
                for assignment, role in table.get(key, ()):
                    granted = role.grant(action, data_action)
                    if granted is not None:
                        return assignment, role.definition, granted[0], granted[1]
        return None

    def permissions_for(
        self, principal_id: str, group_ids: Iterable[str], scope: str
    ) -> list[Permission]:
        """The permission entries in effect at ``scope``, as the ARM Permissions API returns them
        (``GET {scope}/providers/Microsoft.Authorization/permissions``, reference §1.9): one
        entry per permission of every role assigned to the caller or its groups at ``scope`` or
        above, duplicates removed, nearest scope first. Deny assignments are not reflected.
        """
        chain = ancestors(scope)
        identities = [principal_id.lower(), *(g.lower() for g in group_ids)]
        seen: set[Permission] = set()
        result: list[Permission] = []
        for key in chain:
            for identity in dict.fromkeys(identities):
                for _, role in self._grants.get(identity, {}).get(key, ()):
                    for permission in role.definition.permissions:
                        if permission not in seen:
                            seen.add(permission)
                            result.append(permission)
        return result

    def assignments_for(
        self, principal_id: str, group_ids: Iterable[str], scope: str
    ) -> list[RoleAssignment]:
        """Assignments of the caller or its groups at ``scope`` or above (portal "Check access",
        ``az role assignment list --assignee … --include-inherited``, reference §1.9)."""
        chain = ancestors(scope)
        identities = dict.fromkeys([principal_id.lower(), *(g.lower() for g in group_ids)])
        return [
            assignment
            for key in chain
            for identity in identities
            for assignment, _ in self._grants.get(identity, {}).get(key, ())
        ]


class CachedAuthorizer:
    """:meth:`Policy.authorize` behind an LRU of decisions keyed by
    ``(principal, frozenset(groups), action, scope, data_action)``.

    :meth:`replace` installs a new snapshot and a new, empty cache in one assignment, so a
    decision computed from the old snapshot can never land in the new cache. The LRU is
    :func:`functools.lru_cache`, which is thread-safe.

    Example::

        authorizer = CachedAuthorizer(policy)
        decision = authorizer.authorize(oid, groups, action, scope)
        authorizer.replace(new_policy)   # from the store's change feed
    """

    def __init__(self, policy: Policy, *, maxsize: int = 100_000) -> None:
        self._maxsize = maxsize
        self._state = self._bind(policy)

    def _bind(self, policy: Policy) -> tuple[Policy, _lru_cache_wrapper[Decision]]:
        @lru_cache(maxsize=self._maxsize)
        def decide(
            principal_id: str,
            group_ids: frozenset[str],
            action: str,
            scope: str,
            data_action: bool,
        ) -> Decision:
            return policy.authorize(principal_id, group_ids, action, scope, data_action=data_action)

        return policy, decide

    @property
    def policy(self) -> Policy:
        return self._state[0]

    def replace(self, policy: Policy) -> None:
        """Swap in a new snapshot; every cached decision of the old one is dropped."""
        self._state = self._bind(policy)

    def authorize(
        self,
        principal_id: str,
        group_ids: Iterable[str],
        action: str,
        scope: str,
        *,
        data_action: bool = False,
    ) -> Decision:
        """Same contract as :meth:`Policy.authorize`."""
        groups = group_ids if isinstance(group_ids, frozenset) else frozenset(group_ids)
        return self._state[1](principal_id, groups, action, scope, data_action)

    def permissions_for(
        self, principal_id: str, group_ids: Iterable[str], scope: str
    ) -> list[Permission]:
        """Not cached: the Permissions API is rare."""
        return self._state[0].permissions_for(principal_id, group_ids, scope)

    def cache_info(self) -> tuple[int, int, int]:
        """``(hits, misses, size)`` of the current snapshot's cache."""
        info = self._state[1].cache_info()
        return info.hits, info.misses, info.currsize
