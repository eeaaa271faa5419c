"""The local backend: every instance a subprocess of the server, on a free loopback port.

:class:`LocalBackend` implements :class:`~propylon.runtime.base.Backend` with one
:class:`~propylon.runtime.supervisor.DeploymentSupervisor` per deployment, all on the server's
event loop. What it keeps in the data dir:

==============================  ==============================================================
``envs/<hash>/``                 built environments, shared by deployments (``environments``);
                                 deleted once unused for ``environment_retention`` seconds
``logs/deployments/<hash>/``     set-up and instance output for ``getLogs`` (``logs``)
``run/instances/<pid>.json``     running instances, so that a restarted server kills those a
                                 dead one left behind (``reaper``)
==============================  ==============================================================

Ready instances are published to the store (``publish``), where every gateway replica finds
them. Instances get the variables listed in :mod:`propylon.runtime.launch`; with an
``identity_env`` callable, also what it returns for ``(spec, instance_id)`` at every start
(``IDENTITY_ENDPOINT``, ``IDENTITY_HEADER``), so a restarted instance gets fresh values.

Environments are cleaned up ``environment_gc_delay`` seconds after the first apply (time for a
restarted server to re-apply its deployments), then every ``environment_gc_interval`` seconds:
those that neither a deployment's spec nor a running instance uses and that were not used for
``environment_retention`` seconds (0: never) are deleted. The pass marks those in use as used,
so another server on the same data dir keeps them too. Example::

    backend = LocalBackend(settings.data_dir, ResourceStore(db), identity_env=identities.env_for)
    await backend.apply(spec)
    backend.status(spec.deployment_id)       # DeploymentStatus(state=<Creating>, desired=1, …)
    backend.logs(spec.deployment_id, ContainerType.INFERENCE_SERVER, tail=100)
    await backend.shutdown()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from propylon.errors import NotFound
from propylon.runtime.backoff import RestartPolicy
from propylon.runtime.base import (
    ContainerType,
    DeploymentSpec,
    DeploymentStatus,
    InstanceAddress,
)
from propylon.runtime.environments import EnvironmentBuilder, PrunedEnvironment
from propylon.runtime.instance import Instance, InstanceInfo, InstanceState
from propylon.runtime.launch import IdentityEnv, Launcher, LaunchPlan
from propylon.runtime.logs import DeploymentLogs, LogStore
from propylon.runtime.probes import InstanceProbe
from propylon.runtime.publish import InstanceSetPublisher
from propylon.runtime.reaper import ProcessRegistry
from propylon.runtime.sockets import SocketDirectory
from propylon.runtime.supervisor import DeploymentSupervisor, Spawn
from propylon.store import ResourceStore, canonical

__all__ = ["LocalBackend"]

log = logging.getLogger("propylon.runtime")


class LocalBackend:
    """Deployments as supervised local processes.

    ``drain_delay`` is how long a withdrawn instance keeps serving before SIGTERM (longer than
    the gateways' change-feed interval); ``stop_timeout`` how long it may drain before SIGKILL.
    ``pip_options`` are added to every environment build (``("--no-index", "--find-links",
    "/wheels")`` for an offline mirror). ``environment_retention`` is how long (seconds) an
    environment no deployment uses is kept; 0 keeps every one.
    """

    name = "local"

    def __init__(
        self,
        data_dir: Path,
        resources: ResourceStore,
        *,
        identity_env: IdentityEnv | None = None,
        restart_policy: RestartPolicy | None = None,
        drain_delay: float = 1.0,
        stop_timeout: float = 30.0,
        pip_options: Sequence[str] = (),
        startup_poll: float = 0.1,
        scale_in_window: int = 5,
        environment_retention: float = 7 * 86400.0,
        environment_gc_delay: float = 300.0,
        environment_gc_interval: float = 3600.0,
    ) -> None:
        self.data_dir = data_dir
        self.environments = EnvironmentBuilder(data_dir / "envs", pip_options=pip_options)
        self._logs = LogStore(data_dir / "logs" / "deployments")
        self._launcher = Launcher(self.environments)
        self._publisher = InstanceSetPublisher(resources)
        self._probe = InstanceProbe()
        self._identity_env = identity_env
        self._policy = restart_policy or RestartPolicy()
        self._drain_delay = drain_delay
        self._stop_timeout = stop_timeout
        self._startup_poll = startup_poll
        self._scale_in_window = scale_in_window
        self._supervisors: dict[str, DeploymentSupervisor] = {}
        self._registry = ProcessRegistry(data_dir / "run" / "instances")
        self._sockets = SocketDirectory(data_dir)
        self._reaped = False
        self._retention = environment_retention
        self._gc_delay = environment_gc_delay
        self._gc_interval = environment_gc_interval
        self._gc: asyncio.Task[None] | None = None
        self._specs: dict[str, DeploymentSpec] = {}
        self._spawned: set[Instance] = set()

    async def apply(self, spec: DeploymentSpec) -> None:
        """Create the deployment or roll it to ``spec``; returns once taken (then poll status)."""
        if not self._reaped:  # before the first instance of this server starts
            self._reaped = True
            await asyncio.to_thread(self._registry.reap)
        self._start_environment_gc()
        key = canonical(spec.deployment_id)
        self._specs[key] = spec  # its environment is in use from now on, built or not
        supervisor = self._supervisors.get(key)
        if supervisor is None:
            logs = self._logs.deployment(spec.deployment_id)
            supervisor = DeploymentSupervisor(
                spec.deployment_id,
                launcher=self._launcher,
                spawn=self._spawner(logs),
                publisher=self._publisher,
                setup_log=logs.storage_initializer(),
                probe=self._probe,
                policy=self._policy,
                drain_delay=self._drain_delay,
                stop_timeout=self._stop_timeout,
                scale_in_window=self._scale_in_window,
            )
            self._supervisors[key] = supervisor
            supervisor.start()
        await supervisor.apply(spec)

    async def remove(self, deployment_id: str) -> None:
        """Withdraw, drain and stop every instance; forget the deployment and its logs."""
        self._specs.pop(canonical(deployment_id), None)
        supervisor = self._supervisors.pop(canonical(deployment_id), None)
        if supervisor is not None:
            await supervisor.close(withdraw=True)
        else:
            await self._publisher.withdraw(deployment_id)
        self._logs.deployment(deployment_id).remove()

    def status(self, deployment_id: str) -> DeploymentStatus:
        """The deployment's state; :class:`NotFound` if this backend does not run it."""
        return self._supervisor(deployment_id).status()

    def logs(self, deployment_id: str, container_type: ContainerType, tail: int) -> str:
        """The newest ``tail`` lines; read from disk, so also after a server restart."""
        return self._logs.deployment(deployment_id).tail(container_type, tail)

    def addresses(self, deployment_id: str) -> list[InstanceAddress]:
        """The instances that serve the deployment now (what its instance set says)."""
        return self._supervisor(deployment_id).addresses()

    def instances(self, deployment_id: str) -> list[InstanceInfo]:
        """Every instance of the serving and the upcoming generation, ready or not."""
        return self._supervisor(deployment_id).instances()

    def environments_in_use(self) -> set[str]:
        """Keys of the environments of every deployment's spec and of every running instance."""
        self._forget_stopped()
        environments = [spec.environment for spec in self._specs.values()]
        keys = {self.environments.key(e) for e in environments if not e.is_server_environment}
        # A replaced generation's instances run from the old environment until they have drained.
        keys.update(i.plan.environment.key for i in self._spawned if i.plan.environment.key)
        return keys

    async def collect_environments(self) -> list[PrunedEnvironment]:
        """Delete the environments unused for ``environment_retention`` seconds, now."""
        if self._retention <= 0:
            return []
        in_use = self.environments_in_use()
        return await asyncio.to_thread(self.environments.prune, in_use, self._retention)

    async def shutdown(self) -> None:
        """Stop everything (server shutdown): withdraw every set, drain, stop, close the client."""
        if self._gc is not None:
            self._gc.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._gc
        supervisors = list(self._supervisors.values())
        self._supervisors.clear()
        await asyncio.gather(*(s.close(withdraw=True) for s in supervisors), return_exceptions=True)
        await self._probe.aclose()

    def _supervisor(self, deployment_id: str) -> DeploymentSupervisor:
        supervisor = self._supervisors.get(canonical(deployment_id))
        if supervisor is None:
            raise NotFound(f"The deployment {deployment_id} is not running on this server.")
        return supervisor

    def _start_environment_gc(self) -> None:
        if self._retention > 0 and self._gc is None:
            self._gc = asyncio.get_running_loop().create_task(
                self._collect_environments_periodically(), name="environment clean-up"
            )

    async def _collect_environments_periodically(self) -> None:
        await asyncio.sleep(self._gc_delay)
        while True:
            try:
                await self.collect_environments()
            except Exception:
                log.exception("environment clean-up failed")
            await asyncio.sleep(self._gc_interval)

    def _forget_stopped(self) -> None:
        self._spawned = {i for i in self._spawned if i.state is not InstanceState.STOPPED}

    def _spawner(self, logs: DeploymentLogs) -> Spawn:
        def spawn(instance_id: str, plan: LaunchPlan, on_change: Callable[[], None]) -> Instance:
            instance = Instance(
                instance_id,
                plan,
                probe=self._probe,
                policy=self._policy,
                log=logs.instance(instance_id),
                on_change=on_change,
                identity_env=self._identity_env,
                registry=self._registry,
                stop_timeout=self._stop_timeout,
                startup_poll=self._startup_poll,
                unix_socket=self._sockets.path(plan.spec.deployment_id, instance_id),
            )
            self._forget_stopped()
            self._spawned.add(instance)
            return instance

        return spawn
