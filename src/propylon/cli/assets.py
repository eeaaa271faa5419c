"""``propylon ml model|code|environment create|show|list``, as ``az ml model`` and friends.

Example::

    propylon ml model create --name sklearn --version 1 --path examples/model-1/model
    propylon ml environment create -f env.yml
    propylon ml model show --name sklearn --version 1 --query path
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from propylon.cli.arguments import apply_set
from propylon.cli.command import Scope, command
from propylon.cli.session import Session
from propylon.client.assets import AssetKind, AssetOperations
from propylon.client.entities import load_yaml
from propylon.errors import BadRequest

__all__ = ["code_app", "environment_app", "model_app"]

model_app = typer.Typer(help="Manage models.", no_args_is_help=True)
code_app = typer.Typer(help="Manage code assets.", no_args_is_help=True)
environment_app = typer.Typer(help="Manage environments.", no_args_is_help=True)

NameOption = Annotated[str | None, typer.Option("--name", "-n", help="Asset name.")]
VersionOption = Annotated[str | None, typer.Option("--version", "-v", help="Asset version.")]
FileOption = Annotated[Path | None, typer.Option("--file", "-f", help="Asset YAML file.")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Set a field: path=value.")]


def _operations(session: Session, kind: AssetKind) -> AssetOperations:
    client = session.ml_client()
    return {
        AssetKind.MODEL: client.models,
        AssetKind.CODE: client.code,
        AssetKind.ENVIRONMENT: client.environments,
    }[kind]


def _spec(
    file: Path | None, overrides: dict[str, Any], set_: list[str] | None
) -> tuple[dict[str, Any], Path]:
    document: dict[str, Any] = {}
    folder = Path.cwd()
    if file is not None:
        document, folder = load_yaml(file)
    document.update({k: v for k, v in overrides.items() if v is not None})
    apply_set(document, set_ or [])
    for required in ("name", "version"):
        if not document.get(required):
            raise BadRequest(
                f"give the asset a {required} (--{required} or '{required}:' in the file).",
                code="MissingArgument",
                target=required,
            )
    return document, folder


def _local(folder: Path, value: Any, flag: str) -> Path:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"give a {flag}.", code="MissingArgument", target=flag)
    return (folder / value).expanduser()


def _show_and_list(group: typer.Typer, kind: AssetKind) -> None:
    @command(group, "show", scope=Scope.WORKSPACE)
    def show(
        session: Session,
        name: Annotated[str, typer.Option("--name", "-n", help="Asset name.")],
        version: VersionOption = None,
    ) -> None:
        """Show one version (the newest without --version)."""
        session.emit(_operations(session, kind).get(name, version))

    @command(group, "list", scope=Scope.WORKSPACE)
    def list_(session: Session, name: NameOption = None) -> None:
        """List the assets, or the versions of one."""
        session.emit(_operations(session, kind).list(name))


@command(model_app, "create", scope=Scope.WORKSPACE)
def create_model(
    session: Session,
    file: FileOption = None,
    name: NameOption = None,
    version: VersionOption = None,
    path: Annotated[str | None, typer.Option("--path", "-p", help="Local file or folder.")] = None,
    type_: Annotated[
        str | None, typer.Option("--type", "-t", help="custom_model | mlflow_model | …")
    ] = None,
    description: Annotated[str | None, typer.Option("--description", "-d")] = None,
    set_: SetOption = None,
) -> None:
    """Register a model version, uploading its files."""
    spec, folder = _spec(
        file,
        {"name": name, "version": version, "path": path, "type": type_, "description": description},
        set_,
    )
    session.emit(
        _operations(session, AssetKind.MODEL).create_or_update(
            str(spec["name"]),
            str(spec["version"]),
            path=_local(folder, spec.get("path"), "path"),
            model_type=spec.get("type"),
            description=spec.get("description"),
            tags=spec.get("tags"),
        )
    )


@command(code_app, "create", scope=Scope.WORKSPACE)
def create_code(
    session: Session,
    file: FileOption = None,
    name: NameOption = None,
    version: VersionOption = None,
    path: Annotated[str | None, typer.Option("--path", "-p", help="Local folder.")] = None,
    description: Annotated[str | None, typer.Option("--description", "-d")] = None,
    set_: SetOption = None,
) -> None:
    """Register a code version (the folder holding score.py), uploading it."""
    spec, folder = _spec(
        file, {"name": name, "version": version, "path": path, "description": description}, set_
    )
    session.emit(
        _operations(session, AssetKind.CODE).create_or_update(
            str(spec["name"]),
            str(spec["version"]),
            path=_local(folder, spec.get("path"), "path"),
            description=spec.get("description"),
            tags=spec.get("tags"),
        )
    )


@command(environment_app, "create", scope=Scope.WORKSPACE)
def create_environment(
    session: Session,
    file: FileOption = None,
    name: NameOption = None,
    version: VersionOption = None,
    image: Annotated[str | None, typer.Option("--image", "-i", help="Base image.")] = None,
    conda_file: Annotated[str | None, typer.Option("--conda-file", help="conda YAML file.")] = None,
    description: Annotated[str | None, typer.Option("--description", "-d")] = None,
    set_: SetOption = None,
) -> None:
    """Register an environment version (image and/or conda file)."""
    spec, folder = _spec(
        file,
        {
            "name": name,
            "version": version,
            "image": image,
            "conda_file": conda_file,
            "description": description,
        },
        set_,
    )
    conda = spec.get("conda_file")
    session.emit(
        _operations(session, AssetKind.ENVIRONMENT).create_or_update(
            str(spec["name"]),
            str(spec["version"]),
            image=spec.get("image"),
            conda_file=_local(folder, conda, "conda_file") if isinstance(conda, str) else conda,
            description=spec.get("description"),
            tags=spec.get("tags"),
        )
    )


for _group, _kind in (
    (model_app, AssetKind.MODEL),
    (code_app, AssetKind.CODE),
    (environment_app, AssetKind.ENVIRONMENT),
):
    _show_and_list(_group, _kind)
