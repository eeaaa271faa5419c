"""Constants and helpers shared by the token-core tests (imported by name; no fixtures here)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import jwt

from propylon.identity import PrincipalClaims, PrincipalKind

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "fa15d692-e9c7-4460-a743-29f2956fd429"
ML = "https://ml.azure.com"
ARM = "https://management.azure.com"
BASE_URL = "https://idp.propylon.test"
ENDPOINT_A = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/"
    "Microsoft.MachineLearningServices/workspaces/ws/onlineEndpoints/endpoint-a"
)
ENDPOINT_B = ENDPOINT_A.replace("endpoint-a", "endpoint-b")

USER = PrincipalClaims(
    oid="690222be-ff1a-4d56-abd1-7e4f7d38e474",
    kind=PrincipalKind.USER,
    app_id="04b07795-8ddb-461a-bbee-02f9e1bf7b46",
    display_name="Abe Lincoln",
    upn="abeli@contoso.test",
    group_ids=("11111111-1111-1111-1111-111111111111",),
)
APP = PrincipalClaims(
    oid="02223b6b-aa1d-42d4-9ec0-1b2bb9194438",
    kind=PrincipalKind.APP,
    app_id="6e74172b-be56-4843-9ff4-e66a39bb12e3",
)

Forge = Callable[..., str]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def split(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a token, unverified (test inspection only)."""
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    return header, claims
