"""The ARM-compatible control plane: workspaces, online endpoints, deployments, assets, keys.

``create_control_app`` calls :func:`install`: the routes of :func:`router`, the middleware that
matches ARM paths case-insensitively, and the startup hook :func:`start` (resume operations,
restore deployments). :mod:`propylon.control.yaml_mapping` turns CLI v2 YAML into the REST bodies
and back, for the CLI and the Python client.

This module imports the web stack only when one of its functions is called, so that the client can
import ``propylon.control.yaml_mapping`` cheaply and ``propylon.server`` can import this package
while it is itself being imported.

Example::

    app = FastAPI()
    install(app, ctx)
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI

    from propylon.control.plane import ControlPlane
    from propylon.server.context import ServerContext

__all__ = ["control_plane", "install", "router", "start"]


def router() -> APIRouter:
    """All control-plane routes (ARM paths)."""
    from propylon.control.routes import router as build

    return build()


def control_plane(ctx: ServerContext) -> ControlPlane:
    """The control plane's services for ``ctx``, built on first use."""
    from propylon.control.plane import control_plane as build

    return build(ctx)


async def start(ctx: ServerContext, *, restore: bool = True) -> None:
    """Startup hook: resume interrupted operations and restore deployments."""
    from propylon.control.plane import start as begin

    await begin(ctx, restore=restore)


def install(app: FastAPI, ctx: ServerContext) -> None:
    """Serve the control plane from ``app`` and resume its work when the server starts."""
    from propylon.control.http import ArmPathCase

    app.include_router(router())
    app.add_middleware(ArmPathCase)
    ctx.on_startup.append(functools.partial(start, ctx))
