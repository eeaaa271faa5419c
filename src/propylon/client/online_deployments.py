"""``MLClient.online_deployments``: create (uploading local assets), read, delete, logs.

Example::

    deployment = load_online_deployment("examples/deployments/blue.yml")
    poller = client.online_deployments.begin_create_or_update(deployment)
    poller.result()
    print(client.online_deployments.get_logs("blue", "my-endpoint", lines=50))
"""

from __future__ import annotations

from typing import Any

from propylon.client.assets import AssetKind, AssetOperations, resolve_deployment
from propylon.client.entities import ManagedOnlineDeployment
from propylon.client.http import ARM_SCOPE, Pipeline
from propylon.client.lro import Poller
from propylon.client.online_endpoints import OnlineEndpointOperations
from propylon.client.workspace import API_VERSION, WorkspaceScope, versioned
from propylon.errors import BadRequest

__all__ = ["CONTAINER_TYPES", "OnlineDeploymentOperations"]

#: ``--container-type`` values and their REST names (reference §3.7).
CONTAINER_TYPES = {
    "inference-server": "InferenceServer",
    "storage-initializer": "StorageInitializer",
}


class OnlineDeploymentOperations:
    """Deployments of the online endpoints of one workspace."""

    def __init__(
        self,
        pipeline: Pipeline,
        workspace: WorkspaceScope,
        endpoints: OnlineEndpointOperations,
        *,
        polling_interval: float = 1.0,
    ) -> None:
        self._pipeline = pipeline
        self._ws = workspace
        self._endpoints = endpoints
        self._interval = polling_interval
        self._assets = {kind: AssetOperations(pipeline, workspace, kind) for kind in AssetKind}

    def _params(self) -> dict[str, str]:
        return {"api-version": API_VERSION}

    def _url(self, endpoint_name: str, *segments: str) -> str:
        return self._ws.url("onlineEndpoints", endpoint_name, "deployments", *segments)

    def get(self, name: str, endpoint_name: str) -> ManagedOnlineDeployment:
        reply = self._pipeline.send(
            "GET", self._url(endpoint_name, name), scope=ARM_SCOPE, params=self._params()
        )
        return _entity(reply.json())

    def list(self, endpoint_name: str) -> list[ManagedOnlineDeployment]:
        items = self._pipeline.collect(
            self._url(endpoint_name), scope=ARM_SCOPE, params=self._params()
        )
        return [_entity(item) for item in items]

    def begin_create_or_update(
        self, deployment: ManagedOnlineDeployment
    ) -> Poller[ManagedOnlineDeployment]:
        """Upload local assets, PUT the deployment, and poll until it is provisioned."""
        endpoint_name = deployment.endpoint_name
        if not endpoint_name:
            raise BadRequest(
                "the deployment needs an 'endpoint_name' (or pass -e/--endpoint-name).",
                code="MissingArgument",
                target="endpoint_name",
            )
        self._endpoints.get(endpoint_name)  # a clear 404 before any upload
        resolved = resolve_deployment(
            deployment,
            self._assets[AssetKind.MODEL],
            self._assets[AssetKind.CODE],
            self._assets[AssetKind.ENVIRONMENT],
            self._ws,
        )
        body = resolved.to_rest(location=self._endpoints.workspace_location())
        url = self._url(endpoint_name, deployment.name)
        reply = self._pipeline.send(
            "PUT", url, scope=ARM_SCOPE, params=self._params(), json_body=body
        )
        return Poller(
            self._pipeline, "PUT", versioned(url), reply, _entity, interval=self._interval
        )

    def begin_delete(self, name: str, endpoint_name: str) -> Poller[None]:
        url = self._url(endpoint_name, name)
        reply = self._pipeline.send("DELETE", url, scope=ARM_SCOPE, params=self._params())
        return Poller(
            self._pipeline, "DELETE", versioned(url), reply, lambda _: None, interval=self._interval
        )

    def get_logs(
        self,
        name: str,
        endpoint_name: str,
        lines: int | None = None,
        container_type: str | None = None,
    ) -> str:
        """The last ``lines`` lines of the inference server's (or storage initializer's) log."""
        body: dict[str, Any] = {}
        if container_type is not None:
            wanted = CONTAINER_TYPES.get(container_type.lower().replace("_", "-"))
            if wanted is None and container_type in CONTAINER_TYPES.values():
                wanted = container_type
            if wanted is None:
                raise BadRequest(
                    f"container type must be one of {', '.join(CONTAINER_TYPES)}, "
                    f"not {container_type!r}.",
                    code="InvalidContainerType",
                    target="container_type",
                )
            body["containerType"] = wanted
        if lines is not None:
            body["tail"] = lines
        reply = self._pipeline.send(
            "POST",
            self._url(endpoint_name, name, "getLogs"),
            scope=ARM_SCOPE,
            params=self._params(),
            json_body=body,
        )
        return str((reply.json() or {}).get("content") or "")


def _entity(rest: Any) -> ManagedOnlineDeployment:
    return ManagedOnlineDeployment.from_rest(rest)
