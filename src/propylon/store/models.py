"""The tables of Propylon's state (SQLAlchemy 2 declarative models).

ARM resources (resource groups, workspaces, endpoints, deployments, assets) share one table keyed by
their canonical (lower-case) resource id, because they share one life cycle: PUT with ETag, GET,
LIST children, DELETE. Everything that is queried by other columns (principals, role assignments,
signing keys) has a table of its own. Every write also appends a row to ``changes`` in the same
transaction: that is the change feed every replica follows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Base",
    "Change",
    "Credential",
    "DenyAssignmentRow",
    "DeviceCode",
    "Membership",
    "Meta",
    "Operation",
    "Principal",
    "RefreshToken",
    "Resource",
    "RoleAssignmentRow",
    "RoleDefinitionRow",
    "SecretRow",
    "SigningKeyRow",
]

ID = String(1024)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        datetime: DateTime(timezone=True),
    }


class Meta(Base):
    """Server-wide facts fixed at bootstrap (tenant id, subscription id, master-key check)."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Change(Base):
    """One row per committed write: the monotonically increasing revision of the whole state."""

    __tablename__ = "changes"
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    kind: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(ID)
    at: Mapped[datetime]


class Resource(Base):
    """An ARM resource; ``body`` is its JSON as returned to clients (minus secrets)."""

    __tablename__ = "resources"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    parent: Mapped[str] = mapped_column(ID, index=True)
    type: Mapped[str] = mapped_column(String(256), index=True)
    name: Mapped[str] = mapped_column(String(256))
    body: Mapped[dict[str, Any]]
    etag: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime]
    modified_at: Mapped[datetime]


class SecretRow(Base):
    """A secret that must be read back (endpoint keys): AES-GCM ciphertext, never plaintext."""

    __tablename__ = "secrets"
    name: Mapped[str] = mapped_column(ID, primary_key=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime]


class Principal(Base):
    """A user, group, service principal or managed identity of one tenant."""

    __tablename__ = "principals"
    __table_args__ = (Index("ix_principals_tenant_name", "tenant_id", "name", unique=True),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(36), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    # userPrincipalName for users, appId for service principals, a unique name otherwise.
    name: Mapped[str] = mapped_column(String(256))
    display_name: Mapped[str] = mapped_column(String(256))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    body: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class Credential(Base):
    """A password, client secret (both hashed) or certificate (public part) of a principal."""

    __tablename__ = "credentials"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    principal_id: Mapped[str] = mapped_column(
        ForeignKey("principals.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str | None] = mapped_column(Text)
    hint: Mapped[str | None] = mapped_column(String(8))
    thumbprint: Mapped[str | None] = mapped_column(String(128), index=True)
    public_pem: Mapped[str | None] = mapped_column(Text)
    display_name: Mapped[str | None] = mapped_column(String(256))
    expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class Membership(Base):
    """Direct membership of a member (any principal, groups included) in a group."""

    __tablename__ = "memberships"
    group_id: Mapped[str] = mapped_column(
        ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True
    )
    member_id: Mapped[str] = mapped_column(
        ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class RoleDefinitionRow(Base):
    __tablename__ = "role_definitions"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    scope: Mapped[str] = mapped_column(ID)
    role_name: Mapped[str] = mapped_column(String(512), index=True)
    body: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    modified_at: Mapped[datetime]


class RoleAssignmentRow(Base):
    __tablename__ = "role_assignments"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    scope: Mapped[str] = mapped_column(ID, index=True)
    role_definition_id: Mapped[str] = mapped_column(String(36), index=True)
    principal_id: Mapped[str] = mapped_column(String(36), index=True)
    principal_type: Mapped[str] = mapped_column(String(32))
    body: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class DenyAssignmentRow(Base):
    __tablename__ = "deny_assignments"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    scope: Mapped[str] = mapped_column(ID, index=True)
    body: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class SigningKeyRow(Base):
    """A token-signing key; the private key is sealed with the master key."""

    __tablename__ = "signing_keys"
    kid: Mapped[str] = mapped_column(String(128), primary_key=True)
    private_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    activated_at: Mapped[datetime | None]
    retired_at: Mapped[datetime | None]


class Operation(Base):
    """A long-running operation (ARM Azure-AsyncOperation / Location)."""

    __tablename__ = "operations"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    resource_id: Mapped[str] = mapped_column(ID, index=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[dict[str, Any] | None]
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class DeviceCode(Base):
    """A pending OAuth 2.0 device authorization (RFC 8628)."""

    __tablename__ = "device_codes"
    device_code_hash: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_code: Mapped[str] = mapped_column(String(16), unique=True)
    tenant_id: Mapped[str] = mapped_column(String(36))
    client_id: Mapped[str] = mapped_column(String(256))
    scope: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    principal_id: Mapped[str | None] = mapped_column(String(36))
    interval: Mapped[int] = mapped_column(Integer, default=5)
    last_poll_at: Mapped[datetime | None]
    expires_at: Mapped[datetime]


class RefreshToken(Base):
    """An issued refresh token, stored only as a hash so that it can be revoked."""

    __tablename__ = "refresh_tokens"
    token_hash: Mapped[str] = mapped_column(String(128), primary_key=True)
    principal_id: Mapped[str] = mapped_column(String(36), index=True)
    tenant_id: Mapped[str] = mapped_column(String(36))
    client_id: Mapped[str] = mapped_column(String(256))
    scope: Mapped[str] = mapped_column(Text)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime]
