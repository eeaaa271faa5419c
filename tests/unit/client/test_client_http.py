"""The HTTP layer turns every failure into one propylon error with the server's code."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from propylon.client.http import Pipeline
from propylon.errors import (
    Forbidden,
    NotFound,
    PropylonError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthenticated,
)

URL = "https://propylon.test:8080/x"


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        return AccessToken(f"t{self.calls}", int(time.time()) + 3600)


def _pipeline(handler: Any, credential: Any = None) -> Pipeline:
    return Pipeline(credential or Counting(), transport=httpx.MockTransport(handler))


def test_arm_error_body_becomes_the_matching_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            403,
            json={
                "error": {
                    "code": "AuthorizationFailed",
                    "message": "no 'write' on '/x'",
                    "target": "t",
                }
            },
        )

    with pytest.raises(Forbidden) as caught:
        _pipeline(handler).send("GET", URL, scope="s/.default")
    assert caught.value.code == "AuthorizationFailed"
    assert caught.value.message == "no 'write' on '/x'"
    assert caught.value.status == 403


def test_oauth_error_body_keeps_its_rfc_code() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            401, json={"error": "invalid_client", "error_description": "bad secret"}
        )

    with pytest.raises(Unauthenticated) as caught:
        _pipeline(handler).send("POST", URL)
    assert (caught.value.code, caught.value.message) == ("invalid_client", "bad secret")


def test_plain_text_and_unmapped_statuses() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(424, text="model failed")

    with pytest.raises(PropylonError) as caught:
        _pipeline(handler).send("POST", URL)
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        424,
        "HttpError424",
        "model failed",
    )


def test_retry_after_is_kept_on_429() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429, headers={"Retry-After": "3"}, json={"error": {"code": "TooMany"}}
        )

    with pytest.raises(TooManyRequests) as caught:
        _pipeline(handler).send("POST", URL)
    assert caught.value.headers["Retry-After"] == "3"


def test_statuses_listed_as_ok_are_returned() -> None:
    reply = _pipeline(lambda r: httpx.Response(404)).send("GET", URL, ok=(404,))
    assert reply.status == 404


def test_unreachable_server_is_service_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    with pytest.raises(ServiceUnavailable, match=r"cannot connect to https://propylon\.test:8080"):
        _pipeline(handler).send("GET", URL)


def test_untrusted_certificate_says_how_to_fix_it() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] self-signed certificate")

    with pytest.raises(PropylonError, match="--ca-cert") as caught:
        _pipeline(handler).send("GET", URL)
    assert caught.value.code == "CertificateVerifyFailed"


def test_tokens_are_cached_per_scope_and_sent_as_bearer() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200, json={})

    credential = Counting()
    pipeline = _pipeline(handler, credential)
    pipeline.send("GET", URL, scope="a/.default")
    pipeline.send("GET", URL, scope="a/.default")
    pipeline.send("GET", URL, scope="b/.default")
    assert seen == ["Bearer t1", "Bearer t1", "Bearer t2"]
    assert credential.calls == 2


def test_credential_failures_become_unauthenticated() -> None:
    class Failing:
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            raise ClientAuthenticationError("Authentication failed: invalid_grant\nTrace: 1")

    with pytest.raises(Unauthenticated, match=r"Authentication failed: invalid_grant$"):
        _pipeline(lambda r: httpx.Response(200), Failing()).send("GET", URL, scope="s")


def test_post_actions_are_sent_with_an_empty_body_and_json_is_typed() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    pipeline = _pipeline(handler)
    pipeline.send("POST", URL + "/listKeys", scope="s")
    pipeline.send("PUT", URL, scope="s", json_body={"a": 1})
    assert seen[0].headers["content-length"] == "0"
    assert seen[1].headers["content-type"] == "application/json"


def test_missing_resource_is_not_found() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            404,
            json={"error": {"code": "UserError", "message": "Could not find online endpoint x"}},
        )

    with pytest.raises(NotFound, match="Could not find online endpoint x"):
        _pipeline(handler).send("GET", URL, scope="s")
