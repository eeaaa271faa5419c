"""The Ray backend: every deployment a Ray Serve application on an existing Ray cluster.

:class:`RayBackend` implements :class:`~propylon.runtime.base.Backend` for ``propylon server
--runtime ray [--ray-address auto|ray://HOST:10001]`` (installed with ``pip install
'propylon[ray]'``). This is the only module that imports Ray, lazily, so that Propylon runs
without it; Ray's and Serve's exceptions become Propylon's here (:func:`_converted`). What a
deployment becomes on Serve (application, replicas, autoscaling, runtime environment, the
instance-type table) is :mod:`propylon.runtime.ray_apps`; what runs in a replica (the same
inference server as a local instance) is :mod:`propylon.runtime.ray_replica`.

Every Ray call runs on one thread of the backend's own, in order, off the event loop; a task
polls ``serve.status()`` every ``poll_interval`` for the status and the instance sets.

The gateway reaches the replicas through Serve's HTTP proxy: the instance set lists one entry
per running replica, each ``http://127.0.0.1:<serve port>/<route prefix>`` with
``max_concurrent`` = ``max_ongoing_requests``, so the gateway's per-instance limits and queue
see the replica count as they see local instances; Serve picks the replica. The proxy listens
on loopback by default: a proxy reachable from elsewhere would bypass the gateway's
authentication, so expose it (``http_host="0.0.0.0"``) only to the gateway's hosts.

Serve's default proxy is Python (uvicorn plus a handle per request); Serve's HAProxy ingress
(``RAY_SERVE_ENABLE_HA_PROXY=1`` in the environment of ``ray start``) forwards several times
more requests per second on the same machine (``bench/gateway/ray_column.py``) but takes ~30 s
to delete an application. The backend works with either.

Status follows Serve's application status, polled every ``poll_interval``: ``DEPLOYING`` →
Creating (Updating once the deployment has succeeded), ``RUNNING`` → Succeeded,
``DEPLOY_FAILED`` and ``UNHEALTHY`` → Failed with Serve's message (the end of the replica's
traceback), ``DELETING`` → Deleting. A replica that dies is replaced by Serve; the instance set
follows the running count meanwhile.

Logs: replicas store their output where a local instance's goes
(``DATA_DIR/logs/deployments/<hash>/<deployment>-<replica>.log``, read by ``getLogs``), and
set-up notes go to ``storage-initializer.log``. Code, model and log directories are used at the
paths the server has them, so every Ray node must see the server's data directory at the same
path (one machine, or a shared filesystem). Example::

    backend = RayBackend(resources, address="auto", data_dir=settings.data_dir)
    await backend.apply(spec)
    backend.status(spec.deployment_id)   # DeploymentStatus(state=<Creating>, desired=2, …)
    await backend.remove(spec.deployment_id)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import importlib.util
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from propylon.errors import (
    BadRequest,
    ConfigurationError,
    NotFound,
    PropylonError,
    ServiceUnavailable,
)
from propylon.runtime.base import (
    Backend,
    ContainerType,
    DeploymentSpec,
    DeploymentState,
    DeploymentStatus,
    InstanceAddress,
)
from propylon.runtime.launch import IdentityEnv
from propylon.runtime.logs import LogFile, LogStore
from propylon.runtime.publish import InstanceSetPublisher
from propylon.runtime.ray_apps import (
    DEFAULT_CPU_PER_VCPU,
    INSTANCE_TYPES,
    AppSnapshot,
    InstanceType,
    ServeApplication,
    application_name,
    desired_replicas,
    observed_status,
    serve_application,
)
from propylon.runtime.ray_replica import InferenceReplica, ReplicaSettings
from propylon.store import ResourceStore, canonical

__all__ = ["RayBackend", "create_backend"]

log = logging.getLogger("propylon.runtime")

T = TypeVar("T")

_FINGERPRINT_TIMEOUT = 10.0
_DELETE_GRACE = 60.0  # beyond stop_timeout: Serve's HAProxy ingress drains for ~30 s
_UNSEEN_GRACE = 30.0  # how long a submitted application may be missing from serve.status()


@dataclass
class _Tracked:
    spec: DeploymentSpec
    app: ServeApplication
    status: DeploymentStatus
    succeeded: bool = False
    applying: bool = False
    submitted_at: float = 0.0  # monotonic
    epoch: int = 0
    snapshot: AppSnapshot | None = None
    # Why the latest apply never reached Serve; it stays the status until the next apply.
    refused: str | None = None


class RayBackend:
    """Deployments as Ray Serve applications on the cluster at ``address``.

    ``address`` is what ``ray.init`` takes: ``"auto"`` (a cluster started on this machine with
    ``ray start``), ``"ray://host:10001"`` (Ray Client) or a GCS address. Serve is started on
    first use if it is not running, its proxy on ``http_host:http_port``; ``proxy_url`` is how
    the gateway reaches that proxy (default: loopback, or the Ray Client's host). ``data_dir``
    holds the deployments' logs (as the local backend's). ``identity_env`` is called with
    ``(spec, application name)`` when a deployment is first applied and whenever its identity
    changes; every replica gets what it returned. Nothing happens until the first call that
    needs the cluster (:meth:`connect` does it ahead, to fail fast at server start).

    :meth:`shutdown` disconnects but leaves the applications running: they belong to the
    cluster, keep serving through a server restart, and are adopted again when the control plane
    re-applies their specs.
    """

    name = "ray"

    def __init__(
        self,
        resources: ResourceStore,
        *,
        address: str = "auto",
        data_dir: Path | None = None,
        identity_env: IdentityEnv | None = None,
        http_host: str = "127.0.0.1",
        http_port: int = 8000,
        proxy_url: str | None = None,
        cpu_per_vcpu: float = DEFAULT_CPU_PER_VCPU,
        instance_types: Mapping[str, InstanceType] | None = None,
        pip_options: Sequence[str] = (),
        poll_interval: float = 0.5,
        drain_delay: float = 1.0,
        stop_timeout: float = 30.0,
        scale_in_window: int = 5,
        max_surge_percent: int = 20,
        app_prefix: str = "",
    ) -> None:
        if importlib.util.find_spec("ray") is None:
            raise ConfigurationError(
                "The ray runtime needs Ray Serve, which is not installed: "
                "pip install 'propylon[ray]'."
            )
        self.address = address
        self._publisher = InstanceSetPublisher(resources)
        self._logs = LogStore(data_dir / "logs" / "deployments") if data_dir else None
        self._identity_env = identity_env
        self._http_host = http_host
        self._http_port = http_port
        self._proxy_url = proxy_url.rstrip("/") if proxy_url else None
        self._cpu_per_vcpu = cpu_per_vcpu
        self._instance_types = {**INSTANCE_TYPES, **(instance_types or {})}
        self._pip_options = tuple(pip_options)
        self._poll_interval = poll_interval
        self._drain_delay = drain_delay
        self._stop_timeout = stop_timeout
        self._scale_in_window = scale_in_window
        self._max_surge_percent = max_surge_percent
        self._app_prefix = app_prefix
        self._tracked: dict[str, _Tracked] = {}
        # Every Ray call runs on this one thread: off the event loop, and never two at once.
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ray")
        self._connected = False
        self._owns_connection = False
        self._monitor: asyncio.Task[None] | None = None

    # -- Backend -------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect to the cluster and start Serve if needed; :class:`ServiceUnavailable` if not."""
        await self._call(lambda: None)

    async def apply(self, spec: DeploymentSpec) -> None:
        """Create the application or redeploy it with ``spec``; returns once Serve has it.

        Poll :meth:`status`. A spec Serve refuses, or code that is not there, makes the status
        Failed; an unreachable cluster raises :class:`ServiceUnavailable`. An application that
        already runs exactly this (the server restarted) is adopted as it is.
        """
        key = canonical(spec.deployment_id)
        tracked = self._tracked.get(key)
        app = self._application(spec, tracked)
        ready = tracked.status.ready if tracked else 0
        state = (
            DeploymentState.UPDATING if tracked and tracked.succeeded else DeploymentState.CREATING
        )
        status = DeploymentStatus(state, desired=desired_replicas(spec, None), ready=ready)
        if tracked is None:
            tracked = self._tracked[key] = _Tracked(spec, app, status=status)
        else:
            tracked.spec, tracked.app, tracked.status = spec, app, status
        tracked.refused = None
        tracked.applying = True
        logs = self._logs.deployment(spec.deployment_id) if self._logs else None
        setup = logs.storage_initializer() if logs else None
        try:
            _note(setup, f"Preparing generation {spec.generation} of deployment {spec.name}.")
            problem = _missing_files(spec)
            if problem is not None:
                self._fail(tracked, setup, problem)
                return
            for line in app.notes:
                _note(setup, line)
            self._ensure_monitor()
            if await self._call(_running_fingerprint, app.name) == app.fingerprint:
                _note(setup, f"Ray Serve application {app.name} already runs this; kept as it is.")
                return
            tracked.submitted_at = time.monotonic()
            try:
                await self._call(self._submit, app)
            except BadRequest as exc:
                self._fail(tracked, setup, f"Ray Serve refused the deployment: {exc.message}")
                return
            replicas = app.options.get("num_replicas", "autoscaled")
            _note(
                setup,
                f"Submitted to Ray Serve as application {app.name} (route {app.route_prefix}, "
                f"replicas: {replicas}).",
            )
        finally:
            # What the monitor read before Serve had this spec must not count (see _watch).
            tracked.applying = False
            tracked.epoch += 1
            if setup is not None:
                setup.close()

    async def remove(self, deployment_id: str) -> None:
        """Withdraw the instance set, let gateways notice, delete the application and its logs.

        Serve drains the replicas (in-flight requests finish, up to ``stop_timeout``).
        """
        tracked = self._tracked.pop(canonical(deployment_id), None)
        name = tracked.app.name if tracked else application_name(deployment_id, self._app_prefix)
        await self._publisher.withdraw(deployment_id)
        if tracked is not None and tracked.status.ready:
            await asyncio.sleep(self._drain_delay)
        await self._call(_delete_application, name)
        # Waited for here, not on the Ray thread, which the other deployments' polls share.
        deadline = asyncio.get_running_loop().time() + self._stop_timeout + _DELETE_GRACE
        while name in await self._call(_read_applications):
            if asyncio.get_running_loop().time() > deadline:
                log.warning("Ray Serve is still deleting application %s", name)
                break
            await asyncio.sleep(self._poll_interval)
        if self._logs is not None:
            self._logs.deployment(deployment_id).remove()

    def status(self, deployment_id: str) -> DeploymentStatus:
        """The deployment's state as last observed; :class:`NotFound` if not applied here."""
        return self._get(deployment_id).status

    def logs(self, deployment_id: str, container_type: ContainerType, tail: int) -> str:
        """The newest ``tail`` lines of the replicas' output or of the set-up notes."""
        if self._logs is None:
            return ""
        return self._logs.deployment(deployment_id).tail(container_type, tail)

    async def shutdown(self) -> None:
        """Stop watching and disconnect; the applications keep running on the cluster."""
        self._tracked.clear()
        if self._monitor is not None:
            self._monitor.cancel()
            await asyncio.gather(self._monitor, return_exceptions=True)
            self._monitor = None
        if self._connected and self._owns_connection:
            await self._call(_disconnect)
        self._connected = False
        self._executor.shutdown(wait=False)

    # -- for operators and tests ---------------------------------------------------------------

    def deployments(self) -> list[str]:
        """The ids of the deployments applied through this backend (and not removed)."""
        return [tracked.spec.deployment_id for tracked in self._tracked.values()]

    def application(self, deployment_id: str) -> str:
        """The Serve application that runs the deployment."""
        tracked = self._tracked.get(canonical(deployment_id))
        return tracked.app.name if tracked else application_name(deployment_id, self._app_prefix)

    def addresses(self, deployment_id: str) -> list[InstanceAddress]:
        """What the deployment's instance set lists now: one entry per running replica."""
        tracked = self._get(deployment_id)
        return self._addresses(tracked, tracked.snapshot)

    @property
    def proxy_url(self) -> str:
        """Where Serve's HTTP proxy is reached (known once connected)."""
        if self._proxy_url is None:
            raise ServiceUnavailable("The Ray backend is not connected yet.")
        return self._proxy_url

    # -- internals -----------------------------------------------------------------------------

    def _application(self, spec: DeploymentSpec, tracked: _Tracked | None) -> ServeApplication:
        if tracked is not None and tracked.spec.identity == spec.identity:
            identity = dict(tracked.app.replica.secret_variables)
        elif self._identity_env is not None:
            name = application_name(spec.deployment_id, self._app_prefix)
            identity = dict(self._identity_env(spec, name))
        else:
            identity = {}
        return serve_application(
            spec,
            identity=identity,
            log_folder=self._logs.deployment(spec.deployment_id).folder if self._logs else None,
            cpu_per_vcpu=self._cpu_per_vcpu,
            instance_types=self._instance_types,
            pip_options=self._pip_options,
            stop_timeout=self._stop_timeout,
            scale_in_window=self._scale_in_window,
            max_surge_percent=self._max_surge_percent,
            app_prefix=self._app_prefix,
        )

    def _get(self, deployment_id: str) -> _Tracked:
        tracked = self._tracked.get(canonical(deployment_id))
        if tracked is None:
            raise NotFound(f"The deployment {deployment_id} is not running on this server.")
        return tracked

    def _fail(self, tracked: _Tracked, setup: LogFile | None, reason: str) -> None:
        _note(setup, f"ERROR: {reason}")
        tracked.refused = reason
        tracked.status = DeploymentStatus(
            DeploymentState.FAILED, desired=tracked.status.desired, reason=reason
        )

    def _addresses(self, tracked: _Tracked, app: AppSnapshot | None) -> list[InstanceAddress]:
        if app is None or app.status == "DELETING" or self._proxy_url is None:
            return []
        url = self._proxy_url + tracked.app.route_prefix
        concurrent = tracked.app.max_ongoing_requests
        return [
            InstanceAddress(f"{tracked.app.name}-{n}", url, max_concurrent=concurrent)
            for n in range(app.running)
        ]

    def _ensure_monitor(self) -> None:
        if self._monitor is None or self._monitor.done():
            self._monitor = asyncio.get_running_loop().create_task(
                self._watch(), name="ray-backend-monitor"
            )

    async def _watch(self) -> None:
        unreachable: str | None = None
        while True:
            epochs = {key: tracked.epoch for key, tracked in self._tracked.items()}
            try:
                snapshots = await self._call(_read_applications)
            except PropylonError as exc:
                if unreachable is None:  # once per outage, not once per poll
                    log.warning("cannot read Ray Serve's status: %s", exc.message)
                unreachable = exc.message
            else:
                if unreachable is not None:
                    log.info("Ray Serve's status can be read again")
                    unreachable = None
                for key, tracked in list(self._tracked.items()):
                    # A read that began before an apply finished may show the previous spec.
                    if tracked.applying or epochs.get(key) != tracked.epoch:
                        continue
                    try:
                        await self._observe(tracked, snapshots.get(tracked.app.name))
                    except Exception:  # one deployment's trouble must not stop the others'
                        log.exception("cannot follow %s", tracked.spec.deployment_id)
            await asyncio.sleep(self._poll_interval)

    async def _observe(self, tracked: _Tracked, app: AppSnapshot | None) -> None:
        if self._tracked.get(canonical(tracked.spec.deployment_id)) is not tracked:
            return  # removed meanwhile: its set stays withdrawn
        previous = tracked.status
        tracked.snapshot = app
        try:
            await self._publisher.publish(
                tracked.spec.deployment_id, tracked.spec.generation, self._addresses(tracked, app)
            )
        except Exception:  # the store is away: the next poll publishes again
            log.exception("cannot publish the instance set of %s", tracked.spec.deployment_id)
        if tracked.refused is not None:
            return  # what still runs keeps serving; the status stays the refusal
        if app is None and time.monotonic() - tracked.submitted_at < _UNSEEN_GRACE:
            return  # submitted a moment ago: the controller lists it on its next pass
        status = observed_status(
            app,
            name=tracked.app.name,
            desired=desired_replicas(tracked.spec, app),
            succeeded=tracked.succeeded,
        )
        tracked.status = status
        if status.state is DeploymentState.SUCCEEDED:
            tracked.succeeded = True
        changed = status.state != previous.state or status.reason != previous.reason
        if changed and self._logs is not None:
            setup = self._logs.deployment(tracked.spec.deployment_id).storage_initializer()
            if status.state is DeploymentState.FAILED:
                _note(setup, f"ERROR: {status.reason}")
            elif status.state is DeploymentState.SUCCEEDED:
                _note(setup, f"Ray Serve runs {status.ready} replica(s) of {tracked.app.name}.")
            elif status.reason:  # still deploying: what Serve waits for, once per new message
                _note(setup, f"Ray Serve: {status.reason}")
            setup.close()

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        call = functools.partial(self._in_ray_thread, function, *args)
        return await loop.run_in_executor(self._executor, call)

    def _in_ray_thread(self, function: Callable[..., T], *args: Any) -> T:
        try:
            if not self._connected:
                self._connect()
            return function(*args)
        except PropylonError:
            raise
        except Exception as exc:
            raise _converted(exc, self.address) from exc

    def _connect(self) -> None:
        import ray
        from ray import serve

        if not ray.is_initialized():
            # Replicas' output goes to the deployments' logs, not to the server's terminal.
            ray.init(address=self.address, log_to_driver=False, logging_level=logging.WARNING)
            self._owns_connection = True
        serve.start(http_options={"host": self._http_host, "port": self._http_port})
        if self._proxy_url is None:
            self._proxy_url = _default_proxy_url(self.address, _serve_http_port(self._http_port))
        self._connected = True

    def _submit(self, app: ServeApplication) -> None:
        from ray import serve

        # serve.deployment is typed as a decorator factory; called on a class it is the deployment.
        deployment: Any = serve.deployment(serve.ingress()(_ServeReplica))
        bound = deployment.options(**app.options).bind(app.replica)
        target = serve.RunTarget(
            target=bound,
            name=app.name,
            route_prefix=app.route_prefix,
            # The inference server logs every request itself (with Azure's request ids).
            logging_config={"enable_access_log": False},
        )
        # Returns once the controller has the application (DEPLOYING); the monitor does the rest.
        serve.run_many(
            [target],
            wait_for_ingress_deployment_creation=False,
            wait_for_applications_running=False,
        )


class _ServeReplica(InferenceReplica):
    """The replica class Serve instantiates; names its logs after Serve's replica id."""

    def __init__(self, settings: ReplicaSettings) -> None:
        from ray import serve

        replica = serve.get_replica_context().replica_id.unique_id
        super().__init__(settings, f"{settings.deployment_name}-{replica}")


# -- Ray calls (run on the backend's Ray thread) -----------------------------------------------


def _read_applications() -> dict[str, AppSnapshot]:
    from ray import serve

    snapshots = {}
    for name, app in serve.status().applications.items():
        replicas: dict[str, int] = {}
        messages = []
        for deployment in app.deployments.values():
            for state, count in deployment.replica_states.items():
                label = str(getattr(state, "value", state))
                replicas[label] = replicas.get(label, 0) + count
            if deployment.message:
                messages.append(deployment.message)
        snapshots[name] = AppSnapshot(
            status=str(getattr(app.status, "value", app.status)),
            message=app.message,
            replicas=replicas,
            deployment_message="\n".join(messages),
        )
    return snapshots


def _running_fingerprint(name: str) -> str | None:
    """What the running application was deployed with, asked of one of its replicas."""
    from ray import serve

    app = serve.status().applications.get(name)
    if app is None or str(getattr(app.status, "value", app.status)) != "RUNNING":
        return None
    try:
        handle = serve.get_app_handle(name).options(method_name="propylon_fingerprint")
        return str(handle.remote().result(timeout_s=_FINGERPRINT_TIMEOUT))
    except Exception:  # not ours, or deployed by an older Propylon: deploy again
        return None


def _delete_application(name: str) -> None:
    from ray import serve

    serve.delete(name, _blocking=False)


def _disconnect() -> None:
    import ray

    ray.shutdown()


def _serve_http_port(configured: int) -> int:
    """The port Serve's proxies listen on, which an earlier ``serve start`` may have chosen."""
    try:
        from ray.serve.context import _get_global_client

        client = _get_global_client()
        return int(client.http_config.port) if client is not None else configured
    except Exception:  # a private API: if it moved, the configured port is the best guess
        return configured


def _default_proxy_url(address: str, port: int) -> str:
    if address.startswith("ray://"):
        host = urlsplit(address).hostname or "127.0.0.1"
        return f"http://{host}:{port}"
    return f"http://127.0.0.1:{port}"


def _converted(exc: Exception, address: str) -> PropylonError:
    """Ray's and Serve's exceptions in Propylon's tree (the one place that knows them)."""
    from ray import exceptions as ray_errors
    from ray.serve import exceptions as serve_errors

    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    unreachable = (
        ConnectionError,
        TimeoutError,
        ray_errors.RaySystemError,
        ray_errors.RpcError,
        ray_errors.GetTimeoutError,
        ray_errors.ActorDiedError,
        ray_errors.ActorUnavailableError,
    )
    if isinstance(exc, unreachable):
        return ServiceUnavailable(
            f"The Ray cluster at {address!r} cannot be reached: {first_line}",
            code="RayUnavailable",
        )
    if isinstance(exc, serve_errors.RayServeException | ValueError | TypeError):
        return BadRequest(first_line, code="InvalidDeploymentConfiguration")
    return PropylonError(f"Ray Serve failed: {type(exc).__name__}: {first_line}")


# -- helpers -----------------------------------------------------------------------------------


def _note(setup: LogFile | None, line: str) -> None:
    if setup is not None:
        setup.write_line(line)


def _missing_files(spec: DeploymentSpec) -> str | None:
    """Why the replicas could not find their code or model, checked before Serve is asked."""
    if spec.code_dir is None:
        script = Path(spec.scoring_script)
        if not script.is_absolute() or not script.is_file():
            return "The deployment has no code directory for its scoring script."
        return None
    if not spec.code_dir.is_dir():
        return f"The code directory {spec.code_dir} does not exist."
    if not (spec.code_dir / spec.scoring_script).is_file():
        return (
            f"The scoring script {spec.scoring_script!r} is not in the code directory "
            f"{spec.code_dir}."
        )
    if spec.model_dir is not None and not spec.model_dir.exists():
        return f"The model directory {spec.model_dir} does not exist."
    return None


def create_backend(
    name: str,
    *,
    data_dir: Path,
    resources: ResourceStore,
    identity_env: IdentityEnv | None = None,
    ray_address: str | None = None,
) -> Backend:
    """The backend ``propylon server --runtime NAME`` runs (``local`` or ``ray``).

    >>> backend = create_backend("ray", data_dir=d, resources=r, ray_address="auto")
    """
    if name == "local":
        from propylon.runtime.local import LocalBackend

        return LocalBackend(data_dir, resources, identity_env=identity_env)
    if name == "ray":
        return RayBackend(
            resources, address=ray_address or "auto", data_dir=data_dir, identity_env=identity_env
        )
    raise ConfigurationError(f"Unknown runtime {name!r}: choose 'local' or 'ray'.")
