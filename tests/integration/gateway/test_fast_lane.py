"""The fast lane: which requests it takes, and that what it answers is what the app answers.

Each test reads the lane's counters (``taken``, ``replayed``) around its requests, so it shows
which path served them: a test of the lane that the app silently answered would prove nothing.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from gateway_harness import EchoInstance, InProcessGateway

from propylon.gateway import read_traffic_log
from propylon.gateway.fastlane import FastLane
from propylon.testing import wait_until

pytestmark = pytest.mark.slow

KEY = {"authorization": "Bearer fl-key-1"}


def lane_of(gateway: InProcessGateway) -> FastLane:
    assert gateway._server is not None
    protocol: Any = gateway._server.config.http  # the gateway port's protocol class
    lane: FastLane = protocol.lane
    return lane


@pytest.fixture(scope="module")
def lane(gateway: InProcessGateway, instances: dict[str, EchoInstance]) -> FastLane:
    seed = gateway.seed
    seed.endpoint("fl-plain", traffic={"blue": 100}, keys=("fl-key-1", "fl-key-2"))
    seed.deployment("fl-plain", "blue", instances=[instances["fast"].url], max_concurrent=8)
    seed.endpoint("fl-fail", traffic={"blue": 100}, keys=("fl-key-1", "fl-key-2"))
    seed.deployment("fl-fail", "blue", instances=[instances["failing"].url], max_concurrent=8)
    seed.endpoint("fl-guarded", traffic={"blue": 100}, keys=("fl-key-1", "fl-key-2"))
    seed.deployment("fl-guarded", "blue", instances=[instances["fast"].url], max_concurrent=8)
    url = f"{gateway.url}/endpoints/fl-guarded/score"
    wait_until(lambda: httpx.post(url, headers=KEY, json={}).status_code == 200, timeout=30)
    return lane_of(gateway)


def warm(url: str, client: httpx.Client) -> None:
    """The first request to an instance goes through the app, which opens the pooled connection
    that later requests can take on the lane."""
    client.post(url, headers=KEY, json={"warm": True})


def test_plain_requests_take_the_lane_and_get_the_apps_answer(
    gateway: InProcessGateway, lane: FastLane
) -> None:
    url = f"{gateway.url}/endpoints/fl-plain/score"
    body = b'{"data": [[7, 8, 9]]}'
    headers = {**KEY, "content-type": "application/json", "x-ms-client-request-id": "c-1"}
    with httpx.Client(timeout=30) as client:
        warm(url, client)
        before = lane.taken
        by_lane = [client.post(url, headers=headers, content=body) for _ in range(5)]
        assert lane.taken == before + 5
        # A body in chunks is left to the app.
        by_app = client.post(url, headers=headers, content=iter([body[:5], body[5:]]))
        assert lane.taken == before + 5
    for answer in [*by_lane, by_app]:
        assert answer.status_code == 200
        assert answer.content == body
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["azureml-model-deployment"] == "blue"
        assert answer.headers["x-ms-request-id"] == answer.headers["x-request-id"]
        assert answer.headers["x-ms-client-request-id"] == "c-1"
    ids = {answer.headers["x-request-id"] for answer in [*by_lane, by_app]}
    assert len(ids) == 6
    traffic = gateway.ctx.settings.logs_dir / "traffic"

    def logged() -> list[dict[str, object]]:
        records = read_traffic_log(traffic, "fl-plain", tail=1000)
        return [r for r in records if r["XRequestId"] in ids]

    records = wait_until(lambda: (found := logged()) and len(found) == 6 and found, timeout=10)
    for record in records:
        assert record["ResponseCode"] == 200
        assert record["DeploymentName"] == "blue"
        assert record["AuthType"] == "Key"
        assert record["XMSClientRequestId"] == "c-1"


def test_a_model_error_through_the_lane_is_424_with_the_models_status(
    gateway: InProcessGateway, lane: FastLane
) -> None:
    url = f"{gateway.url}/endpoints/fl-fail/score"
    with httpx.Client(timeout=30) as client:
        warm(url, client)
        before = lane.taken
        answer = client.post(url, headers=KEY, json={})
    assert lane.taken == before + 1
    assert answer.status_code == 424
    assert answer.headers["ms-azureml-model-error-statuscode"] == "500"
    assert answer.headers["ms-azureml-model-error-reason"]
    assert answer.headers["azureml-model-deployment"] == "blue"


def test_a_failed_key_is_left_to_the_app_and_counted_once(
    gateway: InProcessGateway, lane: FastLane
) -> None:
    url = f"{gateway.url}/endpoints/fl-guarded/score"
    throttle = gateway.ctx.services["gateway"].auth_failures
    with httpx.Client(timeout=30) as client:
        warm(url, client)
        before = lane.taken
        for attempt in range(1, 4):
            answer = client.post(url, headers={"authorization": "Bearer wrong"}, json={})
            assert answer.status_code == 401
            assert answer.headers["www-authenticate"].startswith("Bearer")
            assert len(throttle._failures[("fl-guarded", "127.0.0.1")]) == attempt
        assert lane.taken == before
        # ... while the right key still takes the lane.
        assert client.post(url, headers=KEY, json={}).status_code == 200
        assert lane.taken == before + 1


def test_pipelined_requests_are_answered_in_order(
    gateway: InProcessGateway, lane: FastLane
) -> None:
    url = f"{gateway.url}/endpoints/fl-plain/score"
    with httpx.Client(timeout=30) as client:
        warm(url, client)
    bodies = [f'{{"n": {n}}}'.encode() for n in range(3)]
    wire = b"".join(
        b"POST /endpoints/fl-plain/score HTTP/1.1\r\nhost: gateway\r\n"
        b"authorization: Bearer fl-key-1\r\ncontent-type: application/json\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
        for body in bodies
    )
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as raw:
        raw.sendall(wire)
        received = b""
        while received.count(b"HTTP/1.1 200") < 3 or not received.endswith(bodies[-1]):
            chunk = raw.recv(65536)
            assert chunk, f"connection closed after {received!r}"
            received += chunk
    positions = [received.index(body) for body in bodies]
    assert positions == sorted(positions)


class _ClosesAfterOneAnswer(socketserver.StreamRequestHandler):
    """Answers the first request on a connection with keep-alive, then closes the connection
    without a byte: what an instance that restarted or timed out an idle connection does."""

    answered: list[int]

    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = self.request.recv(65536)
            if not data:
                return
            head += data
        lines = head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in lines
                if line.lower().startswith(b"content-length")
            ),
            0,
        )
        body = head.split(b"\r\n\r\n", 1)[1]
        while len(body) < length:
            body += self.request.recv(65536)
        self.answered.append(1)
        self.request.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        # Wait for the next request on this connection, then close it unanswered.
        self.request.recv(65536)


@pytest.fixture
def closing_instance() -> Iterator[str]:
    _ClosesAfterOneAnswer.answered = []
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _ClosesAfterOneAnswer)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_pooled_connection_the_instance_closed_is_replayed_on_a_fresh_one(
    gateway: InProcessGateway, lane: FastLane, closing_instance: str
) -> None:
    seed = gateway.seed
    seed.endpoint("fl-stale", traffic={"blue": 100}, keys=("fl-key-1", "fl-key-2"))
    seed.deployment("fl-stale", "blue", instances=[closing_instance], max_concurrent=4)
    url = f"{gateway.url}/endpoints/fl-stale/score"
    with httpx.Client(timeout=30) as client:
        wait_until(lambda: client.post(url, headers=KEY, json={}).status_code == 200, timeout=30)
        taken, replayed = lane.taken, lane.replayed
        for n in range(4):
            answer = client.post(url, headers=KEY, json={"n": n})
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"n": n}
    # Every request met a pooled connection the instance was about to close: the lane took it,
    # found the connection gone before any byte of an answer, and handed it to the app.
    assert lane.taken - taken >= 1
    assert lane.replayed - replayed >= 1
    assert lane.replayed - replayed <= lane.taken - taken


def test_a_request_whose_body_is_still_coming_holds_no_slot_and_ends_as_499_if_abandoned(
    gateway: InProcessGateway, lane: FastLane, instances: dict[str, EchoInstance]
) -> None:
    seed = gateway.seed
    seed.endpoint("fl-halfway", traffic={"blue": 100}, keys=("fl-key-1", "fl-key-2"))
    seed.deployment("fl-halfway", "blue", instances=[instances["fast"].url], max_concurrent=1)
    url = f"{gateway.url}/endpoints/fl-halfway/score"
    limiter = gateway.ctx.services["gateway"].limiter
    head = (
        b"POST /endpoints/fl-halfway/score HTTP/1.1\r\nhost: gateway\r\n"
        b"authorization: Bearer fl-key-1\r\ncontent-type: application/json\r\n"
        b'content-length: 100\r\nx-ms-client-request-id: halfway\r\n\r\n{"half'
    )
    with contextlib.ExitStack() as slow_clients, httpx.Client(timeout=30) as client:
        wait_until(lambda: client.post(url, headers=KEY, json={}).status_code == 200, timeout=30)
        taken = lane.taken
        for _ in range(3):  # three times the deployment's one slot
            raw = slow_clients.enter_context(
                socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
            )
            raw.sendall(head)
        wait_until(lambda: lane.taken == taken + 3, timeout=10)  # the lane has their heads
        assert not limiter.outstanding
        # Requests sent whole meanwhile are served at once, on the lane.
        answers = [client.post(url, headers=KEY, json={"n": n}) for n in range(3)]
        assert [answer.status_code for answer in answers] == [200, 200, 200]
        assert lane.taken == taken + 6
    # The slow clients gave up: their requests end as 499, and took nothing with them.
    traffic = gateway.ctx.settings.logs_dir / "traffic"

    def abandoned() -> list[dict[str, object]]:
        records = read_traffic_log(traffic, "fl-halfway", tail=1000)
        return [r for r in records if r["XMSClientRequestId"] == "halfway"]

    records = wait_until(lambda: (found := abandoned()) and len(found) == 3 and found, timeout=10)
    for record in records:
        assert record["ResponseCode"] == 499
        assert record["RequestPayloadSize"] == 6
        assert record["DeploymentName"] == "blue"
    assert not limiter.outstanding
    with httpx.Client(timeout=30) as client:
        assert client.post(url, headers=KEY, json={}).status_code == 200


def read_answer(raw: socket.socket) -> tuple[int, bytes]:
    """The status and body of the one answer ``raw`` gets before the gateway closes it."""
    data = b""
    while chunk := raw.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    return int(head.split()[1]), body


@pytest.mark.parametrize(
    ("framing", "path"),
    [
        (b"content-length: 100\r\n\r\n", "lane"),  # a whole head: the lane has the request
        (b"transfer-encoding: chunked\r\n\r\n6\r\n", "app"),  # chunked: the app has it
    ],
)
def test_a_body_that_stops_coming_is_408_logged_as_such_and_holds_no_slot(
    gateway: InProcessGateway,
    lane: FastLane,
    instances: dict[str, EchoInstance],
    monkeypatch: pytest.MonkeyPatch,
    framing: bytes,
    path: str,
) -> None:
    seed = gateway.seed
    name = f"fl-stalled-{path}"
    seed.endpoint(name, traffic={"blue": 100}, keys=("fl-key-1", "fl-key-2"))
    seed.deployment(name, "blue", instances=[instances["fast"].url], max_concurrent=1)
    url = f"{gateway.url}/endpoints/{name}/score"
    limiter = gateway.ctx.services["gateway"].limiter
    with httpx.Client(timeout=30) as client:
        wait_until(lambda: client.post(url, headers=KEY, json={}).status_code == 200, timeout=30)
    assert gateway._server is not None
    monkeypatch.setattr(gateway._server.config.http, "client_timeout", 1.0)
    taken = lane.taken
    head = (
        f"POST /endpoints/{name}/score HTTP/1.1\r\nhost: gateway\r\n".encode()
        + b"authorization: Bearer fl-key-1\r\ncontent-type: application/json\r\n"
        + b"x-ms-client-request-id: stalled\r\n"
        + framing
        + b'{"half'
    )
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=15) as raw:
        raw.sendall(head)  # and then nothing, for good
        status, body = read_answer(raw)
    assert status == 408
    assert b'"ClientRequestTimeout"' in body
    assert (lane.taken - taken == 1) is (path == "lane")
    traffic = gateway.ctx.settings.logs_dir / "traffic"

    def stalled() -> list[dict[str, object]]:
        records = read_traffic_log(traffic, name, tail=100)
        return [r for r in records if r["XMSClientRequestId"] == "stalled"]

    [record] = wait_until(stalled, timeout=10)
    assert (record["ResponseCode"], record["ResponseCodeReason"]) == (408, "ClientRequestTimeout")
    assert not limiter.outstanding
    with httpx.Client(timeout=30) as client:
        assert client.post(url, headers=KEY, json={}).status_code == 200
