"""Server settings read from the environment: the environment retention period, the client
timeout."""

from __future__ import annotations

from pathlib import Path

import pytest

from propylon.config import Settings, parse_duration
from propylon.errors import ConfigurationError
from propylon.server.protocol import DEFAULT_CLIENT_TIMEOUT, BoundedHeadProtocol
from propylon.server.run import uvicorn_config


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("7d", 604800.0), ("12h", 43200.0), ("30m", 1800.0), ("90", 90.0), ("1.5 D", 129600.0),
     ("0", 0.0)],
)  # fmt: skip
def test_durations_are_read_in_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text, "X") == seconds


@pytest.mark.parametrize("text", ["", "soon", "-1d", "7 days", "1w"])
def test_malformed_duration_names_the_setting(text: str) -> None:
    with pytest.raises(ConfigurationError, match="PROPYLON_ENV_RETENTION must be a duration"):
        parse_duration(text or " ", "PROPYLON_ENV_RETENTION")


def test_environment_retention_defaults_to_a_week_and_0_disables_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROPYLON_ENV_RETENTION", raising=False)
    assert Settings.from_env(data_dir=tmp_path).environment_retention == 7 * 86400
    monkeypatch.setenv("PROPYLON_ENV_RETENTION", "0")
    assert Settings.from_env(data_dir=tmp_path).environment_retention == 0
    monkeypatch.setenv("PROPYLON_ENV_RETENTION", "2h")
    assert Settings.from_env(data_dir=tmp_path).environment_retention == 7200


def test_client_timeout_defaults_to_a_minute_is_read_as_a_duration_and_0_disables_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROPYLON_CLIENT_TIMEOUT", raising=False)
    assert Settings.from_env(data_dir=tmp_path).client_timeout == 60
    monkeypatch.setenv("PROPYLON_CLIENT_TIMEOUT", "2m")
    assert Settings.from_env(data_dir=tmp_path).client_timeout == 120
    monkeypatch.setenv("PROPYLON_CLIENT_TIMEOUT", "0")
    assert Settings.from_env(data_dir=tmp_path).client_timeout == 0
    monkeypatch.setenv("PROPYLON_CLIENT_TIMEOUT", "-5")
    with pytest.raises(ConfigurationError, match="PROPYLON_CLIENT_TIMEOUT"):
        Settings.from_env(data_dir=tmp_path)


def test_the_client_timeout_reaches_the_protocol_that_serves_the_port() -> None:
    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("not called")

    assert uvicorn_config(app, tls=None).http is BoundedHeadProtocol
    config = uvicorn_config(app, tls=None, client_timeout=5)
    assert issubclass(config.http, BoundedHeadProtocol)  # type: ignore[arg-type]
    assert config.http.client_timeout == 5  # type: ignore[union-attr]
    assert BoundedHeadProtocol.client_timeout == DEFAULT_CLIENT_TIMEOUT == 60
