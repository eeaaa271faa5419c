"""Fixtures shared by every suite: databases (SQLite and PostgreSQL) and a running server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from propylon.testing import PostgresServer, RunningServer


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer | str]:
    """A throwaway PostgreSQL for the session, or the URL given in PROPYLON_TEST_POSTGRES_URL."""
    given = os.environ.get("PROPYLON_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    why_not = PostgresServer.available()
    if why_not is not None:
        pytest.skip(f"PostgreSQL tests skipped: {why_not}")
    server = PostgresServer.start()
    with server.running():
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each supported kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    server = request.getfixturevalue("postgres")
    name = f"t_{uuid.uuid4().hex[:12]}"
    if isinstance(server, str):
        import psycopg

        with psycopg.connect(server.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return server.rsplit("/", 1)[0] + f"/{name}"
    return server.create_database(name)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One real server (HTTPS, embedded defaults) per test module."""
    data_dir = tmp_path_factory.mktemp("server") / "data"
    with RunningServer.start(data_dir) as running:
        yield running
