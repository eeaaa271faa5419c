"""What a deployment becomes on Ray Serve, and what Serve's status means for it (no I/O).

:func:`serve_application` translates a :class:`~propylon.runtime.base.DeploymentSpec` into the
options of one Serve application; :func:`observed_status` reads an application's status back as
a :class:`~propylon.runtime.base.DeploymentStatus`. :mod:`propylon.runtime.ray` (the only module
that imports Ray) hands the one to Serve and feeds the other from ``serve.status()``.

How a deployment maps onto Serve:

=================================  ===========================================================
Propylon / Azure                   Ray Serve
=================================  ===========================================================
deployment ``blue`` of endpoint    application ``my-endpoint_blue`` (names cannot contain
``my-endpoint``                    ``_``, so the join is unambiguous), route prefix
                                   ``/my-endpoint_blue``, one Serve deployment
                                   ``InferenceServer``
``instance_count``                 ``num_replicas``
``scale_settings``                 ``autoscaling_config``: ``min_replicas``, ``max_replicas``,
``target_utilization``             ``initial_replicas`` (``instance_count``),
                                   ``target_ongoing_requests`` = max concurrent × target % ,
                                   ``upscale_delay_s`` = polling interval,
                                   ``downscale_delay_s`` = polling interval × ``scale_in_window``
``request_settings``               ``max_ongoing_requests`` = ``max_concurrent_requests_per_
                                   instance`` (timeouts and queue wait stay in the gateway)
``liveness_probe``                 ``health_check_period_s`` / ``health_check_timeout_s``
                                   (Serve restarts a replica after 3 failed checks)
``readiness_probe``                a replica takes requests once ``init()`` has returned; it
                                   fails if that takes longer than initial delay + period ×
                                   failure threshold
environment: pip requirements      ``runtime_env={"pip": …}``, only when there are any (else the
                                   replicas use the cluster's own environment); Ray builds it
                                   on each node, inheriting the cluster's packages
``environment_variables``, Azure's ``runtime_env={"env_vars": …}``
variables
managed identity variables         constructor arguments of the replica (``runtime_env`` is
                                   shown by Ray's dashboard and state API; these are secrets)
``instance_type``                  ``ray_actor_options``: ``num_cpus``, ``num_gpus`` (table)
a new generation                   the application redeployed: Serve replaces its replicas,
                                   starting up to ``max_surge_percent`` (20 %, as Azure's
                                   upgrade surge; at least one replica) extra ones, and stops
                                   an old replica only once its replacement is ready. Serve
                                   restarts the replicas on every redeploy, a change of
                                   instance count included; a spec already running unchanged
                                   (a server restart re-applying it) is left alone
delete                             ``serve.delete(application)``
=================================  ===========================================================

Instance types, per replica. Azure's sizes are listed for reference; a replica asks Ray for
``vCPUs × cpu_per_vcpu`` CPUs (default 0.125, so the default ``Standard_DS3_v2`` takes half a
CPU: an inference server with one worker does not use a whole VM, and Ray's CPUs are a
scheduling unit, not a limit) and for the SKU's GPUs. Memory is not reserved. Unknown types get
the default's resources, with a warning in the ``StorageInitializer`` log; ``instance_types=``
replaces or extends the table.

=========================  =====  ==========  ====  ======================================
instance type              vCPUs  memory GiB  GPUs  Ray per replica (default scale)
=========================  =====  ==========  ====  ======================================
Standard_DS1_v2                1         3.5     0  num_cpus 0.125
Standard_DS2_v2                2           7     0  num_cpus 0.25
Standard_DS3_v2                4          14     0  num_cpus 0.5 (the default type)
Standard_DS4_v2                8          28     0  num_cpus 1
Standard_DS5_v2               16          56     0  num_cpus 2
Standard_F2s_v2                2           4     0  num_cpus 0.25
Standard_F4s_v2                4           8     0  num_cpus 0.5
Standard_F8s_v2                8          16     0  num_cpus 1
Standard_F16s_v2              16          32     0  num_cpus 2
Standard_F32s_v2              32          64     0  num_cpus 4
Standard_F48s_v2              48          96     0  num_cpus 6
Standard_F64s_v2              64         128     0  num_cpus 8
Standard_F72s_v2              72         144     0  num_cpus 9
Standard_E2s_v3                2          16     0  num_cpus 0.25
Standard_E4s_v3                4          32     0  num_cpus 0.5
Standard_E8s_v3                8          64     0  num_cpus 1
Standard_E16s_v3              16         128     0  num_cpus 2
Standard_E32s_v3              32         256     0  num_cpus 4
Standard_E48s_v3              48         384     0  num_cpus 6
Standard_E64s_v3              64         432     0  num_cpus 8
Standard_NC4as_T4_v3           4          28     1  num_cpus 0.5, num_gpus 1 (T4)
Standard_NC8as_T4_v3           8          56     1  num_cpus 1, num_gpus 1 (T4)
Standard_NC16as_T4_v3         16         110     1  num_cpus 2, num_gpus 1 (T4)
Standard_NC64as_T4_v3         64         440     4  num_cpus 8, num_gpus 4 (T4)
Standard_NC6s_v3               6         112     1  num_cpus 0.75, num_gpus 1 (V100)
Standard_NC12s_v3             12         224     2  num_cpus 1.5, num_gpus 2 (V100)
Standard_NC24s_v3             24         448     4  num_cpus 3, num_gpus 4 (V100)
Standard_NC24ads_A100_v4      24         220     1  num_cpus 3, num_gpus 1 (A100)
Standard_NC48ads_A100_v4      48         440     2  num_cpus 6, num_gpus 2 (A100)
Standard_NC96ads_A100_v4      96         880     4  num_cpus 12, num_gpus 4 (A100)
Standard_ND96asr_v4           96         900     8  num_cpus 12, num_gpus 8 (A100)
Standard_ND96amsr_A100_v4     96        1900     8  num_cpus 12, num_gpus 8 (A100)
=========================  =====  ==========  ====  ======================================

Example::

    app = serve_application(spec, log_folder=logs.folder)
    app.name, app.route_prefix        # ('my-endpoint_blue', '/my-endpoint_blue')
    app.options["num_replicas"]       # spec.instance_count
    observed_status(AppSnapshot("RUNNING", replicas={"RUNNING": 2}), name=app.name, desired=2,
                    succeeded=False)  # DeploymentStatus(state=<Succeeded>, desired=2, ready=2)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from propylon.runtime.autoscaler import is_autoscaled
from propylon.runtime.base import DeploymentSpec, DeploymentState, DeploymentStatus
from propylon.runtime.environments import Environment
from propylon.runtime.launch import instance_variables
from propylon.runtime.ray_replica import ReplicaSettings
from propylon.store import canonical

__all__ = [
    "DEFAULT_CPU_PER_VCPU",
    "DEFAULT_INSTANCE_TYPE",
    "INSTANCE_TYPES",
    "SERVE_DEPLOYMENT",
    "AppSnapshot",
    "InstanceType",
    "ServeApplication",
    "application_name",
    "autoscaling_config",
    "desired_replicas",
    "failure_reason",
    "observed_status",
    "replica_resources",
    "serve_application",
]

SERVE_DEPLOYMENT = "InferenceServer"
DEFAULT_INSTANCE_TYPE = "Standard_DS3_v2"
DEFAULT_CPU_PER_VCPU = 0.125
_REASON_LINES = 8
_REASON_CHARS = 4000
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class InstanceType:
    """An Azure VM size: what a replica of that type asks Ray for is derived from it."""

    vcpus: int
    memory_gib: float
    gpus: int = 0


INSTANCE_TYPES: Mapping[str, InstanceType] = {
    "Standard_DS1_v2": InstanceType(1, 3.5),
    "Standard_DS2_v2": InstanceType(2, 7),
    "Standard_DS3_v2": InstanceType(4, 14),
    "Standard_DS4_v2": InstanceType(8, 28),
    "Standard_DS5_v2": InstanceType(16, 56),
    "Standard_F2s_v2": InstanceType(2, 4),
    "Standard_F4s_v2": InstanceType(4, 8),
    "Standard_F8s_v2": InstanceType(8, 16),
    "Standard_F16s_v2": InstanceType(16, 32),
    "Standard_F32s_v2": InstanceType(32, 64),
    "Standard_F48s_v2": InstanceType(48, 96),
    "Standard_F64s_v2": InstanceType(64, 128),
    "Standard_F72s_v2": InstanceType(72, 144),
    "Standard_E2s_v3": InstanceType(2, 16),
    "Standard_E4s_v3": InstanceType(4, 32),
    "Standard_E8s_v3": InstanceType(8, 64),
    "Standard_E16s_v3": InstanceType(16, 128),
    "Standard_E32s_v3": InstanceType(32, 256),
    "Standard_E48s_v3": InstanceType(48, 384),
    "Standard_E64s_v3": InstanceType(64, 432),
    "Standard_NC4as_T4_v3": InstanceType(4, 28, 1),
    "Standard_NC8as_T4_v3": InstanceType(8, 56, 1),
    "Standard_NC16as_T4_v3": InstanceType(16, 110, 1),
    "Standard_NC64as_T4_v3": InstanceType(64, 440, 4),
    "Standard_NC6s_v3": InstanceType(6, 112, 1),
    "Standard_NC12s_v3": InstanceType(12, 224, 2),
    "Standard_NC24s_v3": InstanceType(24, 448, 4),
    "Standard_NC24ads_A100_v4": InstanceType(24, 220, 1),
    "Standard_NC48ads_A100_v4": InstanceType(48, 440, 2),
    "Standard_NC96ads_A100_v4": InstanceType(96, 880, 4),
    "Standard_ND96asr_v4": InstanceType(96, 900, 8),
    "Standard_ND96amsr_A100_v4": InstanceType(96, 1900, 8),
}


# -- the translation of a spec into a Serve application (pure) --------------------------------


def replica_resources(
    instance_type: str,
    *,
    cpu_per_vcpu: float = DEFAULT_CPU_PER_VCPU,
    table: Mapping[str, InstanceType] = INSTANCE_TYPES,
) -> tuple[dict[str, float], bool]:
    """Ray resources of one replica (``num_cpus``, ``num_gpus``) and whether the type is known.

    >>> replica_resources("Standard_NC6s_v3")
    ({'num_cpus': 0.75, 'num_gpus': 1.0}, True)
    """
    by_name = {name.lower(): size for name, size in table.items()}
    size = by_name.get(instance_type.lower())
    known = size is not None
    if size is None:
        size = by_name.get(DEFAULT_INSTANCE_TYPE.lower(), INSTANCE_TYPES[DEFAULT_INSTANCE_TYPE])
    return {"num_cpus": size.vcpus * cpu_per_vcpu, "num_gpus": float(size.gpus)}, known


def application_name(deployment_id: str, prefix: str = "") -> str:
    """The Serve application of a deployment: ``{endpoint}_{deployment}``, lower case.

    Endpoint and deployment names hold letters, digits and hyphens only, so ``_`` cannot be
    part of either. An id of another shape gets a digest instead.
    """
    parts = canonical(deployment_id).strip("/").split("/")
    try:
        endpoint = parts[parts.index("onlineendpoints") + 1]
        name = parts[parts.index("deployments") + 1]
    except (ValueError, IndexError):
        endpoint, name = "deployment", hashlib.sha256("/".join(parts).encode()).hexdigest()[:16]
    return f"{prefix}{endpoint}_{name}"


def autoscaling_config(spec: DeploymentSpec, *, scale_in_window: int = 5) -> dict[str, Any]:
    """Serve's autoscaling for ``target_utilization`` (see :mod:`propylon.runtime.autoscaler`)."""
    scale = spec.scale
    maximum = max(scale.max_instances, scale.min_instances, 1)
    per_replica = spec.requests.max_concurrent_requests_per_instance
    return {
        "min_replicas": scale.min_instances,
        "max_replicas": maximum,
        "initial_replicas": max(scale.min_instances, min(maximum, spec.instance_count)),
        "target_ongoing_requests": per_replica * scale.target_utilization_percentage / 100,
        "upscale_delay_s": scale.polling_interval,
        "downscale_delay_s": scale.polling_interval * scale_in_window,
    }


@dataclass(frozen=True)
class ServeApplication:
    """Everything Serve is given for one deployment; ``notes`` go to the set-up log."""

    name: str
    route_prefix: str
    options: Mapping[str, Any]
    replica: ReplicaSettings
    notes: tuple[str, ...] = ()

    @property
    def max_ongoing_requests(self) -> int:
        return int(self.options["max_ongoing_requests"])

    @property
    def fingerprint(self) -> str:
        """A digest of everything above (secrets included): equal means nothing to redeploy."""
        return self.replica.fingerprint


def serve_application(
    spec: DeploymentSpec,
    *,
    identity: Mapping[str, str] | None = None,
    log_folder: Path | None = None,
    cpu_per_vcpu: float = DEFAULT_CPU_PER_VCPU,
    instance_types: Mapping[str, InstanceType] = INSTANCE_TYPES,
    pip_options: Sequence[str] = (),
    stop_timeout: float = 30.0,
    scale_in_window: int = 5,
    max_surge_percent: int = 20,
    app_prefix: str = "",
) -> ServeApplication:
    """Translate ``spec`` into Serve's terms (no I/O; see the module docstring for the map)."""
    name = application_name(spec.deployment_id, app_prefix)
    notes: list[str] = []
    resources, known = replica_resources(
        spec.instance_type, cpu_per_vcpu=cpu_per_vcpu, table=instance_types
    )
    if not known:
        notes.append(
            f"WARNING: instance type {spec.instance_type!r} is not in the Ray backend's table; "
            f"replicas get the resources of {DEFAULT_INSTANCE_TYPE}."
        )
    gpus = f", {resources['num_gpus']:g} GPU" if resources["num_gpus"] else ""
    notes.append(
        f"Instance type {spec.instance_type}: {resources['num_cpus']:g} CPU{gpus} per replica."
    )
    if not resources["num_gpus"]:
        del resources["num_gpus"]
    # Azure's variables and the deployment's, as a local instance gets them; nothing inherited
    # from the server: the replica's worker has its own PATH and HOME on its node.
    variables = instance_variables(spec, Environment(python=Path(sys.executable)), inherited={})
    runtime_env: dict[str, Any] = {"env_vars": variables}
    environment = spec.environment
    if environment.image:
        notes.append(
            f"WARNING: image {environment.image!r} is not run; replicas use the cluster's Python "
            "environment plus the environment's pip requirements."
        )
    python = ".".join(str(part) for part in sys.version_info[:2])
    if environment.python_version and not environment.python_version.startswith(python):
        notes.append(
            f"WARNING: the environment asks for Python {environment.python_version}; replicas run "
            f"the cluster's Python (the server's is {python})."
        )
    if environment.is_server_environment:
        notes.append("Environment: the cluster's own Python environment.")
    else:
        pip: dict[str, Any] = {"packages": list(environment.pip_requirements), "pip_check": False}
        if pip_options:
            pip["pip_install_options"] = list(pip_options)
        runtime_env["pip"] = pip
        notes.append(
            "Environment: Ray installs the pip requirements into the replicas' runtime "
            f"environment on each node: {', '.join(environment.pip_requirements)}."
        )
    options: dict[str, Any] = {
        "name": SERVE_DEPLOYMENT,
        "max_ongoing_requests": spec.requests.max_concurrent_requests_per_instance,
        "ray_actor_options": {**resources, "runtime_env": runtime_env},
        "health_check_period_s": spec.liveness.period,
        "health_check_timeout_s": spec.liveness.timeout,
        "graceful_shutdown_timeout_s": stop_timeout,
        "max_surge_percent": max_surge_percent,
    }
    if is_autoscaled(spec):
        options["autoscaling_config"] = autoscaling_config(spec, scale_in_window=scale_in_window)
        scaling = options["autoscaling_config"]
        notes.append(
            f"Autoscaling between {scaling['min_replicas']} and {scaling['max_replicas']} "
            f"replicas at {scaling['target_ongoing_requests']:g} ongoing requests per replica."
        )
    else:
        options["num_replicas"] = spec.instance_count
    working_dir = spec.code_dir or Path(spec.scoring_script).parent
    replica = ReplicaSettings(
        deployment_id=spec.deployment_id,
        deployment_name=spec.name,
        log_folder=str(log_folder) if log_folder is not None else None,
        working_dir=str(working_dir),
        secret_variables=dict(identity or {}),
        start_timeout=spec.readiness.initial_delay
        + spec.readiness.period * spec.readiness.failure_threshold,
    )
    # What the replicas were made from, so that an unchanged spec is recognised as running.
    given = {"name": name, "options": options, "replica": dataclasses.asdict(replica)}
    document = json.dumps(given, sort_keys=True, default=str).encode()
    replica = dataclasses.replace(replica, fingerprint=hashlib.sha256(document).hexdigest()[:16])
    return ServeApplication(
        name=name, route_prefix=f"/{name}", options=options, replica=replica, notes=tuple(notes)
    )


# -- Serve's status, read back (pure) ----------------------------------------------------------


@dataclass(frozen=True)
class AppSnapshot:
    """What ``serve.status()`` says of one application, reduced to what a status needs."""

    status: str  # ApplicationStatus: NOT_STARTED DEPLOYING DEPLOY_FAILED RUNNING UNHEALTHY DELETING
    message: str = ""
    replicas: Mapping[str, int] = field(default_factory=dict)  # ReplicaState → count
    deployment_message: str = ""

    @property
    def running(self) -> int:
        return self.replicas.get("RUNNING", 0)


def failure_reason(message: str) -> str:
    """Serve's message without colour codes, cut to its first line and the traceback's end."""
    lines = [line for line in _ANSI.sub("", message).splitlines() if line.strip()]
    if len(lines) > _REASON_LINES + 2:
        lines = [lines[0], "…", *lines[-_REASON_LINES:]]
    return "\n".join(lines)[-_REASON_CHARS:]


def observed_status(
    app: AppSnapshot | None, *, name: str, desired: int, succeeded: bool
) -> DeploymentStatus:
    """The deployment's status from its application's; ``succeeded``: it has been Succeeded."""
    if app is None:
        return DeploymentStatus(
            DeploymentState.FAILED,
            desired=desired,
            reason=f"The Ray Serve application {name!r} no longer exists on the cluster; update "
            "the deployment to create it again.",
        )
    ready = app.running
    match app.status:
        case "RUNNING":
            return DeploymentStatus(DeploymentState.SUCCEEDED, desired=desired, ready=ready)
        case "DEPLOY_FAILED" | "UNHEALTHY":
            why = failure_reason(app.deployment_message or app.message)
            state = "could not be deployed" if app.status == "DEPLOY_FAILED" else "is unhealthy"
            return DeploymentStatus(
                DeploymentState.FAILED,
                desired=desired,
                ready=ready,
                reason=f"The Ray Serve application {name!r} {state}: {why}",
            )
        case "DELETING":
            return DeploymentStatus(DeploymentState.DELETING, desired=desired, ready=ready)
        case _:
            # while deploying, Serve says what it waits for (e.g. replicas that cannot be
            # scheduled: the CPUs they ask for and what the cluster has)
            state = DeploymentState.UPDATING if succeeded else DeploymentState.CREATING
            waiting = app.deployment_message or app.message
            reason = failure_reason(waiting) if waiting.strip() else None
            return DeploymentStatus(state, desired=desired, ready=ready, reason=reason)


def desired_replicas(spec: DeploymentSpec, app: AppSnapshot | None) -> int:
    """How many replicas the deployment should have now (autoscaled: as many as are wanted)."""
    if not is_autoscaled(spec):
        return spec.instance_count
    config = autoscaling_config(spec)
    wanted = (app.replicas.get("RUNNING", 0) + app.replicas.get("STARTING", 0)) if app else 0
    return int(max(config["min_replicas"], min(config["max_replicas"], wanted)))
