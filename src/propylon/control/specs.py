"""From a stored deployment body to the :class:`~propylon.runtime.base.DeploymentSpec` to run.

The body holds what GET shows (ISO 8601 durations, ARM names); the runtime takes seconds and
dataclasses. The environment comes from the environment version's conda file: its ``pip:`` list
verbatim, and its conda packages as pip requirements (``numpy=2.3.1`` → ``numpy==2.3.1``), except
the interpreter and packaging tools and a few conda-only system libraries, because Propylon builds
environments with pip (the conda example files of the seeds list scikit-learn and numpy as conda
packages, and the model would not load without them).

Example::

    spec = build_spec(deployment.body, deployment_id=row.id, endpoint_id=ep.id, endpoint_name="e",
                      code_dir=code, model_dir=model, environment=environment_spec(env_body),
                      identity=None, generation=3)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from propylon.control.durations import parse_duration
from propylon.runtime.base import (
    DeploymentSpec,
    EnvironmentSpec,
    IdentitySpec,
    ProbeSettings,
    RequestSettings,
    ScaleSettings,
)

__all__ = [
    "build_spec",
    "environment_spec",
    "probe_settings",
    "request_settings",
    "scale_settings",
]

_NOT_FROM_PIP = frozenset(
    {
        "python",
        "pip",
        "setuptools",
        "wheel",
        "cudatoolkit",
        "cudnn",
        "nccl",
        "mkl",
        "openssl",
        "ca-certificates",
        "_libgcc_mutex",
    }
)
_SYSTEM_LIBRARY = re.compile(
    r"lib(gcc|stdcxx|gomp|gfortran|blas|cblas|lapack|ffi|zlib|uuid|sqlite)"
)
_CONDA_SPEC = re.compile(r"(?P<name>[A-Za-z0-9_.\-]+)\s*(?P<rest>.*)")


def _conda_to_pip(dependency: str) -> tuple[str, str, str | None]:
    """``(name, pip requirement, pinned version)``; conda's ``=x.y`` pin is pip's ``==x.y``."""
    text = dependency.rsplit("::", maxsplit=1)[-1].strip()
    match = _CONDA_SPEC.fullmatch(text)
    if match is None:
        return text, text, None
    name, rest = match["name"], match["rest"].replace(" ", "")
    version: str | None = None
    if rest.startswith("=="):
        version = rest[2:].split("=")[0]
    elif rest.startswith("=") or rest[:1].isdigit():
        version = rest.lstrip("=").split("=")[0]
    if version:
        return name, f"{name}=={version}", version
    return name, f"{name}{rest}", None


def environment_spec(environment: dict[str, Any] | None) -> EnvironmentSpec:
    """What an environment version's ``image`` and ``condaFile`` ask of the instance's Python."""
    if environment is None:
        return EnvironmentSpec()
    properties = environment.get("properties", {})
    image = properties.get("image")
    conda = yaml.safe_load(properties.get("condaFile") or "{}") or {}
    python_version: str | None = None
    requirements: list[str] = []
    for dependency in conda.get("dependencies") or []:
        if isinstance(dependency, dict):
            requirements.extend(str(item) for item in dependency.get("pip") or [])
            continue
        name, requirement, version = _conda_to_pip(str(dependency))
        if name.lower() == "python":
            python_version = version
        elif name.lower() not in _NOT_FROM_PIP and not _SYSTEM_LIBRARY.match(name.lower()):
            requirements.append(requirement)
    return EnvironmentSpec(
        pip_requirements=tuple(requirements), python_version=python_version, image=image
    )


def probe_settings(probe: dict[str, Any]) -> ProbeSettings:
    return ProbeSettings(
        initial_delay=parse_duration(probe["initialDelay"]),
        period=parse_duration(probe["period"]),
        timeout=parse_duration(probe["timeout"]),
        success_threshold=int(probe["successThreshold"]),
        failure_threshold=int(probe["failureThreshold"]),
    )


def request_settings(settings: dict[str, Any]) -> RequestSettings:
    return RequestSettings(
        max_concurrent_requests_per_instance=int(settings["maxConcurrentRequestsPerInstance"]),
        request_timeout_ms=round(parse_duration(settings["requestTimeout"]) * 1000),
        max_queue_wait_ms=round(parse_duration(settings["maxQueueWait"]) * 1000),
    )


def scale_settings(settings: dict[str, Any], capacity: int) -> ScaleSettings:
    if settings.get("scaleType") != "TargetUtilization":
        return ScaleSettings(scale_type="Default", min_instances=capacity, max_instances=capacity)
    return ScaleSettings(
        scale_type="TargetUtilization",
        min_instances=int(settings["minInstances"]),
        max_instances=int(settings["maxInstances"]),
        polling_interval=parse_duration(settings["pollingInterval"]),
        target_utilization_percentage=int(settings["targetUtilizationPercentage"]),
    )


def build_spec(
    body: dict[str, Any],
    *,
    deployment_id: str,
    endpoint_id: str,
    endpoint_name: str,
    code_dir: Path | None,
    model_dir: Path | None,
    environment: EnvironmentSpec,
    identity: IdentitySpec | None,
    generation: int,
) -> DeploymentSpec:
    """The runtime's view of a deployment (ids canonical, as the runtime and gateway key them)."""
    properties = body["properties"]
    capacity = int(body.get("sku", {}).get("capacity", 1))
    code = properties.get("codeConfiguration") or {}
    return DeploymentSpec(
        deployment_id=deployment_id,
        endpoint_id=endpoint_id,
        endpoint_name=endpoint_name,
        name=body["name"],
        code_dir=code_dir,
        scoring_script=code.get("scoringScript", "score.py"),
        model_dir=model_dir,
        environment=environment,
        environment_variables=dict(properties.get("environmentVariables") or {}),
        instance_count=capacity,
        instance_type=properties.get("instanceType") or "Standard_DS3_v2",
        scale=scale_settings(properties["scaleSettings"], capacity),
        liveness=probe_settings(properties["livenessProbe"]),
        readiness=probe_settings(properties["readinessProbe"]),
        requests=request_settings(properties["requestSettings"]),
        identity=identity,
        generation=generation,
    )
