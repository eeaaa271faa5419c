"""The runtime: deployments run as supervised instances of the inference server.

The control plane and the gateway depend on :class:`Backend` (``base``); :class:`LocalBackend`
(``local``) is the first implementation, one subprocess per instance. Its parts, one module each:
``supervisor`` (a deployment's generations: rollout, scaling, drain), ``instance`` (one process:
probes, restarts), ``backoff`` (restart schedule, crash loops), ``probes`` (HTTP to instances),
``autoscaler`` (target utilization), ``environments`` (virtual environments per spec),
``launch`` (what an instance is started with), ``logs`` (output for ``getLogs``), ``publish``
(ready instances in the store, for every gateway), ``reaper`` (instances a dead server left
behind). Example::

    from propylon.runtime import DeploymentSpec, LocalBackend

    backend = LocalBackend(data_dir, resources)
    await backend.apply(DeploymentSpec(…))
"""

from propylon.runtime.autoscaler import AutoscalePolicy, Autoscaler, LoadReport
from propylon.runtime.backoff import RestartPolicy
from propylon.runtime.base import (
    Backend,
    ContainerType,
    DeploymentSpec,
    DeploymentState,
    DeploymentStatus,
    EnvironmentSpec,
    IdentitySpec,
    InstanceAddress,
    ProbeSettings,
    RequestSettings,
    ScaleSettings,
    instance_set_id,
)
from propylon.runtime.environment_specs import environment_key
from propylon.runtime.environments import (
    EnvironmentBuilder,
    EnvironmentBuildFailed,
    PrunedEnvironment,
)
from propylon.runtime.instance import InstanceInfo, InstanceState
from propylon.runtime.launch import IdentityEnv
from propylon.runtime.local import LocalBackend
from propylon.runtime.publish import InstanceSetPublisher

__all__ = [
    "AutoscalePolicy",
    "Autoscaler",
    "Backend",
    "ContainerType",
    "DeploymentSpec",
    "DeploymentState",
    "DeploymentStatus",
    "EnvironmentBuildFailed",
    "EnvironmentBuilder",
    "EnvironmentSpec",
    "IdentityEnv",
    "IdentitySpec",
    "InstanceAddress",
    "InstanceInfo",
    "InstanceSetPublisher",
    "InstanceState",
    "LoadReport",
    "LocalBackend",
    "ProbeSettings",
    "PrunedEnvironment",
    "RequestSettings",
    "RestartPolicy",
    "ScaleSettings",
    "environment_key",
    "instance_set_id",
]
