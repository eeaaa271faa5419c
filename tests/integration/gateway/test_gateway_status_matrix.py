"""Every status code and header of the data plane, against real instance processes."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator

import httpx
import pytest
from gateway_harness import EchoInstance, InProcessGateway

from propylon.testing import wait_until

pytestmark = pytest.mark.slow

GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
CALLER = "0b5f9d87-9d1c-4f0e-8d59-7e1f3a9d2c11"
STRANGER = "6d1e0b42-3a4f-4c5e-9b8d-2f1a7c6e5d40"


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def endpoints(gateway: InProcessGateway, instances: dict[str, EchoInstance]) -> dict[str, str]:
    """One endpoint per row of the matrix; returns credentials by name."""
    seed, access = gateway.seed, gateway.access
    fast, slow, failing = instances["fast"].url, instances["slow"].url, instances["failing"].url
    seed.endpoint("m-key", traffic={"blue": 100, "green": 0}, keys=("m-key-1", "m-key-2"))
    seed.deployment("m-key", "blue", instances=[fast], max_concurrent=8)
    seed.deployment("m-key", "green", instances=[fast], max_concurrent=8)
    seed.deployment("m-key", "empty")
    seed.endpoint("m-other", traffic={"blue": 100}, keys=("other-1", "other-2"))
    seed.deployment("m-other", "blue", instances=[fast])
    aml_id = seed.endpoint("m-aml", auth_mode="AMLToken", traffic={"blue": 100})
    seed.deployment("m-aml", "blue", instances=[fast])
    other_aml_id = seed.endpoint("m-aml2", auth_mode="AMLToken", traffic={"blue": 100})
    aad_id = seed.endpoint("m-aad", auth_mode="AADToken", traffic={"blue": 100})
    seed.deployment("m-aad", "blue", instances=[fast])
    access.grant_score(CALLER, aad_id)
    seed.endpoint("m-none", traffic={}, keys=("none-1", "none-2"))
    seed.deployment("m-none", "blue", instances=[fast])
    seed.endpoint("m-slow", traffic={"blue": 100}, keys=("slow-1", "slow-2"))
    seed.deployment(
        "m-slow",
        "blue",
        instances=[slow],
        max_concurrent=1,
        request_timeout="PT0.3S",
        max_queue_wait="PT0.05S",
    )
    seed.deployment(
        "m-slow", "patient", instances=[slow], max_concurrent=1, max_queue_wait="PT0.05S"
    )
    seed.endpoint("m-fail", traffic={"blue": 100}, keys=("fail-1", "fail-2"))
    seed.deployment("m-fail", "blue", instances=[failing])
    seed.endpoint("m-503", traffic={"blue": 100}, keys=("503-1", "503-2"))
    seed.deployment("m-503", "blue")
    credentials = {
        "aml": access.mint_endpoint_token(aml_id, requested_by=CALLER)["accessToken"],
        "aml-other": access.mint_endpoint_token(other_aml_id)["accessToken"],
        "aad": access.identity_token(CALLER, app_id="app-of-caller"),
        "aad-stranger": access.identity_token(STRANGER),
    }

    def loaded() -> bool:  # the last row written is in the table, so all the others are
        answer = httpx.post(f"{gateway.url}/endpoints/m-503/score", headers=bearer("503-2"))
        return answer.status_code == 503

    wait_until(loaded, timeout=30)
    return credentials


def bearer(credential: str) -> dict[str, str]:
    return {"authorization": f"Bearer {credential}"}


def test_a_scored_request_carries_the_deployment_and_request_ids(
    gateway: InProcessGateway, endpoints: dict[str, str], client: httpx.Client
) -> None:
    answer = client.post(
        f"{gateway.url}/endpoints/m-key/score",
        headers={**bearer("m-key-2"), "x-ms-client-request-id": "client-42"},
        json={"data": [[1, 2, 3]]},
    )
    assert answer.status_code == 200
    assert answer.json() == {"data": [[1, 2, 3]]}
    assert answer.headers["azureml-model-deployment"] == "blue"
    assert GUID.fullmatch(answer.headers["x-request-id"])
    assert answer.headers["x-ms-request-id"] == answer.headers["x-request-id"]
    assert answer.headers["x-ms-client-request-id"] == "client-42"
    assert answer.headers.get_list("x-request-id") == [answer.headers["x-request-id"]]


@pytest.mark.parametrize(
    ("endpoint", "credential"),
    [("m-aml", "aml"), ("m-aad", "aad")],
)
def test_each_token_mode_scores(
    gateway: InProcessGateway,
    endpoints: dict[str, str],
    client: httpx.Client,
    endpoint: str,
    credential: str,
) -> None:
    answer = client.post(
        f"{gateway.url}/endpoints/{endpoint}/score", headers=bearer(endpoints[credential]), json={}
    )
    assert answer.status_code == 200, answer.text


def test_the_host_form_and_the_swagger_passthrough(
    gateway: InProcessGateway, endpoints: dict[str, str], client: httpx.Client
) -> None:
    score = client.post(
        f"{gateway.url}/score", headers={**bearer("m-key-1"), "host": "m-key.localhost"}, json=[1]
    )
    assert score.status_code == 200
    assert score.json() == [1]
    swagger = client.get(f"{gateway.url}/endpoints/m-key/swagger.json", headers=bearer("m-key-1"))
    # Passed through as the instance answers: the echo model publishes no schema, hence 404.
    assert swagger.status_code == 404
    assert "swagger" in swagger.json()["message"].lower()
    assert swagger.headers["azureml-model-deployment"] == "blue"


@pytest.mark.parametrize(
    ("path", "headers", "code"),
    [
        ("/endpoints/m-nowhere/score", {"authorization": "Bearer m-key-1"}, "EndpointNotFound"),
        ("/endpoints/m-none/score", {"authorization": "Bearer none-1"}, "NoValidDeployment"),
        (
            "/endpoints/m-key/score",
            {"authorization": "Bearer m-key-1", "azureml-model-deployment": "purple"},
            "DeploymentNotFound",
        ),
    ],
    ids=["unknown-endpoint", "no-positive-weight", "unknown-deployment"],
)
def test_404(
    gateway: InProcessGateway,
    endpoints: dict[str, str],
    client: httpx.Client,
    path: str,
    headers: dict[str, str],
    code: str,
) -> None:
    answer = client.post(f"{gateway.url}{path}", headers=headers, json={})
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == code


def test_the_header_reaches_a_zero_percent_deployment(
    gateway: InProcessGateway, endpoints: dict[str, str], client: httpx.Client
) -> None:
    answer = client.post(
        f"{gateway.url}/endpoints/m-key/score",
        headers={**bearer("m-key-1"), "azureml-model-deployment": "green"},
        json={},
    )
    assert answer.status_code == 200
    assert answer.headers["azureml-model-deployment"] == "green"


@pytest.mark.parametrize(
    ("endpoint", "credential"),
    [
        ("m-key", None),
        ("m-key", "wrong-key"),
        ("m-key", "other-1"),
        ("m-key", "@aad"),
        ("m-aml", "@aml-other"),
        ("m-aml", "@aad"),
        ("m-aad", "m-key-1"),
        ("m-aad", "@aml"),
        ("m-aad", "not.a.jwt"),
    ],
    ids=[
        "missing",
        "wrong-key",
        "other-endpoints-key",
        "aad-token-on-key-endpoint",
        "aml-token-of-other-endpoint",
        "aad-token-on-aml-endpoint",
        "key-on-aad-endpoint",
        "aml-token-on-aad-endpoint",
        "garbage-token",
    ],
)
def test_401_with_a_challenge(
    gateway: InProcessGateway,
    endpoints: dict[str, str],
    client: httpx.Client,
    endpoint: str,
    credential: str | None,
) -> None:
    if credential is not None and credential.startswith("@"):
        credential = endpoints[credential[1:]]
    headers = bearer(credential) if credential else {}
    answer = client.post(f"{gateway.url}/endpoints/{endpoint}/score", headers=headers, json={})
    assert answer.status_code == 401
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith(f'Bearer realm="{endpoint}"')
    assert ('error="invalid_token"' in challenge) is (credential is not None)
    assert credential is None or credential not in answer.text


def test_403_for_a_valid_token_without_the_score_action(
    gateway: InProcessGateway, endpoints: dict[str, str], client: httpx.Client
) -> None:
    answer = client.post(
        f"{gateway.url}/endpoints/m-aad/score", headers=bearer(endpoints["aad-stranger"]), json={}
    )
    assert answer.status_code == 403
    error = answer.json()["error"]
    assert error["code"] == "AuthorizationFailed"
    assert "onlineEndpoints/score/action" in error["message"]


def test_408_when_the_model_exceeds_request_timeout(
    gateway: InProcessGateway, endpoints: dict[str, str], client: httpx.Client
) -> None:
    answer = client.post(f"{gateway.url}/endpoints/m-slow/score", headers=bearer("slow-1"), json={})
    assert answer.status_code == 408
    assert answer.headers["azureml-model-deployment"] == "blue"


def test_413_for_a_body_over_the_limit(
    gateway: InProcessGateway, endpoints: dict[str, str], client: httpx.Client
) -> None:
    big = json.dumps({"data": "x" * 1_600_000})
    answer = client.post(
        f"{gateway.url}/endpoints/m-key/score",
        headers={**bearer("m-key-1"), "content-type": "application/json"},
        content=big,
    )
    assert answer.status_code == 413


def test_424_with_the_models_status_and_reason(
    gateway: InProcessGateway, endpoints: dict[str, str], client: httpx.Client
) -> None:
    answer = client.post(f"{gateway.url}/endpoints/m-fail/score", headers=bearer("fail-1"), json={})
    assert answer.status_code == 424
    assert answer.headers["ms-azureml-model-error-statuscode"] == "500"
    assert answer.headers["ms-azureml-model-error-reason"]
    assert answer.headers["azureml-model-deployment"] == "blue"


def test_429_when_more_wait_than_the_queue_allows(
    gateway: InProcessGateway, endpoints: dict[str, str]
) -> None:
    # One slot, 50 ms of queue, a model that takes a second: of five requests sent at once one
    # runs, and the rest cannot all be served in time.
    statuses: list[int] = []

    def one() -> None:
        with httpx.Client(timeout=30) as http:
            statuses.append(
                http.post(
                    f"{gateway.url}/endpoints/m-slow/score",
                    headers={**bearer("slow-1"), "azureml-model-deployment": "patient"},
                    json={},
                ).status_code
            )

    threads = [threading.Thread(target=one) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses).count(200) >= 1
    assert 429 in statuses
    assert set(statuses) <= {200, 429}


def test_503_without_a_ready_instance(
    gateway: InProcessGateway, endpoints: dict[str, str], client: httpx.Client
) -> None:
    answer = client.post(f"{gateway.url}/endpoints/m-503/score", headers=bearer("503-1"), json={})
    assert answer.status_code == 503
    assert answer.headers["azureml-model-deployment"] == "blue"


def test_server_sent_events_are_passed_through_as_they_come(
    gateway: InProcessGateway, endpoints: dict[str, str], instances: dict[str, EchoInstance]
) -> None:
    gateway.seed.endpoint("m-chat", traffic={"blue": 100}, keys=("chat-1", "chat-2"))
    gateway.seed.deployment("m-chat", "blue", instances=[instances["slow"].url])
    wait_until(
        lambda: (
            httpx.get(f"{gateway.url}/endpoints/m-chat/info", headers=bearer("chat-1")).status_code
            == 200
        ),
        timeout=10,
    )
    reads: list[bytes] = []
    body = {"messages": [{"role": "user", "content": "one two"}], "stream": True}
    with (
        httpx.Client(timeout=30) as http,
        http.stream(
            "POST",
            f"{gateway.url}/endpoints/m-chat/chat/completions",
            headers=bearer("chat-1"),
            json=body,
        ) as answer,
    ):
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        for chunk in answer.iter_raw():
            reads.append(chunk)
    events = [line for line in b"".join(reads).split(b"\n") if line.startswith(b"data:")]
    assert len(events) >= 4  # role, "one", " two", final (and [DONE])
    # The model sleeps a second before each word: had the gateway buffered the stream, the
    # client would have received it in one piece.
    assert len(reads) >= 3


def test_no_credential_or_token_is_written_to_the_traffic_log(
    gateway: InProcessGateway, endpoints: dict[str, str], client: httpx.Client
) -> None:
    client.post(f"{gateway.url}/endpoints/m-aad/score", headers=bearer(endpoints["aad"]), json={})
    client.post(f"{gateway.url}/endpoints/m-aml/score", headers=bearer(endpoints["aml"]), json={})
    from propylon.gateway import read_traffic_log

    traffic = gateway.ctx.settings.logs_dir / "traffic"
    records = wait_until(lambda: read_traffic_log(traffic, "m-aad", tail=1000), timeout=10)
    assert any(r["IdentityData"] == CALLER and r["AppId"] == "app-of-caller" for r in records)
    aml = wait_until(lambda: read_traffic_log(traffic, "m-aml", tail=1000), timeout=10)
    assert any(r["AuthType"] == "AMLToken" and r["IdentityData"] == CALLER for r in aml)
    written = "".join(path.read_text() for path in traffic.iterdir())
    secrets = [endpoints[name] for name in endpoints] + ["m-key-1", "m-key-2", "slow-1", "fail-1"]
    for secret in secrets:
        assert secret not in written
    assert str(uuid.UUID(records[-1]["XRequestId"])) == records[-1]["XRequestId"]
