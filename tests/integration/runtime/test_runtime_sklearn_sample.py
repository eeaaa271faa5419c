"""The classic sample, unmodified: scikit-learn's diabetes regression behind a real instance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import joblib
import numpy
import pytest
from runtime_support import EXAMPLES, make_spec, settled

from propylon.control.specs import environment_spec
from propylon.runtime import (
    ContainerType,
    DeploymentState,
    LocalBackend,
    instance_set_id,
)
from propylon.store import ResourceStore

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

SAMPLE = EXAMPLES / "model-1"
PAYLOAD = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample's own train.py, run at set-up into a fresh directory."""
    out = tmp_path_factory.mktemp("model-1")
    subprocess.run(
        [sys.executable, str(SAMPLE / "train.py"), "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


async def test_sample_scores_exactly_what_the_model_predicts(
    backend: LocalBackend, resources: ResourceStore, trained_model: Path
) -> None:
    # The sample's conda file (scikit-learn, joblib, numpy pinned) is satisfied by the server's
    # environment: the build installs nothing and needs no index.
    environment = environment_spec(
        {"properties": {"condaFile": (SAMPLE / "environment" / "conda.yaml").read_text()}}
    )
    spec = make_spec(
        "blue",
        SAMPLE / "onlinescoring",
        model_dir=trained_model,
        environment=environment,
    )
    await backend.apply(spec)
    status = await settled(backend, spec.deployment_id, within=90)
    assert status.state is DeploymentState.SUCCEEDED, status.reason
    assert (status.desired, status.ready) == (1, 1)

    published = resources.get(instance_set_id(spec.deployment_id))
    assert published is not None
    [instance] = published.body["instances"]
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.post(
            instance["url"] + "/score",
            content=json.dumps(PAYLOAD),
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 200, response.text

    model = joblib.load(trained_model / "model" / "sklearn_regression_model.pkl")
    assert response.json() == model.predict(numpy.array(PAYLOAD["data"])).tolist()

    setup = backend.logs(spec.deployment_id, ContainerType.STORAGE_INITIALIZER, 200)
    assert "Requirement already satisfied: scikit-learn==1.9.1" in setup
    assert "Init complete" in backend.logs(spec.deployment_id, ContainerType.INFERENCE_SERVER, 200)
