"""The inference app as Serve's proxy calls it, and a replica's output in the deployment's logs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from propylon.runtime import ContainerType
from propylon.runtime.logs import LogStore
from propylon.runtime.ray_replica import ServeAdapter


class RecordingApp:
    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scopes.append(dict(scope))
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"x-request-id", b"abc"), (b"x-ms-request-id", b"abc")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})


def call(path: str, root_path: str, scope_type: str = "http") -> tuple[RecordingApp, list[Any]]:
    app = RecordingApp()
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": scope_type, "path": path, "root_path": root_path, "headers": []}
    asyncio.run(ServeAdapter(app)(scope, receive, send))  # type: ignore[arg-type]
    return app, sent


def test_route_prefix_is_stripped_from_the_path_the_inference_server_routes_on() -> None:
    app, _ = call("/my-endpoint_blue/score", "/my-endpoint_blue")
    assert (app.scopes[0]["path"], app.scopes[0]["root_path"]) == ("/score", "")
    app, _ = call("/my-endpoint_blue", "/my-endpoint_blue")
    assert app.scopes[0]["path"] == "/"


def test_a_path_without_the_prefix_is_left_alone() -> None:
    app, _ = call("/score", "")
    assert app.scopes[0]["path"] == "/score"


def test_serve_adds_the_request_id_so_the_replica_does_not_send_it_twice() -> None:
    _, sent = call("/p/score", "/p")
    assert sent[0]["headers"] == [(b"x-ms-request-id", b"abc")]
    assert sent[1]["body"] == b"ok"


def test_lifespan_passes_through_untouched() -> None:
    app, sent = call("", "", scope_type="lifespan")
    assert app.scopes[0]["type"] == "lifespan"
    assert sent == []


def test_captured_output_lands_in_the_deployment_logs_and_on_the_original_stderr(
    tmp_path: Path,
) -> None:
    # In a child process: the capture replaces file descriptors 1 and 2 for good.
    program = textwrap.dedent(
        f"""
        import os, sys, time
        from pathlib import Path
        from propylon.runtime.logs import LogStore
        from propylon.runtime.ray_replica import capture_output

        logs = LogStore(Path({str(tmp_path)!r})).deployment("/deployments/blue")
        capture_output(logs.instance("blue-r1"))
        print("from print", flush=True)
        os.write(2, b"from fd 2\\n")
        time.sleep(0.5)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert b"from print" in done.stderr
    assert b"from fd 2" in done.stderr
    tail = (
        LogStore(tmp_path).deployment("/deployments/blue").tail(ContainerType.INFERENCE_SERVER, 10)
    )
    assert "[blue-r1] from print" in tail
    assert "[blue-r1] from fd 2" in tail
