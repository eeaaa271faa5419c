"""First start of a data dir: the tenant, subscription, workspace, admin principal and TLS files.

On an empty data dir this creates, in one database transaction (so a crash leaves nothing half
made): a tenant and a subscription (GUIDs), resource group ``default-rg``, workspace ``default-ws``
(location ``local``), and an administrator service principal with a client secret, holding Owner
at scope ``/``. The secret is shown once: it goes to ``bootstrap.json`` (mode 0600) and only
its hash to the database. Later starts reuse everything and refresh the URLs in ``bootstrap.json``.
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from propylon.config import Settings
from propylon.errors import ConfigurationError
from propylon.server.tls import TlsFiles, ensure_certificates
from propylon.store import Database, MasterKey, Sealer, UnsealError, hash_secret, utcnow
from propylon.store.models import Credential, Meta, Principal, RoleAssignmentRow
from propylon.store.resources import ResourceStore, ResourceWrite

__all__ = [
    "OWNER_ROLE_ID",
    "Tenancy",
    "bootstrap_state",
    "prepare_data_dir",
    "write_bootstrap_file",
]

OWNER_ROLE_ID = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
_CHECK_SLOT = "meta/master-key-check"
_LOCATION = "local"


@dataclass(frozen=True)
class Tenancy:
    """The ids fixed at bootstrap."""

    tenant_id: str
    subscription_id: str
    resource_group: str
    workspace: str
    admin_client_id: str

    @property
    def workspace_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace}"
        )


def prepare_data_dir(settings: Settings) -> MasterKey:
    """Create the data dir (0700) and load or create the master key; fail with one clear line."""
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        settings.logs_dir.mkdir(exist_ok=True, mode=0o700)
        probe = settings.data_dir / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigurationError(
            f"data dir {settings.data_dir} is not writable: {exc.strerror}."
        ) from None
    return MasterKey.load_or_create(settings.data_dir / "master.key", settings.master_key)


def bootstrap_state(db: Database, sealer: Sealer) -> tuple[Tenancy, str | None]:
    """Return the tenancy, creating it on first start; the admin secret only when just created."""
    _check_master_key(db, sealer)
    with db.reader() as session:
        existing = {m.key: m.value for m in session.scalars(select(Meta))}
    if "tenant_id" in existing:
        return _tenancy(existing), None
    tenancy = Tenancy(
        tenant_id=str(uuid.uuid4()),
        subscription_id=str(uuid.uuid4()),
        resource_group="default-rg",
        workspace="default-ws",
        admin_client_id=str(uuid.uuid4()),
    )
    admin_secret = secrets.token_urlsafe(32)
    resources = ResourceStore(db)
    now = utcnow()
    with db.transaction() as session:
        for key, value in {
            "tenant_id": tenancy.tenant_id,
            "subscription_id": tenancy.subscription_id,
            "resource_group": tenancy.resource_group,
            "workspace": tenancy.workspace,
            "admin_client_id": tenancy.admin_client_id,
        }.items():
            session.add(Meta(key=key, value=value))
        for write in _initial_resources(tenancy):
            resources.put_in(session, write)
        admin_oid = str(uuid.uuid4())
        session.add(
            Principal(
                id=admin_oid,
                tenant_id=tenancy.tenant_id,
                kind="servicePrincipal",
                name=tenancy.admin_client_id,
                display_name="propylon-admin",
                enabled=True,
                body={"appId": tenancy.admin_client_id, "displayName": "propylon-admin"},
                created_at=now,
            )
        )
        session.flush()
        session.add(
            Credential(
                id=str(uuid.uuid4()),
                principal_id=admin_oid,
                kind="secret",
                secret_hash=hash_secret(admin_secret),
                hint=admin_secret[:3],
                display_name="bootstrap",
                created_at=now,
            )
        )
        assignment_id = str(uuid.uuid4())
        session.add(
            RoleAssignmentRow(
                id=assignment_id,
                scope="/",
                role_definition_id=OWNER_ROLE_ID,
                principal_id=admin_oid,
                principal_type="ServicePrincipal",
                body={"createdBy": "bootstrap"},
                created_at=now,
            )
        )
        Database.record_change(session, "bootstrap", tenancy.tenant_id)
    return tenancy, admin_secret


def write_bootstrap_file(
    settings: Settings, tenancy: Tenancy, admin_secret: str | None, tls: TlsFiles | None
) -> Path:
    """Write ``bootstrap.json`` (0600): ids, URLs, CA path and, from the first start, the secret."""
    path = settings.data_dir / "bootstrap.json"
    previous: dict[str, Any] = {}
    if path.exists():
        previous = json.loads(path.read_text())
    secret = admin_secret or previous.get("admin_client_secret")
    control = settings.advertised_control_url
    content = {
        "tenant_id": tenancy.tenant_id,
        "subscription_id": tenancy.subscription_id,
        "resource_group": tenancy.resource_group,
        "workspace": tenancy.workspace,
        "admin_client_id": tenancy.admin_client_id,
        "admin_client_secret": secret,
        "authority": control,
        "control_plane_url": control,
        "gateway_url": settings.advertised_gateway_url,
        "ca_cert": str(tls.ca_cert) if tls else None,
    }
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(content, handle, indent=2)
        handle.write("\n")
    temporary.replace(path)
    return path


def ensure_tls(settings: Settings) -> TlsFiles | None:
    if not settings.tls:
        return None
    hosts = ["localhost", "127.0.0.1", "::1"]
    if settings.public_host and settings.public_host not in hosts:
        hosts.append(settings.public_host)
    if settings.host not in hosts and settings.host not in ("0.0.0.0", "::"):  # noqa: S104
        hosts.append(settings.host)
    return ensure_certificates(settings.tls_dir, hosts)


def _check_master_key(db: Database, sealer: Sealer) -> None:
    with db.transaction() as session:
        row = session.get(Meta, "master_key_check")
        if row is None:
            sealed = sealer.seal(_CHECK_SLOT, b"propylon").hex()
            session.add(Meta(key="master_key_check", value=sealed))
            return
        try:
            sealer.open(_CHECK_SLOT, bytes.fromhex(row.value))
        except (UnsealError, ValueError):
            raise ConfigurationError(
                "the master key does not open this data dir's secrets "
                "(wrong PROPYLON_MASTER_KEY or master.key)."
            ) from None


def _tenancy(meta: dict[str, str]) -> Tenancy:
    return Tenancy(
        tenant_id=meta["tenant_id"],
        subscription_id=meta["subscription_id"],
        resource_group=meta["resource_group"],
        workspace=meta["workspace"],
        admin_client_id=meta["admin_client_id"],
    )


def _initial_resources(tenancy: Tenancy) -> list[ResourceWrite]:
    sub = f"/subscriptions/{tenancy.subscription_id}"
    rg = f"{sub}/resourceGroups/{tenancy.resource_group}"
    stamp = utcnow().isoformat()
    system = {"createdAt": stamp, "createdBy": "bootstrap", "lastModifiedAt": stamp}
    return [
        ResourceWrite(
            id=rg,
            parent=sub,
            type="resourcegroups",
            name=tenancy.resource_group,
            body={
                "id": rg,
                "name": tenancy.resource_group,
                "type": "Microsoft.Resources/resourceGroups",
                "location": _LOCATION,
                "properties": {"provisioningState": "Succeeded"},
                "tags": {},
            },
        ),
        ResourceWrite(
            id=tenancy.workspace_id,
            parent=rg,
            type="workspaces",
            name=tenancy.workspace,
            body={
                "id": tenancy.workspace_id,
                "name": tenancy.workspace,
                "type": "Microsoft.MachineLearningServices/workspaces",
                "location": _LOCATION,
                "kind": "Default",
                "identity": {"type": "SystemAssigned", "tenantId": tenancy.tenant_id},
                "properties": {
                    "provisioningState": "Succeeded",
                    "friendlyName": tenancy.workspace,
                    "publicNetworkAccess": "Enabled",
                    "workspaceId": str(uuid.uuid4()),
                },
                "systemData": system,
                "tags": {},
            },
        ),
    ]
