"""The inference server as a real process: the sample model scored over loopback, clean stops on
SIGTERM, a failing ``init()`` that ends the process, streaming and Unix sockets.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import pytest
from inference_instances import StartInstance

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
ECHO = EXAMPLES / "echo"
MODEL_1_CODE = EXAMPLES / "model-1" / "onlinescoring"


def test_sample_model_scores_exactly_like_its_own_predict(
    start_instance: StartInstance, trained_model_dir: Path
) -> None:
    import joblib
    import numpy

    instance = start_instance(MODEL_1_CODE, env={"AZUREML_MODEL_DIR": str(trained_model_dir)})
    instance.wait_ready()
    request = json.loads((EXAMPLES / "model-1" / "sample-request.json").read_text())
    with instance.client() as client:
        response = client.post(
            "/score",
            content=json.dumps(request),
            headers={"content-type": "application/json", "x-request-id": "it-1"},
        )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "it-1"
    model = joblib.load(trained_model_dir / "model" / "sklearn_regression_model.pkl")
    assert response.json() == model.predict(numpy.array(request["data"])).tolist()
    assert instance.stop() == 0
    log = [json.loads(line) for line in instance.stderr.splitlines() if line.startswith("{")]
    scored = [entry for entry in log if entry.get("event") == "model 1: request received"]
    assert scored
    assert scored[0]["request_id"] == "it-1"


def test_sigterm_drains_a_request_in_flight_and_exits_zero(start_instance: StartInstance) -> None:
    instance = start_instance(ECHO, env={"ECHO_SLEEP_SECONDS": "0.5"})
    instance.wait_ready()
    with instance.client() as client:
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(client.post, "/score", content=b'{"n": 1}')
            time.sleep(0.2)  # the request is inside run() now
            started = time.monotonic()
            code = instance.stop()
            response = in_flight.result(timeout=10)
    assert code == 0
    assert response.json() == {"n": 1}
    assert time.monotonic() - started < 5
    assert "Traceback" not in instance.stderr


def test_init_raising_exits_non_zero_with_the_traceback_on_stderr(
    start_instance: StartInstance,
) -> None:
    instance = start_instance(ECHO, env={"ECHO_FAIL": "init"})
    code = instance.process.wait(timeout=30)
    assert code == 3
    stderr = instance.stderr
    assert "Traceback (most recent call last)" in stderr
    assert "echo model asked to fail" in stderr


def test_liveness_answers_while_init_is_still_running(start_instance: StartInstance) -> None:
    instance = start_instance(ECHO, env={"ECHO_INIT_SLEEP_SECONDS": "1.5"})
    deadline = time.monotonic() + 20
    with instance.client() as client:
        while True:
            try:
                live = client.get("/")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, instance.stderr
                time.sleep(0.05)
        ready = client.get("/readyz")
    assert live.status_code == 200
    assert ready.status_code == 503
    instance.wait_ready()
    assert instance.stop() == 0


def test_streamed_chat_reaches_the_client_event_by_event(start_instance: StartInstance) -> None:
    instance = start_instance(ECHO, env={"ECHO_SLEEP_SECONDS": "0.2"})
    instance.wait_ready()
    arrivals: list[float] = []
    lines: list[str] = []
    body = {"messages": [{"role": "user", "content": "a b c"}], "stream": True}
    with (
        instance.client() as client,
        client.stream("POST", "/chat/completions", json=body) as response,
    ):
        assert response.headers["content-type"] == "text/event-stream"
        for line in response.iter_lines():
            if line:
                lines.append(line)
                arrivals.append(time.monotonic())
    assert lines[-1] == "data: [DONE]"
    # Three words, 0.2 s apart: a buffered stream would deliver them in one burst at the end.
    assert arrivals[-1] - arrivals[0] >= 0.4
    assert instance.stop() == 0


def test_unix_socket_and_failing_run(start_instance: StartInstance) -> None:
    instance = start_instance(ECHO, env={"ECHO_FAIL": "run"}, uds=True)
    instance.wait_ready()
    with instance.client() as client:
        response = client.post("/score", content=b"{}")
    assert response.status_code == 500
    assert response.json() == {"message": "echo model asked to fail"}
    assert instance.stop() == 0
    assert "echo model asked to fail" in instance.stderr


def test_sigterm_during_a_slow_init_exits_zero_without_waiting_for_it(
    start_instance: StartInstance,
) -> None:
    instance = start_instance(ECHO, env={"ECHO_INIT_SLEEP_SECONDS": "60"})
    with instance.client() as client:
        deadline = time.monotonic() + 20
        while True:
            try:
                assert client.get("/").status_code == 200
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, instance.stderr
                time.sleep(0.05)
    started = time.monotonic()
    assert instance.stop() == 0
    assert time.monotonic() - started < 5


def test_address_in_use_exits_4_at_once_even_while_init_runs(start_instance: StartInstance) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        instance = start_instance(
            ECHO, env={"ECHO_INIT_SLEEP_SECONDS": "60"}, args=("--port", str(port))
        )
        assert instance.process.wait(timeout=20) == 4
    assert "address already in use" in instance.stderr
