"""One instance of a deployment: an inference-server process, probed, restarted when it fails.

An :class:`Instance` runs its process in a loop (one asyncio task): start on a free loopback port,
watch three things at once — the process's exit, its readiness probe, its liveness probe — and
when one of them ends the run (the process died; liveness failed ``failure_threshold`` times; it
was not ready within ``initial_delay + period × failure_threshold``), record why, wait the
back-off of :class:`~propylon.runtime.backoff.RestartPolicy` and start again. The supervisor is
told of every change (``on_change``) and decides whether the instance is published, kept or
drained; an instance never gives up by itself.

Readiness is polled quickly (``startup_poll``) until the first pass, then every ``period``. A
pass is never premature, while a failure before ``initial_delay`` must not count (that is what
Azure's 10 s default is for): polling early therefore only makes deployments ready sooner.

Each process is the leader of its own session: Ctrl-C in the server's terminal reaches the
supervisor, not the instances (which are then drained in order), and the whole group is killed
at the end, so a subprocess of the scoring script cannot outlive its instance. Its stdout and
stderr go to the instance's :class:`~propylon.runtime.logs.LogFile`. Example::

    instance = Instance("blue-1-0", plan, probe=probe, policy=RestartPolicy(), log=log,
                        on_change=supervisor.wake)
    instance.start()
    …
    await instance.stop(grace=30)       # SIGTERM, in-flight requests finish, SIGKILL after 30 s
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from propylon.config import node_name
from propylon.runtime.backoff import RestartPolicy
from propylon.runtime.base import InstanceAddress
from propylon.runtime.launch import IdentityEnv, LaunchPlan
from propylon.runtime.logs import LogFile
from propylon.runtime.probes import LIVENESS_PATH, READINESS_PATH, InstanceProbe, ProbeCounter
from propylon.runtime.reaper import ProcessRegistry

__all__ = ["Instance", "InstanceInfo", "InstanceState", "describe_exit", "free_port"]

log = logging.getLogger("propylon.runtime")

# The inference server's exit status when the scoring script cannot be imported or init() raised.
EXIT_SCRIPT_FAILED = 3
_REASON_LINES = 12
_REASON_CHARS = 4000
_OUTPUT_GRACE = 2.0
_PROBE_KILL_GRACE = 5.0


class InstanceState(StrEnum):
    STARTING = "Starting"  # the process runs and is not ready (yet, or any more)
    READY = "Ready"
    RESTARTING = "Restarting"  # waiting out the back-off
    STOPPING = "Stopping"
    STOPPED = "Stopped"


@dataclass(frozen=True)
class InstanceInfo:
    instance_id: str
    generation: int
    state: InstanceState
    pid: int | None
    url: str | None
    restarts: int
    failures: int
    last_failure: str | None


def free_port() -> int:
    """A loopback port nobody listens on now (a rare race with another process is a failed start,
    and the restart picks another port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    if code == EXIT_SCRIPT_FAILED:
        return f"exited with code {code} (the scoring script could not be loaded or init() raised)"
    return f"exited with code {code}"


class Instance:
    def __init__(
        self,
        instance_id: str,
        plan: LaunchPlan,
        *,
        probe: InstanceProbe,
        policy: RestartPolicy,
        log: LogFile,
        on_change: Callable[[], None],
        identity_env: IdentityEnv | None = None,
        registry: ProcessRegistry | None = None,
        stop_timeout: float = 30.0,
        startup_poll: float = 0.1,
        unix_socket: str | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.unix_socket = unix_socket  # also listened on, for a gateway on this machine
        self.plan = plan
        self.state = InstanceState.STARTING
        self.ready = False
        self.port: int | None = None
        self.restarts = 0
        self.failures = 0
        self.last_failure: str | None = None
        self._probe = probe
        self._policy = policy
        self._log = log
        self._on_change = on_change
        self._identity_env = identity_env
        self._registry = registry
        self._stop_timeout = stop_timeout
        self._startup_poll = startup_poll
        self._process: asyncio.subprocess.Process | None = None
        self._relay: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._was_ready = False
        self._stopped = False

    # -- the supervisor's view ---------------------------------------------------------------

    @property
    def generation(self) -> int:
        return self.plan.spec.generation

    @property
    def url(self) -> str | None:
        return f"http://127.0.0.1:{self.port}" if self.port is not None else None

    @property
    def address(self) -> InstanceAddress | None:
        """Where to send requests, while the instance is ready."""
        if not self.ready or self.url is None:
            return None
        return InstanceAddress(
            self.instance_id,
            self.url,
            uds=self.unix_socket,
            max_concurrent=self.plan.spec.requests.max_concurrent_requests_per_instance,
            node=node_name() if self.unix_socket is not None else None,
        )

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    def info(self) -> InstanceInfo:
        return InstanceInfo(
            instance_id=self.instance_id,
            generation=self.generation,
            state=self.state,
            pid=self.pid,
            url=self.url,
            restarts=self.restarts,
            failures=self.failures,
            last_failure=self.last_failure,
        )

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"instance {self.instance_id}"
            )

    async def stop(self, grace: float | None = None) -> None:
        """Stop for good: SIGTERM (in-flight requests finish), SIGKILL after ``grace`` seconds."""
        if self._stopped:
            return
        self._stopped = True
        self._set(ready=False)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        process = self._process
        if process is not None:
            if process.returncode is None:
                self._set(state=InstanceState.STOPPING)
                self._note("Stopping (SIGTERM); in-flight requests may finish.")
                await self._terminate(process, self._stop_timeout if grace is None else grace)
            self._forget(process)
            await self._drain_output()
        self._note("Stopped.")
        self._log.close()
        self._set(state=InstanceState.STOPPED)

    # -- the run loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            self._was_ready = False
            reason, output = await self._run_once()
            self.failures = self._policy.count_failure(
                self.failures, ran_for=loop.time() - started, was_ready=self._was_ready
            )
            self.restarts += 1
            self.last_failure = f"Instance {self.instance_id} {reason}{output}"
            delay = self._policy.delay(self.failures)
            self._note(
                f"The instance {reason}; restarting in {delay:g} s "
                f"({self.failures} failure(s) in a row)."
            )
            self._set(state=InstanceState.RESTARTING)
            await asyncio.sleep(delay)

    async def _run_once(self) -> tuple[str, str]:
        """Run one process until it ends or fails a probe; why it ended, and its last output."""
        port = free_port()
        variables = dict(self.plan.variables)
        if self._identity_env is not None:
            try:
                variables.update(self._identity_env(self.plan.spec, self.instance_id))
            except Exception as exc:
                return f"could not be started: its identity is unavailable ({exc!r})", ""
        self.port = port
        self._log.recent.clear()
        self._set(state=InstanceState.STARTING, ready=False)
        try:
            process = await asyncio.create_subprocess_exec(
                *self.plan.argv(
                    port, graceful_timeout=self._stop_timeout, unix_socket=self.unix_socket
                ),
                cwd=self.plan.cwd,
                env=variables,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            return f"could not be started: {exc}", ""
        self._process = process
        if self._registry is not None:
            self._registry.add(process.pid, self.instance_id)
        self._relay = asyncio.get_running_loop().create_task(self._copy_output(process))
        self._note(f"Started (pid {process.pid}, port {port}, generation {self.generation}).")
        watchers = [
            asyncio.ensure_future(self._exit(process)),
            asyncio.ensure_future(self._readiness(self.url or "")),
            asyncio.ensure_future(self._liveness(self.url or "")),
        ]
        try:
            await asyncio.wait(watchers, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
        try:
            reason = next(w.result() for w in watchers if w.done() and not w.cancelled())
        except Exception as exc:  # a bug in a watcher must not leave the process unsupervised
            log.exception("instance watcher failed", extra={"instance": self.instance_id})
            reason = f"could not be watched ({exc!r}) and was stopped"
        self._set(ready=False)
        if process.returncode is None:  # a probe gave up on it
            await self._terminate(process, min(self._stop_timeout, _PROBE_KILL_GRACE))
        else:
            _kill_group(process)  # what the scoring script started dies with it
        self._forget(process)
        await self._drain_output()
        return reason, _output_excerpt(list(self._log.recent))

    async def _exit(self, process: asyncio.subprocess.Process) -> str:
        return describe_exit(await process.wait())

    async def _readiness(self, base_url: str) -> str:
        settings = self.plan.spec.readiness
        loop = asyncio.get_running_loop()
        started = loop.time()
        allowed = settings.initial_delay + settings.period * settings.failure_threshold
        counter = ProbeCounter(
            success_threshold=settings.success_threshold,
            failure_threshold=settings.failure_threshold,
            passing=False,
        )
        while True:
            result = await self._probe.check(base_url, READINESS_PATH, within=settings.timeout)
            verdict = counter.record(result.ok)
            if verdict is True:
                self._was_ready = True
                self._note("Ready.")
                self._set(state=InstanceState.READY, ready=True)
            elif verdict is False:
                self._note(
                    f"Not ready: {counter.failures} readiness probes failed in a row "
                    f"(GET {READINESS_PATH}: {result.detail})."
                )
                self._set(state=InstanceState.STARTING, ready=False)
            if not self._was_ready and loop.time() - started >= allowed:
                return (
                    f"was not ready {allowed:g} s after it started "
                    f"(GET {READINESS_PATH}: {result.detail})"
                )
            interval = (
                settings.period if self._was_ready else min(settings.period, self._startup_poll)
            )
            await asyncio.sleep(interval)

    async def _liveness(self, base_url: str) -> str:
        settings = self.plan.spec.liveness
        await asyncio.sleep(settings.initial_delay)
        counter = ProbeCounter(
            success_threshold=1, failure_threshold=settings.failure_threshold, passing=True
        )
        while True:
            result = await self._probe.check(base_url, LIVENESS_PATH, within=settings.timeout)
            if counter.record(result.ok) is False:
                return (
                    f"failed {counter.failures} liveness probes in a row "
                    f"(GET {LIVENESS_PATH}: {result.detail}) and was stopped"
                )
            await asyncio.sleep(settings.period)

    # -- process plumbing --------------------------------------------------------------------

    async def _copy_output(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while chunk := await process.stdout.read(65536):
            self._log.feed(chunk)

    async def _drain_output(self) -> None:
        relay, self._relay = self._relay, None
        if relay is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(relay), _OUTPUT_GRACE)
        except TimeoutError:
            relay.cancel()
            await asyncio.gather(relay, return_exceptions=True)

    async def _terminate(self, process: asyncio.subprocess.Process, grace: float) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), grace)
        except TimeoutError:
            self._note(f"Still running {grace:g} s after SIGTERM; SIGKILL.")
            _kill_group(process)
            await process.wait()
        _kill_group(process)

    def _forget(self, process: asyncio.subprocess.Process) -> None:
        if self._registry is not None:
            self._registry.discard(process.pid)

    def _set(self, *, state: InstanceState | None = None, ready: bool | None = None) -> None:
        changed = False
        if state is not None and state is not self.state:
            self.state = state
            changed = True
        if ready is not None and ready is not self.ready:
            self.ready = ready
            changed = True
        if changed:
            self._on_change()

    def _note(self, text: str) -> None:
        self._log.write_line(f"[propylon] {text}", remember=False)


def _kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGKILL whatever is left of the process's group (its leader may be gone already)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _output_excerpt(lines: list[str]) -> str:
    """The process's last lines, for the Failed reason: JSON log lines shown by their message."""
    readable: list[str] = []
    for line in lines[-_REASON_LINES:]:
        readable.extend(_readable(line))
    text = "\n".join(readable).strip()
    if not text:
        return ""
    if len(text) > _REASON_CHARS:
        text = "…" + text[-_REASON_CHARS:]
    return ". Last output:\n" + text


def _readable(line: str) -> list[str]:
    try:
        entry: Any = json.loads(line)
    except ValueError:
        return [line]
    if not isinstance(entry, dict):
        return [line]
    message = entry.get("message", entry.get("event"))
    if not isinstance(message, str):
        return [line]
    level = entry.get("level")
    shown = [f"{str(level).upper()} {message}" if level else message]
    trace = entry.get("traceback") or entry.get("exception")
    if isinstance(trace, str):
        shown.extend(trace.rstrip().splitlines())
    return shown
