"""Environments built from pip requirements: cached and shared, or Failed with pip's output."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from runtime_support import EXAMPLES, build_wheel, make_spec, settled, write_app

from propylon.runtime import ContainerType, DeploymentState, EnvironmentSpec, LocalBackend

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

WHEEL_APP = """
    import propylon_test_greeting as greeting

    def init():
        pass

    def run(raw_data):
        return {"greeting": greeting.GREETING, "from": greeting.__file__}
"""


async def test_one_build_is_shared_by_every_deployment_asking_for_it(
    backend: LocalBackend, tmp_path: Path
) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(
        wheels, "propylon-test-greeting", "1.0", {"propylon_test_greeting": "GREETING = 'hi'"}
    )
    environment = EnvironmentSpec(
        pip_requirements=("propylon-test-greeting==1.0", f"--find-links {wheels}")
    )
    code = write_app(tmp_path / "app", WHEEL_APP)
    blue = make_spec("blue", code, environment=environment)
    green = make_spec("green", code, environment=environment)
    # Both at once: one builds, the other waits on the lock and reuses the result.
    await asyncio.gather(backend.apply(blue), backend.apply(green))
    for spec in (blue, green):
        status = await settled(backend, spec.deployment_id, within=60)
        assert status.state is DeploymentState.SUCCEEDED, status.reason

    key = backend.environments.key(environment)
    built = [p for p in (backend.data_dir / "envs").iterdir() if p.is_dir()]
    assert [p.name for p in built] == [key]
    setups = [
        backend.logs(spec.deployment_id, ContainerType.STORAGE_INITIALIZER, 200)
        for spec in (blue, green)
    ]
    assert sum("Successfully installed propylon-test-greeting-1.0" in s for s in setups) == 1
    assert sum(f"Reusing environment {key[:12]}" in s for s in setups) == 1

    async with httpx.AsyncClient(trust_env=False) as client:
        for spec in (blue, green):
            [address] = backend.addresses(spec.deployment_id)
            answer = (await client.post(address.url + "/score", content=b"{}")).json()
            assert answer["greeting"] == "hi"
            assert answer["from"].startswith(str(built[0]))


async def test_failed_install_fails_the_deployment_with_pip_output(
    backend: LocalBackend,
) -> None:
    environment = EnvironmentSpec(pip_requirements=("propylon-no-such-package==9.9",))
    spec = make_spec("blue", EXAMPLES / "echo", environment=environment)
    await backend.apply(spec)
    status = await settled(backend, spec.deployment_id, within=60)
    assert status.state is DeploymentState.FAILED
    assert status.reason is not None
    assert "pip install failed with exit code 1" in status.reason
    assert "propylon-no-such-package" in status.reason
    setup = backend.logs(spec.deployment_id, ContainerType.STORAGE_INITIALIZER, 200)
    assert "No matching distribution found for propylon-no-such-package==9.9" in setup
    assert backend.instances(spec.deployment_id) == []
    # Nothing half-built is left to be mistaken for a cached environment.
    assert not (backend.data_dir / "envs" / backend.environments.key(environment)).exists()


async def test_image_alone_runs_in_the_server_environment_with_a_warning(
    backend: LocalBackend,
) -> None:
    environment = EnvironmentSpec(image="mcr.microsoft.com/azureml/minimal-ubuntu22.04-py39-cpu")
    spec = make_spec("blue", EXAMPLES / "echo", environment=environment)
    await backend.apply(spec)
    assert (await settled(backend, spec.deployment_id)).state is DeploymentState.SUCCEEDED
    setup = backend.logs(spec.deployment_id, ContainerType.STORAGE_INITIALIZER, 50)
    assert (
        "WARNING: image 'mcr.microsoft.com/azureml/minimal-ubuntu22.04-py39-cpu' is not run"
        in setup
    )
    assert "Using the server's own Python environment" in setup
