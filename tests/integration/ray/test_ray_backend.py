"""The Ray backend against a real local Ray head: deploy, score, roll, heal, adopt, delete.

Every test deploys through :class:`RayBackend` and scores through the URL it publishes (Serve's
HTTP proxy), as the gateway does.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
import joblib
import numpy
import pytest
import yaml
from ray_support import (
    PAYLOAD,
    SAMPLE,
    TAGGED_SCORE,
    eventually,
    make_backend,
    make_spec,
    score,
    settled,
    write_script,
)

from propylon.errors import NotFound
from propylon.runtime import (
    ContainerType,
    DeploymentState,
    EnvironmentSpec,
    ProbeSettings,
    instance_set_id,
)
from propylon.runtime.ray import RayBackend
from propylon.runtime.ray_cluster import LocalRayHead
from propylon.store import ResourceStore

pytest.importorskip("ray.serve", reason="Ray Serve is not installed: pip install 'propylon[ray]'")

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


def predictions(model_dir: Path) -> list[float]:
    model = joblib.load(model_dir / "model" / "sklearn_regression_model.pkl")
    return [float(value) for value in model.predict(numpy.array(PAYLOAD["data"]))]


def published_urls(resources: ResourceStore, deployment_id: str) -> list[str]:
    row = resources.get(instance_set_id(deployment_id))
    return [item["url"] for item in row.body["instances"]] if row is not None else []


def replica_pids(head: LocalRayHead, backend: RayBackend, deployment_id: str) -> set[int]:
    return set(head.processes(f"ray::ServeReplica:{backend.application(deployment_id)}:"))


async def test_sample_on_two_replicas_scores_what_the_model_predicts(
    backend: RayBackend, resources: ResourceStore, trained_model: Path
) -> None:
    spec = make_spec("blue", SAMPLE / "onlinescoring", model_dir=trained_model, instance_count=2)
    await backend.apply(spec)
    assert backend.status(spec.deployment_id).state is DeploymentState.CREATING

    status = await settled(backend, spec.deployment_id)
    assert status.state is DeploymentState.SUCCEEDED, status.reason
    assert (status.desired, status.ready) == (2, 2)
    urls = await eventually(lambda: published_urls(resources, spec.deployment_id))
    assert urls == [backend.proxy_url + "/my-endpoint_blue"] * 2

    async with httpx.AsyncClient(trust_env=False) as client:
        response = await score(client, urls[0])
        liveness = await client.get(urls[0] + "/")
    assert response.status_code == 200, response.text
    assert response.json() == predictions(trained_model)
    assert response.headers.get_list("x-request-id") == [response.headers["x-ms-request-id"]]
    assert liveness.text == "Healthy"

    server_log = await eventually(
        lambda: backend.logs(spec.deployment_id, ContainerType.INFERENCE_SERVER, 200)
    )
    assert "Init complete" in server_log
    assert server_log.count("[blue-") >= 2  # lines of both replicas, named by Serve's ids
    setup_log = backend.logs(spec.deployment_id, ContainerType.STORAGE_INITIALIZER, 50)
    assert "Submitted to Ray Serve as application my-endpoint_blue" in setup_log
    assert "Ray Serve runs 2 replica(s)" in setup_log


async def test_rolling_update_serves_every_request_and_ends_on_the_new_generation(
    backend: RayBackend, resources: ResourceStore, trained_model: Path, tmp_path: Path
) -> None:
    code = write_script(tmp_path / "tagged", TAGGED_SCORE)
    first = make_spec(
        "green",
        code,
        model_dir=trained_model,
        instance_count=2,
        environment_variables={"GENERATION": "1"},
    )
    await backend.apply(first)
    assert (await settled(backend, first.deployment_id)).state is DeploymentState.SUCCEEDED
    [url, _] = await eventually(lambda: published_urls(resources, first.deployment_id))

    second = make_spec(
        "green",
        code,
        model_dir=trained_model,
        instance_count=2,
        environment_variables={"GENERATION": "2"},
        generation=2,
    )
    seen: list[str | None] = []
    failures: list[str] = []
    async with httpx.AsyncClient(trust_env=False, timeout=30) as client:

        async def keep_scoring() -> None:
            # Bounded: at most 90 s of requests, as fast as one client goes.
            for _ in range(3000):
                response = await score(client, url)
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                else:
                    seen.append(response.json()["generation"])
                if done.is_set():
                    return
                await asyncio.sleep(0.02)

        done = asyncio.Event()
        load = asyncio.create_task(keep_scoring())
        await asyncio.sleep(0.5)
        await backend.apply(second)
        assert backend.status(second.deployment_id).state is DeploymentState.UPDATING
        status = await settled(backend, second.deployment_id)
        # Serve reports RUNNING once the new replicas run; the old ones may still be draining.
        await eventually(lambda: seen[-20:] == ["2"] * 20 if len(seen) > 20 else False)
        done.set()
        await load

    assert status.state is DeploymentState.SUCCEEDED, status.reason
    assert failures == []
    assert seen[0] == "1"
    assert "2" in seen
    assert published_urls(resources, second.deployment_id) == [url, url]
    row = resources.get(instance_set_id(second.deployment_id))
    assert row is not None
    assert row.body["generation"] == 2


async def test_pip_requirements_become_the_replicas_runtime_environment(
    backend: RayBackend, resources: ResourceStore, trained_model: Path
) -> None:
    # The sample's conda file (scikit-learn, joblib, numpy pinned): Ray builds a virtualenv on
    # top of the cluster's packages, which satisfy it, so nothing is downloaded.
    conda = yaml.safe_load((SAMPLE / "environment" / "conda.yaml").read_text())
    [pip] = [item["pip"] for item in conda["dependencies"] if isinstance(item, dict)]
    environment = EnvironmentSpec(pip_requirements=tuple(pip))
    spec = make_spec(
        "pinned", SAMPLE / "onlinescoring", model_dir=trained_model, environment=environment
    )
    await backend.apply(spec)
    status = await settled(backend, spec.deployment_id, within=180)
    assert status.state is DeploymentState.SUCCEEDED, status.reason
    [url] = await eventually(lambda: published_urls(resources, spec.deployment_id))
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await score(client, url)
    assert response.json() == predictions(trained_model)
    setup_log = backend.logs(spec.deployment_id, ContainerType.STORAGE_INITIALIZER, 50)
    assert "Ray installs the pip requirements" in setup_log
    assert "scikit-learn==1.9.1" in setup_log


async def test_replica_gets_identity_and_code_dir_as_a_local_instance(
    backend: RayBackend, resources: ResourceStore, trained_model: Path, tmp_path: Path
) -> None:
    code = write_script(tmp_path / "tagged", TAGGED_SCORE)
    spec = make_spec("identity", code, model_dir=trained_model)
    await backend.apply(spec)
    assert (await settled(backend, spec.deployment_id)).state is DeploymentState.SUCCEEDED
    [url] = await eventually(lambda: published_urls(resources, spec.deployment_id))
    async with httpx.AsyncClient(trust_env=False) as client:
        body = (await score(client, url)).json()
    assert body["identity_endpoint"] == "http://127.0.0.1:9/identity/token"
    assert body["identity_header_set"] is True
    assert body["cwd"] == str(code)
    assert body["predictions"] == predictions(trained_model)
    # print() output of the script reaches the InferenceServer logs too.
    assert "tagged scoring script ready" in await eventually(
        lambda: backend.logs(spec.deployment_id, ContainerType.INFERENCE_SERVER, 100)
    )


async def test_killed_replica_is_replaced_and_the_deployment_serves_on(
    backend: RayBackend,
    resources: ResourceStore,
    trained_model: Path,
    ray_head: LocalRayHead,
) -> None:
    spec = make_spec("healing", SAMPLE / "onlinescoring", model_dir=trained_model, instance_count=2)
    await backend.apply(spec)
    assert (await settled(backend, spec.deployment_id)).state is DeploymentState.SUCCEEDED
    before = await eventually(lambda: len(replica_pids(ray_head, backend, spec.deployment_id)) == 2)
    assert before
    original = replica_pids(ray_head, backend, spec.deployment_id)
    victim = min(original)

    os.kill(victim, signal.SIGKILL)

    def replaced() -> bool:
        now = replica_pids(ray_head, backend, spec.deployment_id)
        status = backend.status(spec.deployment_id)
        return (
            len(now) == 2
            and victim not in now
            and status.state is DeploymentState.SUCCEEDED
            and status.ready == 2
        )

    await eventually(replaced, within=60)
    urls = await eventually(lambda: len(published_urls(resources, spec.deployment_id)) == 2)
    assert urls
    [url, _] = published_urls(resources, spec.deployment_id)
    async with httpx.AsyncClient(trust_env=False) as client:
        for _ in range(4):  # both replicas, whichever Serve picks
            response = await score(client, url)
            assert response.status_code == 200, response.text
            assert response.json() == predictions(trained_model)


async def test_script_that_cannot_start_fails_the_deployment_with_its_error(
    backend: RayBackend, tmp_path: Path
) -> None:
    code = write_script(
        tmp_path / "broken",
        """
        def init():
            raise RuntimeError("the model file is missing")

        def run(raw_data):
            return raw_data
        """,
    )
    spec = make_spec("broken", code)
    await backend.apply(spec)
    status = await settled(backend, spec.deployment_id, within=120)
    assert status.state is DeploymentState.FAILED
    assert status.reason is not None
    assert "could not be deployed" in status.reason
    assert "the model file is missing" in status.reason
    setup_log = backend.logs(spec.deployment_id, ContainerType.STORAGE_INITIALIZER, 50)
    assert "the model file is missing" in setup_log


async def test_init_slower_than_the_readiness_probe_allows_fails_the_deployment(
    backend: RayBackend, tmp_path: Path
) -> None:
    code = write_script(
        tmp_path / "slow",
        """
        import time

        def init():
            time.sleep(60)

        def run(raw_data):
            return raw_data
        """,
    )
    impatient = ProbeSettings(initial_delay=0.5, period=0.5, failure_threshold=2)
    spec = make_spec("slow", code, readiness=impatient)
    await backend.apply(spec)
    status = await settled(backend, spec.deployment_id, within=120)
    assert status.state is DeploymentState.FAILED
    assert status.reason is not None
    assert "init() did not finish within 1.5 s" in status.reason


async def test_missing_code_fails_before_serve_is_asked(
    backend: RayBackend, tmp_path: Path
) -> None:
    spec = make_spec("nocode", tmp_path / "nowhere")
    await backend.apply(spec)
    status = backend.status(spec.deployment_id)
    assert status.state is DeploymentState.FAILED
    assert status.reason == f"The code directory {tmp_path / 'nowhere'} does not exist."


async def test_restarted_server_adopts_the_running_application_without_restarting_it(
    ray_head: LocalRayHead,
    backend: RayBackend,
    resources: ResourceStore,
    trained_model: Path,
    tmp_path: Path,
) -> None:
    spec = make_spec("adopted", SAMPLE / "onlinescoring", model_dir=trained_model)
    await backend.apply(spec)
    assert (await settled(backend, spec.deployment_id)).state is DeploymentState.SUCCEEDED
    pids = await eventually(lambda: replica_pids(ray_head, backend, spec.deployment_id))
    await backend.shutdown()  # the applications stay on the cluster

    restarted = make_backend(ray_head, resources, tmp_path / "data")
    try:
        await restarted.apply(spec)
        status = await settled(restarted, spec.deployment_id)
        assert status.state is DeploymentState.SUCCEEDED
        assert replica_pids(ray_head, restarted, spec.deployment_id) == pids
        setup_log = restarted.logs(spec.deployment_id, ContainerType.STORAGE_INITIALIZER, 20)
        assert "already runs this; kept as it is" in setup_log
    finally:
        await restarted.remove(spec.deployment_id)
        await restarted.shutdown()


async def test_remove_deletes_the_serve_application(
    backend: RayBackend, resources: ResourceStore, trained_model: Path
) -> None:
    spec = make_spec("gone", SAMPLE / "onlinescoring", model_dir=trained_model)
    await backend.apply(spec)
    assert (await settled(backend, spec.deployment_id)).state is DeploymentState.SUCCEEDED
    [url] = await eventually(lambda: published_urls(resources, spec.deployment_id))

    await backend.remove(spec.deployment_id)

    from ray import serve

    assert "my-endpoint_gone" not in serve.status().applications
    assert resources.get(instance_set_id(spec.deployment_id)) is None
    assert backend.logs(spec.deployment_id, ContainerType.INFERENCE_SERVER, 10) == ""
    with pytest.raises(NotFound):
        backend.status(spec.deployment_id)
    async with httpx.AsyncClient(trust_env=False) as client:
        assert (await score(client, url)).status_code == 404  # Serve's proxy: no such route
    await backend.remove(spec.deployment_id)  # again: nothing left to do, no error
