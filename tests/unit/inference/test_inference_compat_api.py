"""The Flask-shaped objects scripts touch (``AMLRequest``, ``AMLResponse``, their containers) and
the ``azureml`` stand-in modules, checked without a server.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap

import pytest

from propylon.inference import AMLRequest, AMLResponse, rawhttp
from propylon.inference.aml_request import is_rawhttp
from propylon.inference.datastructures import Headers, MultiDict
from propylon.inference.forms import parse_form


def test_headers_are_case_insensitive_and_keep_repeated_values() -> None:
    headers = Headers([("Content-Type", "text/plain"), ("X-A", "1"), ("x-a", "2")])
    assert headers["content-type"] == "text/plain"
    assert headers.getlist("X-A") == ["1", "2"]
    assert "CONTENT-TYPE" in headers
    headers["x-a"] = "3"
    assert headers.getlist("x-a") == ["3"]
    headers.add("X-A", "4")
    assert dict(headers)["x-a"] == "3"
    assert next(iter(headers)) == ("Content-Type", "text/plain")
    assert headers.get("missing", type=int) is None
    with pytest.raises(KeyError):
        headers["missing"]


def test_multidict_behaves_like_werkzeugs() -> None:
    args = MultiDict([("a", "1"), ("b", "x"), ("a", "2")])
    assert args["a"] == "1"
    assert args.get("a", type=int) == 1
    assert args.get("b", 0, type=int) == 0
    assert args.getlist("a") == ["1", "2"]
    assert args.to_dict() == {"a": "1", "b": "x"}
    assert args.to_dict(flat=False) == {"a": ["1", "2"], "b": ["x"]}
    assert list(args) == ["a", "b"]


def test_request_json_follows_flask_rules() -> None:
    as_json = AMLRequest(
        method="post", path="/score", headers=[("Content-Type", "application/json")], body=b"[1]"
    )
    as_text = AMLRequest(method="POST", path="/score", body=b"[1]")
    broken = AMLRequest(
        method="POST", path="/score", headers=[("Content-Type", "application/json")], body=b"{"
    )
    assert as_json.method == "POST"
    assert as_json.get_json() == [1]
    assert as_json.is_json
    assert as_text.get_json(silent=True) is None
    assert as_text.get_json(force=True) == [1]
    with pytest.raises(ValueError, match="Content-Type"):
        as_text.get_json()
    assert broken.get_json(silent=True) is None
    with pytest.raises(json.JSONDecodeError):
        broken.get_json()


def test_request_urls_and_query() -> None:
    request = AMLRequest(
        method="GET",
        path="/score",
        query_string=b"a=1&a=2&b=",
        headers=[("Host", "instance:5001")],
    )
    assert request.full_path == "/score?a=1&a=2&b="
    assert request.url == "http://instance:5001/score?a=1&a=2&b="
    assert request.args.getlist("a") == ["1", "2"]
    assert request.args["b"] == ""


def test_multipart_form_with_binary_file_round_trips_every_byte() -> None:
    payload = bytes(range(256)) + b"\r\n--not-the-boundary\r\n" + bytes(range(256))
    body = (
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="note"\r\n\r\n'
        b"caf\xc3\xa9\r\n"
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="file"; filename="\xe6\x97\xa5.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + payload + b"\r\n--XyZ--\r\n"
    )
    form, files = parse_form(body, "multipart/form-data; boundary=XyZ")
    assert form["note"] == "café"
    upload = files["file"]
    assert upload.filename == "日.bin"
    assert upload.mimetype == "application/octet-stream"
    assert upload.read() == payload
    saved = io.BytesIO()
    upload.seek(0)
    upload.save(saved)
    assert saved.getvalue() == payload


def test_urlencoded_form_and_malformed_multipart() -> None:
    form, files = parse_form(b"a=1&b=two+words", "application/x-www-form-urlencoded")
    assert form.to_dict() == {"a": "1", "b": "two words"}
    assert not files
    with pytest.raises(ValueError, match="boundary"):
        parse_form(b"x", "multipart/form-data")


def test_aml_response_matches_azures_constructor() -> None:
    default = AMLResponse("text", 200)
    assert default.headers["Content-Type"] == "text/html; charset=utf-8"
    assert default.get_data() == b"text"
    empty = AMLResponse(None, 204)
    assert empty.get_data() == b"{}"
    assert empty.mimetype == "application/json"
    as_json = AMLResponse({"a": [1]}, 200, json_str=True)
    assert as_json.get_json() == {"a": [1]}
    with_type = AMLResponse(b"x", 200, {"Content-Type": "image/png", "X-M": "a,b"})
    assert with_type.headers.getlist("content-type") == ["image/png"]
    assert with_type.headers.getlist("x-m") == ["a", "b"]
    with_type.mimetype = "text/csv"
    assert with_type.content_type == "text/csv; charset=utf-8"
    streamed = AMLResponse(iter(["a", b"b"]), 200)
    assert streamed.is_streamed
    assert streamed.get_data(as_text=True) == "ab"
    assert AMLResponse("x", 418).status == "418 I'M A TEAPOT"


def test_rawhttp_marks_the_function_and_survives_functools_wraps() -> None:
    import functools

    @rawhttp
    def run(request: AMLRequest) -> AMLRequest:
        return request

    @functools.wraps(run)
    def wrapper(request: AMLRequest) -> AMLRequest:
        return run(request)

    assert is_rawhttp(run)
    assert is_rawhttp(wrapper)
    assert not is_rawhttp(lambda request: request)


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_importing_the_package_registers_nothing_and_stays_off_web_frameworks() -> None:
    result = _python(
        """
        import sys
        import propylon.inference, propylon.inference.app
        leaked = [m for m in sys.modules if m.split(".")[0] in
                  ("azureml", "azureml_inference_server_http", "uvicorn", "fastapi",
                   "starlette", "pydantic", "flask", "structlog", "sqlalchemy")]
        print(leaked)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_shims_make_azures_imports_work_where_azureml_is_not_installed() -> None:
    result = _python(
        """
        from propylon.inference.shims import install_azureml_shims
        installed = install_azureml_shims()
        from azureml.contrib.services.aml_request import AMLRequest, rawhttp
        from azureml.contrib.services.aml_response import AMLResponse
        import azureml.contrib.services.aml_request as module
        from azureml_inference_server_http.api.aml_response import AMLResponse as Newer
        assert AMLResponse is Newer
        assert install_azureml_shims() == []  # idempotent
        print(len(installed), AMLRequest.__module__, module.__name__)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "4",
        "propylon.inference.aml_request",
        "azureml.contrib.services.aml_request",
    ]
