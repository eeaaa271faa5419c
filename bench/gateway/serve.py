"""The gateway under test, served exactly as ``propylon server`` serves its gateway port.

Started by ``run.py`` (not meant to be run by hand): builds a server context on a fresh data dir,
writes one endpoint per (model, auth mode) into its store as the control plane and runtime would,
registers a self-contained AccessControl (:class:`propylon.gateway.testing.LocalAccess`: real
RS256 tokens, the real RBAC engine) because the benchmark mints its own tokens, writes the
credentials to ``<data-dir>/bench-credentials.json`` and serves ``create_gateway_app(ctx)`` with
the uvicorn settings of :mod:`propylon.server.run` (uvloop, httptools, JSON logging configured as
the server does) on a plain-HTTP port and, for the TLS figure, an HTTPS port.

``--no-fast-lane`` serves every request through the ASGI app (the port's protocol without
:mod:`propylon.gateway.fastlane`: what the fast lane saves); ``--transport aiohttp`` swaps the
upstream client for the one in ``aiohttp_transport.py`` (the measurement behind the choice of
client; the fast lane needs the pooled one, so it is off too). ``PROPYLON_LOG_LEVEL`` works as
for the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import uvicorn
import uvloop
from starlette.applications import Starlette
from starlette.types import ASGIApp

from propylon.config import Settings
from propylon.gateway import Transport, create_gateway
from propylon.gateway.testing import LocalAccess, StoreSeeder
from propylon.server.app import build_context, create_gateway_app
from propylon.server.context import ServerContext
from propylon.server.logs import configure_logging
from propylon.server.middleware import RequestContextMiddleware
from propylon.server.observability import health_routes
from propylon.server.run import freeze_startup_heap, uvicorn_config
from propylon.server.tls import TlsFiles

MODES = {"key": "Key", "aml_token": "AMLToken", "aad_token": "AADToken"}
CALLER_OID = "5f2a1a3e-6c1b-4a53-9d4e-3d1c7c9b1e01"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-port", type=int)
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        help="name=url of an instance, or name=url,socket for one also on a Unix socket",
    )
    parser.add_argument("--max-concurrent", type=int, default=16)
    parser.add_argument("--no-fast-lane", action="store_true")
    parser.add_argument("--transport", choices=["pooled", "aiohttp"], default="pooled")
    args = parser.parse_args()

    settings = Settings.from_env(data_dir=args.data_dir, tls=args.tls_port is not None)
    configure_logging(settings.logs_dir, settings.log_level)
    ctx = build_context(settings)
    access = LocalAccess()
    ctx.services["access"] = access
    seed = StoreSeeder(ctx.resources, ctx.vault, ctx.tenancy.workspace_id)
    credentials: dict[str, dict[str, str]] = {}
    for spec in args.model:
        model, address = spec.split("=", 1)
        url, _, socket = address.partition(",")
        instance = (url, socket) if socket else url
        for mode, arm_mode in MODES.items():
            name = f"{model}-{mode.replace('_', '')}"
            endpoint_id = seed.endpoint(
                name,
                auth_mode=arm_mode,
                traffic={"blue": 100},
                keys=("bench-primary-" + name, "bench-secondary-" + name),
            )
            seed.deployment(name, "blue", instances=[instance], max_concurrent=args.max_concurrent)
            if mode == "key":
                secret = "bench-primary-" + name
            elif mode == "aml_token":
                secret = access.mint_endpoint_token(endpoint_id)["accessToken"]
            else:
                access.grant_score(CALLER_OID, endpoint_id)
                secret = access.identity_token(CALLER_OID)
            credentials.setdefault(model, {})[mode] = secret
    (args.data_dir / "bench-credentials.json").write_text(json.dumps(credentials))

    transport: Transport | None = None
    app: ASGIApp
    if args.transport == "aiohttp":
        sys.path.insert(0, str(Path(__file__).parent))
        from aiohttp_transport import AiohttpTransport

        transport = AiohttpTransport()
    if transport is None:
        app = create_gateway_app(ctx)
    else:  # create_gateway_app, with another upstream client
        health = Starlette(routes=health_routes(ctx, plane="gateway"))
        gateway = create_gateway(ctx, fallback=health, transport=transport)
        app = RequestContextMiddleware(gateway, plane="gateway", registry=ctx.metrics)
    uvloop.run(_serve(ctx, app, args))


async def _serve(ctx: ServerContext, app: ASGIApp, args: argparse.Namespace) -> None:
    lane = not args.no_fast_lane
    servers = [_server(app, args.port, ctx, lane=lane)]
    if args.tls_port is not None:
        servers.append(_server(app, args.tls_port, ctx, ctx.tls, lane=lane))
    feed = asyncio.create_task(ctx.feed.run())
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    for hook in ctx.on_startup:
        await hook()
    freeze_startup_heap()  # as propylon.server.run does
    await asyncio.gather(*tasks)
    feed.cancel()


def _server(
    app: ASGIApp, port: int, ctx: ServerContext, tls: TlsFiles | None = None, *, lane: bool
) -> uvicorn.Server:
    # As propylon.server.run.serve serves the gateway port.
    gateway = ctx.services["gateway"] if lane else None
    return uvicorn.Server(
        uvicorn_config(app, tls=tls, gateway=gateway, host="127.0.0.1", port=port)
    )


if __name__ == "__main__":
    main()
