"""``propylon ml online-endpoint …``, as ``az ml online-endpoint``.

Example (seed 003)::

    propylon ml online-endpoint create -f endpoint.yml
    propylon ml online-endpoint update -n my-endpoint --traffic "blue=90 green=10"
    propylon ml online-endpoint get-credentials -n my-endpoint -o tsv --query primaryKey
    propylon ml online-endpoint invoke -n my-endpoint -r sample-request.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from propylon.cli.arguments import apply_set, confirm, parse_traffic
from propylon.cli.command import Scope, command
from propylon.cli.session import Session
from propylon.client.entities import ManagedOnlineEndpoint, load_yaml
from propylon.errors import BadRequest

__all__ = ["endpoint_app"]

endpoint_app = typer.Typer(help="Manage online endpoints.", no_args_is_help=True)

_READ_ONLY = ("id", "location", "kind", "provisioning_state", "scoring_uri", "openapi_uri")

NameOption = Annotated[str, typer.Option("--name", "-n", help="Endpoint name.")]
OptionalName = Annotated[
    str | None, typer.Option("--name", "-n", help="Endpoint name (overrides the file's).")
]
FileOption = Annotated[
    Path | None, typer.Option("--file", "-f", help="endpoint.yml (CLI v2 YAML).")
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Set a field: path=value (repeatable), e.g. auth_mode=aad_token."),
]
NoWait = Annotated[bool, typer.Option("--no-wait", help="Do not wait for the operation.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def _table(rows: Any) -> Any:
    if not isinstance(rows, list):
        rows = [rows]
    return [
        {
            "Name": r.get("name"),
            "Kind": r.get("kind"),
            "AuthMode": r.get("auth_mode"),
            "ProvisioningState": r.get("provisioning_state"),
            "ScoringUri": r.get("scoring_uri"),
        }
        for r in rows
        if isinstance(r, dict)
    ]


def _document(file: Path | None) -> dict[str, Any]:
    if file is None:
        return {}
    data, _ = load_yaml(file)
    return data


@command(endpoint_app, "create", scope=Scope.WORKSPACE)
def create(
    session: Session,
    file: FileOption = None,
    name: OptionalName = None,
    auth_mode: Annotated[
        str | None,
        typer.Option(
            "--auth-mode", "--auth_mode", help="key | aml_token | aad_token (overrides the file)."
        ),
    ] = None,
    set_: SetOption = None,
    no_wait: NoWait = False,
) -> None:
    """Create (or update) an endpoint from a YAML file and/or options."""
    document = _document(file)
    if name:
        document["name"] = name
    if auth_mode:
        document["auth_mode"] = auth_mode
    apply_set(document, set_ or [])
    if not document.get("name"):
        raise BadRequest("give the endpoint a name (-n or 'name:' in the file).", target="name")
    endpoint = ManagedOnlineEndpoint.from_dict(document)
    poller = session.ml_client().online_endpoints.begin_create_or_update(endpoint)
    if no_wait:
        return
    result = session.wait(poller, f"Creating endpoint {endpoint.name}")
    session.emit(result.to_dict())


@command(endpoint_app, "show", scope=Scope.WORKSPACE)
def show(session: Session, name: NameOption) -> None:
    """Show an endpoint (--query scoring_uri for its scoring URI)."""
    session.emit(session.ml_client().online_endpoints.get(name).to_dict())


@command(endpoint_app, "list", scope=Scope.WORKSPACE)
def list_(session: Session) -> None:
    """List the endpoints of the workspace."""
    endpoints = session.ml_client().online_endpoints.list()
    session.emit([e.to_dict() for e in endpoints], table=_table)


@command(endpoint_app, "update", scope=Scope.WORKSPACE)
def update(
    session: Session,
    name: OptionalName = None,
    file: FileOption = None,
    traffic: Annotated[
        str | None, typer.Option("--traffic", "-t", help='Traffic split, e.g. "blue=90 green=10".')
    ] = None,
    mirror_traffic: Annotated[
        str | None,
        typer.Option("--mirror-traffic", help='Mirror a share of live traffic, e.g. "green=10".'),
    ] = None,
    set_: SetOption = None,
    no_wait: NoWait = False,
) -> None:
    """Update an endpoint: traffic, mirror traffic, fields from a file or --set."""
    changes = _document(file)
    endpoint_name = name or changes.get("name")
    if not endpoint_name:
        raise BadRequest("which endpoint? pass -n/--name.", target="name")
    operations = session.ml_client().online_endpoints
    document = operations.get(endpoint_name).to_dict()
    for key in _READ_ONLY:
        document.pop(key, None)
    document.update({k: v for k, v in changes.items() if k not in _READ_ONLY})
    document["name"] = endpoint_name
    if traffic is not None:
        document["traffic"] = parse_traffic(traffic)
    if mirror_traffic is not None:
        document["mirror_traffic"] = parse_traffic(mirror_traffic, flag="--mirror-traffic")
    apply_set(document, set_ or [])
    poller = operations.begin_create_or_update(ManagedOnlineEndpoint.from_dict(document))
    if no_wait:
        return
    result = session.wait(poller, f"Updating endpoint {endpoint_name}")
    session.emit(result.to_dict())


@command(endpoint_app, "delete", scope=Scope.WORKSPACE)
def delete(session: Session, name: NameOption, yes: Yes = False, no_wait: NoWait = False) -> None:
    """Delete an endpoint and all its deployments."""
    confirm(f"Delete endpoint '{name}' and all its deployments?", yes)
    poller = session.ml_client().online_endpoints.begin_delete(name)
    if not no_wait:
        session.wait(poller, f"Deleting endpoint {name}")


@command(endpoint_app, "invoke", scope=Scope.WORKSPACE)
def invoke(
    session: Session,
    name: NameOption,
    request_file: Annotated[
        Path, typer.Option("--request-file", "-r", help="JSON file to send to the scoring URI.")
    ],
    deployment_name: Annotated[
        str | None,
        typer.Option("--deployment-name", "-d", help="Score one deployment, bypassing traffic."),
    ] = None,
) -> None:
    """Score: send a request to the endpoint with the credential its auth mode needs."""
    text = session.ml_client().online_endpoints.invoke(
        name, request_file=request_file, deployment_name=deployment_name
    )
    try:
        session.emit(json.loads(text))
    except ValueError:
        session.emit(text)


@command(endpoint_app, "get-credentials", scope=Scope.WORKSPACE)
def get_credentials(session: Session, name: NameOption) -> None:
    """Keys (key), an endpoint token (aml_token) or an identity token (aad_token)."""
    session.emit(session.ml_client().online_endpoints.get_keys(name).to_dict())


@command(endpoint_app, "regenerate-keys", scope=Scope.WORKSPACE)
def regenerate_keys(
    session: Session,
    name: NameOption,
    key_type: Annotated[str, typer.Option("--key-type", help="primary | secondary.")] = "primary",
    no_wait: NoWait = False,
) -> None:
    """Replace one key of a key endpoint; the other keeps working."""
    poller = session.ml_client().online_endpoints.begin_regenerate_keys(name, key_type=key_type)
    if not no_wait:
        session.wait(poller, f"Regenerating the {key_type.lower()} key of {name}")


@command(endpoint_app, "get-logs", scope=Scope.WORKSPACE)
def get_logs(
    session: Session,
    name: NameOption,
    traffic: Annotated[
        bool, typer.Option("--traffic", help="The traffic log (the only log of an endpoint).")
    ] = True,
    lines: Annotated[int, typer.Option("--lines", "-l", help="Last N records.")] = 100,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Read the log from a local server's data dir instead of asking the server.",
        ),
    ] = None,
) -> None:
    """The endpoint's traffic log: one record per scoring request (never a key or token)."""
    if data_dir is not None:
        from propylon.config import Settings
        from propylon.gateway.traffic_log import read_traffic_log

        settings = Settings.from_env(data_dir=data_dir)
        session.emit(read_traffic_log(settings.logs_dir / "traffic", name, tail=lines))
        return
    records = session.ml_client().online_endpoints.get_traffic_logs(name, lines=lines)
    session.emit(records)
