"""``propylon server``: start a server on the embedded defaults or as configured."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from propylon.config import Role, Settings

__all__ = ["server_command"]


def server_command(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir", help="State directory [default: $PROPYLON_DATA_DIR, else ./.propylon]"
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Control plane and identity provider port.")] = 8080,
    gateway_port: Annotated[int, typer.Option(help="Gateway (scoring) port.")] = 8081,
    role: Annotated[Role, typer.Option(help="Which planes this process serves.")] = Role.ALL,
    no_tls: Annotated[
        bool, typer.Option("--no-tls", help="Serve plain HTTP (official Azure clients refuse it).")
    ] = False,
    runtime: Annotated[str, typer.Option(help="Instance backend: local or ray.")] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster for --runtime ray: auto or ray://host:port.")
    ] = None,
) -> None:
    """Run the Propylon server (control plane, identity provider and gateway)."""
    from propylon.server import serve
    from propylon.server.logs import configure_logging

    settings = Settings.from_env(
        data_dir=data_dir,
        host=host,
        port=port,
        gateway_port=gateway_port,
        role=role,
        tls=not no_tls,
        runtime=runtime,
        ray_address=ray_address,
    )
    configure_logging(settings.logs_dir, settings.log_level)
    serve(settings)
