"""The OpenAPI document describes the ARM surface, and no operation answers garbage with a 5xx."""

from __future__ import annotations

import re
from typing import Any

import pytest
from control_support import Arm
from fastapi import FastAPI

from propylon.control import router


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    """The control plane's part of the document, built strictly (no warning tolerated)."""
    app = FastAPI()
    app.include_router(router())
    return app.openapi()


# TODO(lead): identity/routes.py registers duplicate operation ids; drop this filter once fixed.
@pytest.mark.filterwarnings("ignore:Duplicate Operation ID:UserWarning")
def test_the_control_app_serves_openapi_json(arm: Arm) -> None:
    reply = arm.client.get("/openapi.json")
    assert reply.status_code == 200
    assert any(path.endswith("/onlineEndpoints/{endpoint}") for path in reply.json()["paths"])


def test_openapi_describes_endpoints_deployments_and_their_bodies(spec: dict[str, Any]) -> None:
    paths = spec["paths"]
    endpoint = next(p for p in paths if p.endswith("/onlineEndpoints/{endpoint}"))
    assert {"get", "put", "patch", "delete"} <= set(paths[endpoint])
    body = paths[endpoint]["put"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/OnlineEndpointBody")
    schemas = spec["components"]["schemas"]
    properties = schemas["OnlineEndpointProperties"]["properties"]
    assert "authMode" in properties
    assert "mirrorTraffic" in properties
    assert "endpointComputeType" in schemas["OnlineDeploymentProperties"]["properties"]
    assert any(p.endswith("/getLogs") for p in paths)
    assert any(p.endswith("/mfeOperationsStatus/{operation_id}") for p in paths)


def test_every_operation_answers_malformed_input_without_a_server_error(
    arm: Arm, spec: dict[str, Any]
) -> None:
    arm.create_endpoint("fuzz-ep")
    values = {
        "subscription_id": arm.sub,
        "resource_group": arm.rg,
        "workspace": arm.ws_name,
        "endpoint": "fuzz-ep",
        "deployment": "blue",
        "name": "m",
        "version": "1",
        "digest": "sha256:" + "0" * 64,
        "location": "local",
        "operation_id": "00000000-0000-0000-0000-000000000000",
    }
    payloads: list[dict[str, Any]] = [
        {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
        {"json": []},
        {"json": {"properties": "x", "sku": {"capacity": "many"}, "tags": {"a": 1}}},
        {
            "json": {
                "properties": {"authMode": 3, "endpointComputeType": None, "traffic": {"a": "b"}}
            }
        },
    ]
    for path, operations in spec["paths"].items():
        if not path.startswith("/subscriptions/"):
            continue
        concrete = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
        for method in operations:
            for payload in payloads:
                reply = arm.request(method.upper(), concrete, **payload)
                assert reply.status_code < 500, (method, path, payload, reply.text)
                if reply.status_code == 400:
                    error = reply.json()["error"]
                    assert error["message"]
                    assert error.get("target") or error["code"] != "InvalidRequestContent"
