"""The two custom roles of the seed document (``how-to-authenticate-online-endpoint.md``,
"Create a custom role"), as written there, PowerShell-shaped, placeholders and all."""

from __future__ import annotations

import json
from typing import Any

SUBSCRIPTION_ID = "5f2e6a41-1b7c-4e8d-9a0b-3c4d5e6f7a8b"
RESOURCE_GROUP = "rg-ml"

CONTROL_PLANE_ROLE_JSON = """
{
    "Name": "Custom role for control plane operations - online endpoint",
    "IsCustom": true,
    "Description": "Can CRUD against online endpoints.",
    "Actions": [
        "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/write",
        "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/delete",
        "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/read",
        "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/token/action",
        "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/listKeys/action",
        "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/regenerateKeys/action"
    ],
    "NotActions": [
    ],
    "AssignableScopes": [
        "/subscriptions/<subscriptionId>/resourcegroups/<resourceGroupName>"
    ]
}
"""

SCORING_ROLE_JSON = """
{
    "Name": "Custom role for scoring - online endpoint",
    "IsCustom": true,
    "Description": "Can score against online endpoints.",
    "Actions": [
        "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/*/action"
    ],
    "NotActions": [
    ],
    "AssignableScopes": [
        "/subscriptions/<subscriptionId>/resourcegroups/<resourceGroupName>"
    ]
}
"""


def load(text: str) -> dict[str, Any]:
    """The JSON with the placeholders filled in, as a user would before ``az role definition
    create``."""
    filled = text.replace("<subscriptionId>", SUBSCRIPTION_ID).replace(
        "<resourceGroupName>", RESOURCE_GROUP
    )
    body: dict[str, Any] = json.loads(filled)
    return body
