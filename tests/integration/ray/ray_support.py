"""Helpers for the Ray backend's tests: specs, waiting, scoring, the scripts they deploy."""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from propylon.runtime import DeploymentSpec, DeploymentState, DeploymentStatus, ProbeSettings
from propylon.runtime.ray import RayBackend
from propylon.runtime.ray_cluster import LocalRayHead
from propylon.store import ResourceStore

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "examples" / "model-1"
PAYLOAD = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}
ENDPOINT = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/"
    "Microsoft.MachineLearningServices/workspaces/ws/onlineEndpoints/my-endpoint"
)
FAST_PROBE = ProbeSettings(initial_delay=0.5, period=1.0, timeout=5.0)

# The sample's model behind a script that also says which generation and identity it runs with.
TAGGED_SCORE = """
import json
import os

import joblib
import numpy

model = None


def init():
    global model
    path = os.path.join(os.environ["AZUREML_MODEL_DIR"], "model/sklearn_regression_model.pkl")
    model = joblib.load(path)
    print("tagged scoring script ready", flush=True)


def run(raw_data):
    rows = numpy.array(json.loads(raw_data)["data"])
    return {
        "generation": os.environ.get("GENERATION"),
        "identity_endpoint": os.environ.get("IDENTITY_ENDPOINT"),
        "identity_header_set": bool(os.environ.get("IDENTITY_HEADER")),
        "cwd": os.getcwd(),
        "predictions": model.predict(rows).tolist(),
    }
"""


def identity_variables(spec: DeploymentSpec, name: str) -> dict[str, str]:
    """What the identity service would hand a deployment (deterministic, as a restart needs)."""
    return {
        "IDENTITY_ENDPOINT": "http://127.0.0.1:9/identity/token",
        "IDENTITY_HEADER": f"header-for-{name}",
    }


def make_backend(head: LocalRayHead, resources: ResourceStore, data_dir: Path) -> RayBackend:
    """A backend on ``head`` with quick polling (every test's, and a restarted server's).

    pip never reaches for an index: requirements must be satisfied by the cluster's packages.
    """
    return RayBackend(
        resources,
        address=head.address,
        data_dir=data_dir,
        identity_env=identity_variables,
        http_port=head.serve_port,
        poll_interval=0.2,
        drain_delay=0.3,
        stop_timeout=5.0,
        pip_options=("--no-index",),
    )


def write_script(folder: Path, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "score.py").write_text(textwrap.dedent(source))
    return folder


def make_spec(name: str, code_dir: Path, **changes: Any) -> DeploymentSpec:
    spec = DeploymentSpec(
        deployment_id=f"{ENDPOINT}/deployments/{name}",
        endpoint_id=ENDPOINT,
        endpoint_name="my-endpoint",
        name=name,
        code_dir=code_dir,
        scoring_script="score.py",
        model_dir=None,
        liveness=FAST_PROBE,
        readiness=FAST_PROBE,
    )
    return replace(spec, **changes)


async def eventually(
    predicate: Callable[[], Any], *, within: float = 60.0, interval: float = 0.1
) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {within}s")
        await asyncio.sleep(interval)


async def settled(
    backend: RayBackend, deployment_id: str, *, within: float = 90.0
) -> DeploymentStatus:
    """Wait until the deployment is Succeeded or Failed; its status then."""

    def done() -> DeploymentStatus | None:
        status = backend.status(deployment_id)
        final = (DeploymentState.SUCCEEDED, DeploymentState.FAILED)
        return status if status.state in final else None

    try:
        status: DeploymentStatus = await eventually(done, within=within)
    except TimeoutError:
        raise AssertionError(f"not settled: {backend.status(deployment_id)}") from None
    return status


async def score(client: httpx.AsyncClient, url: str) -> httpx.Response:
    return await client.post(
        url + "/score", content=json.dumps(PAYLOAD), headers={"content-type": "application/json"}
    )
