"""ARM ids, asset references, systemData and the case-insensitive path rewrite."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from propylon.control.arm import (
    AssetKind,
    asset_version_id,
    deployment_id,
    endpoint_id,
    parse_asset_reference,
    system_data,
    workspace_id,
)
from propylon.control.http import canonical_path
from propylon.errors import BadRequest
from propylon.server.access import Caller

WS = workspace_id("sub", "rg", "ws")


def test_ids_use_the_canonical_literal_segments_and_the_names_as_given() -> None:
    assert WS == (
        "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.MachineLearningServices"
        "/workspaces/ws"
    )
    endpoint = endpoint_id(WS, "My-Ep")
    assert deployment_id(endpoint, "blue").endswith("/onlineEndpoints/My-Ep/deployments/blue")


@pytest.mark.parametrize(
    ("reference", "workspace", "name", "version"),
    [
        ("azureml:my-model:1", WS, "my-model", "1"),
        ("azureml:my-model@latest", WS, "my-model", None),
        ("my-model:3", WS, "my-model", "3"),
        (asset_version_id(WS, AssetKind.MODEL, "m", "2"), WS, "m", "2"),
        ("azureml:" + asset_version_id(WS, AssetKind.MODEL, "m", "2"), WS, "m", "2"),
        (
            "/SUBSCRIPTIONS/s2/resourcegroups/r2/providers/microsoft.machinelearningservices/workspaces/w2/models/m/versions/7",
            workspace_id("s2", "r2", "w2"),
            "m",
            "7",
        ),
    ],
)
def test_asset_references_in_every_accepted_form(
    reference: str, workspace: str, name: str, version: str | None
) -> None:
    parsed = parse_asset_reference(reference, kind=AssetKind.MODEL, workspace=WS)
    assert (parsed.workspace, parsed.name, parsed.version) == (workspace, name, version)


@pytest.mark.parametrize(
    ("reference", "words"),
    [
        ("azureml://registries/r/models/m/versions/1", "registry"),
        (asset_version_id(WS, AssetKind.CODE, "c", "1"), "must name a model"),
        ("azureml:a:b:c", "ARM id or azureml"),
        ("", "ARM id or azureml"),
    ],
)
def test_bad_asset_references_are_400_naming_the_field(reference: str, words: str) -> None:
    with pytest.raises(BadRequest, match=words) as caught:
        parse_asset_reference(
            reference, kind=AssetKind.MODEL, workspace=WS, target="properties.model"
        )
    assert caught.value.target == "properties.model"


def test_system_data_keeps_creation_and_moves_modification() -> None:
    alice = Caller(oid="o1", tid="t", appid=None, kind="user", claims={"upn": "alice@x"})
    app = Caller(oid="o2", tid="t", appid="app-id", kind="app")
    first = system_data(alice, datetime(2026, 1, 1, tzinfo=UTC))
    assert first["createdAt"] == "2026-01-01T00:00:00Z"
    assert first["createdBy"] == "alice@x"
    assert first["createdByType"] == "User"
    later = system_data(app, datetime(2026, 2, 1, tzinfo=UTC), first)
    assert later["createdAt"] == first["createdAt"]
    assert later["lastModifiedAt"] == "2026-02-01T00:00:00Z"
    assert later["lastModifiedBy"] == "app-id"
    assert later["lastModifiedByType"] == "Application"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.MACHINELEARNINGSERVICES/WORKSPACES/WS/ONLINEENDPOINTS/EP/LISTKEYS",
            "/subscriptions/S/resourceGroups/RG/providers/Microsoft.MachineLearningServices/workspaces/WS/onlineEndpoints/EP/listKeys",
        ),
        (
            "/subscriptions/s/resourcegroups/rg/providers/microsoft.machinelearningservices/workspaces/models/models/Models/versions/Versions",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/models/models/Models/versions/Versions",
        ),
        (
            "/subscriptions/s/providers/microsoft.machinelearningservices/locations/local/mfeoperationsstatus/1",
            "/subscriptions/s/providers/Microsoft.MachineLearningServices/locations/local/mfeOperationsStatus/1",
        ),
        ("/subscriptions/s/resourcegroups", "/subscriptions/s/resourceGroups"),
        (
            "/subscriptions/s/resourcegroups/rg/providers/Microsoft.Authorization/roleassignments/x",
            "/subscriptions/s/resourcegroups/rg/providers/Microsoft.Authorization/roleassignments/x",
        ),
        ("/openapi.json", "/openapi.json"),
        ("/healthz", "/healthz"),
    ],
)
def test_canonical_path_rewrites_only_literal_segments_of_this_provider(
    path: str, expected: str
) -> None:
    assert canonical_path(path) == expected
