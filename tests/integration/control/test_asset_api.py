"""Content uploads and model/code/environment assets over HTTP."""

from __future__ import annotations

import hashlib
from typing import Any

from control_support import Arm, archive


def _error(reply: Any) -> dict[str, Any]:
    assert reply.status_code >= 400, reply.text
    error: dict[str, Any] = reply.json()["error"]
    return error


def test_upload_is_content_addressed_and_idempotent(arm: Arm) -> None:
    data = archive({"score.py": b"x"})
    digest = hashlib.sha256(data).hexdigest()
    first = arm.request("PUT", f"{arm.ws}/blobs/sha256:{digest}", content=data)
    assert first.status_code == 201
    assert first.json() == {"digest": f"sha256:{digest}", "size": len(data)}
    again = arm.request("PUT", f"{arm.ws}/blobs/sha256:{digest}", content=data)
    assert again.status_code == 200
    assert arm.get(f"{arm.ws}/blobs/sha256:{digest}").json()["size"] == len(data)
    stored = arm.ctx.settings.data_dir / "blobs" / "sha256" / digest[:2] / digest
    assert stored.read_bytes() == data


def test_upload_with_the_wrong_digest_is_400_and_keeps_nothing(arm: Arm) -> None:
    data = archive({"score.py": b"x"})
    wrong = "0" * 64
    reply = arm.request("PUT", f"{arm.ws}/blobs/sha256:{wrong}", content=data)
    assert reply.status_code == 400
    assert _error(reply)["code"] == "DigestMismatch"
    assert arm.get(f"{arm.ws}/blobs/sha256:{wrong}").status_code == 404
    assert arm.request("PUT", f"{arm.ws}/blobs/md5:abc", content=data).status_code == 400


def test_upload_must_be_an_archive(arm: Arm) -> None:
    data = b"just some bytes, not an archive"
    reply = arm.request(
        "PUT", f"{arm.ws}/blobs/sha256:{hashlib.sha256(data).hexdigest()}", content=data
    )
    assert reply.status_code == 400
    assert _error(reply)["code"] == "UnsupportedArchive"


def test_versions_create_their_container_and_track_the_latest(arm: Arm) -> None:
    uri = arm.upload(archive({"m.bin": b"1"}))
    for version in ("1", "2"):
        reply = arm.put(f"{arm.ws}/models/sk/versions/{version}", {"properties": {"modelUri": uri}})
        assert reply.status_code == 201
        assert reply.headers["ETag"]
    container = arm.get(f"{arm.ws}/models/sk").json()
    assert container["properties"]["latestVersion"] == "2"
    assert container["properties"]["nextVersion"] == "3"
    versions = arm.get(f"{arm.ws}/models/sk/versions").json()["value"]
    assert [item["name"] for item in versions] == ["1", "2"]
    assert [item["name"] for item in arm.get(f"{arm.ws}/models").json()["value"]] == ["sk"]


def test_a_version_is_immutable_in_content(arm: Arm) -> None:
    one = arm.upload(archive({"m.bin": b"1"}))
    two = arm.upload(archive({"m.bin": b"2"}))
    path = f"{arm.ws}/models/sk/versions/1"
    assert arm.put(path, {"properties": {"modelUri": one}}).status_code == 201
    same = arm.put(path, {"properties": {"modelUri": one, "description": "again"}})
    assert same.status_code == 200
    assert same.json()["properties"]["description"] == "again"
    other = arm.put(path, {"properties": {"modelUri": two}})
    assert other.status_code == 409
    assert _error(other)["code"] == "AssetVersionImmutable"


def test_content_must_be_uploaded_before_it_is_referenced(arm: Arm) -> None:
    reply = arm.put(
        f"{arm.ws}/codes/c/versions/1", {"properties": {"codeUri": "sha256:" + "a" * 64}}
    )
    assert reply.status_code == 400
    assert _error(reply)["target"] == "properties.codeUri"
    missing = arm.put(f"{arm.ws}/codes/c/versions/1", {"properties": {}})
    assert _error(missing)["target"] == "properties.codeUri"


def test_an_environment_needs_a_valid_conda_file(arm: Arm) -> None:
    reply = arm.put(f"{arm.ws}/environments/e/versions/1", {"properties": {"condaFile": "a: [b"}})
    assert reply.status_code == 400
    assert _error(reply)["target"] == "properties.condaFile"


def test_an_asset_in_use_cannot_be_deleted(arm: Arm) -> None:
    arm.create_endpoint("asset-ep")
    ids = arm.register_assets()
    arm.create_deployment("asset-ep", "blue", ids)
    refused = arm.request("DELETE", f"{arm.ws}/models/sk/versions/1")
    assert refused.status_code == 409
    assert "blue" in _error(refused)["message"]
    assert arm.request("DELETE", f"{arm.ws}/models/sk").status_code == 409
    assert arm.request("DELETE", f"{arm.ws}/environments/env/versions/1").status_code == 409
    delete = arm.request("DELETE", arm.deployment("asset-ep", "blue"))
    arm.wait_location(delete.headers["Location"])
    assert arm.request("DELETE", f"{arm.ws}/models/sk/versions/1").status_code == 200
    assert arm.get(f"{arm.ws}/models/sk").json()["properties"]["latestVersion"] is None
    assert arm.request("DELETE", f"{arm.ws}/models/sk/versions/1").status_code == 204


def test_asset_names_are_checked(arm: Arm) -> None:
    reply = arm.put(f"{arm.ws}/models/-bad/versions/1", {"properties": {}})
    assert reply.status_code == 400
    assert _error(reply)["target"] == "name"


def test_workspaces_and_resource_groups(arm: Arm) -> None:
    rg = f"/subscriptions/{arm.sub}/resourceGroups/team-rg"
    assert arm.put(rg, {}).status_code == 400
    created = arm.put(rg, {"location": "local", "tags": {"t": "1"}})
    assert created.status_code == 201
    assert created.json()["properties"]["provisioningState"] == "Succeeded"
    ws = f"{rg}/providers/Microsoft.MachineLearningServices/workspaces/team-ws"
    workspace = arm.put(ws, {"properties": {"friendlyName": "Team"}})
    assert workspace.status_code == 201
    assert workspace.json()["location"] == "local"
    assert workspace.json()["id"] == ws
    listed = arm.get(f"{rg}/providers/Microsoft.MachineLearningServices/workspaces").json()
    assert [item["name"] for item in listed["value"]] == ["team-ws"]
    assert arm.request("DELETE", rg).status_code == 409
    assert (
        arm.put(f"{ws}/onlineEndpoints/team-ep", {"properties": {"authMode": "Key"}}).status_code
        == 201
    )
    assert arm.request("DELETE", ws).status_code == 409
    other_sub = arm.get("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/x")
    assert other_sub.status_code == 404
    assert _error(other_sub)["code"] == "SubscriptionNotFound"
