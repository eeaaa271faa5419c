"""Online deployments as resources: a model, its scoring code and environment, and settings.

A PUT checks the body, resolves the assets it names (each must exist and the caller must be allowed
to read it), fills in Azure's defaults (probes, request settings, scale settings, ``sku``) and
stores the deployment as ``Creating``/``Updating`` with a new operation; the route then starts
:meth:`propylon.control.rollouts.Rollouts.rollout`, which makes the runtime run it.

A deployment that still receives live or mirrored traffic cannot be deleted (400 naming
``properties.traffic`` or ``properties.mirrorTraffic``).

Example::

    written = deployments.put(ws, ep, "blue", body, caller, lro, authorize, if_match=None)
    ops.launch(written.op_id, written.row.id, rollouts.rollout(written.op_id, written.row.id))
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

from pydantic import ValidationError

from propylon.control.actions import Authorize, asset_action
from propylon.control.arm import (
    ARM_TYPES,
    STORE_TYPES,
    AssetKind,
    deployment_id,
    parse_asset_reference,
    system_data,
)
from propylon.control.assets import Assets
from propylon.control.endpoints import Written
from propylon.control.operations import LroUrls, Operations
from propylon.control.records import children_in, get_in, set_state_in
from propylon.control.rollouts import WRITE_KINDS
from propylon.control.schemas import OnlineDeploymentBody, OnlineDeploymentPatchBody
from propylon.control.validation import (
    MAX_DEPLOYMENTS_PER_ENDPOINT,
    bad_request_from,
    check_name,
    normalize_capacity,
    normalize_probe,
    normalize_request_settings,
    normalize_scale_settings,
)
from propylon.errors import BadRequest, Conflict, NotFound
from propylon.runtime.base import Backend, ContainerType
from propylon.server.access import Caller
from propylon.store import Database, ResourceStore, ResourceWrite, check_etag, utcnow
from propylon.store.models import Resource

__all__ = ["Deployments"]

_SKUS = {
    "value": [
        {
            "resourceType": ARM_TYPES["deployment"],
            "sku": {"name": "Default", "tier": "Standard"},
            "capacity": {"minimum": 1, "maximum": 50, "default": 1, "scaleType": "Manual"},
        }
    ]
}


class Deployments:
    def __init__(
        self,
        db: Database,
        resources: ResourceStore,
        assets: Assets,
        operations: Operations,
        *,
        backend: Callable[[], Backend | None],
    ) -> None:
        self._db = db
        self._resources = resources
        self._assets = assets
        self._ops = operations
        self._backend = backend

    def get(self, endpoint: Resource, name: str) -> Resource:
        row = self._resources.get(deployment_id(endpoint.id, name))
        if row is None:
            raise NotFound(
                f"Could not find deployment {name!r} of online endpoint {endpoint.name!r}.",
                code="ResourceNotFound",
            )
        return row

    def list(self, endpoint: Resource) -> list[Resource]:
        return self._resources.children(endpoint.id, STORE_TYPES["deployment"])

    @staticmethod
    def skus() -> dict[str, Any]:
        return _SKUS

    # --- writes ------------------------------------------------------------------------------

    def put(
        self,
        workspace: Resource,
        endpoint: Resource,
        name: str,
        body: OnlineDeploymentBody,
        caller: Caller,
        lro: LroUrls,
        authorize: Authorize,
        *,
        if_match: str | None,
    ) -> Written:
        check_name(name, what="deployment")
        props = body.properties
        if props.endpoint_compute_type == "AzureMLCompute":
            raise BadRequest(
                "'properties.endpointComputeType' AzureMLCompute is not supported; use Managed.",
                target="properties.endpointComputeType",
            )
        assets = self._resolve_assets(workspace, body, authorize)
        sku = normalize_capacity(body.sku)
        settings = {
            "scaleSettings": normalize_scale_settings(props.scale_settings, sku["capacity"]),
            "requestSettings": normalize_request_settings(props.request_settings),
            "livenessProbe": normalize_probe(
                props.liveness_probe, target="properties.livenessProbe", liveness=True
            ),
            "readinessProbe": normalize_probe(
                props.readiness_probe, target="properties.readinessProbe", liveness=False
            ),
        }
        did = deployment_id(endpoint.body["id"], name)
        with self._db.transaction() as session:
            current = get_in(session, endpoint.id, lock=True)
            if current is None:
                raise NotFound(f"Could not find online endpoint {endpoint.name!r}.")
            if current.state == "Deleting":
                raise Conflict(
                    f"Online endpoint {endpoint.name!r} is being deleted.",
                    code="OperationInProgress",
                )
            existing = get_in(session, did, lock=True)
            check_etag(existing.etag if existing else None, if_match)
            if existing is not None and existing.state == "Deleting":
                raise Conflict(f"Deployment {name!r} is being deleted.", code="OperationInProgress")
            siblings = children_in(session, endpoint.id, STORE_TYPES["deployment"])
            if existing is None and len(siblings) >= MAX_DEPLOYMENTS_PER_ENDPOINT:
                raise BadRequest(
                    f"An endpoint holds at most {MAX_DEPLOYMENTS_PER_ENDPOINT} deployments.",
                    code="QuotaExceeded",
                    target="name",
                )
            before = existing.body if existing else {}
            op_id = self._ops.create_in(session, did, WRITE_KINDS[existing is not None])
            state = "Updating" if existing else "Creating"
            user_properties = {
                k: v
                for k, v in (props.properties or {}).items()
                if k.lower() != "azureasyncoperationuri"
            }
            document: dict[str, Any] = {
                "id": before.get("id", did),
                "name": before.get("name", name),
                "type": ARM_TYPES["deployment"],
                "location": body.location or before.get("location") or current.body["location"],
                "kind": body.kind or before.get("kind") or "Managed",
                "tags": body.tags or {},
                "sku": sku,
                "systemData": system_data(caller, utcnow(), before.get("systemData")),
                "properties": {
                    "endpointComputeType": props.endpoint_compute_type,
                    "description": props.description,
                    "properties": {**user_properties, "AzureAsyncOperationUri": lro.status(op_id)},
                    **assets,
                    "environmentVariables": props.environment_variables or {},
                    "instanceType": props.instance_type or "Standard_DS3_v2",
                    **settings,
                    "appInsightsEnabled": bool(props.app_insights_enabled),
                    "egressPublicNetworkAccess": props.egress_public_network_access or "Enabled",
                    "provisioningState": state,
                },
            }
            if props.model_mount_path:
                document["properties"]["modelMountPath"] = props.model_mount_path
            if props.data_collector is not None:
                document["properties"]["dataCollector"] = props.data_collector
            write = ResourceWrite(
                id=did,
                parent=endpoint.id,
                type=STORE_TYPES["deployment"],
                name=document["name"],
                body=document,
                state=state,
            )
            row, created = self._resources.put_in(session, write)
            return Written(row, created, op_id)

    def patch(
        self,
        workspace: Resource,
        endpoint: Resource,
        name: str,
        patch: OnlineDeploymentPatchBody,
        caller: Caller,
        lro: LroUrls,
        authorize: Authorize,
        *,
        if_match: str | None,
    ) -> Written:
        """Merge ``tags`` (whole), ``sku`` and ``properties`` (field by field), then apply."""
        row = self.get(endpoint, name)
        check_etag(row.etag, if_match)
        changes = patch.model_dump(by_alias=True, exclude_none=True)
        merged = {
            "location": row.body.get("location"),
            "kind": row.body.get("kind"),
            "tags": changes.get("tags", row.body.get("tags")),
            "sku": {**row.body.get("sku", {}), **changes.get("sku", {})},
            "properties": {**row.body["properties"], **changes.get("properties", {})},
        }
        try:
            body = OnlineDeploymentBody.model_validate(merged)
        except ValidationError as exc:
            raise bad_request_from(exc.errors()) from None
        return self.put(workspace, endpoint, name, body, caller, lro, authorize, if_match=row.etag)

    def _resolve_assets(
        self, workspace: Resource, body: OnlineDeploymentBody, authorize: Authorize
    ) -> dict[str, Any]:
        props = body.properties
        code = props.code_configuration
        if code is None or not code.code_id:
            target = "properties.codeConfiguration" + (".codeId" if code else "")
            raise BadRequest(
                f"'{target}' is required: the code version holding the scoring script.",
                target=target,
            )
        script = PurePosixPath(code.scoring_script)
        if not code.scoring_script or script.is_absolute() or ".." in script.parts:
            raise BadRequest(
                "'properties.codeConfiguration.scoringScript' must be a path inside the code, "
                f"not {code.scoring_script!r}.",
                target="properties.codeConfiguration.scoringScript",
            )
        found: dict[str, Any] = {}
        for kind, given, target in (
            (AssetKind.CODE, code.code_id, "properties.codeConfiguration.codeId"),
            (AssetKind.MODEL, props.model, "properties.model"),
            (AssetKind.ENVIRONMENT, props.environment_id, "properties.environmentId"),
        ):
            if not given:
                found[target] = None
                continue
            reference = parse_asset_reference(
                given, kind=kind, workspace=workspace.body["id"], target=target
            )
            row = self._assets.resolve(reference, target=target)
            authorize(asset_action(kind, "read", version=True), row.body["id"])
            found[target] = row.body["id"]
        return {
            "codeConfiguration": {
                "codeId": found["properties.codeConfiguration.codeId"],
                "scoringScript": code.scoring_script,
            },
            "model": found["properties.model"],
            "environmentId": found["properties.environmentId"],
        }

    def delete(self, endpoint: Resource, name: str, *, if_match: str | None) -> str | None:
        """Mark the deployment Deleting and return the operation id (None when it did not exist)."""
        did = deployment_id(endpoint.id, name)
        with self._db.transaction() as session:
            row = get_in(session, did, lock=True)
            current = get_in(session, endpoint.id, lock=True)
            if row is None or current is None:
                return None
            check_etag(row.etag, if_match)
            for field, label in (("traffic", "live"), ("mirrorTraffic", "mirrored")):
                share = current.body["properties"].get(field, {}).get(row.name, 0)
                if share:
                    raise BadRequest(
                        f"Deployment {row.name!r} still receives {share}% of the {label} traffic "
                        f"of online endpoint {current.name!r}; set 'properties.{field}' for it to "
                        "0 first.",
                        code="DeploymentHasTraffic",
                        target=f"properties.{field}",
                    )
            op_id = self._ops.create_in(session, did, "deployment.delete")
            set_state_in(session, row, "Deleting")
            return op_id

    def logs(self, endpoint: Resource, name: str, container: str | None, tail: int | None) -> str:
        row = self.get(endpoint, name)
        backend = self._backend()
        if backend is None:
            return ""
        kind = ContainerType(container or ContainerType.INFERENCE_SERVER)
        try:
            return backend.logs(row.id, kind, 5000 if tail is None else tail)
        except LookupError:
            return ""
