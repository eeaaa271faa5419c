"""ARM ``Microsoft.Authorization`` REST: role definitions, role and deny assignments, permissions.

Paths are ``{scope}/providers/Microsoft.Authorization/{roleDefinitions|roleAssignments|
denyAssignments}/{guid}`` at any scope (``/`` included), plus ``{scope}/providers/
Microsoft.Authorization/permissions`` (the caller's effective entries) and Propylon's
``…/checkAccess`` (a decision with its reason for any principal; needs ``roleAssignments/read``).
Every write appends to the change feed, so every replica's RBAC cache follows within a second.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from sqlalchemy import select

from propylon.authz.engine import Decision
from propylon.authz.repository import deny_from_body
from propylon.authz.roles import (
    BUILTIN_ROLES,
    RoleDefinition,
    is_assignable_at,
    role_definition_guid,
    role_definition_resource_id,
    role_from_json,
    role_to_arm,
    validate_custom_role,
)
from propylon.authz.scopes import canonical, is_within, normalize
from propylon.errors import BadRequest, Conflict, NotFound
from propylon.server.access import Caller, current_caller
from propylon.server.context import ServerContext
from propylon.store import Database, utcnow
from propylon.store.models import DenyAssignmentRow, RoleAssignmentRow, RoleDefinitionRow

__all__ = ["router"]

AUTH = "providers/Microsoft.Authorization"  # the path segment after any scope
_PRINCIPAL_TYPES = {"User", "Group", "ServicePrincipal", "ForeignGroup", "Device"}
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_FILTER_PRINCIPAL = re.compile(r"^\s*principalId\s+eq\s+'([^']+)'\s*$", re.IGNORECASE)
_FILTER_ASSIGNED_TO = re.compile(r"^\s*assignedTo\('([^']+)'\)\s*$", re.IGNORECASE)
_FILTER_ROLE_NAME = re.compile(r"^\s*roleName\s+eq\s+'([^']+)'\s*$", re.IGNORECASE)

CallerDep = Annotated[Caller, Depends(current_caller)]
JsonBody = Annotated[dict[str, Any], Body()]


def _ctx(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.ctx
    return ctx


def _scope(raw: str) -> str:
    return normalize("/" + raw.strip("/")) if raw.strip("/") else "/"


def _guid(value: str, field: str) -> str:
    if not _GUID.match(value):
        raise BadRequest(f"'{field}' must be a GUID, not {value!r}.", target=field)
    return value.lower()


def _require(request: Request, caller: Caller, action: str, scope: str) -> None:
    _ctx(request).services["access"].require(caller, action, scope)


# --- role definitions --------------------------------------------------------------------------


def _custom_roles(db: Database) -> list[tuple[RoleDefinition, str]]:
    with db.reader() as session:
        return [
            (role_from_json(row.body, role_id=row.id), row.scope)
            for row in session.scalars(select(RoleDefinitionRow))
        ]


def _find_role(db: Database, role_id: str) -> tuple[RoleDefinition, str] | None:
    guid = role_definition_guid(role_id)
    for role in BUILTIN_ROLES:
        if role.id == guid:
            return role, "/"
    for role, scope in _custom_roles(db):
        if role.id.lower() == guid:
            return role, scope
    return None


def put_role_definition(
    request: Request, caller: CallerDep, scope: str, role_id: str, body: JsonBody
) -> Response:
    ctx = _ctx(request)
    at = _scope(scope)
    _require(request, caller, "Microsoft.Authorization/roleDefinitions/write", at)
    guid = _guid(role_id, "name")
    role = role_from_json(body, role_id=guid)
    role = RoleDefinition(
        id=guid,
        role_name=role.role_name,
        description=role.description,
        role_type="CustomRole",
        permissions=role.permissions,
        assignable_scopes=role.assignable_scopes or (at,),
    )
    validate_custom_role(role)
    for assignable in role.assignable_scopes:
        _require(request, caller, "Microsoft.Authorization/roleDefinitions/write", assignable)
    now = utcnow()
    with ctx.db.transaction() as session:
        clash = session.scalar(
            select(RoleDefinitionRow).where(RoleDefinitionRow.role_name == role.role_name)
        )
        if clash is not None and clash.id != guid:
            raise Conflict(
                f"A role definition named '{role.role_name}' already exists.",
                code="RoleDefinitionWithSameNameExists",
            )
        row = session.get(RoleDefinitionRow, guid)
        created = row is None
        if row is None:
            row = RoleDefinitionRow(id=guid, created_at=now)
            session.add(row)
        row.scope = at
        row.role_name = role.role_name
        row.body = role_to_arm(role, scope=at)
        row.modified_at = now
        Database.record_change(session, "roledefinitions", guid)
    return _json(role_to_arm(role, scope=at), 201 if created else 200)


def get_role_definition(request: Request, caller: CallerDep, scope: str, role_id: str) -> Any:
    at = _scope(scope)
    _require(request, caller, "Microsoft.Authorization/roleDefinitions/read", at)
    found = _find_role(_ctx(request).db, role_id)
    if found is None:
        raise NotFound(
            f"Role definition '{role_id}' does not exist.", code="RoleDefinitionDoesNotExist"
        )
    return role_to_arm(found[0], scope=at)


def list_role_definitions(
    request: Request,
    caller: CallerDep,
    scope: str,
    filter_: Annotated[str | None, Query(alias="$filter")] = None,
) -> Any:
    at = _scope(scope)
    _require(request, caller, "Microsoft.Authorization/roleDefinitions/read", at)
    roles = [*BUILTIN_ROLES, *(role for role, _ in _custom_roles(_ctx(request).db))]
    # As az does: built-ins, plus custom roles assignable at, above or below the scope.
    visible = [
        r
        for r in roles
        if r.role_type == "BuiltInRole"
        or any(is_within(at, s) or is_within(s, at) for s in r.assignable_scopes)
    ]
    if filter_:
        match = _FILTER_ROLE_NAME.match(filter_)
        if match is None and "type eq 'customrole'" not in filter_.lower():
            raise BadRequest(f"Unsupported $filter {filter_!r}.", target="$filter")
        if match is not None:
            visible = [r for r in visible if r.role_name.lower() == match.group(1).lower()]
        else:
            visible = [r for r in visible if r.role_type == "CustomRole"]
    return {"value": [role_to_arm(r, scope=at) for r in visible]}


def delete_role_definition(request: Request, caller: CallerDep, scope: str, role_id: str) -> Any:
    ctx = _ctx(request)
    at = _scope(scope)
    _require(request, caller, "Microsoft.Authorization/roleDefinitions/delete", at)
    guid = _guid(role_id, "name")
    with ctx.db.transaction() as session:
        row = session.get(RoleDefinitionRow, guid)
        if row is None:
            return Response(status_code=204)
        in_use = session.scalar(
            select(RoleAssignmentRow).where(RoleAssignmentRow.role_definition_id == guid).limit(1)
        )
        if in_use is not None:
            raise Conflict(
                "The role definition has role assignments; delete them first.",
                code="RoleDefinitionHasAssignments",
            )
        body = row.body
        session.delete(row)
        Database.record_change(session, "roledefinitions", guid)
    return body


# --- role assignments --------------------------------------------------------------------------


def _assignment_json(row: RoleAssignmentRow, role_name: str | None) -> dict[str, Any]:
    scope_prefix = "" if row.scope == "/" else row.scope
    return {
        "id": f"{scope_prefix}/{AUTH}/roleAssignments/{row.id}",
        "name": row.id,
        "type": "Microsoft.Authorization/roleAssignments",
        "properties": {
            "roleDefinitionId": role_definition_resource_id(row.role_definition_id),
            "roleDefinitionName": role_name,
            "principalId": row.principal_id,
            "principalType": row.principal_type,
            "scope": row.scope,
            "condition": row.body.get("condition"),
            "conditionVersion": row.body.get("conditionVersion"),
            "description": row.body.get("description"),
            "createdOn": row.created_at.isoformat(),
            "updatedOn": row.created_at.isoformat(),
            "createdBy": row.body.get("createdBy"),
            "updatedBy": row.body.get("createdBy"),
        },
    }


def put_role_assignment(
    request: Request, caller: CallerDep, scope: str, assignment_id: str, body: JsonBody
) -> Response:
    ctx = _ctx(request)
    at = _scope(scope)
    _require(request, caller, "Microsoft.Authorization/roleAssignments/write", at)
    guid = _guid(assignment_id, "name")
    props = body.get("properties")
    if not isinstance(props, dict):
        raise BadRequest("'properties' is required.", target="properties")
    role_ref = props.get("roleDefinitionId")
    principal = props.get("principalId")
    if not isinstance(role_ref, str) or not role_ref:
        raise BadRequest(
            "'properties.roleDefinitionId' is required.", target="properties.roleDefinitionId"
        )
    if not isinstance(principal, str) or not _GUID.match(principal):
        raise BadRequest(
            "'properties.principalId' must be an object id (GUID).", target="properties.principalId"
        )
    if props.get("condition"):
        # ABAC conditions are not evaluated by the engine; refusing beats silently ignoring one.
        raise BadRequest(
            "Role assignment conditions are not supported by this server.",
            code="ConditionNotSupported",
            target="properties.condition",
        )
    principal_type = props.get("principalType") or "User"
    if principal_type not in _PRINCIPAL_TYPES:
        raise BadRequest(
            f"'properties.principalType' must be one of {sorted(_PRINCIPAL_TYPES)}.",
            target="properties.principalType",
        )
    found = _find_role(ctx.db, role_ref)
    if found is None:
        raise BadRequest(
            f"Role definition '{role_ref}' does not exist.",
            code="RoleDefinitionDoesNotExist",
            target="properties.roleDefinitionId",
        )
    role, _ = found
    if not is_assignable_at(role, at):
        raise BadRequest(
            f"Role '{role.role_name}' is not assignable at scope '{at}'.",
            code="InvalidScope",
            target="scope",
        )
    with ctx.db.transaction() as session:
        existing = session.get(RoleAssignmentRow, guid)
        if existing is not None:
            same = (
                existing.principal_id == principal.lower()
                and existing.role_definition_id == role.id.lower()
                and canonical(existing.scope) == canonical(at)
            )
            if same:
                return _json(_assignment_json(existing, role.role_name), 200)
            raise Conflict(
                "Role assignments cannot be updated.", code="RoleAssignmentUpdateNotPermitted"
            )
        duplicate = session.scalar(
            select(RoleAssignmentRow).where(
                RoleAssignmentRow.principal_id == principal.lower(),
                RoleAssignmentRow.role_definition_id == role.id.lower(),
                RoleAssignmentRow.scope == at,
            )
        )
        if duplicate is not None:
            raise Conflict("The role assignment already exists.", code="RoleAssignmentExists")
        row = RoleAssignmentRow(
            id=guid,
            scope=at,
            role_definition_id=role.id.lower(),
            principal_id=principal.lower(),
            principal_type=principal_type,
            body={
                "description": props.get("description"),
                "condition": props.get("condition"),
                "conditionVersion": props.get("conditionVersion"),
                "createdBy": caller.oid,
            },
            created_at=utcnow(),
        )
        session.add(row)
        Database.record_change(session, "roleassignments", guid)
    return _json(_assignment_json(row, role.role_name), 201)


def _role_names(db: Database) -> dict[str, str]:
    names = {r.id.lower(): r.role_name for r in BUILTIN_ROLES}
    names.update({r.id.lower(): r.role_name for r, _ in _custom_roles(db)})
    return names


def get_role_assignment(request: Request, caller: CallerDep, scope: str, assignment_id: str) -> Any:
    ctx = _ctx(request)
    at = _scope(scope)
    _require(request, caller, "Microsoft.Authorization/roleAssignments/read", at)
    with ctx.db.reader() as session:
        row = session.get(RoleAssignmentRow, assignment_id.lower())
    if row is None or canonical(row.scope) != canonical(at):
        raise NotFound(
            f"Role assignment '{assignment_id}' does not exist.", code="RoleAssignmentNotFound"
        )
    return _assignment_json(row, _role_names(ctx.db).get(row.role_definition_id))


def delete_role_assignment(
    request: Request, caller: CallerDep, scope: str, assignment_id: str
) -> Any:
    ctx = _ctx(request)
    at = _scope(scope)
    _require(request, caller, "Microsoft.Authorization/roleAssignments/delete", at)
    with ctx.db.transaction() as session:
        row = session.get(RoleAssignmentRow, assignment_id.lower())
        if row is None or canonical(row.scope) != canonical(at):
            return Response(status_code=204)
        result = _assignment_json(row, None)
        session.delete(row)
        Database.record_change(session, "roleassignments", row.id)
    return result


def list_role_assignments(
    request: Request,
    caller: CallerDep,
    scope: str,
    filter_: Annotated[str | None, Query(alias="$filter")] = None,
) -> Any:
    ctx = _ctx(request)
    at = _scope(scope)
    _require(request, caller, "Microsoft.Authorization/roleAssignments/read", at)
    with ctx.db.reader() as session:
        rows = list(session.scalars(select(RoleAssignmentRow)))
    # ARM lists assignments that apply at the scope (it and its ancestors) and below it.
    rows = [r for r in rows if is_within(at, r.scope) or is_within(r.scope, at)]
    if filter_:
        if filter_.strip().lower() == "atscope()":
            rows = [r for r in rows if is_within(at, r.scope)]
        elif (match := _FILTER_PRINCIPAL.match(filter_)) is not None:
            rows = [r for r in rows if r.principal_id == match.group(1).lower()]
        elif (match := _FILTER_ASSIGNED_TO.match(filter_)) is not None:
            oid = match.group(1).lower()
            identities = {oid} | set(ctx.services["directory"].groups_of(oid))
            rows = [r for r in rows if r.principal_id in identities]
        else:
            raise BadRequest(f"Unsupported $filter {filter_!r}.", target="$filter")
    names = _role_names(ctx.db)
    return {"value": [_assignment_json(r, names.get(r.role_definition_id)) for r in rows]}


# --- deny assignments (a Propylon extension: Azure reserves them for its own services) ----------


def put_deny_assignment(
    request: Request, caller: CallerDep, scope: str, deny_id: str, body: JsonBody
) -> Response:
    ctx = _ctx(request)
    at = _scope(scope)
    _require(request, caller, "Microsoft.Authorization/denyAssignments/write", at)
    guid = _guid(deny_id, "name")
    props = body.get("properties")
    if not isinstance(props, dict) or not props.get("permissions"):
        raise BadRequest("'properties.permissions' is required.", target="properties.permissions")
    deny_from_body(guid, at, props)  # shape check: raises on malformed entries
    with ctx.db.transaction() as session:
        row = session.get(DenyAssignmentRow, guid)
        created = row is None
        if row is None:
            row = DenyAssignmentRow(id=guid, created_at=utcnow())
            session.add(row)
        row.scope = at
        row.body = {**props, "createdBy": caller.oid}
        Database.record_change(session, "denyassignments", guid)
    return _json(_deny_json(row), 201 if created else 200)


def _deny_json(row: DenyAssignmentRow) -> dict[str, Any]:
    prefix = "" if row.scope == "/" else row.scope
    return {
        "id": f"{prefix}/{AUTH}/denyAssignments/{row.id}",
        "name": row.id,
        "type": "Microsoft.Authorization/denyAssignments",
        "properties": {**row.body, "scope": row.scope},
    }


def list_deny_assignments(request: Request, caller: CallerDep, scope: str) -> Any:
    ctx = _ctx(request)
    at = _scope(scope)
    _require(request, caller, "Microsoft.Authorization/denyAssignments/read", at)
    with ctx.db.reader() as session:
        rows = list(session.scalars(select(DenyAssignmentRow)))
    rows = [r for r in rows if is_within(at, r.scope) or is_within(r.scope, at)]
    return {"value": [_deny_json(r) for r in rows]}


def delete_deny_assignment(request: Request, caller: CallerDep, scope: str, deny_id: str) -> Any:
    ctx = _ctx(request)
    at = _scope(scope)
    _require(request, caller, "Microsoft.Authorization/denyAssignments/delete", at)
    with ctx.db.transaction() as session:
        row = session.get(DenyAssignmentRow, deny_id.lower())
        if row is None:
            return Response(status_code=204)
        result = _deny_json(row)
        session.delete(row)
        Database.record_change(session, "denyassignments", row.id)
    return result


# --- permissions and check access -------------------------------------------------------------


def get_permissions(request: Request, caller: CallerDep, scope: str) -> Any:
    """ARM Permissions API: the caller's own effective permission entries at the scope."""
    at = _scope(scope)
    policy = _ctx(request).services["policy"].authorizer
    entries = policy.permissions_for(caller.oid, caller.groups, at)
    return {
        "value": [
            {
                "actions": list(p.actions),
                "notActions": list(p.not_actions),
                "dataActions": list(p.data_actions),
                "notDataActions": list(p.not_data_actions),
            }
            for p in entries
        ]
    }


def check_access(request: Request, caller: CallerDep, scope: str, body: JsonBody) -> Any:
    """Decide for any principal and explain why (needs ``roleAssignments/read`` at the scope)."""
    ctx = _ctx(request)
    at = _scope(scope)
    _require(request, caller, "Microsoft.Authorization/roleAssignments/read", at)
    principal = body.get("principalId")
    action = body.get("action")
    if not isinstance(principal, str) or not _GUID.match(principal):
        raise BadRequest("'principalId' must be an object id (GUID).", target="principalId")
    if not isinstance(action, str) or not action:
        raise BadRequest("'action' is required.", target="action")
    groups = ctx.services["directory"].groups_of(principal.lower())
    decision: Decision = ctx.services["policy"].authorizer.authorize(
        principal.lower(), groups, action, at, data_action=bool(body.get("isDataAction"))
    )
    return {
        "allowed": decision.allowed,
        "action": decision.action,
        "scope": decision.scope,
        "reason": decision.reason,
        "roleAssignmentId": decision.matched_assignment_id,
        "roleName": decision.matched_role,
        "permissionIndex": decision.matched_permission_index,
        "denyAssignmentId": decision.deny_assignment_id,
    }


def _json(body: dict[str, Any], status: int) -> Response:
    from fastapi.responses import JSONResponse

    return JSONResponse(body, status_code=status)


def router() -> APIRouter:
    """Routes at every scope; ``{scope:path}`` may be empty, which is the tenant root ``/``."""
    api = APIRouter(tags=["authorization"])
    base = "/{scope:path}" + AUTH
    for path, handler, method in (
        ("/roleDefinitions/{role_id}", put_role_definition, "PUT"),
        ("/roleDefinitions/{role_id}", get_role_definition, "GET"),
        ("/roleDefinitions/{role_id}", delete_role_definition, "DELETE"),
        ("/roleDefinitions", list_role_definitions, "GET"),
        ("/roleAssignments/{assignment_id}", put_role_assignment, "PUT"),
        ("/roleAssignments/{assignment_id}", get_role_assignment, "GET"),
        ("/roleAssignments/{assignment_id}", delete_role_assignment, "DELETE"),
        ("/roleAssignments", list_role_assignments, "GET"),
        ("/denyAssignments/{deny_id}", put_deny_assignment, "PUT"),
        ("/denyAssignments/{deny_id}", delete_deny_assignment, "DELETE"),
        ("/denyAssignments", list_deny_assignments, "GET"),
        ("/permissions", get_permissions, "GET"),
        ("/checkAccess", check_access, "POST"),
    ):
        api.add_api_route(base + path, handler, methods=[method])
    return api
