"""What the client hands back and takes: endpoints, deployments, keys — in the CLI v2 YAML shape.

The classes carry the fields of ``endpoint.yml`` / ``deployment.yml`` (reference §2) under the
names azure-ai-ml uses (``ManagedOnlineEndpoint``, ``ManagedOnlineDeployment``,
``CodeConfiguration``, ``EndpointAuthKeys`` …); :meth:`to_dict` gives the snake_case document
``propylon ml … show`` prints. Keys without a field of their own are kept in ``extra`` and passed
through, so nothing in a YAML file is dropped on its way to the control plane's mapping.

:func:`load_online_endpoint` and :func:`load_online_deployment` read YAML files; relative paths
in them (``model.path``, ``code_configuration.code``, ``environment.conda_file``) resolve against
the file's folder, as with ``az ml``. Example::

    deployment = load_online_deployment("examples/deployments/blue.yml")
    deployment.instance_count = 2
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from propylon.errors import BadRequest

__all__ = [
    "CodeConfiguration",
    "EndpointAadToken",
    "EndpointAuthKeys",
    "EndpointAuthToken",
    "ManagedOnlineDeployment",
    "ManagedOnlineEndpoint",
    "load_online_deployment",
    "load_online_endpoint",
    "load_yaml",
]


def load_yaml(path: str | Path) -> tuple[dict[str, Any], Path]:
    """The mapping in a YAML file and the folder its relative paths resolve against.

    A missing file, a YAML syntax error or a document that is not a mapping is one
    :class:`BadRequest` naming the file (and the line, when YAML knows it).
    """
    source = Path(path).expanduser()
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadRequest(f"{path}: no such file.", code="FileNotFound") from None
    except IsADirectoryError:
        raise BadRequest(f"{path} is a directory, not a YAML file.", code="InvalidYaml") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequest(f"cannot read {path}: {exc}", code="FileNotReadable") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise BadRequest(f"{path}{where}: {problem}.", code="InvalidYaml") from None
    if not isinstance(data, dict):
        raise BadRequest(
            f"{path}: expected a mapping of fields (such as 'name: …'), found "
            f"{type(data).__name__ if data is not None else 'an empty document'}.",
            code="InvalidYaml",
        )
    return data, source.resolve().parent


def _mapping() -> ModuleType:
    """The control plane's YAML ↔ REST mapping, shared with the server (one mapping, not two).

    Imported on first use: it lives in ``propylon.control``, whose package brings the server's
    web stack, which a CLI command that never converts a resource should not pay for.
    """
    import propylon.control.yaml_mapping

    return propylon.control.yaml_mapping


def _split(cls: type[Any], data: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)} - {"extra", "base_path"}
    known = {k: v for k, v in data.items() if k in names}
    known["extra"] = {k: v for k, v in data.items() if k not in names and k != "$schema"}
    return known


def _compact(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None and v != {}}


@dataclass
class ManagedOnlineEndpoint:
    """An online endpoint (``endpoint.yml``); read-only fields are filled by the server."""

    name: str
    auth_mode: str = "key"
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    traffic: dict[str, int] = field(default_factory=dict)
    mirror_traffic: dict[str, int] = field(default_factory=dict)
    identity: dict[str, Any] | None = None
    public_network_access: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    # Read-only, from the server.
    id: str | None = None
    location: str | None = None
    kind: str | None = None
    provisioning_state: str | None = None
    scoring_uri: str | None = None
    openapi_uri: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ManagedOnlineEndpoint:
        if not isinstance(data.get("name"), str) or not data["name"]:
            raise BadRequest("the endpoint needs a 'name'.", code="InvalidYaml", target="name")
        return cls(**_split(cls, data))

    @classmethod
    def from_rest(cls, body: Mapping[str, Any]) -> ManagedOnlineEndpoint:
        """From the control plane's ARM body."""
        return cls.from_dict(_mapping().endpoint_from_rest(body))

    def to_rest(self, *, location: str) -> dict[str, Any]:
        """The ARM body of a PUT."""
        body: dict[str, Any] = _mapping().endpoint_to_rest(self.to_dict(), location=location)
        return body

    def to_dict(self) -> dict[str, Any]:
        """The YAML/``show`` document (snake_case)."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        document = {**self.extra, **_compact(values)}
        for always in ("traffic", "mirror_traffic", "tags", "properties"):
            document.setdefault(always, getattr(self, always))
        return document


@dataclass
class CodeConfiguration:
    code: str | None = None
    scoring_script: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _compact({"code": self.code, "scoring_script": self.scoring_script})


@dataclass
class ManagedOnlineDeployment:
    """A deployment (``deployment.yml``).

    ``model`` and ``environment`` are an asset reference (``azureml:name:version`` or an ARM id)
    or an inline mapping (``{"path": …}``, ``{"image": …, "conda_file": …}``); local paths are
    uploaded as assets by ``begin_create_or_update``. ``base_path`` is where relative paths
    resolve (the YAML file's folder; the working directory otherwise).
    """

    name: str
    endpoint_name: str | None = None
    model: str | dict[str, Any] | None = None
    code_configuration: CodeConfiguration | None = None
    environment: str | dict[str, Any] | None = None
    instance_type: str | None = None
    instance_count: int | None = None
    environment_variables: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    request_settings: dict[str, Any] | None = None
    liveness_probe: dict[str, Any] | None = None
    readiness_probe: dict[str, Any] | None = None
    scale_settings: dict[str, Any] | None = None
    app_insights_enabled: bool | None = None
    egress_public_network_access: str | None = None
    type: str | None = None
    # Read-only, from the server.
    id: str | None = None
    provisioning_state: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    base_path: Path = field(default_factory=Path.cwd, compare=False, repr=False)

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], base_path: Path | None = None
    ) -> ManagedOnlineDeployment:
        if not isinstance(data.get("name"), str) or not data["name"]:
            raise BadRequest("the deployment needs a 'name'.", code="InvalidYaml", target="name")
        values = _split(cls, data)
        code = values.get("code_configuration")
        if isinstance(code, Mapping):
            values["code_configuration"] = CodeConfiguration(
                code=code.get("code"), scoring_script=code.get("scoring_script")
            )
        elif code is not None and not isinstance(code, CodeConfiguration):
            raise BadRequest(
                "'code_configuration' must be a mapping with 'code' and 'scoring_script'.",
                code="InvalidYaml",
                target="code_configuration",
            )
        deployment = cls(**values)
        if base_path is not None:
            deployment.base_path = base_path
        return deployment

    @classmethod
    def from_rest(cls, body: Mapping[str, Any]) -> ManagedOnlineDeployment:
        """From the control plane's ARM body."""
        return cls.from_dict(_mapping().deployment_from_rest(body))

    def to_rest(self, *, location: str) -> dict[str, Any]:
        """The ARM body of a PUT (model, code and environment must be asset ids by now)."""
        body: dict[str, Any] = _mapping().deployment_to_rest(self.to_dict(), location=location)
        return body

    def to_dict(self) -> dict[str, Any]:
        """The YAML/``show`` document (snake_case)."""
        values = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in {"extra", "base_path", "code_configuration"}
        }
        document = {**self.extra, **_compact(values)}
        if self.code_configuration is not None:
            document["code_configuration"] = self.code_configuration.to_dict()
        return document


@dataclass(frozen=True)
class EndpointAuthKeys:
    """``auth_mode: key`` — both keys work; regenerate one at a time."""

    primary_key: str
    secondary_key: str

    def to_dict(self) -> dict[str, Any]:
        return {"primaryKey": self.primary_key, "secondaryKey": self.secondary_key}


@dataclass(frozen=True)
class EndpointAuthToken:
    """``auth_mode: aml_token`` — times are epoch seconds."""

    access_token: str
    expiry_time_utc: int
    refresh_after_time_utc: int
    token_type: str = "Bearer"  # noqa: S105 — a token type, not a secret

    def to_dict(self) -> dict[str, Any]:
        return {
            "accessToken": self.access_token,
            "expiryTimeUtc": self.expiry_time_utc,
            "refreshAfterTimeUtc": self.refresh_after_time_utc,
            "tokenType": self.token_type,
        }


@dataclass(frozen=True)
class EndpointAadToken:
    """``auth_mode: aad_token`` — an identity-provider token for ``https://ml.azure.com``."""

    access_token: str
    expiry_time_utc: int

    def to_dict(self) -> dict[str, Any]:
        return {"accessToken": self.access_token, "expiryTimeUtc": self.expiry_time_utc}


def load_online_endpoint(path: str | Path) -> ManagedOnlineEndpoint:
    """Read an ``endpoint.yml``."""
    data, _ = load_yaml(path)
    return ManagedOnlineEndpoint.from_dict(data)


def load_online_deployment(path: str | Path) -> ManagedOnlineDeployment:
    """Read a ``deployment.yml``; its relative paths resolve against its folder."""
    data, folder = load_yaml(path)
    return ManagedOnlineDeployment.from_dict(data, base_path=folder)
