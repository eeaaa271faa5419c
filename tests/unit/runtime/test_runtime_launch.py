"""What an instance is started with: its variables and a command line without secrets."""

from __future__ import annotations

from pathlib import Path

from propylon.runtime import DeploymentSpec, RequestSettings
from propylon.runtime.environments import Environment
from propylon.runtime.instance import describe_exit
from propylon.runtime.launch import LaunchPlan, instance_variables

SPEC = DeploymentSpec(
    deployment_id="/d/blue",
    endpoint_id="/e",
    endpoint_name="e",
    name="blue",
    code_dir=Path("/srv/code"),
    scoring_script="onlinescoring/score.py",
    model_dir=Path("/srv/models/m/1"),
    environment_variables={"WORKER_COUNT": "2", "AML_APP_ROOT": "/elsewhere", "API_TOKEN": "t0p"},
    requests=RequestSettings(max_concurrent_requests_per_instance=4),
)
INHERITED = {"PATH": "/usr/bin", "HOME": "/root"}


def test_azure_variables_point_at_code_script_and_model() -> None:
    variables = instance_variables(SPEC, Environment(python=Path("/usr/bin/python3")), INHERITED)
    assert variables["AML_APP_ROOT"] == "/srv/code"  # the platform's, not the user's
    assert variables["AZUREML_ENTRY_SCRIPT"] == "onlinescoring/score.py"
    assert variables["AZUREML_MODEL_DIR"] == "/srv/models/m/1"
    assert variables["MAX_CONCURRENT_REQUESTS"] == "4"
    assert variables["WORKER_COUNT"] == "2"  # the deployment's own variables pass through
    assert variables["API_TOKEN"] == "t0p"
    assert variables["PYTHONUNBUFFERED"] == "1"
    assert variables["PATH"] == "/usr/bin"
    assert "VIRTUAL_ENV" not in variables


def test_a_built_environment_comes_first_on_path() -> None:
    environment = Environment(python=Path("/envs/k/bin/python"), key="k", root=Path("/envs/k"))
    variables = instance_variables(SPEC, environment, INHERITED)
    assert variables["VIRTUAL_ENV"] == "/envs/k"
    assert variables["PATH"] == "/envs/k/bin:/usr/bin"


def test_command_line_carries_no_variable_value() -> None:
    environment = Environment(python=Path("/envs/k/bin/python"), key="k", root=Path("/envs/k"))
    plan = LaunchPlan(
        SPEC, environment, instance_variables(SPEC, environment, INHERITED), Path("/")
    )
    argv = plan.argv(40123, graceful_timeout=2.5)
    assert argv == [
        "/envs/k/bin/python", "-m", "propylon.inference", "--host", "127.0.0.1",
        "--port", "40123", "--graceful-timeout", "3",
    ]  # fmt: skip
    assert "t0p" not in " ".join(argv)


def test_exit_descriptions() -> None:
    assert describe_exit(-9) == "was killed by SIGKILL"
    assert describe_exit(3).startswith("exited with code 3 (the scoring script")
    assert describe_exit(1) == "exited with code 1"
