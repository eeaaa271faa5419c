"""Declaring ``az``-style commands: global options on every command, and one error policy.

``az`` accepts ``-o``, ``--query``, ``--subscription``, ``--debug`` and ``--only-show-errors``
anywhere on the line, and ``-g``/``-w`` on every ``az ml`` command. Click attaches options to one
command, so :func:`command` appends them to each command's own parameters; the function receives a
:class:`~propylon.cli.session.Session` holding their values. Example::

    @command(endpoint_app, "show", scope=Scope.WORKSPACE)
    def show(session: Session, name: NameOption) -> None:
        session.emit(session.ml_client().online_endpoints.get(name).to_dict())

Error policy (the same as :func:`propylon.cli.main.main`'s): a :class:`PropylonError` is one line
on stderr, ``propylon: error: (code) message``, and exit code 1; a configuration error exits 2;
``--debug`` lets the traceback through.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any

import typer

from propylon.cli.output import OutputFormat
from propylon.cli.session import Dependencies, GlobalOptions, Session
from propylon.client.profile import ConfigDir
from propylon.errors import ConfigurationError, PropylonError

__all__ = ["Scope", "command", "print_error"]


class Scope(Enum):
    """Which resource-locating options a command takes besides the global ones."""

    NONE = "none"
    GROUP = "group"  # -g
    WORKSPACE = "workspace"  # -g and -w


_OPTIONS_PANEL = "Global options"
_CONTEXT = "typer_context"

_GLOBAL: list[tuple[str, Any, Any]] = [
    (
        "output",
        Annotated[
            OutputFormat | None,
            typer.Option(
                "--output",
                "-o",
                help="Output format.",
                case_sensitive=False,
                rich_help_panel=_OPTIONS_PANEL,
            ),
        ],
        None,
    ),
    (
        "query",
        Annotated[
            str | None,
            typer.Option(
                "--query",
                help="JMESPath query string (http://jmespath.org).",
                rich_help_panel=_OPTIONS_PANEL,
            ),
        ],
        None,
    ),
    (
        "subscription",
        Annotated[
            str | None,
            typer.Option(
                "--subscription",
                help="Subscription id (default: the signed-in account's).",
                rich_help_panel=_OPTIONS_PANEL,
            ),
        ],
        None,
    ),
    (
        "only_show_errors",
        Annotated[
            bool,
            typer.Option(
                "--only-show-errors",
                help="Only show errors, suppressing warnings and progress.",
                rich_help_panel=_OPTIONS_PANEL,
            ),
        ],
        False,
    ),
    (
        "debug",
        Annotated[
            bool,
            typer.Option(
                "--debug", help="Show tracebacks of errors.", rich_help_panel=_OPTIONS_PANEL
            ),
        ],
        False,
    ),
]
_GROUP = (
    "resource_group",
    Annotated[
        str | None,
        typer.Option(
            "--resource-group",
            "-g",
            help="Resource group (default: `propylon configure --defaults group=…`).",
        ),
    ],
    None,
)
_WORKSPACE = (
    "workspace",
    Annotated[
        str | None,
        typer.Option(
            "--workspace-name",
            "-w",
            help="Workspace (default: `propylon configure --defaults workspace=…`).",
        ),
    ],
    None,
)


def print_error(error: BaseException) -> int:
    """Print ``error`` as the one line of the error policy; return the exit code."""
    if isinstance(error, ConfigurationError):
        print(f"propylon: error: {error}", file=sys.stderr)
        return 2
    if isinstance(error, PropylonError):
        message = " ".join(error.message.split())
        print(f"propylon: error: ({error.code}) {message}", file=sys.stderr)
        return 1
    print(f"propylon: error: {error}", file=sys.stderr)
    return 1


def _dependencies(context: typer.Context | None) -> Dependencies:
    given = context.find_root().obj if context is not None else None
    return given if isinstance(given, Dependencies) else Dependencies()


def command(
    group: typer.Typer,
    name: str,
    *,
    scope: Scope = Scope.NONE,
    help: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``func(session, **options)`` as ``name`` in ``group`` with the global options."""

    extra = list(_GLOBAL)
    if scope in (Scope.GROUP, Scope.WORKSPACE):
        extra.insert(0, _GROUP)
    if scope is Scope.WORKSPACE:
        extra.insert(1, _WORKSPACE)

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(func, eval_str=True)
        own = list(signature.parameters.values())[1:]  # the first is the Session
        added = [
            inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=hint)
            for key, hint, default in extra
        ]
        # Typer passes its Context to a parameter annotated so; tests put Dependencies in its obj.
        added.append(
            inspect.Parameter(
                _CONTEXT, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=typer.Context
            )
        )
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        taken = {key for key, _, _ in extra}

        @functools.wraps(func)
        def run(**values: Any) -> None:
            context = values.pop(_CONTEXT)
            globals_ = {key: values.pop(key) for key in taken}
            home = ConfigDir.from_env()
            output = globals_["output"] or home.core("output") or OutputFormat.JSON
            options = GlobalOptions(
                output=OutputFormat(output),
                query=globals_["query"],
                debug=globals_["debug"],
                only_show_errors=globals_["only_show_errors"],
                subscription=globals_["subscription"],
                resource_group=globals_.get("resource_group"),
                workspace=globals_.get("workspace"),
            )
            session = Session(options, home, _dependencies(context))
            try:
                func(session, **values)
            except (PropylonError, ConfigurationError) as error:
                if options.debug:
                    raise
                raise typer.Exit(print_error(error)) from None
            except KeyboardInterrupt:
                raise typer.Exit(130) from None
            finally:
                session.close()

        run.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*own, *added], return_annotation=None
        )
        run.__annotations__ = {p.name: p.annotation for p in [*own, *added]}
        group.command(name, help=help or inspect.getdoc(func))(run)
        return func

    return decorate
