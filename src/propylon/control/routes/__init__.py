"""The control plane's HTTP surface, assembled: ``create_control_app`` includes :func:`router`.

Every route authenticates with :func:`propylon.server.access.current_caller` and authorizes one
action of :mod:`propylon.control.actions` against the ARM id it touches, before reading anything.
"""

from __future__ import annotations

from fastapi import APIRouter

from propylon.control.http import ArmRoute
from propylon.control.routes import (
    assets,
    deployments,
    endpoints,
    operations,
    traffic_logs,
    workspaces,
)

__all__ = ["router"]


def router() -> APIRouter:
    """All control-plane routes (ARM paths, matched case-insensitively)."""
    combined = APIRouter(route_class=ArmRoute)
    for part in (workspaces, endpoints, traffic_logs, deployments, assets, operations):
        combined.include_router(part.router)
    return combined
