"""Settings from Azure's container variables, the user-code pool, and the JSON log lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import time
from pathlib import Path

import pytest

from propylon.errors import ConfigurationError
from propylon.inference import InferenceSettings
from propylon.inference.errors import ScoringTimeout
from propylon.inference.logs import JsonFormatter, request_id
from propylon.inference.runner import UserCodeRunner


def test_settings_defaults_follow_azure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = InferenceSettings.from_env({})
    assert settings.app_root == tmp_path.resolve()
    assert settings.script_path == tmp_path.resolve() / "score.py"
    assert settings.worker_count == 1
    assert settings.scoring_timeout_ms == 3_600_000


def test_settings_read_the_container_variables(tmp_path: Path) -> None:
    settings = InferenceSettings.from_env(
        {
            "AML_APP_ROOT": str(tmp_path),
            "AZUREML_ENTRY_SCRIPT": "onlinescoring/score.py",
            "AZUREML_MODEL_DIR": "/models/m/1",
            "MAX_CONCURRENT_REQUESTS": "4",
            "SCORING_TIMEOUT_MS": "2500",
        }
    )
    assert settings.script_path == tmp_path / "onlinescoring" / "score.py"
    assert settings.import_paths == [tmp_path, tmp_path / "onlinescoring"]
    assert settings.model_dir == Path("/models/m/1")
    assert settings.worker_count == 4
    assert settings.scoring_timeout == 2.5
    assert (
        InferenceSettings.from_env(
            {"WORKER_COUNT": "2", "MAX_CONCURRENT_REQUESTS": "8"}
        ).worker_count
        == 2
    )


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_bad_worker_count_names_the_variable(value: str) -> None:
    with pytest.raises(ConfigurationError, match="WORKER_COUNT"):
        InferenceSettings.from_env({"WORKER_COUNT": value})


@pytest.mark.anyio
async def test_a_timed_out_call_keeps_its_thread_until_it_returns() -> None:
    runner = UserCodeRunner(size=1)
    release = threading.Event()
    try:
        with pytest.raises(ScoringTimeout, match="Scoring timeout after 20 ms"):
            await runner.call(release.wait, 5, time_limit=0.02)
        assert runner.running == 1
        waiting = asyncio.ensure_future(runner.call(lambda: "next"))
        await asyncio.sleep(0.05)
        assert not waiting.done(), "the pool's only thread is still busy"
        release.set()
        assert await asyncio.wait_for(waiting, 2) == "next"
    finally:
        release.set()
        runner.shutdown()


@pytest.mark.anyio
async def test_the_time_limit_counts_from_the_start_of_the_call_not_the_queue() -> None:
    runner = UserCodeRunner(size=1)
    try:
        first = asyncio.ensure_future(runner.call(time.sleep, 0.15, time_limit=0.3))

        def slow() -> str:
            time.sleep(0.2)
            return "done"

        queued = asyncio.ensure_future(runner.call(slow, time_limit=0.3))
        assert await queued == "done"  # 0.35 s after it was asked, but only 0.2 s of running
        await first
    finally:
        runner.shutdown()


@pytest.mark.anyio
async def test_system_exit_in_user_code_is_an_ordinary_error() -> None:
    runner = UserCodeRunner()

    def leave() -> None:
        raise SystemExit(2)

    try:
        with pytest.raises(RuntimeError, match="SystemExit"):
            await runner.call(leave)
    finally:
        runner.shutdown()


@pytest.mark.anyio
async def test_user_log_lines_carry_the_request_id_from_the_worker_thread() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    user_logger = logging.getLogger("test.inference.user")
    user_logger.addHandler(handler)
    user_logger.setLevel(logging.INFO)
    runner = UserCodeRunner()
    token = request_id.set("rid-42")
    try:
        await runner.call(user_logger.info, "scored %d rows", 3)
    finally:
        request_id.reset(token)
        user_logger.removeHandler(handler)
        runner.shutdown()
    line = json.loads(stream.getvalue())
    assert line["event"] == "scored 3 rows"
    assert line["request_id"] == "rid-42"
    assert line["level"] == "info"
    assert line["timestamp"].endswith("Z")


def test_log_line_holds_extra_fields_and_the_traceback() -> None:
    formatter = JsonFormatter()
    try:
        raise ValueError("bad")
    except ValueError as exc:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed", None, (ValueError, exc, exc.__traceback__)
        )
    record.status = 500
    line = json.loads(formatter.format(record))
    assert line["status"] == 500
    assert "ValueError: bad" in line["exception"]
    assert "\n" not in formatter.format(record)
