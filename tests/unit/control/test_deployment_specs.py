"""From stored deployment bodies and environment versions to the runtime's DeploymentSpec."""

from __future__ import annotations

from pathlib import Path

from propylon.control.specs import build_spec, environment_spec
from propylon.runtime.base import EnvironmentSpec

CONDA = """
name: model-env
channels: [conda-forge]
dependencies:
  - python=3.12
  - numpy=2.3.1
  - conda-forge::scikit-learn==1.7.0
  - scipy
  - pandas>=2
  - pip
  - libgcc-ng
  - librosa
  - pip:
    - azureml-inference-server-http==1.4.1
    - inference-schema[numpy-support]
    - joblib
"""


def test_conda_files_become_pip_requirements() -> None:
    spec = environment_spec({"properties": {"condaFile": CONDA, "image": "mcr/x:1"}})
    assert spec.python_version == "3.12"
    assert spec.image == "mcr/x:1"
    assert spec.pip_requirements == (
        "numpy==2.3.1",
        "scikit-learn==1.7.0",
        "scipy",
        "pandas>=2",
        "librosa",
        "azureml-inference-server-http==1.4.1",
        "inference-schema[numpy-support]",
        "joblib",
    )


def test_no_environment_means_the_servers_own() -> None:
    assert environment_spec(None) == EnvironmentSpec()
    assert environment_spec({"properties": {"image": "x"}}).is_server_environment


def test_build_spec_converts_durations_and_counts(tmp_path: Path) -> None:
    body = {
        "name": "blue",
        "sku": {"name": "Default", "capacity": 2},
        "properties": {
            "codeConfiguration": {"codeId": "c", "scoringScript": "src/score.py"},
            "environmentVariables": {"A": "1"},
            "instanceType": "Standard_F2s_v2",
            "scaleSettings": {"scaleType": "Default"},
            "requestSettings": {
                "maxConcurrentRequestsPerInstance": 4,
                "requestTimeout": "PT1M30S",
                "maxQueueWait": "PT0.5S",
            },
            "livenessProbe": {
                "initialDelay": "PT5S",
                "period": "PT3S",
                "timeout": "PT1S",
                "successThreshold": 1,
                "failureThreshold": 3,
            },
            "readinessProbe": {
                "initialDelay": "PT0S",
                "period": "PT1S",
                "timeout": "PT1S",
                "successThreshold": 2,
                "failureThreshold": 5,
            },
        },
    }
    spec = build_spec(
        body,
        deployment_id="/d",
        endpoint_id="/e",
        endpoint_name="e",
        code_dir=tmp_path,
        model_dir=None,
        environment=EnvironmentSpec(),
        identity=None,
        generation=4,
    )
    assert spec.scoring_script == "src/score.py"
    assert spec.instance_count == 2
    assert spec.scale.min_instances == spec.scale.max_instances == 2
    assert spec.requests.request_timeout_ms == 90_000
    assert spec.requests.max_queue_wait_ms == 500
    assert spec.liveness.initial_delay == 5.0
    assert spec.readiness.success_threshold == 2
    assert spec.generation == 4
