"""The work of deployment operations: what makes a stored deployment run, or stop running.

:meth:`Rollouts.rollout` is the *storage initializer* and the wait: it unpacks the code and model
versions the deployment names (shared, content-addressed trees from the blob store), builds the
:class:`~propylon.runtime.base.DeploymentSpec`, hands it to ``backend.apply`` and polls
``backend.status`` until the backend says ``Succeeded`` or ``Failed`` (its reason becomes the
operation's error), or a newer operation on the deployment takes over. :meth:`Rollouts.remove`
stops the instances, then deletes the row and its entries in the endpoint's traffic maps. Both only
read the desired state from the store, so an operation interrupted by a restart can run again.

The outcome is written to the deployment's ``provisioningState`` only by the newest operation on
it, and never over ``Deleting``.

Example::

    ops.launch(op_id, deployment_id, rollouts.rollout(op_id, deployment_id))
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from propylon.control.assets import Assets
from propylon.control.blobs import BlobStore
from propylon.control.identities import EndpointIdentities
from propylon.control.operations import OperationCanceled, Operations
from propylon.control.records import delete_tree_in, get_in, set_state_in
from propylon.control.specs import build_spec, environment_spec
from propylon.errors import BadRequest, PropylonError, ServiceUnavailable
from propylon.runtime.base import Backend, DeploymentState
from propylon.store import Database, ResourceStore, new_etag, utcnow

__all__ = ["WRITE_KINDS", "DeploymentFailed", "Rollouts"]

log = logging.getLogger("propylon.control.rollouts")

# The operations that roll a new generation (their count is the spec's ``generation``).
WRITE_KINDS = ("deployment.create", "deployment.update")


class DeploymentFailed(BadRequest):
    code = "DeploymentFailed"


class Rollouts:
    def __init__(
        self,
        db: Database,
        resources: ResourceStore,
        assets: Assets,
        blobs: BlobStore,
        identities: EndpointIdentities,
        operations: Operations,
        *,
        backend: Callable[[], Backend | None],
        poll_interval: float = 0.2,
        timeout: float = 3600.0,
    ) -> None:
        self._db = db
        self._resources = resources
        self._assets = assets
        self._blobs = blobs
        self._identities = identities
        self._ops = operations
        self._backend = backend
        self._poll = poll_interval
        self._timeout = timeout

    def _settle(self, op_id: str, did: str, state: str) -> None:
        with self._db.transaction() as session:
            row = get_in(session, did, lock=True)
            if row is not None and row.state != "Deleting" and self._ops.is_latest(op_id, did):
                set_state_in(session, row, state)

    async def rollout(self, op_id: str, did: str) -> None:
        """Unpack the assets, apply the spec, and wait for the backend's verdict."""
        try:
            await self._rollout(op_id, did)
        except OperationCanceled:
            raise
        except DeploymentFailed:
            self._settle(op_id, did, "Failed")
            raise
        except PropylonError as exc:
            self._settle(op_id, did, "Failed")
            raise DeploymentFailed(f"The deployment failed: {exc.message}") from None
        except Exception as exc:
            # The backend's own errors (process start, ports, environment build) end here.
            log.warning("deployment failed", extra={"deployment": did, "error": repr(exc)})
            self._settle(op_id, did, "Failed")
            raise DeploymentFailed(f"The deployment failed: {exc}") from None
        self._settle(op_id, did, "Succeeded")

    async def _rollout(self, op_id: str, did: str) -> None:
        row = self._resources.get(did)
        endpoint = self._resources.get(row.parent) if row else None
        if row is None or endpoint is None:
            raise DeploymentFailed("The deployment was deleted before it started.")
        backend = self._backend()
        if backend is None:
            raise ServiceUnavailable("No runtime backend is configured on this server.")
        props = row.body["properties"]
        code_id = props["codeConfiguration"]["codeId"]
        digests = {
            "code": self._digest(code_id, "codeUri"),
            "model": self._digest(props.get("model"), "modelUri"),
        }
        environment = (
            self._resources.get(props["environmentId"]) if props.get("environmentId") else None
        )
        try:
            dirs = await asyncio.to_thread(self._unpack, digests)
        except (OSError, ValueError) as exc:
            raise DeploymentFailed(
                f"The storage initializer could not unpack the deployment's assets: {exc}"
            ) from None
        script = props["codeConfiguration"]["scoringScript"]
        code_dir = _code_root(dirs["code"], script)
        if code_dir is None:
            raise DeploymentFailed(
                f"The scoring script {script!r} is not in code {code_id.rsplit('/', 3)[-3]!r}."
            )
        spec = build_spec(
            row.body,
            deployment_id=row.id,
            endpoint_id=endpoint.id,
            endpoint_name=endpoint.name,
            code_dir=code_dir,
            model_dir=dirs["model"],
            environment=environment_spec(environment.body if environment else None),
            identity=self._identities.spec_for(endpoint.body.get("identity") or {}),
            generation=self._ops.count(did, WRITE_KINDS),
        )
        await backend.apply(spec)
        deadline = time.monotonic() + self._timeout
        while True:
            status = backend.status(row.id)
            if status.state == DeploymentState.SUCCEEDED:
                return
            if status.state == DeploymentState.FAILED:
                raise DeploymentFailed(status.reason or "The deployment failed.")
            if not self._ops.is_latest(op_id, did):
                raise OperationCanceled(
                    "A newer operation on this deployment took over before it was ready."
                )
            if time.monotonic() > deadline:
                raise DeploymentFailed(
                    f"The deployment was not ready within {self._timeout:.0f} seconds."
                )
            await asyncio.sleep(self._poll)

    def _digest(self, version_id: str | None, field: str) -> str | None:
        if not version_id:
            return None
        version = self._resources.get(version_id)
        if version is None:
            raise DeploymentFailed(f"The asset {version_id} no longer exists.")
        return self._assets.content_digest(version, field)

    def _unpack(self, digests: dict[str, str | None]) -> dict[str, Path | None]:
        return {
            key: self._blobs.extract(digest) if digest else None for key, digest in digests.items()
        }

    async def remove(self, op_id: str, did: str) -> None:
        """Stop the instances, delete the row and its entries in the endpoint's traffic."""
        backend = self._backend()
        if backend is not None:
            await backend.remove(did)
        with self._db.transaction() as session:
            row = get_in(session, did, lock=True)
            if row is None:
                return
            endpoint = get_in(session, row.parent, lock=True)
            delete_tree_in(session, row)
            if endpoint is not None:
                properties = dict(endpoint.body["properties"])
                for field in ("traffic", "mirrorTraffic"):
                    shares = dict(properties.get(field) or {})
                    shares.pop(row.name, None)
                    properties[field] = shares
                endpoint.body = {**endpoint.body, "properties": properties}
                endpoint.etag = new_etag()
                endpoint.modified_at = utcnow()
                Database.record_change(session, endpoint.type, endpoint.id)


def _code_root(unpacked: Path | None, script: str) -> Path | None:
    """Where the scoring script's path starts (``AML_APP_ROOT``).

    An uploaded folder keeps its own name as the archive's single top entry (``onlinescoring/``),
    and Azure runs the code from inside it, so that folder is the root when the script is there.
    """
    if unpacked is None:
        return None
    entries = list(unpacked.iterdir())
    candidates = [unpacked]
    if len(entries) == 1 and entries[0].is_dir():
        candidates.insert(0, entries[0])
    for candidate in candidates:
        if (candidate / script).is_file():
            return candidate
    return None
