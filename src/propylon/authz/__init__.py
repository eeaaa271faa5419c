"""Role-based access control with Azure semantics: pure functions over data, no I/O.

* :mod:`~propylon.authz.scopes` — Azure resource-id scopes, canonical keys, ancestors;
* :mod:`~propylon.authz.actions` — action patterns (case-insensitive, ``*`` spans ``/``);
* :mod:`~propylon.authz.roles` — role definitions, the built-in catalog, JSON shapes, validation;
* :mod:`~propylon.authz.engine` — deny-then-grant decisions with explanations, and a cache.

Example::

    from propylon.authz import BUILTIN_ROLES_BY_NAME, CachedAuthorizer, Policy, RoleAssignment

    policy = Policy(assignments=[RoleAssignment(
        "a1", workspace_id, BUILTIN_ROLES_BY_NAME["AzureML Data Scientist"].id, oid)])
    authorizer = CachedAuthorizer(policy)
    decision = authorizer.authorize(oid, groups, SCORE_ACTION, endpoint_id)
    if not decision.allowed:
        raise decision.to_error(oid)
"""

from propylon.authz.actions import (
    ActionPattern,
    PatternSet,
    action_matches,
    compile_pattern,
    validate_action_pattern,
)
from propylon.authz.engine import (
    EVERYONE,
    CachedAuthorizer,
    Decision,
    DenyAssignment,
    Policy,
    RoleAssignment,
)
from propylon.authz.roles import (
    BUILTIN_ROLES,
    BUILTIN_ROLES_BY_NAME,
    ROLE_DEFINITION_TYPE,
    Permission,
    RoleDefinition,
    RoleType,
    builtin_role,
    is_assignable_at,
    role_definition_guid,
    role_definition_resource_id,
    role_from_arm,
    role_from_json,
    role_from_powershell,
    role_to_arm,
    validate_custom_role,
)
from propylon.authz.scopes import (
    ROOT,
    Scope,
    ScopeLevel,
    ancestors,
    canonical,
    extension_scope,
    is_within,
    normalize,
    parent,
    parse_scope,
)

__all__ = [
    "BUILTIN_ROLES",
    "BUILTIN_ROLES_BY_NAME",
    "EVERYONE",
    "ROLE_DEFINITION_TYPE",
    "ROOT",
    "ActionPattern",
    "CachedAuthorizer",
    "Decision",
    "DenyAssignment",
    "PatternSet",
    "Permission",
    "Policy",
    "RoleAssignment",
    "RoleDefinition",
    "RoleType",
    "Scope",
    "ScopeLevel",
    "action_matches",
    "ancestors",
    "builtin_role",
    "canonical",
    "compile_pattern",
    "extension_scope",
    "is_assignable_at",
    "is_within",
    "normalize",
    "parent",
    "parse_scope",
    "role_definition_guid",
    "role_definition_resource_id",
    "role_from_arm",
    "role_from_json",
    "role_from_powershell",
    "role_to_arm",
    "validate_action_pattern",
    "validate_custom_role",
]
