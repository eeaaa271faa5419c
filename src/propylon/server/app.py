"""Assembly of one server process: the context, the control-plane app and the gateway app.

Read top to bottom, this is the map of what a server serves on each port.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.types import ASGIApp

from propylon import __version__
from propylon.authz import routes as authz_routes
from propylon.authz.repository import PolicyFollower
from propylon.config import Settings
from propylon.control import install as install_control_plane
from propylon.gateway import create_gateway
from propylon.identity import install_identity
from propylon.identity import routes as identity_routes
from propylon.runtime import Backend, LocalBackend
from propylon.server.access import PlatformAccess
from propylon.server.bootstrap import (
    bootstrap_state,
    ensure_tls,
    prepare_data_dir,
    write_bootstrap_file,
)
from propylon.server.context import ServerContext
from propylon.server.errors import install_error_handlers
from propylon.server.middleware import RequestContextMiddleware
from propylon.server.observability import health_routes
from propylon.store import ChangeFeed, Database, ResourceStore, Sealer, Vault

__all__ = ["build_context", "create_control_app", "create_gateway_app"]


def build_context(settings: Settings) -> ServerContext:
    """Prepare the data dir, open the store, bootstrap on first start, and wire the services."""
    master_key = prepare_data_dir(settings)
    db = Database.connect(settings.database)
    db.migrate()
    sealer = Sealer(master_key.material)
    tenancy, admin_secret = bootstrap_state(db, sealer)
    tls = ensure_tls(settings)
    feed = ChangeFeed(db)
    feed.prime()
    ctx = ServerContext(
        settings=settings,
        db=db,
        sealer=sealer,
        vault=Vault(db, sealer),
        resources=ResourceStore(db),
        feed=feed,
        tenancy=tenancy,
        tls=tls,
    )
    ctx.services["bootstrap_file"] = write_bootstrap_file(settings, tenancy, admin_secret, tls)
    install_identity(ctx)
    _wire_access(ctx)
    if settings.role.serves_control:
        _install_runtime(ctx)
    return ctx


def _install_runtime(ctx: ServerContext) -> None:
    """The instance backend the control plane drives (``--runtime local|ray``)."""
    if ctx.settings.runtime == "ray":
        from propylon.runtime.ray import create_backend

        backend: Backend = create_backend(
            "ray",
            data_dir=ctx.settings.data_dir,
            resources=ctx.resources,
            identity_env=ctx.services["identity_env"],
            ray_address=ctx.settings.ray_address,
        )
    else:
        backend = LocalBackend(
            ctx.settings.data_dir,
            ctx.resources,
            identity_env=ctx.services["identity_env"],
            environment_retention=ctx.settings.environment_retention,
        )
    ctx.services["runtime"] = backend
    ctx.on_shutdown.append(backend.shutdown)


def _wire_access(ctx: ServerContext) -> None:
    """RBAC policy (followed through the change feed) + identity → ``ctx.services["access"]``."""
    follower = PolicyFollower(ctx.db)
    ctx.feed.subscribe(follower)
    ctx.services["policy"] = follower
    ctx.services["access"] = PlatformAccess(
        ctx.services["validator"],
        ctx.services["issuer"],
        follower.authorizer,
        ctx.services["directory"],
        tenant_id=ctx.tenancy.tenant_id,
    )


def create_control_app(ctx: ServerContext) -> ASGIApp:
    """Control plane + identity provider: ARM resources, OAuth2/OIDC, directory, RBAC."""
    app = FastAPI(
        title="Propylon control plane",
        version=__version__,
        description="ARM-compatible management of online endpoints, identity and access.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    for route in health_routes(ctx, plane="control"):
        app.router.routes.append(route)
    app.include_router(authz_routes.router())
    app.include_router(identity_routes.router())
    install_control_plane(app, ctx)
    return RequestContextMiddleware(app, plane="control", registry=ctx.metrics)


def create_gateway_app(ctx: ServerContext) -> ASGIApp:
    """Data plane: scoring requests, authenticated and routed to deployment instances."""
    health = Starlette(routes=health_routes(ctx, plane="gateway"))
    app = create_gateway(ctx, fallback=health)
    return RequestContextMiddleware(app, plane="gateway", registry=ctx.metrics)
