"""``propylon role definition|assignment …`` and ``propylon role check``, as ``az role``.

Role definition files may be ARM-shaped or PowerShell-shaped like the seed's
``custom-role-for-scoring.json``. ``--assignee`` takes an object id, an app id or a user
principal name; ``--role`` a role name or GUID. Example (seed 003)::

    propylon role definition create --role-definition custom-role-for-scoring.json
    propylon role assignment create --assignee $ID --role "AzureML Data Scientist" --scope $WS
    propylon role check --assignee $ID --scope $WS/onlineEndpoints/my-endpoint \
        --action Microsoft.MachineLearningServices/workspaces/onlineEndpoints/score/action
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from propylon.cli.arguments import json_argument
from propylon.cli.command import Scope, command
from propylon.cli.session import Session
from propylon.client.authorization import is_guid
from propylon.errors import BadRequest, NotFound

__all__ = ["role_app"]

role_app = typer.Typer(
    help="Manage roles, role assignments and access checks.", no_args_is_help=True
)
definition_app = typer.Typer(help="Manage role definitions.", no_args_is_help=True)
assignment_app = typer.Typer(help="Manage role assignments.", no_args_is_help=True)
role_app.add_typer(definition_app, name="definition")
role_app.add_typer(assignment_app, name="assignment")

DefinitionOption = Annotated[
    str,
    typer.Option(
        "--role-definition",
        help="Role definition as JSON, @file or a file path (ARM or PowerShell shape).",
    ),
]
ScopeOption = Annotated[
    str | None, typer.Option("--scope", help="Scope, e.g. /subscriptions/…/resourceGroups/rg.")
]
AssigneeOption = Annotated[
    str | None,
    typer.Option("--assignee", help="Object id, app id or user principal name of the principal."),
]
RoleOption = Annotated[str | None, typer.Option("--role", help="Role name or GUID.")]


def _definition_table(rows: Any) -> Any:
    return [
        {"Name": r.get("roleName"), "Type": r.get("roleType"), "Description": r.get("description")}
        for r in (rows if isinstance(rows, list) else [rows])
        if isinstance(r, dict)
    ]


def _assignment_table(rows: Any) -> Any:
    return [
        {
            "Principal": r.get("principalName") or r.get("principalId"),
            "Role": r.get("roleDefinitionName"),
            "Scope": r.get("scope"),
        }
        for r in (rows if isinstance(rows, list) else [rows])
        if isinstance(r, dict)
    ]


def _scope(session: Session, scope: str | None) -> str:
    """``--scope``, else ``-g`` (resource group of the subscription), else the subscription."""
    if scope:
        return scope
    subscription = f"/subscriptions/{session.subscription_id()}"
    if session.options.resource_group:
        return f"{subscription}/resourceGroups/{session.options.resource_group}"
    return subscription


def _principal(
    session: Session, assignee: str | None, object_id: str | None, principal_type: str | None
) -> tuple[str, str | None]:
    if object_id:
        return object_id, principal_type
    if not assignee:
        raise BadRequest("give --assignee (or --assignee-object-id).", code="MissingArgument")
    return session.graph().resolve_principal(assignee)


# --- definitions -------------------------------------------------------------------------------


@command(definition_app, "create")
def create_definition(session: Session, role_definition: DefinitionOption) -> None:
    """Create a custom role."""
    body = json_argument(role_definition, flag="--role-definition")
    if not isinstance(body, dict):
        raise BadRequest("--role-definition must be a JSON object.", code="InvalidJson")
    session.emit(session.authorization().create_role(body))


@command(definition_app, "update")
def update_definition(session: Session, role_definition: DefinitionOption) -> None:
    """Update a custom role (found by its id or name)."""
    body = json_argument(role_definition, flag="--role-definition")
    if not isinstance(body, dict):
        raise BadRequest("--role-definition must be a JSON object.", code="InvalidJson")
    session.emit(session.authorization().create_role(body, update=True))


@command(definition_app, "list")
def list_definitions(
    session: Session,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Role name or GUID.")] = None,
    custom_role_only: Annotated[
        bool, typer.Option("--custom-role-only", help="Only custom roles.")
    ] = False,
    scope: ScopeOption = None,
) -> None:
    """List role definitions (built-in and custom)."""
    roles = session.authorization().list_roles(scope, name=name, custom_only=custom_role_only)
    session.emit(roles, table=_definition_table)


@command(definition_app, "delete")
def delete_definition(
    session: Session,
    name: Annotated[str, typer.Option("--name", "-n", help="Role name or GUID.")],
    scope: ScopeOption = None,
) -> None:
    """Delete a custom role (it must have no assignments)."""
    session.authorization().delete_role(name, scope)


# --- assignments -------------------------------------------------------------------------------


@command(assignment_app, "create", scope=Scope.GROUP)
def create_assignment(
    session: Session,
    role: Annotated[str, typer.Option("--role", help="Role name or GUID.")],
    assignee: AssigneeOption = None,
    assignee_object_id: Annotated[
        str | None, typer.Option("--assignee-object-id", help="Object id (no directory lookup).")
    ] = None,
    assignee_principal_type: Annotated[
        str | None,
        typer.Option("--assignee-principal-type", help="User | Group | ServicePrincipal."),
    ] = None,
    scope: ScopeOption = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
) -> None:
    """Assign a role to a user, group or service principal at a scope."""
    at = _scope(session, scope)
    principal_id, principal_type = _principal(
        session, assignee, assignee_object_id, assignee_principal_type
    )
    rbac = session.authorization()
    found = rbac.find_role(role, at)
    session.emit(
        rbac.create_assignment(
            at, str(found["id"]), principal_id, principal_type, description=description
        )
    )


def _matching(
    session: Session,
    assignee: str | None,
    role: str | None,
    scope: str | None,
    *,
    everything: bool = False,
    include_inherited: bool = False,
) -> list[dict[str, Any]]:
    rbac = session.authorization()
    at = _scope(session, scope)
    principal_id = session.graph().resolve_principal(assignee)[0] if assignee else None
    assignments = rbac.list_assignments(
        None if everything else at,
        principal_id=principal_id,
        at_scope_only=not (everything or include_inherited or principal_id),
    )
    if role:
        wanted = role.lower()
        role_id = wanted if is_guid(wanted) else None
        assignments = [
            a
            for a in assignments
            if str(a.get("roleDefinitionName", "")).lower() == wanted
            or (role_id and str(a.get("roleDefinitionId", "")).lower().endswith(role_id))
        ]
    return assignments


@command(assignment_app, "list", scope=Scope.GROUP)
def list_assignments(
    session: Session,
    assignee: AssigneeOption = None,
    role: RoleOption = None,
    scope: ScopeOption = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Everything in the subscription, at and below.")
    ] = False,
    include_inherited: Annotated[
        bool, typer.Option("--include-inherited", help="Also assignments at parent scopes.")
    ] = False,
) -> None:
    """List role assignments at a scope (or of a principal)."""
    assignments = _matching(
        session, assignee, role, scope, everything=all_, include_inherited=include_inherited
    )
    session.emit(assignments, table=_assignment_table)


@command(assignment_app, "delete", scope=Scope.GROUP)
def delete_assignments(
    session: Session,
    ids: Annotated[
        list[str] | None, typer.Option("--ids", help="Role assignment ids (repeatable).")
    ] = None,
    assignee: AssigneeOption = None,
    role: RoleOption = None,
    scope: ScopeOption = None,
) -> None:
    """Delete role assignments by id, or those matching assignee, role and scope."""
    rbac = session.authorization()
    targets = list(ids or [])
    if not targets:
        if not (assignee or role or scope):
            raise BadRequest(
                "give --ids, or at least one of --assignee, --role and --scope.",
                code="MissingArgument",
            )
        targets = [str(a["id"]) for a in _matching(session, assignee, role, scope)]
        if not targets:
            raise NotFound("No matched assignments were found to delete.", code="NotFound")
    for assignment_id in targets:
        rbac.delete_assignment(assignment_id)


# --- access checks -----------------------------------------------------------------------------


@command(role_app, "check")
def check(
    session: Session,
    assignee: Annotated[
        str, typer.Option("--assignee", help="Object id, app id or user principal name.")
    ],
    action: Annotated[
        str, typer.Option("--action", help="Action, e.g. …/onlineEndpoints/score/action.")
    ],
    scope: Annotated[str, typer.Option("--scope", help="Scope of the request.")],
) -> None:
    """May ASSIGNEE do ACTION at SCOPE? The decision, and the assignment or deny behind it."""
    principal_id, _ = session.graph().resolve_principal(assignee)
    session.emit(session.authorization().check_access(scope, principal_id, action))
