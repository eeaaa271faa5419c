"""``propylon ml online-deployment …``, as ``az ml online-deployment``.

Local paths in the YAML (``model.path``, ``code_configuration.code``,
``environment.conda_file``) are uploaded as assets first; the command then shows the
provisioning as it goes. Example (seed 000)::

    propylon ml online-deployment create -n blue -e my-endp1 -f ./deployment.yaml --all-traffic
    propylon ml online-deployment update -n blue -e my-endp1 --set instance_count=2
    propylon ml online-deployment get-logs -n blue -e my-endp1 --lines 100
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from propylon.cli.arguments import apply_set, confirm
from propylon.cli.command import Scope, command
from propylon.cli.session import Session
from propylon.client.entities import ManagedOnlineDeployment, load_yaml
from propylon.errors import BadRequest

__all__ = ["deployment_app"]

deployment_app = typer.Typer(help="Manage online deployments.", no_args_is_help=True)

_READ_ONLY = ("id", "provisioning_state")

NameOption = Annotated[str, typer.Option("--name", "-n", help="Deployment name.")]
OptionalName = Annotated[
    str | None, typer.Option("--name", "-n", help="Deployment name (overrides the file's).")
]
EndpointOption = Annotated[
    str, typer.Option("--endpoint-name", "--endpoint", "-e", help="Endpoint name.")
]
OptionalEndpoint = Annotated[
    str | None,
    typer.Option(
        "--endpoint-name", "--endpoint", "-e", help="Endpoint name (overrides the file's)."
    ),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Set a field: path=value (repeatable), e.g. instance_count=2."),
]
NoWait = Annotated[bool, typer.Option("--no-wait", help="Do not wait for the operation.")]


def _table(rows: Any) -> Any:
    if not isinstance(rows, list):
        rows = [rows]
    return [
        {
            "Name": r.get("name"),
            "EndpointName": r.get("endpoint_name"),
            "InstanceType": r.get("instance_type"),
            "InstanceCount": r.get("instance_count"),
            "ProvisioningState": r.get("provisioning_state"),
        }
        for r in rows
        if isinstance(r, dict)
    ]


@command(deployment_app, "create", scope=Scope.WORKSPACE)
def create(
    session: Session,
    file: Annotated[Path, typer.Option("--file", "-f", help="deployment.yml (CLI v2 YAML).")],
    name: OptionalName = None,
    endpoint_name: OptionalEndpoint = None,
    all_traffic: Annotated[
        bool, typer.Option("--all-traffic", help="Send all of the endpoint's traffic here.")
    ] = False,
    set_: SetOption = None,
    skip_script_validation: Annotated[
        bool, typer.Option("--skip-script-validation", help="Accepted for az compatibility.")
    ] = False,
    no_wait: NoWait = False,
) -> None:
    """Create (or update) a deployment from a YAML file, uploading local assets."""
    document, folder = load_yaml(file)
    if name:
        document["name"] = name
    if endpoint_name:
        document["endpoint_name"] = endpoint_name
    apply_set(document, set_ or [])
    deployment = ManagedOnlineDeployment.from_dict(document, base_path=folder)
    client = session.ml_client()
    poller = client.online_deployments.begin_create_or_update(deployment)
    if no_wait and not all_traffic:
        return
    target = deployment.endpoint_name or ""
    result = session.wait(poller, f"Creating deployment {deployment.name} of {target}")
    if all_traffic:
        endpoint = client.online_endpoints.get(target)
        endpoint.traffic = {deployment.name: 100}
        update = client.online_endpoints.begin_create_or_update(endpoint)
        if no_wait:
            return
        session.wait(update, f"Sending all traffic of {target} to {deployment.name}")
    session.emit(result.to_dict(), table=_table)


@command(deployment_app, "show", scope=Scope.WORKSPACE)
def show(session: Session, name: NameOption, endpoint_name: EndpointOption) -> None:
    """Show a deployment."""
    session.emit(
        session.ml_client().online_deployments.get(name, endpoint_name).to_dict(), table=_table
    )


@command(deployment_app, "list", scope=Scope.WORKSPACE)
def list_(session: Session, endpoint_name: EndpointOption) -> None:
    """List the deployments of an endpoint."""
    deployments = session.ml_client().online_deployments.list(endpoint_name)
    session.emit([d.to_dict() for d in deployments], table=_table)


@command(deployment_app, "update", scope=Scope.WORKSPACE)
def update(
    session: Session,
    name: OptionalName = None,
    endpoint_name: OptionalEndpoint = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Fields to change, as deployment.yml.")
    ] = None,
    set_: SetOption = None,
    no_wait: NoWait = False,
) -> None:
    """Update a deployment (instance count, environment variables, …) from a file or --set."""
    changes: dict[str, Any] = {}
    folder = Path.cwd()
    if file is not None:
        changes, folder = load_yaml(file)
    deployment_name = name or changes.get("name")
    endpoint = endpoint_name or changes.get("endpoint_name")
    if not deployment_name or not endpoint:
        raise BadRequest(
            "which deployment? pass -n/--name and -e/--endpoint-name.", code="MissingArgument"
        )
    operations = session.ml_client().online_deployments
    document = operations.get(deployment_name, endpoint).to_dict()
    for key in _READ_ONLY:
        document.pop(key, None)
    document.update({k: v for k, v in changes.items() if k not in _READ_ONLY})
    document.update({"name": deployment_name, "endpoint_name": endpoint})
    apply_set(document, set_ or [])
    poller = operations.begin_create_or_update(
        ManagedOnlineDeployment.from_dict(document, base_path=folder)
    )
    if no_wait:
        return
    result = session.wait(poller, f"Updating deployment {deployment_name} of {endpoint}")
    session.emit(result.to_dict(), table=_table)


@command(deployment_app, "delete", scope=Scope.WORKSPACE)
def delete(
    session: Session,
    name: NameOption,
    endpoint_name: EndpointOption,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    no_wait: NoWait = False,
) -> None:
    """Delete a deployment (it must receive no traffic)."""
    confirm(f"Delete deployment '{name}' of endpoint '{endpoint_name}'?", yes)
    poller = session.ml_client().online_deployments.begin_delete(name, endpoint_name)
    if not no_wait:
        session.wait(poller, f"Deleting deployment {name} of {endpoint_name}")


@command(deployment_app, "get-logs", scope=Scope.WORKSPACE)
def get_logs(
    session: Session,
    name: NameOption,
    endpoint_name: EndpointOption,
    lines: Annotated[
        int, typer.Option("--lines", "-l", help="Number of lines from the end.")
    ] = 5000,
    container_type: Annotated[
        str | None,
        typer.Option(
            "--container-type", "--container", help="inference-server | storage-initializer."
        ),
    ] = None,
) -> None:
    """The last lines of a deployment's log (its score.py's output)."""
    text = session.ml_client().online_deployments.get_logs(
        name, endpoint_name, lines=lines, container_type=container_type
    )
    if session.options.query or session.options.output.value not in ("json", "jsonc"):
        session.emit(text)
    else:
        sys.stdout.write(text if not text or text.endswith("\n") else text + "\n")
