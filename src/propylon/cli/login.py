"""``propylon login`` and ``propylon logout``, as ``az login`` / ``az logout``.

Sign-in methods: the device code flow (default: print the verification URI and user code, wait
for approval), ``--username/--password`` for users, ``--service-principal -u APP_ID -p SECRET``,
and ``--identity`` inside a deployment (its managed identity, through ``IDENTITY_ENDPOINT`` /
``IDENTITY_HEADER``). ``--data-dir`` reads the server's ``bootstrap.json`` for the server URL,
tenant, subscription and CA file, and with ``--service-principal`` and no ``-u`` signs in as the
bootstrap administrator. Tokens land in ``$PROPYLON_CONFIG_DIR`` (files 0600); nothing secret is
printed. Example::

    propylon login --server https://127.0.0.1:8080 --ca-cert .propylon/tls/ca.pem --tenant $T
    propylon login --data-dir .propylon --service-principal
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from propylon.cli.command import command
from propylon.cli.session import Session
from propylon.client.cli_credential import managed_identity_token
from propylon.client.credentials import ca_cert_from_env
from propylon.client.http import ARM_SCOPE, Pipeline
from propylon.client.profile import Account, Profile, Subscription
from propylon.client.sign_in import SignIn, TokenResult
from propylon.errors import BadRequest, PropylonError

__all__ = ["account_document", "login_app", "read_bootstrap"]

login_app = typer.Typer()

#: The tenant to sign in to when none is known, as ``az login`` does.
_ANY_TENANT = "organizations"


def read_bootstrap(data_dir: Path) -> dict[str, Any]:
    """The server's ``bootstrap.json`` (written 0600 by ``propylon server``)."""
    path = data_dir.expanduser() / "bootstrap.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadRequest(
            f"{path} does not exist: is {data_dir} the data dir of a started server?",
            code="FileNotFound",
        ) from None
    except PermissionError:
        raise BadRequest(
            f"{path} is not readable by this user (it is 0600, owned by the server's user).",
            code="FileNotReadable",
        ) from None
    except ValueError:
        raise BadRequest(f"{path} is not valid JSON.", code="InvalidBootstrap") from None
    if not isinstance(data, dict):
        raise BadRequest(f"{path} is not a JSON object.", code="InvalidBootstrap")
    return data


def _claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified — only to show who signed in (the server verifies)."""
    try:
        payload = token.split(".")[1]
        decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return decoded if isinstance(decoded, dict) else {}


def account_document(profile: Profile, subscription: Subscription | None) -> dict[str, Any]:
    """One entry of ``az account list`` / ``az account show``."""
    return {
        "environmentName": "Propylon",
        "homeTenantId": profile.tenant_id,
        "id": subscription.id if subscription else None,
        "isDefault": subscription.is_default if subscription else True,
        "managedByTenants": [],
        "name": (subscription.name or subscription.id) if subscription else "N/A(tenant level)",
        "server": profile.server,
        "state": subscription.state if subscription else "Enabled",
        "tenantId": profile.tenant_id,
        "user": {"name": profile.account.name, "type": profile.account.type},
    }


@dataclass
class _Target:
    server: str
    authority: str
    tenant: str
    ca_cert: str | None
    bootstrap: dict[str, Any]


def _target(
    session: Session,
    server: str | None,
    authority: str | None,
    tenant: str | None,
    ca_cert: Path | None,
    data_dir: Path | None,
) -> _Target:
    bootstrap = read_bootstrap(data_dir) if data_dir is not None else {}
    previous = session.home.load_profile()
    chosen = (
        server
        or bootstrap.get("control_plane_url")
        or os.environ.get("PROPYLON_SERVER")
        or (previous.server if previous else None)
    )
    if not chosen:
        raise BadRequest(
            "which server? pass --server https://HOST:8080 (or --data-dir of a local server).",
            code="MissingArgument",
        )
    ca = (
        (str(ca_cert.expanduser().resolve()) if ca_cert else None)
        or bootstrap.get("ca_cert")
        or ca_cert_from_env()
        or (previous.ca_cert if previous and previous.server == chosen else None)
    )
    if ca is not None and not Path(ca).is_file():
        raise BadRequest(f"--ca-cert {ca}: no such file.", code="FileNotFound")
    return _Target(
        server=chosen.rstrip("/"),
        authority=(authority or bootstrap.get("authority") or chosen).rstrip("/"),
        tenant=tenant
        or bootstrap.get("tenant_id")
        or os.environ.get("AZURE_TENANT_ID")
        or _ANY_TENANT,
        ca_cert=ca,
        bootstrap=bootstrap,
    )


class _StaticCredential:
    """The token just obtained at sign-in, for the subscription lookup that follows."""

    def __init__(self, result: TokenResult) -> None:
        self._result = result

    def get_token(self, *scopes: str, **kwargs: Any) -> TokenResult:
        return self._result


def _subscriptions(
    session: Session, target: _Target, token: TokenResult, wanted: str | None, tenant: str
) -> list[Subscription]:
    if wanted:
        return [Subscription(id=wanted, tenant_id=tenant, name=wanted)]
    if target.bootstrap.get("subscription_id"):
        sub = str(target.bootstrap["subscription_id"])
        return [Subscription(id=sub, tenant_id=tenant, name=sub)]
    pipeline = Pipeline(
        _StaticCredential(token), ca_cert=target.ca_cert, transport=session.deps.transport
    )
    try:
        items = pipeline.collect(
            f"{target.server}/subscriptions", scope=ARM_SCOPE, params={"api-version": "2022-12-01"}
        )
    except PropylonError as error:
        session.warn(
            f"could not list subscriptions ({error.code}); pass --subscription to commands."
        )
        return []
    finally:
        pipeline.close()
    return [
        Subscription(
            id=str(item.get("subscriptionId") or str(item.get("id", "")).rsplit("/", 1)[-1]),
            tenant_id=str(item.get("tenantId") or tenant),
            name=str(item.get("displayName") or ""),
            is_default=index == 0,
            state=str(item.get("state") or "Enabled"),
        )
        for index, item in enumerate(items)
    ]


@command(login_app, "login")
def login(
    session: Session,
    server: Annotated[
        str | None,
        typer.Option(
            "--server", help="Control plane URL, e.g. https://127.0.0.1:8080 [env PROPYLON_SERVER]."
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Data dir of a local server: read its bootstrap.json."),
    ] = None,
    ca_cert: Annotated[
        Path | None,
        typer.Option(
            "--ca-cert",
            help="CA file to trust (default: the server's, PROPYLON_CA_CERT, REQUESTS_CA_BUNDLE).",
        ),
    ] = None,
    tenant: Annotated[
        str | None, typer.Option("--tenant", "-t", help="Tenant id (default: the server's).")
    ] = None,
    authority: Annotated[
        str | None,
        typer.Option("--authority", help="Identity provider URL (default: the server's)."),
    ] = None,
    username: Annotated[
        str | None,
        typer.Option("--username", "-u", help="User name, or the app id with --service-principal."),
    ] = None,
    password: Annotated[
        str | None,
        typer.Option("--password", "-p", help="Password, or the client secret."),
    ] = None,
    service_principal: Annotated[
        bool, typer.Option("--service-principal", help="Sign in as a service principal.")
    ] = False,
    identity: Annotated[
        bool,
        typer.Option("--identity", help="Sign in with the managed identity of this deployment."),
    ] = False,
    client_id: Annotated[
        str | None,
        typer.Option("--client-id", help="With --identity: the user-assigned identity's id."),
    ] = None,
    use_device_code: Annotated[
        bool, typer.Option("--use-device-code", help="Device code flow (the default).")
    ] = False,
    allow_no_subscriptions: Annotated[
        bool, typer.Option("--allow-no-subscriptions", help="Sign in even without one.")
    ] = False,
) -> None:
    """Sign in to a Propylon server (device code flow unless told otherwise)."""
    target = _target(session, server, authority, tenant, ca_cert, data_dir)
    sign_in: SignIn = session.deps.sign_in(
        session.home, target.authority, target.tenant, ca_cert=target.ca_cert
    )
    secret: str | None = None
    if identity:
        token = managed_identity_token(ARM_SCOPE, client_id or username)
        account = Account(name="systemAssignedIdentity", type="managedIdentity")
        if client_id or username:
            account = Account(
                name="userAssignedIdentity", type="managedIdentity", client_id=client_id or username
            )
    elif service_principal:
        app_id = username or target.bootstrap.get("admin_client_id")
        secret = password or target.bootstrap.get("admin_client_secret")
        if not app_id or not secret:
            raise BadRequest(
                "--service-principal needs -u APP_ID and -p SECRET (or --data-dir of a local "
                "server to use its administrator).",
                code="MissingArgument",
            )
        token = sign_in.client_secret(app_id, secret, [ARM_SCOPE])
        account = Account(name=app_id, type="servicePrincipal")
    elif username:
        if password is None:
            password = typer.prompt("Password", hide_input=True)
        token = sign_in.username_password(username, password, [ARM_SCOPE])
        account = Account(name=token.username or username, type="user")
    else:
        token = sign_in.device_code([ARM_SCOPE], prompt=session.note)
        claims = _claims(token.access_token)
        name = token.username or claims.get("upn") or claims.get("oid") or "user"
        account = Account(name=str(name), type="user")
    claims = _claims(token.access_token)
    tenant_id = target.tenant
    if tenant_id == _ANY_TENANT and claims.get("tid"):
        tenant_id = str(claims["tid"])
    subscriptions = _subscriptions(session, target, token, session.options.subscription, tenant_id)
    if not subscriptions and not allow_no_subscriptions:
        session.warn("no subscription found for this account; use --subscription on commands.")
    profile = Profile(
        server=target.server,
        authority=target.authority,
        tenant_id=tenant_id,
        account=account,
        client_id=sign_in.client_id,
        ca_cert=target.ca_cert,
        subscriptions=subscriptions,
    )
    if secret is not None:
        session.home.save_secret(account.name, tenant_id, secret)
    session.home.save_profile(profile)
    session.emit(
        [account_document(profile, s) for s in subscriptions] or [account_document(profile, None)]
    )


@command(login_app, "logout")
def logout(session: Session) -> None:
    """Sign out: forget the account, its cached tokens and stored secret."""
    profile = session.home.load_profile()
    if profile is None:
        raise BadRequest("There are no active accounts.", code="NotSignedIn")
    session.home.sign_out()
