"""Route: an endpoint's traffic log, for ``propylon ml online-endpoint get-logs --traffic``.

Azure sends these records to Log Analytics (``AmlOnlineEndpointTrafficLog``); Propylon's gateway
writes them under ``<data dir>/logs/traffic/<endpoint>.jsonl`` and this route reads them back:
``GET …/onlineEndpoints/{endpoint}/trafficLogs?tail=N`` → ``{"value": [record, …]}``, oldest
first. Reading needs ``…/onlineEndpoints/read`` on the endpoint (the records hold no secret: no
key, no token, only the caller's object id). It reads the log of the gateway beside this control
plane, i.e. of this server's data dir; replicas with their own data dirs each hold their share.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from propylon.control import actions
from propylon.control.arm import endpoint_id, workspace_id
from propylon.control.http import ArmRoute, authorize, listing, plane
from propylon.control.routes.common import ENDPOINT, CallerDep
from propylon.gateway.traffic_log import read_traffic_log

__all__ = ["router"]

router = APIRouter(route_class=ArmRoute, tags=["onlineEndpoints"])

MAX_TAIL = 10_000


@router.get(ENDPOINT + "/trafficLogs")
async def traffic_logs(
    request: Request,
    subscription_id: str,
    resource_group: str,
    workspace: str,
    endpoint: str,
    caller: CallerDep,
    tail: Annotated[int, Query(ge=0, le=MAX_TAIL)] = 100,
) -> JSONResponse:
    """The endpoint's last ``tail`` traffic-log records; 404 for an endpoint that is not there."""
    scope = endpoint_id(workspace_id(subscription_id, resource_group, workspace), endpoint)
    authorize(request, caller, actions.ENDPOINT_READ, scope)
    control = plane(request)
    ws = control.workspaces.get_workspace(subscription_id, resource_group, workspace)
    row = control.endpoints.get(ws, endpoint)
    directory = control.ctx.settings.logs_dir / "traffic"
    records = await asyncio.to_thread(read_traffic_log, directory, row.name, tail=tail)
    return listing(records)
