"""``GET /healthz`` and ``GET /metrics`` (Prometheus text format), served on both ports."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from propylon.server.context import ServerContext

__all__ = ["health_routes"]


def health_routes(ctx: ServerContext, *, plane: str) -> list[Route]:
    async def healthz(_: Request) -> Response:
        store_ok = await asyncio.to_thread(ctx.db.check)
        # The gateway keeps serving from its last configuration while the store is away, so it
        # stays healthy; the control plane cannot do its work without the store.
        healthy = store_ok or plane == "gateway"
        body: dict[str, Any] = {
            "status": "Healthy" if healthy else "Unhealthy",
            "plane": plane,
            "store": "ok" if store_ok else "unavailable",
            "revision": ctx.feed.revision,
        }
        return JSONResponse(body, status_code=200 if healthy else 503)

    async def metrics(_: Request) -> Response:
        payload = generate_latest(ctx.metrics)
        return Response(payload, media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
