"""RBAC state in the store: rows ↔ the pure :class:`Policy`, kept fresh by the change feed.

The engine (``engine.py``) never touches the database; this adapter loads a snapshot from the
``role_definitions``, ``role_assignments`` and ``deny_assignments`` tables and swaps it into the
:class:`CachedAuthorizer` whenever the change feed reports a write to one of them, on any replica.

Row conventions (written by the REST routes and the bootstrap):

* ``RoleDefinitionRow.body`` is the ARM resource (``role_to_arm``); ``scope`` where it was created;
* ``RoleAssignmentRow`` carries scope, role GUID, principal id and type; ``body`` the rest
  (``description``, ``createdBy``, ``condition``…);
* ``DenyAssignmentRow.body`` is the ARM deny assignment properties (``permissions``,
  ``principals``, ``excludePrincipals``, ``doNotApplyToChildScopes``…).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from propylon.authz.engine import EVERYONE, CachedAuthorizer, DenyAssignment, Policy, RoleAssignment
from propylon.authz.roles import role_from_arm
from propylon.store import RESET, Database
from propylon.store.models import Change, DenyAssignmentRow, RoleAssignmentRow, RoleDefinitionRow

__all__ = ["POLICY_CHANGE_KINDS", "PolicyFollower", "deny_from_body", "load_policy"]

log = logging.getLogger("propylon.authz")

POLICY_CHANGE_KINDS = frozenset({"roleassignments", "roledefinitions", "denyassignments"})


def deny_from_body(row_id: str, scope: str, body: dict[str, Any]) -> DenyAssignment:
    permissions = body.get("permissions") or [{}]
    first = permissions[0]
    principals = tuple(p["id"] for p in body.get("principals", ())) or (EVERYONE,)
    return DenyAssignment(
        id=row_id,
        scope=scope,
        actions=tuple(first.get("actions", ())),
        not_actions=tuple(first.get("notActions", ())),
        data_actions=tuple(first.get("dataActions", ())),
        not_data_actions=tuple(first.get("notDataActions", ())),
        principal_ids=principals,
        excluded_principal_ids=tuple(p["id"] for p in body.get("excludePrincipals", ())),
        apply_to_children=not body.get("doNotApplyToChildScopes", False),
    )


def load_policy(db: Database) -> Policy:
    """A fresh snapshot of every role definition, assignment and deny assignment."""
    revision = db.revision()
    with db.reader() as session:
        definitions = [
            role_from_arm(row.body, role_id=row.id)
            for row in session.scalars(select(RoleDefinitionRow))
        ]
        assignments = [
            RoleAssignment(
                id=row.id,
                scope=row.scope,
                role_definition_id=row.role_definition_id,
                principal_id=row.principal_id,
                principal_type=row.principal_type,
            )
            for row in session.scalars(select(RoleAssignmentRow))
        ]
        denies = [
            deny_from_body(row.id, row.scope, row.body)
            for row in session.scalars(select(DenyAssignmentRow))
        ]
    return Policy(definitions, assignments, denies, revision=revision)


class PolicyFollower:
    """Keeps a :class:`CachedAuthorizer` on the newest policy (a change-feed subscriber)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._lock = threading.Lock()
        self.authorizer = CachedAuthorizer(load_policy(db))

    def __call__(self, changes: Sequence[Change]) -> None:
        if any(change.kind in POLICY_CHANGE_KINDS or change.kind == RESET for change in changes):
            self.reload()

    def reload(self) -> None:
        with self._lock:
            policy = load_policy(self._db)
            self.authorizer.replace(policy)
        log.info("policy reloaded", extra={"revision": policy.revision})
