"""Start-up: liveness at once, readiness only after init(), failures reported (not served)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from inference_harness import MakeApp, Serve

from propylon.inference import Lifecycle
from propylon.inference.errors import ScriptError

pytestmark = pytest.mark.anyio

# init() waits until the test creates the file named in its module; liveness must answer meanwhile.
GATED_INIT = """
import os, time
GATE = {gate!r}

def init():
    deadline = time.monotonic() + 10
    while not os.path.exists(GATE):
        if time.monotonic() > deadline:
            raise TimeoutError("the test never opened the gate")
        time.sleep(0.01)

def run(raw_data):
    return "scored"
"""


async def test_liveness_answers_during_init_and_readiness_waits_for_it(
    make_app: MakeApp, serve: Serve, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    app = make_app(GATED_INIT.format(gate=str(gate)))
    async with serve(app, wait=False) as client:
        live = await client.get("/")
        ready = await client.get("/readyz")
        score = await client.post("/score", content=b"x")
        assert app.state is Lifecycle.STARTING
        assert (live.status_code, live.text) == (200, "Healthy")
        assert ready.status_code == 503
        assert "init()" in ready.json()["message"]
        assert score.status_code == 503

        gate.touch()
        assert await app.wait_started() is Lifecycle.READY
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/health")).status_code == 200
        assert (await client.post("/score", content=b"x")).json() == "scored"


async def test_init_is_called_once_before_any_run(make_app: MakeApp, serve: Serve) -> None:
    app = make_app(
        """
        calls = []
        def init():
            calls.append("init")
        def run(raw_data):
            calls.append("run")
            return list(calls)
        """
    )
    async with serve(app) as client:
        await client.post("/score", content=b"x")
        response = await client.post("/score", content=b"x")
    assert response.json() == ["init", "run", "run"]


async def test_init_raising_fails_the_start_with_the_cause_and_its_traceback(
    make_app: MakeApp, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    failures: list[ScriptError] = []
    app = make_app(
        """
        def init():
            raise FileNotFoundError("model.pkl is missing")
        def run(raw_data):
            return 1
        """,
        on_failure=failures.append,
    )
    with caplog.at_level(logging.INFO):
        async with serve(app) as client:
            ready = await client.get("/readyz")
            live = await client.get("/")
    assert app.state is Lifecycle.FAILED
    assert ready.status_code == 503
    assert live.status_code == 200
    assert len(failures) == 1
    assert isinstance(failures[0].__cause__, FileNotFoundError)
    logged = [r.exc_info for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]
    assert logged
    assert logged[0] is not None
    assert "model.pkl is missing" in logging.Formatter().formatException(logged[0])
    assert any("AZUREML_MODEL_DIR" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("def run(raw_data): return 1\n", "init()"),
        ("def init(): pass\n", "run()"),
        ("def init(): pass\ndef run(*args): return 1\n", "*args"),
        ("def init(): pass\ndef run(): return 1\n", "argument"),
        ("import not_a_module_anywhere\n", "not_a_module_anywhere"),
        ("def init(): pass\ndef run(raw_data):\n  return 1\n  syntax error here\n", "Syntax"),
    ],
)
async def test_script_that_cannot_serve_fails_the_start(
    make_app: MakeApp, serve: Serve, source: str, reason: str
) -> None:
    failures: list[ScriptError] = []
    app = make_app(source, on_failure=failures.append)
    async with serve(app):
        pass
    assert app.state is Lifecycle.FAILED
    described = f"{failures[0]} {failures[0].__cause__!r}"
    assert reason in described


async def test_init_raising_system_exit_is_a_failure_not_an_exit(
    make_app: MakeApp, serve: Serve
) -> None:
    failures: list[ScriptError] = []
    app = make_app(
        "import sys\ndef init(): sys.exit(4)\ndef run(d): pass\n", on_failure=failures.append
    )
    async with serve(app):
        pass
    assert app.state is Lifecycle.FAILED
    assert failures


async def test_scripts_import_helpers_from_the_app_root(make_app: MakeApp, serve: Serve) -> None:
    app = make_app(
        "import helper_module_xyz\ndef init(): pass\ndef run(d): return helper_module_xyz.VALUE\n",
        files={"helper_module_xyz.py": "VALUE = 'from a helper'\n"},
    )
    async with serve(app) as client:
        response = await client.post("/score", content=b"x")
    assert response.json() == "from a helper"


async def test_shutdown_during_a_slow_init_returns_at_once(
    make_app: MakeApp, tmp_path: Path
) -> None:
    gate = tmp_path / "never"
    app = make_app(GATED_INIT.format(gate=str(gate)))
    await app.startup()
    await asyncio.sleep(0.05)
    await asyncio.wait_for(app.shutdown(), timeout=1)
    gate.touch()  # lets the init thread finish so that the test process does not wait on it
