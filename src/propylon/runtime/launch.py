"""What an instance of a deployment is started with: its Python, command, directory and variables.

:meth:`Launcher.prepare` is a generation's set-up, logged as the ``StorageInitializer`` container:
it checks the code and model directories, builds (or reuses) the environment and fixes the
variables every instance of the generation gets (:func:`instance_variables`):

=============================  ===================================================================
inherited from the server      ``PATH``, ``HOME``, locale, temp dir, proxies, CA bundles, ``PIP_*``
                               (:func:`~propylon.runtime.environments.inherited_environment`);
                               never ``PROPYLON_*`` nor anything else of the server's
the deployment's own           ``environment_variables`` of the spec, as given
Azure's (reference §3.9)       ``AML_APP_ROOT`` (code dir), ``AZUREML_ENTRY_SCRIPT`` (scoring
                               script, relative to it), ``AZUREML_MODEL_DIR`` (model dir)
request settings               ``MAX_CONCURRENT_REQUESTS`` (the inference server's worker count
                               unless the deployment sets ``WORKER_COUNT``)
the environment's              ``VIRTUAL_ENV`` and its ``bin`` first on ``PATH`` (built ones only)
per instance, at every start   what ``identity_env(spec, instance_id)`` returns
                               (``IDENTITY_ENDPOINT``, ``IDENTITY_HEADER``…)
=============================  ===================================================================

Secrets travel only in variables, never on the command line, which every local user can read.
The command is ``python -m propylon.inference --host 127.0.0.1 --port PORT --graceful-timeout S``
(and ``--unix-socket PATH``, the gateway's way in, see :mod:`propylon.runtime.sockets`) in the
code directory. Example::

    plan = await launcher.prepare(spec)
    plan.argv(port=40123)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from propylon.runtime.base import DeploymentSpec
from propylon.runtime.environments import (
    Environment,
    EnvironmentBuilder,
    EnvironmentBuildFailed,
    inherited_environment,
)
from propylon.runtime.logs import LogFile

__all__ = ["IdentityEnv", "LaunchPlan", "Launcher", "PreparationFailed", "instance_variables"]

IdentityEnv = Callable[[DeploymentSpec, str], dict[str, str]]

_OUTPUT_IN_REASON = 8


class PreparationFailed(Exception):
    """The generation cannot start; the message is the deployment's Failed reason."""


@dataclass(frozen=True)
class LaunchPlan:
    spec: DeploymentSpec
    environment: Environment
    variables: Mapping[str, str]
    cwd: Path

    def argv(
        self, port: int, *, graceful_timeout: float = 30.0, unix_socket: str | None = None
    ) -> list[str]:
        argv = [
            str(self.environment.python),
            "-m",
            "propylon.inference",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--graceful-timeout",
            str(max(1, math.ceil(graceful_timeout))),
        ]
        if unix_socket is not None:
            argv += ["--unix-socket", unix_socket]
        return argv


def instance_variables(
    spec: DeploymentSpec, environment: Environment, inherited: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Every variable an instance of ``spec`` gets, except the per-instance identity ones."""
    variables = dict(inherited_environment() if inherited is None else inherited)
    variables.update(spec.environment_variables)
    variables.setdefault("PYTHONUNBUFFERED", "1")  # prints reach the log as they happen
    if spec.code_dir is not None:
        variables["AML_APP_ROOT"] = str(spec.code_dir)
    variables["AZUREML_ENTRY_SCRIPT"] = spec.scoring_script
    if spec.model_dir is not None:
        variables["AZUREML_MODEL_DIR"] = str(spec.model_dir)
    variables["MAX_CONCURRENT_REQUESTS"] = str(spec.requests.max_concurrent_requests_per_instance)
    if environment.root is not None:
        path = variables.get("PATH", "")
        variables["VIRTUAL_ENV"] = str(environment.root)
        variables["PATH"] = str(environment.root / "bin") + (f":{path}" if path else "")
    return variables


class Launcher:
    """Prepares generations: checks, environment, variables."""

    def __init__(self, environments: EnvironmentBuilder) -> None:
        self.environments = environments

    async def prepare(self, spec: DeploymentSpec, log: LogFile) -> LaunchPlan:
        """Set up generation ``spec.generation``; :class:`PreparationFailed` says why it cannot."""
        log.write_line(f"Preparing generation {spec.generation} of deployment {spec.name}.")
        cwd = self._check_code(spec, log)
        self._check_model(spec, log)
        try:
            environment = await self.environments.ensure(spec.environment, log.write_line)
        except EnvironmentBuildFailed as exc:
            output = [line for line in exc.output.splitlines() if line.strip()]
            tail = "\n".join(output[-_OUTPUT_IN_REASON:])
            log.write_line(f"ERROR: {exc}")
            raise PreparationFailed(
                f"The environment could not be built: {exc} See the StorageInitializer logs."
                + (f" Last output:\n{tail}" if tail else "")
            ) from None
        log.write_line("Set-up finished.")
        return LaunchPlan(spec, environment, instance_variables(spec, environment), cwd)

    @staticmethod
    def _check_code(spec: DeploymentSpec, log: LogFile) -> Path:
        if spec.code_dir is None:
            script = Path(spec.scoring_script)
            if not script.is_absolute() or not script.is_file():
                raise _failed(log, "The deployment has no code directory for its scoring script.")
            return script.parent
        if not spec.code_dir.is_dir():
            raise _failed(log, f"The code directory {spec.code_dir} does not exist.")
        script = spec.code_dir / spec.scoring_script
        if not script.is_file():
            raise _failed(
                log,
                f"The scoring script {spec.scoring_script!r} is not in the code directory "
                f"{spec.code_dir}.",
            )
        log.write_line(f"Code: {spec.code_dir} (scoring script {spec.scoring_script}).")
        return spec.code_dir

    @staticmethod
    def _check_model(spec: DeploymentSpec, log: LogFile) -> None:
        if spec.model_dir is None:
            log.write_line("Model: none.")
            return
        if not spec.model_dir.exists():
            raise _failed(log, f"The model directory {spec.model_dir} does not exist.")
        log.write_line(f"Model: {spec.model_dir}.")


def _failed(log: LogFile, message: str) -> PreparationFailed:
    log.write_line(f"ERROR: {message}")
    return PreparationFailed(message)
