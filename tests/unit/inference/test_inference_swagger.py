"""``GET /swagger.json``: 404 without a schema, the author's file when shipped, generated from
inference-schema decorators when that package is installed (the test is skipped otherwise).
"""

from __future__ import annotations

import json

import pytest
from inference_harness import MakeApp, Serve

pytestmark = pytest.mark.anyio

PLAIN = "def init(): pass\ndef run(raw_data): return raw_data\n"


async def test_swagger_is_404_when_the_script_declares_no_schema(
    make_app: MakeApp, serve: Serve
) -> None:
    async with serve(make_app(PLAIN)) as client:
        response = await client.get("/swagger.json")
        invalid = await client.get("/swagger.json?version=7")
    assert response.status_code == 404
    assert "not supported for the scoring script" in response.json()["message"]
    assert invalid.status_code == 404
    assert "is not valid" in invalid.json()["message"]


async def test_swagger_files_shipped_in_the_app_root_are_served(
    make_app: MakeApp, serve: Serve
) -> None:
    v2 = {"swagger": "2.0", "info": {"title": "mine"}}
    v3 = {"openapi": "3.0.0", "info": {"title": "mine"}}
    app = make_app(PLAIN, files={"swagger.json": json.dumps(v2), "swagger3.json": json.dumps(v3)})
    async with serve(app) as client:
        default = await client.get("/swagger.json")
        third = await client.get("/swagger.json?version=3")
        third_one = await client.get("/swagger.json?version=3.1")
    assert default.json() == v2
    assert third.json() == v3
    assert third_one.json()["openapi"] == "3.1.0"


async def test_swagger_is_generated_from_inference_schema_decorators(
    make_app: MakeApp, serve: Serve
) -> None:
    pytest.importorskip("inference_schema", reason="inference-schema is not installed")
    app = make_app(
        """
        from inference_schema.schema_decorators import input_schema, output_schema
        from inference_schema.parameter_types.standard_py_parameter_type import (
            StandardPythonParameterType,
        )

        def init():
            pass

        @input_schema("sepal_length", StandardPythonParameterType([7.2]))
        @input_schema("sepal_width", StandardPythonParameterType([3.2]))
        @output_schema(StandardPythonParameterType({"Category": ["Virginica"]}))
        def run(sepal_length, sepal_width):
            return {"Category": [f"{a}x{b}" for a, b in zip(sepal_length, sepal_width)]}
        """
    )
    async with serve(app) as client:
        v2 = await client.get("/swagger.json")
        v3 = await client.get("/swagger.json?version=3")
        scored = await client.post("/score", json={"sepal_length": [1.0], "sepal_width": [2.0]})
        missing = await client.post("/score", json={"sepal_length": [1.0]})
        not_json = await client.post(
            "/score", content=b"{}", headers={"content-type": "text/plain"}
        )
    assert v2.status_code == 200
    service_input = v2.json()["definitions"]["ServiceInput"]
    assert set(service_input["properties"]) == {"sepal_length", "sepal_width"}
    assert v2.json()["paths"]["/score"]["post"]["operationId"] == "RunMLService"
    assert v3.json()["components"]["schemas"]["ServiceOutput"]["type"] == "object"
    assert scored.json() == {"Category": ["1.0x2.0"]}
    assert missing.status_code == 400
    assert missing.json()["message"] == "A value is not provided for the 'sepal_width' parameter."
    assert not_json.status_code == 415
