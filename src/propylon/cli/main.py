"""The ``propylon`` command: the root Typer app, its command groups, and its error policy.

The tree mirrors ``az``::

    propylon server                              run a server (control plane, identity, gateway)
    propylon login | logout | configure          sign in, set defaults
    propylon account show|list|set|get-access-token
    propylon ml online-endpoint …  ml online-deployment …  ml model|code|environment …
    propylon role definition …  role assignment …  role check
    propylon ad user …  ad group … (member …)  ad sp … (create-for-rbac)
    propylon identity rotate-keys|keys         signing keys of the built-in identity provider

Errors are one clear line on stderr and a non-zero exit code; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import sys

import typer

from propylon.cli.account import account_app, configure_app
from propylon.cli.ad import ad_app
from propylon.cli.assets import code_app, environment_app, model_app
from propylon.cli.command import print_error
from propylon.cli.identity import identity_app
from propylon.cli.login import login_app
from propylon.cli.online_deployment import deployment_app
from propylon.cli.online_endpoint import endpoint_app
from propylon.cli.role import role_app
from propylon.cli.server import server_command
from propylon.errors import ConfigurationError, PropylonError

__all__ = ["app", "main"]

app = typer.Typer(
    name="propylon",
    help="Self-hosted managed online endpoints (mirrors `az` and `az ml`).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("server")(server_command)
app.add_typer(login_app)
app.add_typer(configure_app)
app.add_typer(account_app, name="account")

ml_app = typer.Typer(help="Manage Azure ML-style resources.", no_args_is_help=True)
ml_app.add_typer(endpoint_app, name="online-endpoint")
ml_app.add_typer(deployment_app, name="online-deployment")
ml_app.add_typer(model_app, name="model")
ml_app.add_typer(code_app, name="code")
ml_app.add_typer(environment_app, name="environment")
app.add_typer(ml_app, name="ml")
app.add_typer(role_app, name="role")
app.add_typer(ad_app, name="ad")
app.add_typer(identity_app, name="identity")


@app.callback()
def _root() -> None:
    """Self-hosted managed online endpoints (mirrors `az` and `az ml`)."""


def main() -> None:
    debug = "--debug" in sys.argv
    try:
        app()
    except (ConfigurationError, PropylonError) as exc:
        if debug:
            raise
        sys.exit(print_error(exc))
    except KeyboardInterrupt:
        sys.exit(130)
