"""The server's request middleware: request ids are version-4 GUIDs, echoed once, and every
answer is counted by method and status."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from propylon.server.middleware import RequestContextMiddleware, new_request_id


def test_request_ids_are_random_version_4_guids() -> None:
    ids = {new_request_id() for _ in range(2000)}
    assert len(ids) == 2000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # lower case, 8-4-4-4-12
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    assert {text[19] for text in ids} == set("89ab")  # the variant digit takes all its values


async def _answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    status = int(scope["path"].strip("/"))
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _call(app: RequestContextMiddleware, method: str, path: str) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": []}
    asyncio.run(app(scope, receive, send))
    return sent


def test_answers_are_counted_by_method_and_status() -> None:
    registry = CollectorRegistry()
    app = RequestContextMiddleware(_answer, plane="gateway", registry=registry)
    for method, path in [("POST", "/200"), ("POST", "/200"), ("GET", "/404"), ("POST", "/424")]:
        _call(app, method, path)
    text = generate_latest(registry).decode()
    assert 'propylon_gateway_requests_total{method="POST",status="200"} 2.0' in text
    assert 'propylon_gateway_requests_total{method="GET",status="404"} 1.0' in text
    assert 'propylon_gateway_requests_total{method="POST",status="424"} 1.0' in text
    assert "propylon_gateway_request_seconds_count 4.0" in text


def test_each_answer_carries_its_own_request_id_once() -> None:
    app = RequestContextMiddleware(_answer, plane="gateway", registry=CollectorRegistry())
    first, second = (_call(app, "POST", "/200")[0]["headers"] for _ in range(2))
    assert [name for name, _ in first] == [b"x-ms-request-id", b"x-request-id"]
    assert first[0][1] == first[1][1]
    assert first[0][1] != second[0][1]
