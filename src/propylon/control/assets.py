"""Models, codes and environments: named, versioned assets that deployments refer to.

A container (``…/workspaces/{ws}/models/{name}``) holds versions (``…/models/{name}/versions/{v}``);
PUT of a version creates its container when needed. Content lives in the blob store and is named by
digest: ``properties.modelUri`` / ``properties.codeUri`` are ``sha256:<hex>`` of an archive uploaded
with ``PUT {workspace}/blobs/sha256:<hex>``. An environment carries its conda file as text
(``properties.condaFile``, as Azure does) and optionally an ``image``.

Versions are immutable in what they contain: re-PUT with the same content updates description and
tags, different content is a 409. A version (or container) that a deployment uses cannot be
deleted (409 naming the deployments).

Example::

    row = assets.resolve(parse_asset_reference("azureml:my-model:1", kind=AssetKind.MODEL,
                                                workspace=ws_id), target="properties.model")
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from propylon.control.arm import (
    ARM_TYPES,
    STORE_TYPES,
    AssetKind,
    AssetReference,
    asset_container_id,
    asset_version_id,
    system_data,
)
from propylon.control.blobs import BlobStore, parse_digest
from propylon.control.records import children_in, delete_tree_in, get_in
from propylon.control.schemas import AssetContainerBody
from propylon.control.validation import check_asset_name
from propylon.errors import BadRequest, Conflict, NotFound
from propylon.server.access import Caller
from propylon.store import Database, ResourceStore, ResourceWrite, canonical, check_etag, utcnow
from propylon.store.models import Resource

__all__ = ["CONTENT_FIELDS", "Assets"]

# What a version contains; the rest of its properties are description.
CONTENT_FIELDS = {
    AssetKind.MODEL: ("modelUri",),
    AssetKind.CODE: ("codeUri",),
    AssetKind.ENVIRONMENT: ("image", "condaFile"),
}
# Where a deployment names each kind of asset.
_DEPLOYMENT_FIELDS = {
    AssetKind.MODEL: ("model",),
    AssetKind.CODE: ("codeConfiguration", "codeId"),
    AssetKind.ENVIRONMENT: ("environmentId",),
}


def _version_type(kind: AssetKind) -> str:
    return STORE_TYPES[f"{kind}/versions"]


class Assets:
    def __init__(self, db: Database, resources: ResourceStore, blobs: BlobStore) -> None:
        self._db = db
        self._resources = resources
        self._blobs = blobs

    # --- containers --------------------------------------------------------------------------

    def get_container(self, workspace: Resource, kind: AssetKind, name: str) -> Resource:
        row = self._resources.get(asset_container_id(workspace.id, kind, name))
        if row is None:
            raise NotFound(f"Could not find {kind.singular} {name!r}.", code="ResourceNotFound")
        return row

    def list_containers(self, workspace: Resource, kind: AssetKind) -> list[Resource]:
        return self._resources.children(workspace.id, STORE_TYPES[kind])

    def put_container(
        self,
        workspace: Resource,
        kind: AssetKind,
        name: str,
        body: AssetContainerBody,
        caller: Caller,
        *,
        if_match: str | None,
    ) -> tuple[Resource, bool]:
        check_asset_name(name, what="name")
        with self._db.transaction() as session:
            return self._put_container_in(session, workspace, kind, name, body, caller, if_match)

    def _put_container_in(
        self,
        session: Any,
        workspace: Resource,
        kind: AssetKind,
        name: str,
        body: AssetContainerBody | None,
        caller: Caller,
        if_match: str | None,
    ) -> tuple[Resource, bool]:
        rid = asset_container_id(workspace.body["id"], kind, name)
        existing = get_in(session, rid, lock=True)
        before = existing.body if existing else {}
        old = before.get("properties", {})
        given = body.properties.model_dump(by_alias=True, exclude_none=True) if body else {}
        versions = children_in(session, rid, _version_type(kind))
        numeric = [int(v.name) for v in versions if v.name.isdigit()]
        document = {
            "id": before.get("id", rid),
            "name": before.get("name", name),
            "type": ARM_TYPES[kind],
            "systemData": system_data(caller, utcnow(), before.get("systemData")),
            "properties": {
                "description": old.get("description"),
                "tags": old.get("tags", {}),
                "properties": old.get("properties", {}),
                "isArchived": old.get("isArchived", False),
                **given,
                "latestVersion": versions[-1].name if versions else None,
                "nextVersion": str(max(numeric) + 1) if numeric else "1",
                "provisioningState": "Succeeded",
            },
        }
        write = ResourceWrite(
            id=rid, parent=workspace.id, type=STORE_TYPES[kind], name=name, body=document
        )
        return self._resources.put_in(session, write, if_match=if_match)

    def delete_container(
        self, workspace: Resource, kind: AssetKind, name: str, *, if_match: str | None
    ) -> bool:
        rid = asset_container_id(workspace.id, kind, name)
        with self._db.transaction() as session:
            row = get_in(session, rid, lock=True)
            if row is None:
                return False
            check_etag(row.etag, if_match)
            for version in children_in(session, row.id, _version_type(kind)):
                self._refuse_if_used(kind, version)
            delete_tree_in(session, row)
            return True

    # --- versions ----------------------------------------------------------------------------

    def get_version(
        self, workspace: Resource, kind: AssetKind, name: str, version: str
    ) -> Resource:
        row = self._resources.get(asset_version_id(workspace.id, kind, name, version))
        if row is None:
            raise NotFound(
                f"Could not find version {version!r} of {kind.singular} {name!r}.",
                code="ResourceNotFound",
            )
        return row

    def list_versions(self, workspace: Resource, kind: AssetKind, name: str) -> list[Resource]:
        container = self.get_container(workspace, kind, name)
        return self._resources.children(container.id, _version_type(kind))

    def put_version(
        self,
        workspace: Resource,
        kind: AssetKind,
        name: str,
        version: str,
        body: BaseModel,
        caller: Caller,
        *,
        if_match: str | None,
    ) -> tuple[Resource, bool]:
        check_asset_name(name, what="name")
        check_asset_name(version, what="version")
        given = body.model_dump(by_alias=True, exclude_none=True).get("properties", {})
        self._check_content(kind, given)
        rid = asset_version_id(workspace.body["id"], kind, name, version)
        with self._db.transaction() as session:
            existing = get_in(session, rid, lock=True)
            before = existing.body if existing else {}
            if existing is not None:
                old = before.get("properties", {})
                changed = [f for f in CONTENT_FIELDS[kind] if old.get(f) != given.get(f)]
                if changed:
                    raise Conflict(
                        f"Version {version!r} of {kind.singular} {name!r} already exists with "
                        f"other content ({', '.join(changed)}); versions are immutable, create a "
                        "new version.",
                        code="AssetVersionImmutable",
                    )
            container, _ = self._put_container_in(
                session, workspace, kind, name, None, caller, None
            )
            document = {
                "id": before.get("id", rid),
                "name": before.get("name", version),
                "type": ARM_TYPES[f"{kind}/versions"],
                "systemData": system_data(caller, utcnow(), before.get("systemData")),
                "properties": {
                    "tags": {},
                    "properties": {},
                    "isArchived": False,
                    "isAnonymous": False,
                    **given,
                    "provisioningState": "Succeeded",
                },
            }
            write = ResourceWrite(
                id=rid, parent=container.id, type=_version_type(kind), name=version, body=document
            )
            row, created = self._resources.put_in(session, write, if_match=if_match)
            session.flush()
            self._put_container_in(session, workspace, kind, name, None, caller, None)
            return row, created

    def delete_version(
        self,
        workspace: Resource,
        kind: AssetKind,
        name: str,
        version: str,
        caller: Caller,
        *,
        if_match: str | None,
    ) -> bool:
        rid = asset_version_id(workspace.id, kind, name, version)
        with self._db.transaction() as session:
            row = get_in(session, rid, lock=True)
            if row is None:
                return False
            check_etag(row.etag, if_match)
            self._refuse_if_used(kind, row)
            delete_tree_in(session, row)
            session.flush()
            container = get_in(session, row.parent)
            if container is not None:
                self._put_container_in(session, workspace, kind, name, None, caller, None)
            return True

    # --- references from deployments ---------------------------------------------------------

    def resolve(self, reference: AssetReference, *, target: str) -> Resource:
        """The version a deployment names (the latest when none is given), or 400 naming it."""
        version = reference.version
        if version is None:
            container = self._resources.get(reference.container_id)
            version = container.body["properties"].get("latestVersion") if container else None
        row = self._resources.get(reference.version_id(version)) if version else None
        if row is None:
            shown = f"{reference.name}:{version}" if version else f"{reference.name}@latest"
            raise BadRequest(
                f"'{target}' refers to {reference.kind.singular} {shown!r}, which is not "
                "registered in the workspace.",
                code="AssetNotFound",
                target=target,
            )
        return row

    @staticmethod
    def content_digest(version: Resource, field: str) -> str | None:
        """The digest behind a model or code version's content URI, if it has one."""
        uri = version.body.get("properties", {}).get(field)
        return parse_digest(uri) if uri else None

    def _check_content(self, kind: AssetKind, given: dict[str, Any]) -> None:
        for field in ("modelUri", "codeUri"):
            if field in given:
                digest = parse_digest(given[field], target=f"properties.{field}")
                if self._blobs.stat(digest) is None:
                    raise BadRequest(
                        f"'properties.{field}' names content sha256:{digest}, which has not been "
                        f"uploaded; PUT it to {{workspace}}/blobs/sha256:{digest} first.",
                        code="ContentNotFound",
                        target=f"properties.{field}",
                    )
                given[field] = f"sha256:{digest}"
        if kind is AssetKind.ENVIRONMENT and "condaFile" in given:
            try:
                conda = yaml.safe_load(given["condaFile"])
            except yaml.YAMLError as exc:
                raise BadRequest(
                    f"'properties.condaFile' is not valid YAML: {exc}.",
                    target="properties.condaFile",
                ) from None
            if not isinstance(conda, dict):
                raise BadRequest(
                    "'properties.condaFile' must be a conda environment file (a YAML mapping).",
                    target="properties.condaFile",
                )

    def _refuse_if_used(self, kind: AssetKind, version: Resource) -> None:
        users = []
        for deployment in self._resources.list_type(STORE_TYPES["deployment"]):
            value: Any = deployment.body.get("properties", {})
            for step in _DEPLOYMENT_FIELDS[kind]:
                value = value.get(step) if isinstance(value, dict) else None
            if isinstance(value, str) and canonical(value) == version.id:
                users.append(deployment.body.get("name", deployment.name))
        if users:
            raise Conflict(
                f"Version {version.name!r} is used by deployment(s) {', '.join(sorted(users))}; "
                "delete or update them first.",
                code="AssetInUse",
            )
