"""What a deployment becomes on Ray Serve, and Serve's status read back (no Ray needed)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from propylon.runtime import (
    DeploymentSpec,
    DeploymentState,
    EnvironmentSpec,
    IdentitySpec,
    ProbeSettings,
    RequestSettings,
    ScaleSettings,
)
from propylon.runtime.ray_apps import (
    INSTANCE_TYPES,
    AppSnapshot,
    application_name,
    desired_replicas,
    failure_reason,
    observed_status,
    replica_resources,
    serve_application,
)

ENDPOINT = (
    "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/w/"
    "onlineEndpoints/My-Endpoint"
)


def spec(**changes: object) -> DeploymentSpec:
    base = DeploymentSpec(
        deployment_id=f"{ENDPOINT}/deployments/Blue",
        endpoint_id=ENDPOINT,
        endpoint_name="My-Endpoint",
        name="Blue",
        code_dir=Path("/srv/code"),
        scoring_script="score.py",
        model_dir=Path("/srv/model"),
        instance_count=2,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_application_is_named_after_endpoint_and_deployment_joined_by_an_underscore() -> None:
    assert application_name(spec().deployment_id) == "my-endpoint_blue"
    assert application_name(spec().deployment_id, "staging-") == "staging-my-endpoint_blue"
    # Names cannot hold "_", so "a-b"+"c" and "a"+"b-c" stay apart.
    first = f"{ENDPOINT[: -len('My-Endpoint')]}a-b/deployments/c"
    second = f"{ENDPOINT[: -len('My-Endpoint')]}a/deployments/b-c"
    assert application_name(first) != application_name(second)


def test_an_id_of_another_shape_gets_a_digest_for_a_name() -> None:
    name = application_name("/not/an/arm/id")
    assert name.startswith("deployment_")
    assert name == application_name("/NOT/an/arm/id")


@pytest.mark.parametrize(
    ("instance_type", "expected"),
    [
        ("Standard_DS3_v2", {"num_cpus": 0.5, "num_gpus": 0.0}),
        ("standard_ds2_v2", {"num_cpus": 0.25, "num_gpus": 0.0}),
        ("Standard_NC6s_v3", {"num_cpus": 0.75, "num_gpus": 1.0}),
        ("Standard_NC24ads_A100_v4", {"num_cpus": 3.0, "num_gpus": 1.0}),
        ("Standard_ND96asr_v4", {"num_cpus": 12.0, "num_gpus": 8.0}),
    ],
)
def test_instance_types_map_to_a_share_of_cpus_and_all_their_gpus(
    instance_type: str, expected: dict[str, float]
) -> None:
    assert replica_resources(instance_type) == (expected, True)


def test_unknown_instance_type_gets_the_default_and_a_warning() -> None:
    assert replica_resources("Standard_Imaginary") == ({"num_cpus": 0.5, "num_gpus": 0.0}, False)
    app = serve_application(spec(instance_type="Standard_Imaginary"))
    assert app.options["ray_actor_options"]["num_cpus"] == 0.5
    assert any("not in the Ray backend's table" in note for note in app.notes)


def test_every_gpu_type_in_the_table_asks_for_gpus() -> None:
    for name, size in INSTANCE_TYPES.items():
        resources, _ = replica_resources(name)
        assert resources["num_gpus"] == size.gpus
        assert ("_NC" in name or "_ND" in name) == (size.gpus > 0)


def test_fixed_scale_becomes_replicas_and_request_settings_the_ongoing_limit() -> None:
    app = serve_application(
        spec(requests=RequestSettings(max_concurrent_requests_per_instance=4)),
        cpu_per_vcpu=0.25,
        stop_timeout=12.0,
    )
    options = app.options
    assert (app.name, app.route_prefix) == ("my-endpoint_blue", "/my-endpoint_blue")
    assert options["name"] == "InferenceServer"
    assert options["num_replicas"] == 2
    assert "autoscaling_config" not in options
    assert options["max_ongoing_requests"] == app.max_ongoing_requests == 4
    assert options["ray_actor_options"]["num_cpus"] == 1.0
    assert "num_gpus" not in options["ray_actor_options"]
    assert options["graceful_shutdown_timeout_s"] == 12.0
    assert options["max_surge_percent"] == 20


def test_liveness_probe_becomes_serve_health_checks() -> None:
    probe = ProbeSettings(period=3.0, timeout=1.5)
    options = serve_application(spec(liveness=probe)).options
    assert (options["health_check_period_s"], options["health_check_timeout_s"]) == (3.0, 1.5)


def test_readiness_probe_bounds_how_long_init_may_take() -> None:
    probe = ProbeSettings(initial_delay=10, period=10, failure_threshold=30)
    assert serve_application(spec(readiness=probe)).replica.start_timeout == 310


def test_target_utilization_becomes_serve_autoscaling() -> None:
    scale = ScaleSettings(
        scale_type="TargetUtilization",
        min_instances=1,
        max_instances=5,
        polling_interval=2.0,
        target_utilization_percentage=50,
    )
    app = serve_application(
        spec(scale=scale, instance_count=3, requests=RequestSettings(4)), scale_in_window=4
    )
    assert "num_replicas" not in app.options
    assert app.options["autoscaling_config"] == {
        "min_replicas": 1,
        "max_replicas": 5,
        "initial_replicas": 3,
        "target_ongoing_requests": 2.0,
        "upscale_delay_s": 2.0,
        "downscale_delay_s": 8.0,
    }
    assert any("Autoscaling between 1 and 5 replicas" in note for note in app.notes)


def test_server_environment_adds_no_pip_and_requirements_become_a_runtime_env() -> None:
    assert "pip" not in serve_application(spec()).options["ray_actor_options"]["runtime_env"]
    environment = EnvironmentSpec(pip_requirements=("scikit-learn==1.9.1", "joblib==1.6.0"))
    app = serve_application(spec(environment=environment), pip_options=("--no-index",))
    assert app.options["ray_actor_options"]["runtime_env"]["pip"] == {
        "packages": ["scikit-learn==1.9.1", "joblib==1.6.0"],
        "pip_check": False,
        "pip_install_options": ["--no-index"],
    }


def test_replicas_get_azure_variables_but_secrets_only_as_constructor_arguments() -> None:
    identity = {"IDENTITY_ENDPOINT": "http://127.0.0.1:8080/x", "IDENTITY_HEADER": "s3cret"}
    app = serve_application(
        spec(
            environment_variables={"GREETING": "hello"},
            identity=IdentitySpec("p", "c", "t"),
            requests=RequestSettings(3),
        ),
        identity=identity,
        log_folder=Path("/data/logs/deployments/abc"),
    )
    variables = app.options["ray_actor_options"]["runtime_env"]["env_vars"]
    assert variables["AML_APP_ROOT"] == "/srv/code"
    assert variables["AZUREML_ENTRY_SCRIPT"] == "score.py"
    assert variables["AZUREML_MODEL_DIR"] == "/srv/model"
    assert variables["MAX_CONCURRENT_REQUESTS"] == "3"
    assert variables["GREETING"] == "hello"
    assert "PATH" not in variables  # the replica's node has its own
    assert "s3cret" not in repr(app.options)
    assert app.replica.secret_variables == identity
    assert "s3cret" not in repr(app.replica)
    assert app.replica.log_folder == "/data/logs/deployments/abc"
    assert app.replica.working_dir == "/srv/code"


def test_fingerprint_changes_with_anything_given_to_serve_and_only_then() -> None:
    first = serve_application(spec(), identity={"IDENTITY_HEADER": "a"})
    assert (
        first.fingerprint
        == serve_application(spec(), identity={"IDENTITY_HEADER": "a"}).fingerprint
    )
    assert (
        first.fingerprint
        == serve_application(spec(generation=7), identity={"IDENTITY_HEADER": "a"}).fingerprint
    )
    others = [
        serve_application(spec(instance_count=3), identity={"IDENTITY_HEADER": "a"}),
        serve_application(spec(), identity={"IDENTITY_HEADER": "b"}),
        serve_application(
            spec(environment_variables={"X": "1"}), identity={"IDENTITY_HEADER": "a"}
        ),
        serve_application(spec(), identity={"IDENTITY_HEADER": "a"}, cpu_per_vcpu=1),
    ]
    assert all(other.fingerprint != first.fingerprint for other in others)


def test_environment_warnings_go_to_the_set_up_notes() -> None:
    environment = EnvironmentSpec(python_version="3.8", image="mcr.microsoft.com/azureml/x")
    notes = serve_application(spec(environment=environment)).notes
    assert any("asks for Python 3.8" in note for note in notes)
    assert any("is not run" in note for note in notes)


# -- status --------------------------------------------------------------------------------------


def test_running_application_is_succeeded_with_its_running_replicas() -> None:
    app = AppSnapshot("RUNNING", replicas={"RUNNING": 2, "STOPPING": 1})
    status = observed_status(app, name="a", desired=2, succeeded=False)
    assert (status.state, status.desired, status.ready) == (DeploymentState.SUCCEEDED, 2, 2)


def test_deploying_is_creating_before_the_first_success_and_updating_after() -> None:
    app = AppSnapshot("DEPLOYING", replicas={"STARTING": 2})
    assert observed_status(app, name="a", desired=2, succeeded=False).state is (
        DeploymentState.CREATING
    )
    assert observed_status(app, name="a", desired=2, succeeded=True).state is (
        DeploymentState.UPDATING
    )
    assert observed_status(
        AppSnapshot("NOT_STARTED"), name="a", desired=1, succeeded=False
    ).state is (DeploymentState.CREATING)


def test_deploying_carries_what_serve_waits_for_as_the_reason() -> None:
    waiting = (
        "Deployment 'InferenceServer' in application 'a' has 1 replicas that have taken more "
        'than 30s to be scheduled. Resources required for each replica: {"CPU": 4.0}, total '
        'resources available: {"CPU": 2.0}.'
    )
    app = AppSnapshot("DEPLOYING", replicas={"PENDING_ALLOCATION": 1}, deployment_message=waiting)
    status = observed_status(app, name="a", desired=1, succeeded=False)
    assert status.state is DeploymentState.CREATING
    assert status.reason == waiting
    quiet = observed_status(AppSnapshot("DEPLOYING"), name="a", desired=1, succeeded=False)
    assert quiet.reason is None


def test_deploy_failure_carries_the_end_of_the_replicas_traceback() -> None:
    traceback = "\n".join(
        [
            "The deployment failed to start 3 times in a row. Error:",
            "\x1b[36mray::ServeReplica:a:InferenceServer.initialize_and_get_metadata()\x1b[39m",
            *[f'  File "/x/{n}.py", line {n}, in f' for n in range(20)],
            "ReplicaStartFailed: The scoring script's init() raised RuntimeError('no model').",
        ]
    )
    app = AppSnapshot("DEPLOY_FAILED", message="Failed to update", deployment_message=traceback)
    status = observed_status(app, name="my-endpoint_blue", desired=1, succeeded=False)
    assert status.state is DeploymentState.FAILED
    assert status.reason is not None
    assert status.reason.startswith("The Ray Serve application 'my-endpoint_blue' could not be")
    assert "failed to start 3 times" in status.reason
    assert status.reason.endswith("init() raised RuntimeError('no model').")
    assert "\x1b[" not in status.reason
    assert status.reason.count("\n") <= 10


def test_unhealthy_is_failed_and_deleting_is_deleting() -> None:
    unhealthy = AppSnapshot("UNHEALTHY", replicas={"RUNNING": 1}, deployment_message="health")
    status = observed_status(unhealthy, name="a", desired=2, succeeded=True)
    assert (status.state, status.ready) == (DeploymentState.FAILED, 1)
    assert status.reason == "The Ray Serve application 'a' is unhealthy: health"
    deleting = observed_status(AppSnapshot("DELETING"), name="a", desired=2, succeeded=True)
    assert deleting.state is DeploymentState.DELETING


def test_a_vanished_application_fails_with_a_way_out() -> None:
    status = observed_status(None, name="a", desired=2, succeeded=True)
    assert status.state is DeploymentState.FAILED
    assert status.reason is not None
    assert "no longer exists" in status.reason


def test_failure_reason_keeps_short_messages_whole() -> None:
    assert failure_reason("one\n\ntwo") == "one\ntwo"


def test_autoscaled_desired_count_follows_what_serve_wants_within_bounds() -> None:
    scale = ScaleSettings("TargetUtilization", min_instances=2, max_instances=4)
    autoscaled = spec(scale=scale)
    assert desired_replicas(autoscaled, None) == 2
    wanted = AppSnapshot("DEPLOYING", replicas={"RUNNING": 3, "STARTING": 2})
    assert desired_replicas(autoscaled, wanted) == 4
    assert desired_replicas(spec(instance_count=3), wanted) == 3
