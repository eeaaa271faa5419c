"""A local instance also listens on a private Unix socket, which the instance set names for the
gateway on this machine only (propylon.runtime.sockets)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx
import pytest
from runtime_support import EXAMPLES, eventually, make_spec, settled

from propylon.config import node_name
from propylon.gateway.table import instance_entry
from propylon.runtime import DeploymentState, LocalBackend, instance_set_id
from propylon.runtime.sockets import SocketDirectory
from propylon.store import ResourceStore

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


async def test_an_instance_answers_on_its_private_socket_named_in_the_instance_set(
    backend: LocalBackend, resources: ResourceStore
) -> None:
    spec = make_spec("blue", EXAMPLES / "echo")
    await backend.apply(spec)
    assert (await settled(backend, spec.deployment_id)).state is DeploymentState.SUCCEEDED
    published = resources.get(instance_set_id(spec.deployment_id))
    assert published is not None
    [entry] = published.body["instances"]
    assert entry["url"].startswith("http://127.0.0.1:")
    assert entry["node"] == node_name()
    path = Path(entry["uds"])
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    transport = httpx.AsyncHTTPTransport(uds=str(path))
    async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
        answer = await client.post("http://localhost/score", json={"over": "uds"})
    assert answer.status_code == 200
    assert answer.json() == {"over": "uds"}  # the echo model answers its input

    await backend.remove(spec.deployment_id)
    await eventually(lambda: not path.exists())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_gateway_uses_a_socket_only_on_the_machine_that_published_it(tmp_path: Path) -> None:
    here = {"instance_id": "i0", "url": "http://127.0.0.1:1", "uds": "/s/a", "node": node_name()}
    elsewhere = {**here, "node": node_name() + "-other"}
    unnamed = {"instance_id": "i0", "uds": "/s/a"}
    parse = instance_entry
    assert parse("d", here, None).address == "/s/a"  # type: ignore[union-attr]
    assert parse("d", elsewhere, None).address == ("127.0.0.1", 1)  # type: ignore[union-attr]
    assert parse("d", unnamed, None).address == "/s/a"  # type: ignore[union-attr]


def test_sockets_live_in_a_private_directory_with_short_paths(tmp_path: Path) -> None:
    sockets = SocketDirectory(tmp_path / "data")
    path = sockets.path("/subscriptions/s/deployments/blue", "blue-1-0")
    assert path is not None
    assert len(path) <= 107
    assert Path(path).parent == (tmp_path / "data").resolve() / "run" / "sockets"
    assert stat.S_IMODE(Path(path).parent.stat().st_mode) == 0o700
    # Stable across restarts, distinct per deployment and instance.
    assert sockets.path("/subscriptions/s/deployments/blue", "blue-1-0") == path
    assert sockets.path("/subscriptions/s/deployments/green", "blue-1-0") != path
    assert sockets.path("/subscriptions/s/deployments/blue", "blue-1-1") != path

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    far = SocketDirectory(deep).path("/x", "i")
    assert far is not None
    assert len(far) <= 107
    assert not far.startswith(str(deep))


def test_a_socket_directory_open_to_others_is_not_used(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "run" / "sockets").mkdir(parents=True)
    os.chmod(data / "run" / "sockets", 0o777)  # noqa: S103 - the case under test
    path = SocketDirectory(data).path("/x", "i")
    # The shared temp-dir fallback (private) is used instead, never the open directory.
    assert path is None or not path.startswith(str(data.resolve()))
