"""An in-process control plane with a fake access control and runtime, fresh state per test.

Building the FastAPI app is the expensive part (its routes are analysed on first use), so one app
and one ``TestClient`` serve a whole module; every test gets its own data dir (copied from a
template made once per session) and its own ``ServerContext``, which the app reads from
``app.state.ctx`` on every request.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from control_support import Arm, FakeAccess, FakeBackend
from fastapi import FastAPI
from fastapi.testclient import TestClient

from propylon.config import Settings
from propylon.control import control_plane, start
from propylon.server.app import build_context, create_control_app
from propylon.server.context import ServerContext


def open_context(data_dir: Path) -> ServerContext:
    context = build_context(Settings(data_dir=data_dir, tls=False))
    context.services["access"] = FakeAccess()
    context.services["runtime"] = FakeBackend()
    return context


@pytest.fixture(scope="session")
def template_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("template") / "data"
    build_context(Settings(data_dir=data_dir, tls=False)).db.dispose()
    return data_dir


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, template_dir: Path
) -> Iterator[tuple[TestClient, FastAPI]]:
    data_dir = tmp_path_factory.mktemp("served") / "data"
    shutil.copytree(template_dir, data_dir)
    first = open_context(data_dir)
    outer = create_control_app(first)
    inner = outer.app  # type: ignore[attr-defined]
    with TestClient(outer) as test_client:
        yield test_client, inner
    first.db.dispose()


@pytest.fixture
def ctx(
    tmp_path: Path, template_dir: Path, served: tuple[TestClient, FastAPI]
) -> Iterator[ServerContext]:
    shutil.copytree(template_dir, tmp_path / "data")
    context = open_context(tmp_path / "data")
    served[1].state.ctx = context
    yield context
    context.db.dispose()


@pytest.fixture
def client(ctx: ServerContext, served: tuple[TestClient, FastAPI]) -> Iterator[TestClient]:
    test_client = served[0]
    test_client.portal.call(functools.partial(start, ctx, restore=False))
    yield test_client
    test_client.portal.call(control_plane(ctx).operations.stop)


@pytest.fixture
def arm(client: TestClient, ctx: ServerContext) -> Arm:
    return Arm(client, ctx)


@pytest.fixture
def backend(ctx: ServerContext) -> FakeBackend:
    runtime: FakeBackend = ctx.services["runtime"]
    return runtime


@pytest.fixture
def access(ctx: ServerContext) -> FakeAccess:
    fake: FakeAccess = ctx.services["access"]
    return fake
