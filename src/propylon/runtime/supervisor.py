"""The supervisor of one deployment: generations of instances, rolled out, scaled and drained.

As uvicorn's process supervisors do, it is one loop over a queue of messages — ``apply`` (a new
spec), ``scale`` (the autoscaler's decision), ``changed`` (an instance or a set-up moved on),
``close`` — each handled by its ``handle_<message>`` method, followed by one reconcile step that
moves the instances toward what is wanted and publishes the ready ones. Nothing else touches the
supervisor's state, so no step races another.

A **generation** is one version of the spec that needs its own processes (code, model,
environment, variables, probe or request settings). Applying a spec that differs only in
``instance_count`` or scale settings scales the running generation. Otherwise:

* **create** — the first generation is set up (environment, checks), its instances start, and
  each is published as soon as it is ready; Succeeded once ``desired`` are ready.
* **rolling update** — while the current generation keeps serving, the new one is set up and
  started; when all its instances are ready the published set switches to them in one write,
  and the old instances are drained. If the new generation fails, it is dropped and the old one
  keeps serving; the deployment reports Failed with the reason.
* **drain** (scale-in, replaced generations, delete) — withdraw the instance from the published
  set, wait ``drain_delay`` (~1 s) for every gateway to see that through the change feed, SIGTERM
  so that in-flight requests finish, SIGKILL after ``stop_timeout``.
* **crash loops** — an instance that fails ``crash_loop_after`` times in a row fails a generation
  that never succeeded (its instances are stopped); in a generation that did, it keeps being
  restarted at the capped back-off while the deployment reports Failed with the reason.

Example::

    supervisor = DeploymentSupervisor(spec.deployment_id, launcher=…, spawn=…, publisher=…,
                                      setup_log=…, probe=…, policy=RestartPolicy())
    supervisor.start()
    await supervisor.apply(spec)
    supervisor.status()            # DeploymentStatus(state=<Creating>, desired=1, ready=0)
    await supervisor.close()
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from propylon.runtime.autoscaler import (
    AutoscalePolicy,
    Autoscaler,
    LoadReport,
    average_concurrency,
    is_autoscaled,
)
from propylon.runtime.backoff import RestartPolicy
from propylon.runtime.base import (
    DeploymentSpec,
    DeploymentState,
    DeploymentStatus,
    InstanceAddress,
    ScaleSettings,
)
from propylon.runtime.instance import Instance, InstanceInfo
from propylon.runtime.launch import Launcher, LaunchPlan, PreparationFailed
from propylon.runtime.logs import LogFile
from propylon.runtime.probes import InstanceProbe
from propylon.runtime.publish import InstanceSetPublisher

__all__ = ["DeploymentSupervisor", "Spawn"]

log = logging.getLogger("propylon.runtime")

Spawn = Callable[[str, LaunchPlan, Callable[[], None]], Instance]


@dataclass(frozen=True)
class _Apply:
    spec: DeploymentSpec
    accepted: asyncio.Future[None]


@dataclass(frozen=True)
class _Scale:
    count: int


@dataclass(frozen=True)
class _Changed:
    pass


@dataclass(frozen=True)
class _Close:
    withdraw: bool


_Message = _Apply | _Scale | _Changed | _Close


def _same_processes(a: DeploymentSpec, b: DeploymentSpec) -> bool:
    """Whether ``b`` can run on ``a``'s processes (it differs only in how many there are)."""

    def essence(spec: DeploymentSpec) -> DeploymentSpec:
        return dataclasses.replace(spec, instance_count=0, scale=ScaleSettings(), generation=0)

    return essence(a) == essence(b)


class _Generation:
    def __init__(self, spec: DeploymentSpec) -> None:
        self.spec = spec
        self.number = spec.generation
        self.plan: LaunchPlan | None = None
        self.failure: str | None = None
        self.succeeded = False
        self.instances: list[Instance] = []
        self.preparing: asyncio.Task[None] | None = None

    def ready(self) -> list[Instance]:
        return [instance for instance in self.instances if instance.ready]

    def crash_loop(self, policy: RestartPolicy) -> str | None:
        """Why an instance of this generation is crash-looping, if one is."""
        for instance in self.instances:
            if not instance.ready and policy.is_crash_loop(instance.failures):
                return (
                    f"{instance.last_failure}\n(the instance failed {instance.failures} times "
                    "in a row)"
                )
        return None


class DeploymentSupervisor:
    def __init__(
        self,
        deployment_id: str,
        *,
        launcher: Launcher,
        spawn: Spawn,
        publisher: InstanceSetPublisher,
        setup_log: LogFile,
        probe: InstanceProbe,
        policy: RestartPolicy,
        drain_delay: float = 1.0,
        stop_timeout: float = 30.0,
        tick: float = 1.0,
        scale_in_window: int = 5,
    ) -> None:
        self.deployment_id = deployment_id
        self._launcher = launcher
        self._spawn = spawn
        self._publisher = publisher
        self._setup_log = setup_log
        self._probe = probe
        self._policy = policy
        self._drain_delay = drain_delay
        self._stop_timeout = stop_timeout
        self._tick = tick
        self._scale_in_window = scale_in_window

        self._inbox: asyncio.Queue[_Message] = asyncio.Queue()
        self._wake_pending = False
        self._task: asyncio.Task[None] | None = None
        self._autoscaling: asyncio.Task[None] | None = None
        self._autoscaler: Autoscaler | None = None

        self._current: _Generation | None = None
        self._next: _Generation | None = None
        self._retired: list[Instance] = []
        self._draining: set[asyncio.Task[None]] = set()
        self._seen_by_gateways: set[str] = set()
        self._names = itertools.count()
        self._desired = 0
        self._settled = True
        self._failure: str | None = None
        self._ever_succeeded = False
        self._closing = False

    # -- what the backend asks ---------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"supervisor {self.deployment_id}"
            )

    async def apply(self, spec: DeploymentSpec) -> None:
        """Hand over a spec; returns once the supervisor has taken it (status reflects it)."""
        accepted = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait(_Apply(spec, accepted))
        await accepted

    def scale(self, count: int) -> None:
        self._inbox.put_nowait(_Scale(count))

    def wake(self) -> None:
        """Something changed (an instance, a set-up): reconcile soon. Calls coalesce."""
        if not self._wake_pending:
            self._wake_pending = True
            self._inbox.put_nowait(_Changed())

    async def close(self, *, withdraw: bool = True) -> None:
        """Withdraw the published set, drain and stop every instance, end the loop."""
        if self._task is None:
            return
        self._inbox.put_nowait(_Close(withdraw))
        await asyncio.shield(self._task)

    def status(self) -> DeploymentStatus:
        current = self._current
        ready = len(current.ready()) if current is not None else 0
        if self._closing:
            return DeploymentStatus(DeploymentState.DELETING, desired=self._desired, ready=ready)
        failure = self._failure or (current.failure if current is not None else None)
        if failure is None and current is not None and current.succeeded and self._next is None:
            failure = current.crash_loop(self._policy)
        if failure is not None:
            state = DeploymentState.FAILED
        elif current is None or not current.succeeded or self._next is not None:
            state = DeploymentState.UPDATING if self._ever_succeeded else DeploymentState.CREATING
        elif not self._settled:
            state = DeploymentState.UPDATING
        else:
            state = DeploymentState.SUCCEEDED
        return DeploymentStatus(state=state, desired=self._desired, ready=ready, reason=failure)

    def addresses(self) -> list[InstanceAddress]:
        """The ready instances of the serving generation (what is published)."""
        current = self._current
        if current is None or current.failure is not None:
            return []
        return [address for i in current.instances if (address := i.address) is not None]

    def instances(self) -> list[InstanceInfo]:
        generations = [g for g in (self._current, self._next) if g is not None]
        return [instance.info() for g in generations for instance in g.instances]

    # -- the loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                message: _Message = await asyncio.wait_for(self._inbox.get(), self._tick)
            except TimeoutError:
                message = _Changed()  # a periodic pass retries what failed (a store write)
            if isinstance(message, _Close):
                await self.handle_close(message.withdraw)
                return
            try:
                match message:
                    case _Apply(spec, accepted):
                        try:
                            self.handle_apply(spec)
                        finally:
                            if not accepted.done():
                                accepted.set_result(None)
                    case _Scale(count):
                        self.handle_scale(count)
                    case _Changed():
                        self._wake_pending = False
                await self._reconcile()
            except Exception:
                # The loop must outlive a bug in one step: the instances depend on it.
                log.exception("supervisor step failed", extra=self._extra())

    def handle_apply(self, spec: DeploymentSpec) -> None:
        self._failure = None
        self._settled = False
        self._desired = self._desired_for(spec)
        self._configure_autoscaling(spec)
        current, upcoming = self._current, self._next
        if (
            upcoming is not None
            and upcoming.failure is None
            and _same_processes(upcoming.spec, spec)
        ):
            upcoming.spec, upcoming.number = spec, spec.generation
            return
        if current is not None and current.failure is None and _same_processes(current.spec, spec):
            current.spec, current.number = spec, spec.generation
            if upcoming is not None:  # back to what is running: the rollout is moot
                self._retire(upcoming)
                self._next = None
            return
        generation = _Generation(spec)
        generation.preparing = asyncio.get_running_loop().create_task(self._prepare(generation))
        if upcoming is not None:
            self._retire(upcoming)
            self._next = None
        if current is not None and current.failure is None and current.ready():
            self._next = generation
            log.info(
                "rolling out generation %d of %s", spec.generation, spec.name, extra=self._extra()
            )
        else:
            if current is not None:
                self._retire(current)
            self._current = generation

    def handle_scale(self, count: int) -> None:
        if self._autoscaler is None or count == self._desired:
            return
        count = self._autoscaler.policy.clamp(count)
        log.info("autoscaling from %d to %d instances", self._desired, count, extra=self._extra())
        self._desired = count

    async def handle_close(self, withdraw: bool) -> None:
        self._closing = True
        if self._autoscaling is not None:
            self._autoscaling.cancel()
        instances = list(self._retired)
        preparing: list[asyncio.Task[None]] = []
        for generation in (self._current, self._next):
            if generation is None:
                continue
            instances.extend(generation.instances)
            if generation.preparing is not None:
                generation.preparing.cancel()
                preparing.append(generation.preparing)
        self._retired = []
        if withdraw:
            try:
                await self._publisher.withdraw(self.deployment_id)
            except Exception:
                log.exception("could not withdraw the instance set", extra=self._extra())
        if self._seen_by_gateways.intersection(i.instance_id for i in instances):
            await asyncio.sleep(self._drain_delay)
        await asyncio.gather(
            *(instance.stop(self._stop_timeout) for instance in instances),
            *self._draining,
            *preparing,
            *([self._autoscaling] if self._autoscaling is not None else []),
            return_exceptions=True,
        )
        self._setup_log.close()

    # -- reconciling -------------------------------------------------------------------------

    async def _reconcile(self) -> None:
        upcoming = self._next
        if upcoming is not None:
            if upcoming.failure is None and upcoming.plan is not None:
                self._fill(upcoming)
                upcoming.failure = upcoming.crash_loop(self._policy)
            if upcoming.failure is not None:
                log.warning(
                    "generation %d failed; generation %s keeps serving",
                    upcoming.number,
                    self._current.number if self._current else "-",
                    extra=self._extra(),
                )
                self._failure = upcoming.failure
                self._retire(upcoming)
                self._next = None
            elif upcoming.plan is not None and len(upcoming.ready()) >= self._desired:
                if self._current is not None:
                    self._retire(self._current)
                self._current, self._next = upcoming, None
                self._succeeded(upcoming)
        current = self._current
        if current is not None and current.failure is None and current.plan is not None:
            self._fill(current)
            if not current.succeeded:
                current.failure = current.crash_loop(self._policy)
                if current.failure is not None:
                    log.warning("generation %d failed", current.number, extra=self._extra())
                    self._retire(current)
                elif len(current.ready()) >= self._desired:
                    self._succeeded(current)
            if self._next is None and current.succeeded and len(current.ready()) >= self._desired:
                self._settled = True
        if await self._publish():
            self._drain_retired()

    def _succeeded(self, generation: _Generation) -> None:
        generation.succeeded = True
        self._ever_succeeded = True
        if self._autoscaler is not None:
            self._autoscaler.reset()
        log.info("generation %d is serving", generation.number, extra=self._extra())

    def _fill(self, generation: _Generation) -> None:
        """Start or retire instances until the generation has ``desired`` of them."""
        assert generation.plan is not None
        while len(generation.instances) < self._desired:
            name = f"{generation.spec.name}-{generation.number}-{next(self._names)}"
            instance = self._spawn(name, generation.plan, self.wake)
            generation.instances.append(instance)
            instance.start()
        excess = len(generation.instances) - self._desired
        if excess > 0:
            # Instances that serve nothing go first, then the newest.
            order = sorted(
                enumerate(generation.instances), key=lambda pair: (pair[1].ready, -pair[0])
            )
            victims = {id(instance) for _, instance in order[:excess]}
            self._retired.extend(i for i in generation.instances if id(i) in victims)
            generation.instances = [i for i in generation.instances if id(i) not in victims]

    def _retire(self, generation: _Generation) -> None:
        if generation.preparing is not None and not generation.preparing.done():
            generation.preparing.cancel()
        self._retired.extend(generation.instances)
        generation.instances = []

    async def _publish(self) -> bool:
        """Write the ready instances of the serving generation; False if the store refused."""
        current = self._current
        addresses = self.addresses()
        if not addresses and self._publisher.published(self.deployment_id) is None:
            return True  # nothing was ever visible: no need to write an empty set
        try:
            await self._publisher.publish(
                self.deployment_id, current.number if current is not None else 0, addresses
            )
        except Exception:
            log.warning(
                "could not publish the instance set; retrying", exc_info=True, extra=self._extra()
            )
            return False
        self._seen_by_gateways.update(address.instance_id for address in addresses)
        return True

    def _drain_retired(self) -> None:
        retired, self._retired = self._retired, []
        for instance in retired:
            seen = instance.instance_id in self._seen_by_gateways
            self._seen_by_gateways.discard(instance.instance_id)
            task = asyncio.get_running_loop().create_task(self._drain(instance, seen))
            self._draining.add(task)
            task.add_done_callback(self._draining.discard)

    async def _drain(self, instance: Instance, seen_by_gateways: bool) -> None:
        if seen_by_gateways:
            await asyncio.sleep(self._drain_delay)
        await instance.stop(self._stop_timeout)

    async def _prepare(self, generation: _Generation) -> None:
        try:
            generation.plan = await self._launcher.prepare(generation.spec, self._setup_log)
        except PreparationFailed as exc:
            generation.failure = str(exc)
        except Exception as exc:
            log.exception("set-up failed", extra=self._extra())
            generation.failure = f"The set-up failed unexpectedly: {exc!r}"
        finally:
            self.wake()

    # -- autoscaling -------------------------------------------------------------------------

    def _desired_for(self, spec: DeploymentSpec) -> int:
        if not is_autoscaled(spec):
            return spec.instance_count
        policy = AutoscalePolicy.from_spec(spec, scale_in_window=self._scale_in_window)
        running = self._current is not None and is_autoscaled(self._current.spec)
        return policy.clamp(self._desired if running else spec.instance_count)

    def _configure_autoscaling(self, spec: DeploymentSpec) -> None:
        if not is_autoscaled(spec):
            self._autoscaler = None
            return
        policy = AutoscalePolicy.from_spec(spec, scale_in_window=self._scale_in_window)
        if self._autoscaler is None or self._autoscaler.policy != policy:
            self._autoscaler = Autoscaler(policy)
        if self._autoscaling is None:
            self._autoscaling = asyncio.get_running_loop().create_task(self._autoscale())

    async def _autoscale(self) -> None:
        previous: dict[str, LoadReport] = {}
        warned = False
        while True:
            current = self._current
            interval = current.spec.scale.polling_interval if current is not None else 1.0
            await asyncio.sleep(max(interval, 0.05))
            scaler, current = self._autoscaler, self._current
            if scaler is None or current is None or not current.succeeded or self._next:
                previous.clear()
                continue
            ready = [i for i in current.ready() if i.url is not None]
            reports = await asyncio.gather(*(self._probe.load(i.url or "") for i in ready))
            if not ready or any(report is None for report in reports):
                if ready and not warned:
                    log.warning(
                        "instances report no load on GET /_propylon/stats; not autoscaling",
                        extra=self._extra(),
                    )
                    warned = True
                continue
            concurrency = 0.0
            sampled: dict[str, LoadReport] = {}
            for instance, report in zip(ready, reports, strict=True):
                assert report is not None
                concurrency += average_concurrency(previous.get(instance.instance_id), report)
                sampled[instance.instance_id] = report
            previous = sampled
            wanted = scaler.decide(self._desired, concurrency)
            if wanted != self._desired:
                self.scale(wanted)

    def _extra(self) -> dict[str, str]:
        return {"deployment": self.deployment_id}
