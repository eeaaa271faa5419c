"""What runs inside one Ray Serve replica: the inference server, in the replica's own process.

:class:`InferenceReplica` is the class Serve instantiates (wrapped by ``serve.ingress`` in
:mod:`propylon.runtime.ray`, the only module that imports Ray). It serves the same
:class:`~propylon.inference.InferenceApp` as a local instance, so the score.py contract holds
unchanged: Azure's variables (``AML_APP_ROOT``, ``AZUREML_ENTRY_SCRIPT``, ``AZUREML_MODEL_DIR``,
``MAX_CONCURRENT_REQUESTS``…) arrive in the replica's ``runtime_env``, ``init()`` runs before
Serve routes the first request to the replica, and a script that cannot start fails the
replica's constructor, which Serve retries and then reports as ``DEPLOY_FAILED`` with the
traceback.

Two differences of Serve's proxy are absorbed here (:class:`ServeAdapter`): it keeps the
application's route prefix in ``scope["path"]`` (ASGI's ``root_path`` convention) where the
inference server routes on the bare path, and it adds its own ``x-request-id`` response header
(the same id the replica saw), which would otherwise appear twice.

Like a local instance, the replica's stdout and stderr (the server's JSON log lines, the
script's prints and ``logging``) are stored line by line with timestamps in the deployment's log
folder (:class:`~propylon.runtime.logs.DeploymentLogs`), where ``getLogs`` reads them; they are
also copied to the worker's own stderr, so Ray's tools still show them. Example::

    replica = InferenceReplica(ReplicaSettings(deployment_id, "blue", log_folder=…), "blue-x1")
    app = await replica.__serve_build_asgi_app__()      # after init() has returned
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from propylon.inference import InferenceApp, InferenceSettings, Lifecycle
from propylon.inference.asgi import Message, Receive, Scope, Send
from propylon.inference.logs import configure_logging
from propylon.runtime.logs import DeploymentLogs, LogFile

__all__ = ["InferenceReplica", "ReplicaSettings", "ReplicaStartFailed", "ServeAdapter"]

_READ_BLOCK = 64 * 1024
_LOG_MAX_BYTES = 10 * 1024 * 1024
_LOG_BACKUPS = 2


class ReplicaStartFailed(RuntimeError):
    """The scoring script could not start; Serve shows this message as the replica's error."""


@dataclass(frozen=True)
class ReplicaSettings:
    """What a replica is constructed with (pickled by Serve, never shown by Ray's tools).

    ``secret_variables`` are the managed identity's (``IDENTITY_ENDPOINT``, ``IDENTITY_HEADER``):
    unlike ``runtime_env`` variables, constructor arguments do not appear in Ray's dashboard or
    state API.
    """

    deployment_id: str
    deployment_name: str
    log_folder: str | None = None
    working_dir: str | None = None
    secret_variables: Mapping[str, str] = field(default_factory=dict, repr=False)
    fingerprint: str = ""  # of everything the application was deployed with
    # How long init() may take: the readiness probe's initial delay + period × failure threshold.
    start_timeout: float | None = None


class ServeAdapter:
    """The inference app as Serve's proxy calls it: route prefix stripped, one request id."""

    def __init__(self, app: InferenceApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        root: str = scope.get("root_path", "")
        path: str = scope["path"]
        if root and path.startswith(root):
            scope = {**scope, "path": path[len(root) :] or "/", "root_path": ""}

        async def send_without_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(n, v) for n, v in message.get("headers", ()) if n != b"x-request-id"]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_without_request_id)


class InferenceReplica:
    """One replica: output captured, variables set, the inference app started.

    ``instance_id`` names the replica in the deployment's logs (``blue-<serve replica id>``).
    """

    def __init__(self, settings: ReplicaSettings, instance_id: str) -> None:
        self.instance_id = instance_id
        self.fingerprint = settings.fingerprint
        self.start_timeout = settings.start_timeout
        os.environ.update(settings.secret_variables)
        if settings.log_folder is not None:
            logs = DeploymentLogs(
                Path(settings.log_folder),
                settings.deployment_id,
                max_bytes=_LOG_MAX_BYTES,
                backups=_LOG_BACKUPS,
            )
            capture_output(logs.instance(instance_id))
        if settings.working_dir is not None:
            os.chdir(settings.working_dir)  # as a local instance, which starts in its code dir
        inference = InferenceSettings.from_env()
        configure_logging(inference.log_level)
        self.inference = InferenceApp(inference)

    async def __serve_build_asgi_app__(self) -> ServeAdapter:
        """Serve's late-bound ingress: called once the constructor returned, before any request.

        Waiting here for ``init()`` is the replica's readiness: Serve routes nothing to a replica
        whose initialisation has not finished.
        """
        try:
            state = await asyncio.wait_for(self.inference.wait_started(), self.start_timeout)
        except TimeoutError:
            await self.inference.shutdown()
            raise ReplicaStartFailed(
                f"The scoring script's init() did not finish within {self.start_timeout:g} s "
                "(the readiness probe's initial delay + period × failure threshold)."
            ) from None
        if state is not Lifecycle.READY:
            failure = self.inference.failure
            raise ReplicaStartFailed(str(failure) if failure else "The scoring script failed.")
        return ServeAdapter(self.inference)

    async def propylon_fingerprint(self) -> str:
        """What this replica was deployed with (called through a Serve handle by the backend)."""
        return self.fingerprint

    async def check_health(self) -> None:
        """Serve's periodic health check (the liveness probe of a local instance)."""
        if self.inference.state is Lifecycle.FAILED:
            raise ReplicaStartFailed("The scoring script failed; see the InferenceServer logs.")


def capture_output(log: LogFile) -> None:
    """Send this process's file descriptors 1 and 2 to ``log`` and to the original stderr.

    A pipe replaces both descriptors, so the output of C extensions and subprocesses is kept too;
    a daemon thread stores it line by line (:meth:`LogFile.feed`) and copies it on.
    """
    original = os.dup(2)
    read, write = os.pipe()
    os.dup2(write, 1)
    os.dup2(write, 2)
    os.close(write)

    def pump() -> None:
        while chunk := os.read(read, _READ_BLOCK):
            log.feed(chunk)
            view = memoryview(chunk)
            # Ray's log file may be gone; the deployment's own log has the line already.
            with contextlib.suppress(OSError):
                while view:
                    view = view[os.write(original, view) :]

    threading.Thread(target=pump, name="replica-output", daemon=True).start()
