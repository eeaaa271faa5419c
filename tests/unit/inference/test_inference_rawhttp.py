"""Scripts written for Azure's raw-HTTP mode: ``@rawhttp``, ``AMLRequest`` and ``AMLResponse``,
imported from the ``azureml`` modules exactly as Azure's samples do.
"""

from __future__ import annotations

import pytest
from inference_harness import MakeApp, Serve

pytestmark = pytest.mark.anyio

RAW_ECHO = """
from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse

def init():
    pass

@rawhttp
def run(request: AMLRequest):
    return {
        "method": request.method,
        "header": request.headers.get("x-custom"),
        "args": request.args.getlist("k"),
        "data": request.get_data(as_text=True),
        "json": request.get_json(silent=True),
        "full_path": request.full_path,
    }
"""


async def test_rawhttp_run_receives_the_request_object(make_app: MakeApp, serve: Serve) -> None:
    async with serve(make_app(RAW_ECHO)) as client:
        response = await client.post(
            "/score?k=1&k=2",
            json={"data": [1]},
            headers={"X-Custom": "yes"},
        )
        get = await client.get("/score")
    assert response.json() == {
        "method": "POST",
        "header": "yes",
        "args": ["1", "2"],
        "data": '{"data":[1]}',
        "json": {"data": [1]},
        "full_path": "/score?k=1&k=2",
    }
    assert get.json()["method"] == "GET"
    assert get.json()["full_path"] == "/score?"


async def test_aml_response_status_and_headers_pass_through(
    make_app: MakeApp, serve: Serve
) -> None:
    app = make_app(
        """
        from azureml.contrib.services.aml_request import rawhttp
        from azureml.contrib.services.aml_response import AMLResponse

        def init():
            pass

        @rawhttp
        def run(request):
            if request.args.get("kind") == "json":
                return AMLResponse({"made": True}, 201, {"X-Trace": "a, b"}, json_str=True)
            if request.args.get("kind") == "image":
                response = AMLResponse(message=b"\\x89PNG", status_code=200)
                response.mimetype = "image/png"
                return response
            return AMLResponse("No file uploaded", status_code=422)
        """
    )
    async with serve(app) as client:
        unprocessable = await client.post("/score", content=b"")
        created = await client.post("/score?kind=json", content=b"")
        image = await client.post("/score?kind=image", content=b"")
    assert unprocessable.status_code == 422
    assert unprocessable.text == "No file uploaded"
    assert unprocessable.headers["content-type"] == "text/html; charset=utf-8"
    assert unprocessable.headers["x-ms-run-function-failed"] == "False"
    assert created.status_code == 201
    assert created.json() == {"made": True}
    assert created.headers.get_list("x-trace") == ["a", "b"]
    assert image.headers["content-type"] == "image/png"
    assert image.content == b"\x89PNG"


async def test_aml_response_with_a_5xx_status_is_flagged_as_a_failed_run(
    make_app: MakeApp, serve: Serve
) -> None:
    app = make_app(
        """
        from azureml.contrib.services.aml_response import AMLResponse
        def init(): pass
        def run(raw_data):
            return AMLResponse({"error": "overloaded"}, 503, json_str=True)
        """
    )
    async with serve(app) as client:
        response = await client.post("/score", content=b"x")
    assert response.status_code == 503
    assert response.json() == {"error": "overloaded"}
    assert response.headers["x-ms-run-function-failed"] == "True"


async def test_aml_response_with_an_iterable_body_is_streamed(
    make_app: MakeApp, serve: Serve
) -> None:
    app = make_app(
        """
        from azureml.contrib.services.aml_response import AMLResponse
        def init(): pass
        def run(raw_data):
            parts = (part for part in ["a", "b", "c"])
            return AMLResponse(parts, 200, {"Content-Type": "text/plain"})
        """
    )
    async with serve(app) as client:
        response = await client.post("/score", content=b"x")
    assert response.text == "abc"
    assert response.headers["content-type"] == "text/plain"
    assert "content-length" not in response.headers


async def test_rawhttp_from_the_newer_azureml_inference_server_module(
    make_app: MakeApp, serve: Serve
) -> None:
    app = make_app(
        """
        from azureml_inference_server_http.api.aml_request import rawhttp
        from azureml_inference_server_http.api.aml_response import AMLResponse
        def init(): pass
        @rawhttp
        def run(request):
            return AMLResponse(request.get_data(), 200)
        """
    )
    async with serve(app) as client:
        response = await client.post("/score", content=b"raw bytes")
    assert response.content == b"raw bytes"


async def test_uploaded_files_are_readable_as_in_azures_binary_payload_sample(
    make_app: MakeApp, serve: Serve
) -> None:
    app = make_app(
        """
        from azureml.contrib.services.aml_request import AMLRequest, rawhttp
        from azureml.contrib.services.aml_response import AMLResponse

        def init():
            pass

        @rawhttp
        def run(req: AMLRequest):
            try:
                data = req.files.getlist("file")[0]
            except IndexError:
                return AMLResponse("No file uploaded", status_code=422)
            return {"name": data.filename, "size": len(data.read()), "note": req.form.get("note")}
        """
    )
    async with serve(app) as client:
        upload = await client.post(
            "/score",
            files={"file": ("photo.jpg", bytes(range(256)) * 4, "image/jpeg")},
            data={"note": "hi"},
        )
        missing = await client.post("/score", data={"note": "no file"})
    assert upload.json() == {"name": "photo.jpg", "size": 1024, "note": "hi"}
    assert missing.status_code == 422
