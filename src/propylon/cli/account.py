"""``propylon account show|list|set|get-access-token`` and ``propylon configure``.

``get-access-token`` prints what ``az account get-access-token`` prints — ``accessToken``,
``expiresOn`` (local time), ``expires_on`` (epoch seconds), ``subscription``, ``tenant``,
``tokenType`` — so the seed's
``export DATA_PLANE_TOKEN=$(propylon account get-access-token --resource https://ml.azure.com
--query accessToken -o tsv)`` works unchanged. Example::

    propylon configure --defaults group=default-rg workspace=default-ws
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated

import typer

from propylon.cli.command import command
from propylon.cli.login import account_document
from propylon.cli.session import Session
from propylon.client.cli_credential import CliCredential
from propylon.client.http import ARM_SCOPE, ML_SCOPE, resource_to_scope
from propylon.errors import BadRequest

__all__ = ["account_app", "configure_app"]

account_app = typer.Typer(help="Manage the signed-in account.", no_args_is_help=True)
configure_app = typer.Typer()


@command(account_app, "show")
def show(session: Session) -> None:
    """The signed-in account and its default subscription."""
    profile = session.profile()
    subscription = profile.subscription
    if session.options.subscription:
        subscription = next(
            (s for s in profile.subscriptions if s.id == session.options.subscription), None
        )
        if subscription is None:
            raise BadRequest(
                f"Subscription '{session.options.subscription}' not found.",
                code="SubscriptionNotFound",
            )
    session.emit(account_document(profile, subscription))


@command(account_app, "list")
def list_(session: Session) -> None:
    """The subscriptions of the signed-in account."""
    profile = session.profile()
    session.emit([account_document(profile, s) for s in profile.subscriptions])


@command(account_app, "set")
def set_(
    session: Session,
    name: Annotated[
        str, typer.Option("--name", "-n", "-s", help="Subscription id or name to make default.")
    ],
) -> None:
    """Make a subscription the default."""
    profile = session.profile()
    chosen = [s for s in profile.subscriptions if name in (s.id, s.name)]
    if not chosen:
        raise BadRequest(
            f"The subscription of '{name}' doesn't exist in cloud 'Propylon'.",
            code="SubscriptionNotFound",
        )
    profile.subscriptions = [
        replace(s, is_default=s.id == chosen[0].id) for s in profile.subscriptions
    ]
    session.home.save_profile(profile)


@command(account_app, "get-access-token")
def get_access_token(
    session: Session,
    resource: Annotated[
        str | None,
        typer.Option("--resource", help="Resource URI (default: https://management.azure.com)."),
    ] = None,
    scope: Annotated[
        str | None, typer.Option("--scope", help="Scope (instead of --resource).")
    ] = None,
    resource_type: Annotated[
        str | None,
        typer.Option("--resource-type", help="arm | ml (instead of --resource)."),
    ] = None,
) -> None:
    """An access token of the signed-in account, for REST calls or a scoring request."""
    if sum(x is not None for x in (resource, scope, resource_type)) > 1:
        raise BadRequest(
            "give only one of --resource, --scope and --resource-type.", code="InvalidArgument"
        )
    wanted = ARM_SCOPE
    if scope:
        wanted = scope
    elif resource:
        wanted = resource_to_scope(resource)
    elif resource_type:
        known = {"arm": ARM_SCOPE, "ml": ML_SCOPE}
        if resource_type not in known:
            raise BadRequest(
                f"--resource-type must be one of {', '.join(known)}.", code="InvalidArgument"
            )
        wanted = known[resource_type]
    profile = session.profile()
    credential = session.deps.credential or CliCredential(session.home.path)
    access = credential.get_token(wanted)
    expires_on = int(access.expires_on)
    session.emit(
        {
            "accessToken": access.token,
            "expiresOn": datetime.fromtimestamp(expires_on).strftime("%Y-%m-%d %H:%M:%S.%f"),
            "expires_on": expires_on,
            "subscription": session.options.subscription
            or (profile.subscription.id if profile.subscription else None),
            "tenant": profile.tenant_id,
            "tokenType": "Bearer",
        }
    )


@command(configure_app, "configure")
def configure(
    session: Session,
    defaults: Annotated[
        list[str] | None,
        typer.Option(
            "--defaults",
            "-d",
            help="Space-separated key=value pairs, e.g. 'group=default-rg workspace=default-ws'; "
            "an empty value removes the key.",
        ),
    ] = None,
    list_defaults: Annotated[
        bool, typer.Option("--list-defaults", "-l", help="Show the configured defaults.")
    ] = False,
    more: Annotated[
        list[str] | None,
        typer.Argument(hidden=True, help="The rest of --defaults' pairs, as az takes them."),
    ] = None,
) -> None:
    """Set defaults for later commands (-g, -w) in $PROPYLON_CONFIG_DIR/config."""
    pairs: dict[str, str] = {}
    if more and not defaults:
        raise BadRequest(f"unexpected arguments: {' '.join(more)}.", code="InvalidArgument")
    for item in " ".join([*(defaults or []), *(more or [])]).split():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadRequest(
                f"--defaults expects key=value pairs, not {item!r}.", code="InvalidArgument"
            )
        pairs[key.strip().lower()] = value.strip()
    if pairs:
        session.home.set_defaults(pairs)
    if list_defaults or not pairs:
        session.emit([{"name": k, "value": v} for k, v in session.home.defaults().items()])
