"""The RBAC action each control-plane call requires (Azure's names, reference rbac_tokens §2.1).

Every route authorizes exactly one of these against the ARM id of the resource it touches (the
parent's id for a list), through ``AccessControl.require``. Matching is case-insensitive, so the
casing here is the documented one.
"""

from __future__ import annotations

from collections.abc import Callable

from propylon.control.arm import PROVIDER, AssetKind

__all__ = [
    "ASSIGN_USER_IDENTITY",
    "DEPLOYMENT_DELETE",
    "DEPLOYMENT_GET_LOGS",
    "DEPLOYMENT_READ",
    "DEPLOYMENT_SKUS",
    "DEPLOYMENT_WRITE",
    "ENDPOINT_DELETE",
    "ENDPOINT_LIST_KEYS",
    "ENDPOINT_READ",
    "ENDPOINT_REGENERATE_KEYS",
    "ENDPOINT_TOKEN",
    "ENDPOINT_WRITE",
    "RESOURCE_GROUP_DELETE",
    "RESOURCE_GROUP_READ",
    "RESOURCE_GROUP_WRITE",
    "UPLOAD_READ",
    "UPLOAD_WRITE",
    "WORKSPACE_DELETE",
    "WORKSPACE_READ",
    "WORKSPACE_WRITE",
    "Authorize",
    "asset_action",
]

_WS = f"{PROVIDER}/workspaces"
_EP = f"{_WS}/onlineEndpoints"

RESOURCE_GROUP_READ = "Microsoft.Resources/subscriptions/resourceGroups/read"
RESOURCE_GROUP_WRITE = "Microsoft.Resources/subscriptions/resourceGroups/write"
RESOURCE_GROUP_DELETE = "Microsoft.Resources/subscriptions/resourceGroups/delete"

WORKSPACE_READ = f"{_WS}/read"
WORKSPACE_WRITE = f"{_WS}/write"
WORKSPACE_DELETE = f"{_WS}/delete"

ENDPOINT_READ = f"{_EP}/read"
ENDPOINT_WRITE = f"{_EP}/write"
ENDPOINT_DELETE = f"{_EP}/delete"
ENDPOINT_TOKEN = f"{_EP}/token/action"
ENDPOINT_LIST_KEYS = f"{_EP}/listKeys/action"
ENDPOINT_REGENERATE_KEYS = f"{_EP}/regenerateKeys/action"

DEPLOYMENT_READ = f"{_EP}/deployments/read"
DEPLOYMENT_WRITE = f"{_EP}/deployments/write"
DEPLOYMENT_DELETE = f"{_EP}/deployments/delete"
DEPLOYMENT_GET_LOGS = f"{_EP}/deployments/getLogs/action"
DEPLOYMENT_SKUS = f"{_EP}/deployments/skus/read"

# Attaching a user-assigned identity to an endpoint needs this on the identity, as on Azure
# (the Managed Identity Operator role grants it).
ASSIGN_USER_IDENTITY = "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action"

# Asset content goes where Azure puts it: the workspace's default datastore.
UPLOAD_READ = f"{_WS}/datastores/read"
UPLOAD_WRITE = f"{_WS}/datastores/write"


def asset_action(kind: AssetKind, verb: str, *, version: bool) -> str:
    """``…/workspaces/models/read`` for containers, ``…/workspaces/models/versions/read`` else."""
    middle = f"{kind.value}/versions" if version else kind.value
    return f"{_WS}/{middle}/{verb}"


Authorize = Callable[[str, str], None]
"""``authorize(action, scope)``: raise 403 unless the caller of the request may (services get
this from the route, which holds the caller)."""
