"""``/score`` as Azure's inference server answers it: input modes, outputs, errors, headers."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from inference_harness import MakeApp, Serve

pytestmark = pytest.mark.anyio

ECHO_TEXT = """
def init():
    pass

def run(raw_data):
    return {"type": type(raw_data).__name__, "value": raw_data}
"""


async def test_undecorated_run_receives_the_body_as_text(make_app: MakeApp, serve: Serve) -> None:
    async with serve(make_app(ECHO_TEXT)) as client:
        response = await client.post("/score", content=b'{"data": [1, 2]}')
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"type": "str", "value": '{"data": [1, 2]}'}
    assert response.headers["x-ms-run-function-failed"] == "False"
    assert float(response.headers["x-ms-run-fn-exec-ms"]) >= 0


async def test_get_passes_query_arguments_as_a_json_object_text(
    make_app: MakeApp, serve: Serve
) -> None:
    async with serve(make_app(ECHO_TEXT)) as client:
        response = await client.get("/score?a=1&b=[1,2]&c=x&c=y")
    assert response.json()["value"] == '{"a": 1, "b": [1, 2], "c": ["x", "y"]}'


async def test_body_that_is_not_utf8_is_refused_with_400(make_app: MakeApp, serve: Serve) -> None:
    async with serve(make_app(ECHO_TEXT)) as client:
        response = await client.post("/score", content=b"\xff\xfe")
    assert response.status_code == 400
    assert response.json()["message"].startswith("Input cannot be decoded as UTF-8")


async def test_returned_string_becomes_a_json_string_literal_as_on_azure(
    make_app: MakeApp, serve: Serve
) -> None:
    app = make_app("def init(): pass\ndef run(raw_data): return 'plain'\n")
    async with serve(app) as client:
        response = await client.post("/score", content=b"x")
    assert response.text == '"plain"'


async def test_returned_bytes_are_sent_as_they_are(make_app: MakeApp, serve: Serve) -> None:
    app = make_app("def init(): pass\ndef run(raw_data): return b'\\x00\\x01'\n")
    async with serve(app) as client:
        response = await client.post("/score", content=b"x")
    assert response.content == b"\x00\x01"
    assert response.headers["content-type"] == "application/octet-stream"


async def test_array_like_results_are_serialised_with_tolist(
    make_app: MakeApp, serve: Serve
) -> None:
    app = make_app(
        """
        class Array:
            def tolist(self):
                return [1.5, 2.5]

        def init(): pass
        def run(raw_data): return {"output": Array()}
        """
    )
    async with serve(app) as client:
        response = await client.post("/score", content=b"x")
    assert response.json() == {"output": [1.5, 2.5]}


async def test_exception_in_run_is_a_500_with_its_message_and_no_traceback(
    make_app: MakeApp, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(
        """
        def init(): pass
        def run(raw_data):
            raise ValueError("the model cannot read this")
        """
    )
    with caplog.at_level(logging.ERROR):
        async with serve(app) as client:
            response = await client.post("/score", content=b"x")
    assert response.status_code == 500
    assert response.json() == {"message": "the model cannot read this"}
    assert response.headers["x-ms-run-function-failed"] == "True"
    assert "Traceback" not in response.text
    failures = [r for r in caplog.records if r.exc_info and r.exc_info[0] is ValueError]
    assert failures, "the traceback must reach the log"


async def test_output_that_cannot_be_serialised_is_a_500(make_app: MakeApp, serve: Serve) -> None:
    app = make_app("def init(): pass\ndef run(raw_data): return object()\n")
    async with serve(app) as client:
        response = await client.post("/score", content=b"x")
    assert response.status_code == 500
    assert "not JSON serializable" in response.json()["message"]


async def test_run_slower_than_the_scoring_timeout_is_a_500(
    make_app: MakeApp, serve: Serve
) -> None:
    app = make_app(
        "import time\ndef init(): pass\ndef run(raw_data): time.sleep(0.5)\n",
        scoring_timeout_ms=50,
    )
    async with serve(app) as client:
        response = await client.post("/score", content=b"x")
    assert response.status_code == 500
    assert response.json() == {"message": "Scoring timeout after 50 ms"}
    assert response.headers["x-ms-run-function-failed"] == "True"


async def test_request_headers_parameter_receives_the_headers(
    make_app: MakeApp, serve: Serve
) -> None:
    app = make_app(
        """
        def init(): pass
        def run(raw_data, request_headers):
            return {"custom": request_headers.get("X-Custom"), "names": sorted(request_headers)}
        """
    )
    async with serve(app) as client:
        response = await client.post("/score", content=b"x", headers={"x-custom": "42"})
    body = response.json()
    assert body["custom"] == "42"
    assert "X-Custom" in body["names"]  # Werkzeug spells names in title case


async def test_options_is_answered_and_other_methods_are_405(
    make_app: MakeApp, serve: Serve
) -> None:
    async with serve(make_app(ECHO_TEXT)) as client:
        options = await client.options("/score")
        put = await client.put("/score", content=b"x")
    assert options.status_code == 200
    assert put.status_code == 405
    assert put.json() == {"message": "Method not allowed"}
    assert put.headers["allow"] == "GET, OPTIONS, POST"


async def test_unknown_path_is_404(make_app: MakeApp, serve: Serve) -> None:
    async with serve(make_app(ECHO_TEXT)) as client:
        response = await client.get("/nowhere")
    assert response.status_code == 404
    assert "message" in response.json()


async def test_request_ids_are_echoed(make_app: MakeApp, serve: Serve) -> None:
    async with serve(make_app(ECHO_TEXT)) as client:
        given = await client.post(
            "/score", content=b"x", headers={"x-request-id": "rid-1", "TraceId": "t-9"}
        )
        client_id = await client.post(
            "/score", content=b"x", headers={"x-ms-client-request-id": "client-7"}
        )
        generated = await client.get("/")
    assert given.headers["x-request-id"] == "rid-1"
    assert given.headers["x-ms-request-id"] == "rid-1"
    assert given.headers["traceid"] == "t-9"
    assert client_id.headers["x-ms-client-request-id"] == "client-7"
    assert client_id.headers["x-ms-request-id"] == "client-7"
    assert len(generated.headers["x-request-id"]) == 36  # a fresh UUID


async def test_request_id_longer_than_100_characters_is_431(
    make_app: MakeApp, serve: Serve
) -> None:
    async with serve(make_app(ECHO_TEXT)) as client:
        response = await client.post("/score", content=b"x", headers={"x-request-id": "r" * 101})
    assert response.status_code == 431


async def test_worker_count_bounds_how_many_runs_execute_at_once(
    make_app: MakeApp, serve: Serve
) -> None:
    source = """
        import threading, time
        lock = threading.Lock()
        state = {"now": 0, "peak": 0}
        def init(): pass
        def run(raw_data):
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
            time.sleep(0.1)
            with lock:
                state["now"] -= 1
            return state["peak"]
        """
    for workers in (1, 3):
        async with serve(make_app(source, worker_count=workers)) as client:
            started = time.perf_counter()
            responses = await asyncio.gather(
                *(client.post("/score", content=b"x") for _ in range(3))
            )
            elapsed = time.perf_counter() - started
        assert max(r.json() for r in responses) == workers
        if workers == 1:
            assert elapsed >= 0.3  # one after the other
