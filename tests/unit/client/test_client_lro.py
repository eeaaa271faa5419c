"""Long-running operations are polled as azure-mgmt-core's ARMPolling polls them."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken

from propylon.client.http import Pipeline, Reply
from propylon.client.lro import Poller
from propylon.errors import PropylonError

RESOURCE = "https://propylon.test:8080/r?api-version=1"
STATUS = "https://propylon.test:8080/operations/1"


class Credential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("t", int(time.time()) + 3600)


def _script(replies: dict[str, list[httpx.Response]]) -> tuple[Pipeline, list[str]]:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        key = f"{request.method} {request.url.path}"
        calls.append(key)
        return replies[key].pop(0)

    return Pipeline(Credential(), transport=httpx.MockTransport(handler)), calls


def _initial(status: int, headers: dict[str, str], body: Any = None) -> Reply:
    return Reply(status, headers, json.dumps(body).encode() if body is not None else b"", RESOURCE)


def test_async_operation_then_final_get_for_put() -> None:
    pipeline, calls = _script(
        {
            "GET /operations/1": [
                httpx.Response(200, json={"status": "InProgress"}),
                httpx.Response(200, json={"status": "Succeeded"}),
            ],
            "GET /r": [
                httpx.Response(200, json={"properties": {"provisioningState": "Succeeded"}})
            ],
        }
    )
    sleeps: list[float] = []
    poller: Poller[Any] = Poller(
        pipeline,
        "PUT",
        RESOURCE,
        _initial(
            201,
            {"Azure-AsyncOperation": STATUS, "Retry-After": "2"},
            {"properties": {"provisioningState": "Creating"}},
        ),
        lambda body: body["properties"]["provisioningState"],
        interval=0.5,
        sleep=sleeps.append,
    )
    assert poller.status() == "Creating"
    assert poller.result() == "Succeeded"
    assert calls == ["GET /operations/1", "GET /operations/1", "GET /r"]
    assert sleeps == [2.0, 0.5]


def test_failed_operation_raises_its_error() -> None:
    pipeline, _ = _script(
        {
            "GET /operations/1": [
                httpx.Response(
                    200,
                    json={
                        "status": "Failed",
                        "error": {"code": "ModelError", "message": "init() failed"},
                    },
                )
            ]
        }
    )
    poller: Poller[Any] = Poller(
        pipeline,
        "PUT",
        RESOURCE,
        _initial(201, {"Azure-AsyncOperation": STATUS}),
        lambda b: b,
        sleep=lambda s: None,
    )
    with pytest.raises(PropylonError) as caught:
        poller.result()
    assert (caught.value.code, caught.value.message) == ("ModelError", "init() failed")
    assert poller.status() == "Failed"


def test_location_polling_202_then_done() -> None:
    pipeline, calls = _script(
        {"GET /operations/1": [httpx.Response(202), httpx.Response(200, json={})]}
    )
    poller: Poller[None] = Poller(
        pipeline,
        "DELETE",
        RESOURCE,
        _initial(202, {"Location": STATUS}),
        lambda _: None,
        sleep=lambda s: None,
    )
    assert poller.result() is None
    assert calls == ["GET /operations/1", "GET /operations/1"]


def test_put_without_headers_polls_the_provisioning_state() -> None:
    pipeline, _ = _script(
        {"GET /r": [httpx.Response(200, json={"properties": {"provisioningState": "Succeeded"}})]}
    )
    poller: Poller[Any] = Poller(
        pipeline,
        "PUT",
        RESOURCE,
        _initial(200, {}, {"properties": {"provisioningState": "Updating"}}),
        lambda body: body,
        sleep=lambda s: None,
    )
    assert poller.result()["properties"]["provisioningState"] == "Succeeded"


def test_immediate_success_needs_no_polling() -> None:
    pipeline, calls = _script({})
    poller: Poller[Any] = Poller(
        pipeline, "POST", RESOURCE, _initial(200, {}, {"ok": 1}), lambda body: body
    )
    assert poller.done()
    assert poller.result() == {"ok": 1}
    assert calls == []


def test_timeout_names_the_last_status() -> None:
    pipeline, _ = _script(
        {"GET /operations/1": [httpx.Response(200, json={"status": "Running"})] * 100}
    )
    poller: Poller[Any] = Poller(
        pipeline,
        "PUT",
        RESOURCE,
        _initial(201, {"Azure-AsyncOperation": STATUS}),
        lambda b: b,
        sleep=lambda s: time.sleep(0.01),
    )
    with pytest.raises(PropylonError, match="last status Running") as caught:
        poller.result(timeout=0.05)
    assert caught.value.code == "OperationTimeout"
