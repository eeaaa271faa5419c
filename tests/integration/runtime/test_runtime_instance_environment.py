"""What a running instance gets: Azure's variables, the deployment's own, its identity — and
nothing of the server's secrets, none of it on the command line."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest
from runtime_support import eventually, make_spec, settled, write_app

from propylon.runtime import DeploymentSpec, DeploymentState, LocalBackend
from propylon.store import ResourceStore

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

ENVIRONMENT_APP = """
    import os

    def init():
        pass

    def run(raw_data):
        return {name: os.environ.get(name) for name in (
            "AML_APP_ROOT", "AZUREML_ENTRY_SCRIPT", "AZUREML_MODEL_DIR", "MAX_CONCURRENT_REQUESTS",
            "MY_SETTING", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "PROPYLON_MASTER_KEY",
        )}
"""


async def test_instance_gets_its_variables_and_identity_but_no_server_secret(
    tmp_path: Path, resources: ResourceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROPYLON_MASTER_KEY", "server-secret")
    calls: list[str] = []

    def identity_env(spec: DeploymentSpec, instance_id: str) -> dict[str, str]:
        calls.append(instance_id)
        return {
            "IDENTITY_ENDPOINT": "http://127.0.0.1:8080/msi/token",
            "IDENTITY_HEADER": f"header-{len(calls)}",
        }

    code = write_app(tmp_path / "app", ENVIRONMENT_APP)
    model = tmp_path / "model"
    model.mkdir()
    spec = make_spec("blue", code, model_dir=model, environment_variables={"MY_SETTING": "on"})
    backend = LocalBackend(tmp_path / "data", resources, identity_env=identity_env, drain_delay=0)
    try:
        await backend.apply(spec)
        assert (await settled(backend, spec.deployment_id)).state is DeploymentState.SUCCEEDED
        [address] = backend.addresses(spec.deployment_id)
        async with httpx.AsyncClient(trust_env=False) as client:
            seen = (await client.post(address.url + "/score", content=b"{}")).json()
        assert seen == {
            "AML_APP_ROOT": str(code),
            "AZUREML_ENTRY_SCRIPT": "score.py",
            "AZUREML_MODEL_DIR": str(model),
            "MAX_CONCURRENT_REQUESTS": "1",
            "MY_SETTING": "on",
            "IDENTITY_ENDPOINT": "http://127.0.0.1:8080/msi/token",
            "IDENTITY_HEADER": "header-1",
            "PROPYLON_MASTER_KEY": None,
        }
        [instance] = backend.instances(spec.deployment_id)
        assert instance.pid is not None
        assert calls == [instance.instance_id]
        command_line = Path(f"/proc/{instance.pid}/cmdline").read_bytes()  # noqa: ASYNC240
        assert b"header-1" not in command_line

        # A restarted instance asks for its identity again (fresh header, same instance id).
        os.kill(instance.pid, signal.SIGKILL)
        await eventually(lambda: len(calls) == 2 and backend.addresses(spec.deployment_id))
        assert calls == [instance.instance_id] * 2
        [address] = backend.addresses(spec.deployment_id)
        async with httpx.AsyncClient(trust_env=False) as client:
            seen = (await client.post(address.url + "/score", content=b"{}")).json()
        assert seen["IDENTITY_HEADER"] == "header-2"
    finally:
        await backend.shutdown()
