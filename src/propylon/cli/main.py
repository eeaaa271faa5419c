"""The ``propylon`` command: the root Typer app and its error policy.

Errors are one clear line on stderr and a non-zero exit code; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import sys

import typer

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


@app.callback()
def _root() -> None:
    """Self-hosted managed online endpoints (mirrors `az` and `az ml`)."""


def main() -> None:
    debug = "--debug" in sys.argv
    try:
        app()
    except ConfigurationError as exc:
        if debug:
            raise
        print(f"propylon: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except PropylonError as exc:
        if debug:
            raise
        print(f"propylon: error: ({exc.code}) {exc.message}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
