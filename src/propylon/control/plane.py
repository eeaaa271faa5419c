"""The control plane's services for one server context, and what it does when the server starts.

:func:`control_plane` builds the services once per :class:`~propylon.server.context.ServerContext`
(kept in ``ctx.services["control"]``); routes reach them through the request's app state.
:func:`start` is the startup hook: it resumes operations a previous process left running and
re-applies every deployment that was ``Succeeded``, because a local runtime's instances did not
survive the restart (a backend gets the same spec and generation, so one whose instances did
survive has nothing to do), and prunes finished operations nothing reads any more once an hour;
on shutdown it stops the operation tasks without recording an outcome, so that the next start
resumes them.

Example::

    ctx.on_startup.append(functools.partial(start, ctx))
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from propylon.control.arm import STORE_TYPES
from propylon.control.assets import Assets
from propylon.control.blobs import BlobStore
from propylon.control.deployments import Deployments
from propylon.control.endpoints import Endpoints
from propylon.control.identities import EndpointIdentities
from propylon.control.keys import EndpointKeys
from propylon.control.operations import Handler, Operations
from propylon.control.rollouts import Rollouts
from propylon.control.workspaces import Workspaces
from propylon.runtime.base import Backend
from propylon.server.context import ServerContext
from propylon.store.models import Operation

__all__ = ["ControlPlane", "control_plane", "start"]

log = logging.getLogger("propylon.control")


@dataclass
class ControlPlane:
    ctx: ServerContext
    operations: Operations
    blobs: BlobStore
    keys: EndpointKeys
    workspaces: Workspaces
    endpoints: Endpoints
    deployments: Deployments
    rollouts: Rollouts
    assets: Assets

    def handlers(self) -> dict[str, Handler]:
        """How to resume each kind of operation (every one re-reads its desired state)."""

        def run(work: Any) -> Handler:
            async def handler(op: Operation) -> None:
                await work(op.id, op.resource_id)

            return handler

        return {
            "endpoint.create": run(self.endpoints.provision),
            "endpoint.update": run(self.endpoints.provision),
            "endpoint.delete": run(self.endpoints.teardown),
            "deployment.create": run(self.rollouts.rollout),
            "deployment.update": run(self.rollouts.rollout),
            "deployment.restore": run(self.rollouts.rollout),
            "deployment.delete": run(self.rollouts.remove),
        }

    def restore_deployments(self) -> int:
        """Re-apply every Succeeded deployment (as a ``deployment.restore`` operation).

        Nothing happens on a server without a runtime backend: its deployments run elsewhere.
        """
        if self.ctx.services.get("runtime") is None:
            return 0
        rows = [
            row
            for row in self.ctx.resources.list_type(STORE_TYPES["deployment"])
            if row.state == "Succeeded"
        ]
        for row in rows:
            with self.ctx.db.transaction() as session:
                op_id = self.operations.create_in(session, row.id, "deployment.restore")
            self.operations.launch(op_id, row.id, self.rollouts.rollout(op_id, row.id))
        return len(rows)


def control_plane(ctx: ServerContext) -> ControlPlane:
    """The control plane of ``ctx``, built on first use."""
    existing = ctx.services.get("control")
    if isinstance(existing, ControlPlane):
        return existing
    operations = Operations(ctx.db)
    blobs = BlobStore(ctx.settings.data_dir / "blobs")
    keys = EndpointKeys(ctx.vault)

    def backend() -> Backend | None:
        runtime: Backend | None = ctx.services.get("runtime")
        return runtime

    assets = Assets(ctx.db, ctx.resources, blobs)
    identities = EndpointIdentities(ctx.db, ctx.tenancy.tenant_id)
    plane = ControlPlane(
        ctx=ctx,
        operations=operations,
        blobs=blobs,
        keys=keys,
        workspaces=Workspaces(ctx.db, ctx.resources, ctx.tenancy.subscription_id),
        endpoints=Endpoints(
            ctx.db,
            ctx.resources,
            keys,
            identities,
            operations,
            gateway_url=lambda: ctx.gateway_url,
            backend=backend,
        ),
        deployments=Deployments(ctx.db, ctx.resources, assets, operations, backend=backend),
        rollouts=Rollouts(
            ctx.db, ctx.resources, assets, blobs, identities, operations, backend=backend
        ),
        assets=assets,
    )
    ctx.services["control"] = plane
    return plane


async def start(ctx: ServerContext, *, restore: bool = True) -> None:
    """Startup hook: resume interrupted operations, restore deployments, stop tasks on shutdown."""
    plane = control_plane(ctx)
    resumed = plane.operations.resume(plane.handlers())
    restored = plane.restore_deployments() if restore else 0
    ctx.on_shutdown.append(plane.operations.stop)
    plane.operations.start_pruning()
    if resumed or restored:
        log.info("control plane resumed", extra={"operations": resumed, "deployments": restored})
