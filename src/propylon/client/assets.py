"""Models, code and environments: registering versions and uploading local folders as assets.

A local folder or file becomes a content-addressed blob: a deterministic gzip'd tar (sorted
entries, zeroed times and owners, so the same files always give the same bytes), uploaded with
``PUT {workspace}/blobs/sha256:<hex>`` (the server keeps it only if the digest matches) and
referred to as ``sha256:<hex>`` by the asset version. A folder keeps its own name as the
archive's top entry, so ``model: path: ../model-1/model/`` lands as ``$AZUREML_MODEL_DIR/model/…``
and the code folder becomes ``AML_APP_ROOT``, as on Azure ML.

:func:`resolve_deployment` does for a deployment what ``az ml online-deployment create`` does:
local ``model.path``, ``code_configuration.code`` and inline ``environment`` become asset
versions (named after the content, so re-running reuses them) and the deployment refers to them
by ARM id. Example::

    models = AssetOperations(pipeline, workspace, AssetKind.MODEL)
    models.create_or_update("sklearn", "1", path="examples/model-1/model")
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from propylon.client.entities import CodeConfiguration, ManagedOnlineDeployment
from propylon.client.http import ARM_SCOPE, Pipeline
from propylon.client.workspace import API_VERSION, WorkspaceScope
from propylon.errors import BadRequest, NotFound

__all__ = ["AssetKind", "AssetOperations", "archive", "asset_reference", "resolve_deployment"]

_BLOB_CONTENT_TYPE = "application/gzip"


class AssetKind(StrEnum):
    """The value is the ARM path segment under the workspace."""

    MODEL = "models"
    CODE = "codes"
    ENVIRONMENT = "environments"


def archive(path: Path) -> bytes:
    """A reproducible ``.tar.gz`` of ``path`` (a folder keeps its name as the top entry)."""
    if not path.exists():
        raise BadRequest(f"{path}: no such file or folder.", code="FileNotFound")
    buffer = io.BytesIO()
    # mtime=0 and sorted, normalised entries make the bytes a function of the content alone.
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        root = path.name or "content"
        members = [path, *sorted(path.rglob("*"))] if path.is_dir() else [path]
        for member in members:
            if member.is_symlink() or not (member.is_dir() or member.is_file()):
                continue
            relative = member.relative_to(path.parent) if path.is_dir() else Path(root)
            info = tarfile.TarInfo(relative.as_posix() if path.is_dir() else root)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if member.is_dir():
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                data = member.read_bytes()
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def asset_reference(value: str, kind: AssetKind, workspace: WorkspaceScope) -> str:
    """``azureml:name:version`` (or ``azureml:name@latest`` is refused) → the asset's ARM id."""
    if value.startswith("/"):
        return value
    if value.startswith("azureml:/"):  # how `show` prints an id: "azureml:/subscriptions/…"
        return value.removeprefix("azureml:")
    if value.startswith("azureml:") and not value.startswith("azureml://"):
        parts = value.removeprefix("azureml:").split(":")
        if len(parts) == 2 and all(parts):
            return workspace.asset_id(kind.value, parts[0], parts[1])
    return value  # registry URIs and anything else: the server decides


class AssetOperations:
    """One kind of asset in a workspace: containers of immutable, numbered versions."""

    def __init__(self, pipeline: Pipeline, workspace: WorkspaceScope, kind: AssetKind) -> None:
        self._pipeline = pipeline
        self._ws = workspace
        self.kind = kind

    def _params(self) -> dict[str, str]:
        return {"api-version": API_VERSION}

    # -- blobs -----------------------------------------------------------------------------

    def upload(self, path: Path) -> str:
        """Upload ``path`` as a content-addressed archive; return its ``sha256:<hex>`` URI."""
        data = archive(path)
        digest = hashlib.sha256(data).hexdigest()
        # Content-addressed: the server keeps a blob only if its SHA-256 matches the name, so
        # sending the same archive again is harmless.
        self._pipeline.send(
            "PUT",
            self._ws.url("blobs", f"sha256:{digest}"),
            scope=ARM_SCOPE,
            params=self._params(),
            content=data,
            headers={"Content-Type": _BLOB_CONTENT_TYPE},
        )
        return f"sha256:{digest}"

    # -- versions ----------------------------------------------------------------------------

    def create_or_update(
        self,
        name: str,
        version: str,
        *,
        path: str | Path | None = None,
        image: str | None = None,
        conda_file: str | Path | dict[str, Any] | None = None,
        model_type: str | None = None,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        anonymous: bool = False,
    ) -> dict[str, Any]:
        """Register ``name:version``; return it in the YAML shape ``show`` prints."""
        properties: dict[str, Any] = {"description": description, "tags": tags or {}}
        if anonymous:
            properties["isAnonymous"] = True
        if self.kind is AssetKind.ENVIRONMENT:
            if image is None and conda_file is None:
                raise BadRequest(
                    "an environment needs an 'image', a 'conda_file' or both.",
                    code="InvalidAsset",
                )
            properties["image"] = image
            properties["condaFile"] = _conda_text(conda_file)
        else:
            if path is None:
                raise BadRequest(f"a {self.kind.value[:-1]} needs a 'path'.", code="InvalidAsset")
            uri = self.upload(Path(path).expanduser())
            if self.kind is AssetKind.MODEL:
                properties["modelUri"] = uri
                properties["modelType"] = model_type or "custom_model"
            else:
                properties["codeUri"] = uri
        body = {"properties": {k: v for k, v in properties.items() if v is not None}}
        reply = self._pipeline.send(
            "PUT",
            self._ws.url(self.kind.value, name, "versions", version),
            scope=ARM_SCOPE,
            params=self._params(),
            json_body=body,
        )
        return self._document(reply.json())

    def get(self, name: str, version: str | None = None) -> dict[str, Any]:
        """One version, or the newest when ``version`` is None."""
        if version is None:
            versions = self.list(name)
            if not versions:
                raise NotFound(
                    f"no versions of {self.kind.value[:-1]} '{name}'.", code="ResourceNotFound"
                )
            return versions[0]
        reply = self._pipeline.send(
            "GET",
            self._ws.url(self.kind.value, name, "versions", version),
            scope=ARM_SCOPE,
            params=self._params(),
        )
        return self._document(reply.json())

    def list(self, name: str | None = None) -> list[dict[str, Any]]:
        """The versions of ``name`` (newest first), or the asset containers."""
        if name is None:
            items = self._pipeline.collect(
                self._ws.url(self.kind.value), scope=ARM_SCOPE, params=self._params()
            )
            return [self._container(item) for item in items]
        items = self._pipeline.collect(
            self._ws.url(self.kind.value, name, "versions"), scope=ARM_SCOPE, params=self._params()
        )
        documents = [self._document(item) for item in items]
        return sorted(
            documents, key=lambda d: _version_key(str(d.get("version", ""))), reverse=True
        )

    def ensure(self, name: str, version: str, **content: Any) -> str:
        """The ARM id of ``name:version``, registering it if it is not there yet."""
        try:
            return str(self.get(name, version)["id"])
        except NotFound:
            return str(self.create_or_update(name, version, anonymous=True, **content)["id"])

    # -- documents -----------------------------------------------------------------------------

    def _container(self, item: dict[str, Any]) -> dict[str, Any]:
        properties = item.get("properties") or {}
        return {
            "id": item.get("id"),
            "name": item.get("name"),
            "description": properties.get("description"),
            "tags": properties.get("tags") or {},
            "latest_version": properties.get("latestVersion"),
        }

    def _document(self, item: dict[str, Any]) -> dict[str, Any]:
        properties = item.get("properties") or {}
        resource_id = str(item.get("id") or "")
        parts = resource_id.split("/")
        name = parts[-3] if len(parts) >= 3 and parts[-2].lower() == "versions" else None
        document: dict[str, Any] = {
            "id": resource_id or None,
            "name": name,
            "version": item.get("name"),
            "description": properties.get("description"),
            "tags": properties.get("tags") or {},
        }
        if self.kind is AssetKind.MODEL:
            document["path"] = properties.get("modelUri")
            document["type"] = properties.get("modelType")
        elif self.kind is AssetKind.CODE:
            document["path"] = properties.get("codeUri")
        else:
            document["image"] = properties.get("image")
            conda = properties.get("condaFile")
            document["conda_file"] = _parse_conda(conda) if conda else None
        system = item.get("systemData") or {}
        if system:
            document["creation_context"] = {
                "created_at": system.get("createdAt"),
                "created_by": system.get("createdBy"),
                "last_modified_at": system.get("lastModifiedAt"),
            }
        return {k: v for k, v in document.items() if v is not None}


def resolve_deployment(
    deployment: ManagedOnlineDeployment,
    models: AssetOperations,
    codes: AssetOperations,
    environments: AssetOperations,
    workspace: WorkspaceScope,
) -> ManagedOnlineDeployment:
    """A copy of ``deployment`` whose model, code and environment are ARM ids of assets.

    Local paths are uploaded and registered as anonymous versions named after their content
    (``{deployment}-model``, version = first 12 hex digits of the archive's SHA-256), so running
    the same ``create`` twice registers nothing new.
    """
    base = deployment.base_path
    changes: dict[str, Any] = {}
    model = deployment.model
    if isinstance(model, dict):
        if "path" not in model:
            raise BadRequest(
                "an inline 'model' needs a 'path' (or refer to one as azureml:name:version).",
                code="InvalidYaml",
                target="model.path",
            )
        path = _local(base, model["path"], "model.path")
        name = str(model.get("name") or f"{deployment.name}-model")
        version = str(model.get("version") or _digest(path))
        changes["model"] = models.ensure(
            name,
            version,
            path=path,
            model_type=model.get("type"),
            description=model.get("description"),
        )
    elif isinstance(model, str):
        changes["model"] = asset_reference(model, AssetKind.MODEL, workspace)
    code = deployment.code_configuration
    if code is not None and code.code is not None:
        if _is_reference(code.code):
            reference = asset_reference(code.code, AssetKind.CODE, workspace)
        else:
            path = _local(base, code.code, "code_configuration.code")
            reference = codes.ensure(f"{deployment.name}-code", _digest(path), path=path)
        changes["code_configuration"] = CodeConfiguration(reference, code.scoring_script)
    environment = deployment.environment
    if isinstance(environment, dict):
        conda: Any = environment.get("conda_file")
        if isinstance(conda, str):
            conda = _local(base, conda, "environment.conda_file")
        image = environment.get("image")
        name = str(environment.get("name") or f"{deployment.name}-env")
        fingerprint = hashlib.sha256(
            yaml.safe_dump({"image": image, "conda": _conda_text(conda)}).encode()
        ).hexdigest()[:12]
        version = str(environment.get("version") or fingerprint)
        changes["environment"] = environments.ensure(name, version, image=image, conda_file=conda)
    elif isinstance(environment, str):
        changes["environment"] = asset_reference(environment, AssetKind.ENVIRONMENT, workspace)
    return replace(deployment, **changes)


def _is_reference(value: str) -> bool:
    return value.startswith(("azureml:", "/subscriptions/", "/Subscriptions/"))


def _local(base: Path, value: Any, field: str) -> Path:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"'{field}' must be a path.", code="InvalidYaml", target=field)
    path = (base / value).expanduser().resolve() if not Path(value).is_absolute() else Path(value)
    if not path.exists():
        raise BadRequest(
            f"'{field}': {value} does not exist (relative to {base}).",
            code="FileNotFound",
            target=field,
        )
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(archive(path)).hexdigest()[:12]


def _conda_text(conda: str | Path | dict[str, Any] | None) -> str | None:
    if conda is None:
        return None
    if isinstance(conda, dict):
        return yaml.safe_dump(conda, sort_keys=False)
    path = Path(conda).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadRequest(
            f"cannot read the conda file {conda}: {exc}", code="FileNotFound"
        ) from None
    _parse_conda(text, source=str(conda))
    return text


def _parse_conda(text: str, source: str = "condaFile") -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise BadRequest(f"{source} is not valid YAML.", code="InvalidYaml") from None


def _version_key(version: str) -> tuple[int, int | str]:
    return (1, int(version)) if version.isdigit() else (0, version)
