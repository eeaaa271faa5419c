"""``propylon ad user|group|sp …``, as ``az ad``: the directory of the identity provider.

``ad sp create-for-rbac`` prints the new client secret once, as ``az`` does — it is never stored
by the server in the clear and cannot be shown again. Example::

    propylon ad user create --display-name Alice --user-principal-name alice@contoso.local \\
        --password "$PW"
    propylon ad group member add --group scorers --member-id "$(propylon ad user show \\
        --id alice@contoso.local --query id -o tsv)"
    propylon ad sp create-for-rbac --name ci-scorer
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from propylon.cli.command import command
from propylon.cli.session import Session

__all__ = ["ad_app"]

ad_app = typer.Typer(help="Manage users, groups and service principals.", no_args_is_help=True)
user_app = typer.Typer(help="Manage users.", no_args_is_help=True)
group_app = typer.Typer(help="Manage groups.", no_args_is_help=True)
member_app = typer.Typer(help="Manage group members.", no_args_is_help=True)
sp_app = typer.Typer(help="Manage service principals.", no_args_is_help=True)
ad_app.add_typer(user_app, name="user")
ad_app.add_typer(group_app, name="group")
group_app.add_typer(member_app, name="member")
ad_app.add_typer(sp_app, name="sp")

UserId = Annotated[str, typer.Option("--id", help="Object id or user principal name.")]
GroupOption = Annotated[str, typer.Option("--group", "-g", help="Group object id or name.")]
SpId = Annotated[str, typer.Option("--id", help="Object id or app id.")]


def _table(columns: dict[str, str]) -> Any:
    def transform(rows: Any) -> Any:
        return [
            {title: r.get(key) for title, key in columns.items()}
            for r in (rows if isinstance(rows, list) else [rows])
            if isinstance(r, dict)
        ]

    return transform


_USERS = _table(
    {"DisplayName": "displayName", "UserPrincipalName": "userPrincipalName", "Id": "id"}
)
_GROUPS = _table({"DisplayName": "displayName", "MailNickname": "mailNickname", "Id": "id"})
_SPS = _table({"DisplayName": "displayName", "AppId": "appId", "Id": "id"})


# --- users -------------------------------------------------------------------------------------


@command(user_app, "create")
def create_user(
    session: Session,
    display_name: Annotated[str, typer.Option("--display-name", help="Display name.")],
    user_principal_name: Annotated[
        str, typer.Option("--user-principal-name", help="Sign-in name, e.g. alice@contoso.local.")
    ],
    password: Annotated[
        str | None, typer.Option("--password", help="Initial password (prompted when omitted).")
    ] = None,
    force_change_password_next_sign_in: Annotated[
        bool, typer.Option("--force-change-password-next-sign-in")
    ] = False,
) -> None:
    """Create a user."""
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    session.emit(
        session.graph().create_user(
            user_principal_name,
            display_name,
            password,
            force_change_password=force_change_password_next_sign_in,
        )
    )


@command(user_app, "list")
def list_users(
    session: Session,
    display_name: Annotated[str | None, typer.Option("--display-name")] = None,
    upn: Annotated[str | None, typer.Option("--upn")] = None,
) -> None:
    """List users."""
    session.emit(session.graph().list_users(display_name=display_name, upn=upn), table=_USERS)


@command(user_app, "show")
def show_user(session: Session, id_: UserId) -> None:
    """Show a user."""
    session.emit(session.graph().get_user(id_), table=_USERS)


@command(user_app, "delete")
def delete_user(session: Session, id_: UserId) -> None:
    """Delete a user."""
    session.graph().delete_user(id_)


# --- groups ------------------------------------------------------------------------------------


@command(group_app, "create")
def create_group(
    session: Session,
    display_name: Annotated[str, typer.Option("--display-name", help="Group name.")],
    mail_nickname: Annotated[str, typer.Option("--mail-nickname", help="Mail nickname.")],
    description: Annotated[str | None, typer.Option("--description")] = None,
) -> None:
    """Create a security group."""
    session.emit(session.graph().create_group(display_name, mail_nickname, description=description))


@command(group_app, "list")
def list_groups(
    session: Session, display_name: Annotated[str | None, typer.Option("--display-name")] = None
) -> None:
    """List groups."""
    session.emit(session.graph().list_groups(display_name=display_name), table=_GROUPS)


@command(group_app, "show")
def show_group(session: Session, group: GroupOption) -> None:
    """Show a group."""
    session.emit(session.graph().get_group(group), table=_GROUPS)


@command(group_app, "delete")
def delete_group(session: Session, group: GroupOption) -> None:
    """Delete a group."""
    session.graph().delete_group(group)


@command(member_app, "add")
def add_member(
    session: Session,
    group: GroupOption,
    member_id: Annotated[str, typer.Option("--member-id", help="Object id of the new member.")],
) -> None:
    """Add a user, group or service principal to a group."""
    session.graph().add_member(group, member_id)


@command(member_app, "remove")
def remove_member(
    session: Session,
    group: GroupOption,
    member_id: Annotated[str, typer.Option("--member-id", help="Object id of the member.")],
) -> None:
    """Remove a member from a group."""
    session.graph().remove_member(group, member_id)


@command(member_app, "list")
def list_members(session: Session, group: GroupOption) -> None:
    """List the direct members of a group."""
    session.emit(session.graph().list_members(group), table=_USERS)


# --- service principals ------------------------------------------------------------------------


@command(sp_app, "create")
def create_sp(
    session: Session,
    id_: Annotated[str, typer.Option("--id", help="App id of an existing application.")],
) -> None:
    """Create the service principal of an application."""
    session.emit(session.graph().create_service_principal(id_), table=_SPS)


@command(sp_app, "list")
def list_sps(
    session: Session, display_name: Annotated[str | None, typer.Option("--display-name")] = None
) -> None:
    """List service principals."""
    session.emit(session.graph().list_service_principals(display_name=display_name), table=_SPS)


@command(sp_app, "show")
def show_sp(session: Session, id_: SpId) -> None:
    """Show a service principal."""
    session.emit(session.graph().get_service_principal(id_), table=_SPS)


@command(sp_app, "delete")
def delete_sp(session: Session, id_: SpId) -> None:
    """Delete a service principal."""
    session.graph().delete_service_principal(id_)


@command(sp_app, "create-for-rbac")
def create_for_rbac(
    session: Session,
    name: Annotated[str, typer.Option("--name", "-n", help="Display name of the application.")],
    role: Annotated[str | None, typer.Option("--role", help="Role to assign at --scopes.")] = None,
    scopes: Annotated[
        list[str] | None, typer.Option("--scopes", help="Scopes for --role (repeatable).")
    ] = None,
) -> None:
    """Create an application, its service principal and a client secret (shown once)."""
    graph = session.graph()
    application = graph.create_application(name)
    principal = graph.create_service_principal(str(application["appId"]))
    credential = graph.add_password(str(application["id"]), "rbac")
    if role:
        rbac = session.authorization()
        for scope in scopes or [f"/subscriptions/{session.subscription_id()}"]:
            found = rbac.find_role(role, scope)
            rbac.create_assignment(
                scope, str(found["id"]), str(principal["id"]), "ServicePrincipal"
            )
    session.warn(
        "The output includes credentials that you must protect. Be sure that you do not "
        "include these credentials in your code or check the credentials into your source "
        "control."
    )
    session.emit(
        {
            "appId": application["appId"],
            "displayName": name,
            "password": credential.get("secretText"),
            "tenant": session.profile().tenant_id,
        }
    )
