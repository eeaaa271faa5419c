"""The model-inference routes: ``/chat/completions`` (JSON or server-sent events), ``/embeddings``
and ``/info``, served when score.py defines ``chat_completions``, ``embeddings`` and ``info``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import types
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from inference_harness import MakeApp, Serve

from propylon.inference import InferenceApp

pytestmark = pytest.mark.anyio

ECHO = Path(__file__).parents[3] / "examples" / "echo" / "score.py"


def echo_model(make_app: MakeApp) -> InferenceApp:
    return make_app(ECHO.read_text())


def sse_events(text: str) -> list[str]:
    assert text.endswith("\n\n")
    events = text[:-2].split("\n\n")
    assert all(event.startswith("data: ") for event in events), events
    return [event.removeprefix("data: ") for event in events]


async def test_chat_completion_returns_the_scripts_json(make_app: MakeApp, serve: Serve) -> None:
    async with serve(echo_model(make_app)) as client:
        response = await client.post(
            "/chat/completions", json={"messages": [{"role": "user", "content": "hello there"}]}
        )
    assert response.status_code == 200
    body = response.json()
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hello there"}
    assert body["usage"]["total_tokens"] == 4


async def test_chat_completion_generator_streams_server_sent_events(
    make_app: MakeApp, serve: Serve
) -> None:
    async with serve(echo_model(make_app)) as client:
        response = await client.post(
            "/chat/completions",
            json={"messages": [{"role": "user", "content": "one two three"}], "stream": True},
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    updates = [json.loads(event) for event in events[:-1]]
    text = "".join(u["choices"][0]["delta"].get("content", "") for u in updates)
    assert text == "one two three"
    assert updates[-1]["choices"][0]["finish_reason"] == "stop"


async def test_embeddings_and_info(make_app: MakeApp, serve: Serve) -> None:
    async with serve(echo_model(make_app)) as client:
        embeddings = await client.post("/embeddings", json={"input": ["a", "b"]})
        info = await client.get("/info")
    assert [item["index"] for item in embeddings.json()["data"]] == [0, 1]
    assert len(embeddings.json()["data"][0]["embedding"]) == 8
    assert info.json()["model_type"] == "chat_completion"


async def test_model_routes_are_404_when_the_script_lacks_them(
    make_app: MakeApp, serve: Serve
) -> None:
    async with serve(make_app("def init(): pass\ndef run(d): return d\n")) as client:
        chat = await client.post("/chat/completions", json={"messages": []})
        info = await client.get("/info")
    assert chat.status_code == 404
    assert info.status_code == 404


async def test_script_with_only_chat_completions_serves_without_run(
    make_app: MakeApp, serve: Serve
) -> None:
    app = make_app("def init(): pass\ndef chat_completions(body): return {'ok': True}\n")
    async with serve(app) as client:
        chat = await client.post("/chat/completions", json={})
        score = await client.post("/score", content=b"x")
    assert chat.json() == {"ok": True}
    assert score.status_code == 404


async def test_chat_body_must_be_a_json_object(make_app: MakeApp, serve: Serve) -> None:
    async with serve(echo_model(make_app)) as client:
        response = await client.post("/chat/completions", content=b"[1]")
    assert response.status_code == 400


async def test_failure_in_the_middle_of_a_stream_ends_it_with_an_error_event(
    make_app: MakeApp, serve: Serve
) -> None:
    app = make_app(
        """
        def init(): pass
        def chat_completions(body):
            yield {"choices": []}
            raise RuntimeError("ran out of tokens")
        """
    )
    async with serve(app) as client:
        response = await client.post("/chat/completions", json={})
    events = sse_events(response.text)
    assert json.loads(events[0]) == {"choices": []}
    assert json.loads(events[1])["error"]["message"] == "ran out of tokens"
    assert "[DONE]" not in events


async def test_events_leave_before_the_generator_produces_the_next_one(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unbuffered: the first event is sent while the generator is still blocked on the second."""
    first_event_sent = threading.Event()
    hooks = types.ModuleType("inference_test_hooks")
    hooks.first_event_sent = first_event_sent  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "inference_test_hooks", hooks)
    app = make_app(
        """
        from inference_test_hooks import first_event_sent
        def init(): pass
        def chat_completions(body):
            yield {"n": 1}
            # Blocks until the server has sent event 1 (or fails the test after 5 s).
            if not first_event_sent.wait(5):
                raise RuntimeError("event 1 was held back until the stream ended")
            yield {"n": 2}
        """
    )
    messages: list[MutableMapping[str, Any]] = []
    body_sent = False

    async def receive() -> MutableMapping[str, Any]:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": b"{}", "more_body": False}
        await asyncio.Event().wait()  # the client never leaves
        raise AssertionError

    async def send(message: MutableMapping[str, Any]) -> None:
        messages.append(message)
        if message["type"] == "http.response.body" and b'"n": 1' in message.get("body", b""):
            first_event_sent.set()

    scope = {"type": "http", "method": "POST", "path": "/chat/completions", "headers": []}
    await app.startup()
    try:
        await app.wait_started()
        await asyncio.wait_for(app(scope, receive, send), timeout=10)
    finally:
        await app.shutdown()
    bodies = [m["body"] for m in messages if m["type"] == "http.response.body" and m["body"]]
    assert bodies == [b'data: {"n": 1}\n\n', b'data: {"n": 2}\n\n', b"data: [DONE]\n\n"]


async def test_stream_stops_and_closes_the_generator_when_the_client_leaves(
    make_app: MakeApp, tmp_path: Path
) -> None:
    closed = tmp_path / "closed"
    app = make_app(
        f"""
        import pathlib
        def init(): pass
        def info(): return {{"model_name": "after"}}
        def chat_completions(body):
            try:
                n = 0
                while True:
                    n += 1
                    yield {{"n": n}}
            finally:
                pathlib.Path({str(closed)!r}).touch()
        """
    )
    await app.startup()
    await app.wait_started()
    sent: list[MutableMapping[str, Any]] = []
    left = asyncio.Event()
    calls = 0

    async def receive() -> MutableMapping[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": b"{}", "more_body": False}
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)
        if len(sent) == 4:
            left.set()
        await asyncio.sleep(0)

    scope = {"type": "http", "method": "POST", "path": "/chat/completions", "headers": []}
    try:
        await asyncio.wait_for(app(scope, receive, send), timeout=5)
        assert closed.exists(), "the generator's finally must run"
        assert len(sent) < 50
        # The only thread (WORKER_COUNT=1) is free again: the next request is served.
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://instance"
        ) as client:
            info = await asyncio.wait_for(client.get("/info"), timeout=2)
        assert info.json() == {"model_name": "after"}
    finally:
        await app.shutdown()
