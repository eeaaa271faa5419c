"""ARM resource ids, asset references and the envelope every resource body shares.

Ids are built with the canonical casing of the literal segments (``resourceGroups``,
``providers/Microsoft.MachineLearningServices``, ``onlineEndpoints``) and the names as the client
wrote them; lookups go through :func:`propylon.store.canonical` (lower case), because ARM compares
ids case-insensitively (reference §6 item 1).

The store keeps each kind under a ``type`` string (:data:`STORE_TYPES`): that string, not the ARM
``type`` of the body, is what other parts (gateway, runtime) query with
:meth:`propylon.store.ResourceStore.children` / ``list_type``.

Example::

    >>> ws = workspace_id("S", "rg", "ws")
    >>> endpoint_id(ws, "my-endpoint")
    '/subscriptions/S/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws/onlineEndpoints/my-endpoint'
    >>> parse_asset_reference("azureml:my-model:1", kind=AssetKind.MODEL, workspace=ws).version
    '1'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from propylon.errors import BadRequest
from propylon.server.access import Caller

__all__ = [
    "ARM_TYPES",
    "PROVIDER",
    "STORE_TYPES",
    "AssetKind",
    "AssetReference",
    "asset_container_id",
    "asset_version_id",
    "deployment_id",
    "endpoint_id",
    "endpoint_name_claim_id",
    "format_time",
    "parse_asset_reference",
    "resource_group_id",
    "subscription_id",
    "system_data",
    "workspace_id",
]

PROVIDER = "Microsoft.MachineLearningServices"


class AssetKind(StrEnum):
    """The asset collections a deployment refers to; the value is the ARM path segment."""

    MODEL = "models"
    CODE = "codes"
    ENVIRONMENT = "environments"

    @property
    def singular(self) -> str:
        return {"models": "model", "codes": "code", "environments": "environment"}[self.value]


# The ``type`` column of ``resources`` for each kind of row this package writes.
STORE_TYPES = {
    "resourceGroup": "resourcegroups",
    "workspace": "workspaces",
    "endpoint": "onlineendpoints",
    "deployment": "deployments",
    "endpointName": "endpointnames",
    AssetKind.MODEL: "models",
    AssetKind.CODE: "codes",
    AssetKind.ENVIRONMENT: "environments",
    f"{AssetKind.MODEL}/versions": "modelversions",
    f"{AssetKind.CODE}/versions": "codeversions",
    f"{AssetKind.ENVIRONMENT}/versions": "environmentversions",
}

# The ``type`` field of each body, as Azure spells it.
ARM_TYPES = {
    "resourceGroup": "Microsoft.Resources/resourceGroups",
    "workspace": f"{PROVIDER}/workspaces",
    "endpoint": f"{PROVIDER}/workspaces/onlineEndpoints",
    "deployment": f"{PROVIDER}/workspaces/onlineEndpoints/deployments",
    AssetKind.MODEL: f"{PROVIDER}/workspaces/models",
    AssetKind.CODE: f"{PROVIDER}/workspaces/codes",
    AssetKind.ENVIRONMENT: f"{PROVIDER}/workspaces/environments",
    f"{AssetKind.MODEL}/versions": f"{PROVIDER}/workspaces/models/versions",
    f"{AssetKind.CODE}/versions": f"{PROVIDER}/workspaces/codes/versions",
    f"{AssetKind.ENVIRONMENT}/versions": f"{PROVIDER}/workspaces/environments/versions",
}


def subscription_id(subscription: str) -> str:
    return f"/subscriptions/{subscription}"


def resource_group_id(subscription: str, resource_group: str) -> str:
    return f"{subscription_id(subscription)}/resourceGroups/{resource_group}"


def workspace_id(subscription: str, resource_group: str, workspace: str) -> str:
    rg = resource_group_id(subscription, resource_group)
    return f"{rg}/providers/{PROVIDER}/workspaces/{workspace}"


def endpoint_id(workspace: str, name: str) -> str:
    return f"{workspace}/onlineEndpoints/{name}"


def deployment_id(endpoint: str, name: str) -> str:
    return f"{endpoint}/deployments/{name}"


def asset_container_id(workspace: str, kind: AssetKind, name: str) -> str:
    return f"{workspace}/{kind.value}/{name}"


def asset_version_id(workspace: str, kind: AssetKind, name: str, version: str) -> str:
    return f"{asset_container_id(workspace, kind, name)}/versions/{version}"


def endpoint_name_claim_id(name: str) -> str:
    """The row that makes endpoint names unique on the server (the scoring URI carries only it)."""
    return f"/providers/{PROVIDER}/endpointNames/{name.lower()}"


@dataclass(frozen=True)
class AssetReference:
    """An asset version named by a deployment; ``version`` None means the latest version."""

    kind: AssetKind
    workspace: str
    name: str
    version: str | None

    @property
    def container_id(self) -> str:
        return asset_container_id(self.workspace, self.kind, self.name)

    def version_id(self, version: str | None = None) -> str:
        chosen = version or self.version
        if chosen is None:
            raise ValueError("the latest version must be resolved first")
        return asset_version_id(self.workspace, self.kind, self.name, chosen)


_ASSET_ID = re.compile(
    r"/?subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    rf"{re.escape(PROVIDER)}/workspaces/(?P<ws>[^/]+)/(?P<kind>[^/]+)/(?P<name>[^/]+)"
    r"(?:/versions/(?P<version>[^/]+))?/?",
    re.IGNORECASE,
)
_SHORT_REFERENCE = re.compile(r"(?P<name>[A-Za-z0-9_.\-]+)(?:(?::(?P<version>[^:@/]+))|@latest)?")


def parse_asset_reference(
    reference: str, *, kind: AssetKind, workspace: str, target: str | None = None
) -> AssetReference:
    """Read an ARM id, ``azureml:<name>:<version>``, ``azureml:<name>@latest`` or ``azureml:<id>``.

    ``workspace`` is the id of the workspace that short references resolve in.
    """
    where = target or kind.singular
    text = reference.strip()
    if text.lower().startswith("azureml://"):
        raise BadRequest(
            f"'{where}' refers to {text!r}: registry and datastore URIs are not supported; "
            f"register the {kind.singular} in the workspace and use azureml:<name>:<version>.",
            code="InvalidAssetReference",
            target=where,
        )
    if text.lower().startswith("azureml:"):
        text = text[len("azureml:") :]
    full = _ASSET_ID.fullmatch(text)
    if full is not None:
        if full["kind"].lower() != kind.value:
            raise BadRequest(
                f"'{where}' must name a {kind.singular} version, not {full['kind']!r}.",
                code="InvalidAssetReference",
                target=where,
            )
        ws = workspace_id(full["sub"], full["rg"], full["ws"])
        return AssetReference(kind, ws, full["name"], full["version"])
    short = _SHORT_REFERENCE.fullmatch(text)
    if short is None or not text:
        raise BadRequest(
            f"'{where}' must be an ARM id or azureml:<name>:<version>, not {reference!r}.",
            code="InvalidAssetReference",
            target=where,
        )
    return AssetReference(kind, workspace, short["name"], short["version"])


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as ARM writes ``systemData`` times."""
    return moment.isoformat().replace("+00:00", "Z")


_CALLER_TYPES = {"user": "User", "app": "Application", "managed_identity": "ManagedIdentity"}


def system_data(
    caller: Caller, now: datetime, previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """ARM ``systemData``; the client reads ``createdAt`` and ``lastModifiedAt`` (§5.1.3)."""
    who = str(caller.claims.get("upn") or caller.appid or caller.oid)
    kind = _CALLER_TYPES.get(caller.kind, "User")
    stamp = format_time(now)
    created = {
        key: value
        for key, value in (previous or {}).items()
        if key in ("createdAt", "createdBy", "createdByType")
    }
    if "createdAt" not in created:
        created = {"createdAt": stamp, "createdBy": who, "createdByType": kind}
    return {
        **created,
        "lastModifiedAt": stamp,
        "lastModifiedBy": who,
        "lastModifiedByType": kind,
    }
