"""The runtime's interface: what the control plane asks of a backend, what the gateway reads back.

A backend runs the instances of deployments (local subprocesses first; Ray Serve next). The control
plane hands it a :class:`DeploymentSpec` and polls :meth:`Backend.status`; the backend publishes the
addresses of ready instances to the store (resource type ``instancesets``, id
``{deployment id}/instanceSets/current``) so that every gateway replica, in this process or another,
routes to them through the change feed.

Example::

    await backend.apply(spec)             # create, or roll out a new generation
    backend.status(spec.deployment_id)    # DeploymentStatus(state="Succeeded", ready=1, desired=1)
    await backend.remove(spec.deployment_id)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = [
    "Backend",
    "ContainerType",
    "DeploymentSpec",
    "DeploymentState",
    "DeploymentStatus",
    "EnvironmentSpec",
    "IdentitySpec",
    "InstanceAddress",
    "ProbeSettings",
    "RequestSettings",
    "ScaleSettings",
    "instance_set_id",
]


class DeploymentState(StrEnum):
    CREATING = "Creating"
    UPDATING = "Updating"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    DELETING = "Deleting"


class ContainerType(StrEnum):
    INFERENCE_SERVER = "InferenceServer"
    STORAGE_INITIALIZER = "StorageInitializer"


@dataclass(frozen=True)
class ProbeSettings:
    """Azure's probe settings (seconds); defaults are Azure's documented defaults."""

    initial_delay: float = 10.0
    period: float = 10.0
    timeout: float = 2.0
    success_threshold: int = 1
    failure_threshold: int = 30


@dataclass(frozen=True)
class RequestSettings:
    max_concurrent_requests_per_instance: int = 1
    request_timeout_ms: int = 5000
    max_queue_wait_ms: int = 500


@dataclass(frozen=True)
class ScaleSettings:
    """``Default`` (fixed ``instance_count``) or ``TargetUtilization`` (autoscale)."""

    scale_type: str = "Default"
    min_instances: int = 1
    max_instances: int = 1
    polling_interval: float = 1.0
    target_utilization_percentage: int = 70


@dataclass(frozen=True)
class EnvironmentSpec:
    """What the instance's Python environment needs; empty means the server's own environment."""

    pip_requirements: tuple[str, ...] = ()
    python_version: str | None = None
    image: str | None = None

    @property
    def is_server_environment(self) -> bool:
        return not self.pip_requirements


@dataclass(frozen=True)
class IdentitySpec:
    """The managed identity the instances act as (system- or user-assigned)."""

    principal_id: str
    client_id: str
    tenant_id: str


@dataclass(frozen=True)
class DeploymentSpec:
    deployment_id: str  # canonical ARM id of the deployment
    endpoint_id: str
    endpoint_name: str
    name: str
    code_dir: Path | None
    scoring_script: str
    model_dir: Path | None
    environment: EnvironmentSpec = field(default_factory=EnvironmentSpec)
    environment_variables: dict[str, str] = field(default_factory=dict)
    instance_count: int = 1
    instance_type: str = "Standard_DS3_v2"
    scale: ScaleSettings = field(default_factory=ScaleSettings)
    liveness: ProbeSettings = field(default_factory=ProbeSettings)
    readiness: ProbeSettings = field(default_factory=ProbeSettings)
    requests: RequestSettings = field(default_factory=RequestSettings)
    identity: IdentitySpec | None = None
    generation: int = 1


@dataclass(frozen=True)
class DeploymentStatus:
    state: DeploymentState
    desired: int = 0
    ready: int = 0
    reason: str | None = None


@dataclass(frozen=True)
class InstanceAddress:
    """Where the gateway sends a request: ``http://127.0.0.1:PORT``, or the Unix socket ``uds``
    when the gateway runs on ``node`` (see :mod:`propylon.runtime.sockets`)."""

    instance_id: str
    url: str
    uds: str | None = None
    max_concurrent: int = 1
    node: str | None = None


def instance_set_id(deployment_id: str) -> str:
    return f"{deployment_id}/instanceSets/current"


@runtime_checkable
class Backend(Protocol):
    name: str

    async def apply(self, spec: DeploymentSpec) -> None:
        """Create the deployment or roll it to ``spec`` (new instances ready before old stop)."""

    async def remove(self, deployment_id: str) -> None:
        """Drain in-flight requests, stop every instance, forget the deployment."""

    def status(self, deployment_id: str) -> DeploymentStatus:
        """The deployment's current state; ``Failed`` carries the reason."""
        ...

    def logs(self, deployment_id: str, container_type: ContainerType, tail: int) -> str:
        """The last ``tail`` lines of the instances' output (``InferenceServer``) or set-up."""
        ...

    async def shutdown(self) -> None:
        """Stop every instance (server shutdown)."""
