"""Instances that die, or never start: restarts, crash loops, and what the logs then say."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest
from runtime_support import EXAMPLES, eventually, make_spec, settled

from propylon.runtime import ContainerType, DeploymentState, LocalBackend

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

ECHO = EXAMPLES / "echo"


async def test_killed_instance_is_restarted_and_serves_again(backend: LocalBackend) -> None:
    spec = make_spec("blue", ECHO)
    await backend.apply(spec)
    assert (await settled(backend, spec.deployment_id)).state is DeploymentState.SUCCEEDED
    [before] = backend.instances(spec.deployment_id)
    assert before.pid is not None

    os.kill(before.pid, signal.SIGKILL)
    # The exit is seen at once and the instance leaves the published set until it is back.
    await eventually(lambda: not backend.addresses(spec.deployment_id), within=5)
    [address] = await eventually(lambda: backend.addresses(spec.deployment_id), within=15)

    [after] = backend.instances(spec.deployment_id)
    assert after.instance_id == before.instance_id
    assert after.pid not in (None, before.pid)
    assert after.restarts == 1
    assert after.last_failure is not None
    assert "was killed by SIGKILL" in after.last_failure
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.post(address.url + "/score", json={"again": True})
    assert response.json() == {"again": True}
    assert backend.status(spec.deployment_id).state is DeploymentState.SUCCEEDED
    logs = backend.logs(spec.deployment_id, ContainerType.INFERENCE_SERVER, 100)
    assert "[propylon] The instance was killed by SIGKILL; restarting" in logs


async def test_init_failure_fails_the_deployment_and_the_others_keep_serving(
    backend: LocalBackend,
) -> None:
    green = make_spec("green", ECHO)
    blue = make_spec("blue", ECHO, environment_variables={"ECHO_FAIL": "init"})
    await backend.apply(green)
    await backend.apply(blue)

    status = await settled(backend, blue.deployment_id, within=45)
    assert status.state is DeploymentState.FAILED
    assert status.reason is not None
    assert "exited with code 3" in status.reason
    assert "RuntimeError: echo model asked to fail" in status.reason
    assert "failed 3 times in a row" in status.reason
    logs = backend.logs(blue.deployment_id, ContainerType.INFERENCE_SERVER, 500)
    assert "Traceback (most recent call last)" in logs
    assert "echo model asked to fail" in logs
    # A failed new deployment stops trying: nothing left running, nothing published.
    await eventually(lambda: not backend.instances(blue.deployment_id), within=10)
    assert backend.addresses(blue.deployment_id) == []

    assert (await settled(backend, green.deployment_id)).state is DeploymentState.SUCCEEDED
    [address] = backend.addresses(green.deployment_id)
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.post(address.url + "/score", json=[1, 2])
    assert response.json() == [1, 2]


async def test_missing_scoring_script_fails_at_set_up(
    backend: LocalBackend, tmp_path: Path
) -> None:
    spec = make_spec("blue", tmp_path, scoring_script="nowhere.py")
    await backend.apply(spec)
    status = await settled(backend, spec.deployment_id, within=10)
    assert status.state is DeploymentState.FAILED
    assert status.reason is not None
    assert "nowhere.py" in status.reason
    setup = backend.logs(spec.deployment_id, ContainerType.STORAGE_INITIALIZER, 20)
    assert "ERROR: The scoring script 'nowhere.py' is not in the code directory" in setup
