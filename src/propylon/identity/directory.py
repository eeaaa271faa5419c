"""The directory: users, groups, applications/service principals and managed identities.

One :class:`~propylon.store.models.Principal` row per object, keyed by its object id (the
``oid`` of its tokens) and unique per tenant by ``name``:

==================  ==========================  =============================================
kind                ``name``                    ``body``
==================  ==========================  =============================================
user                UPN, lower-cased            ``userPrincipalName`` (as given), ``mailNickname``
group               the object id               ``description``, ``mailNickname``
servicePrincipal    appId (client id)           ``appId``, ``application`` (object id, flags)
managedIdentity     client id                   ``appId``, ``xms_mirid`` (ARM id of the user-
                                                assigned identity or of the endpoint holding
                                                a system-assigned one), ``type``
==================  ==========================  =============================================

An application and its service principal are one row here (Graph keeps two objects): the
application's object id lives in the body. Passwords, client secrets and certificates are
:attr:`Directory.credentials` (:mod:`~propylon.identity.credentials`).

Three answers sit on every request's path and are cached in memory: :meth:`Directory.is_active`
(the validator's ``principal_is_active``), :meth:`Directory.groups_of` (transitive group ids
for RBAC) and :meth:`Directory.holds` (is an object id ours? asked of external tokens). Every
write records a ``principals`` or ``memberships`` change in its transaction; the change feed
drops the caches on every replica, and the writing replica drops its own at once.

Example::

    directory = Directory(db, default_tenant=tid)
    alice = directory.create_user(tid, "alice@contoso.test", "Alice", "correct horse")
    team = directory.create_group(tid, "ml-team")
    directory.add_member(team.id, alice.id)
    assert team.id in directory.groups_of(alice.id)
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from propylon.errors import BadRequest, NotFound
from propylon.identity.credentials import Credentials, check_password, password_row
from propylon.store import RESET, Database, as_utc, utcnow
from propylon.store.models import (
    Change,
    Credential,
    DeviceCode,
    Membership,
    Principal,
    RefreshToken,
)

__all__ = [
    "MEMBERSHIPS_CHANGE",
    "PRINCIPALS_CHANGE",
    "Directory",
    "DirectoryObject",
    "ObjectKind",
    "transitive_groups",
]

PRINCIPALS_CHANGE = "principals"
MEMBERSHIPS_CHANGE = "memberships"
_CACHE_LIMIT = 100_000
_APPLICATION_NAMESPACE = uuid.UUID("6f1f3c5e-8a52-4a2f-9c0b-0d1f0b6e7a11")


class ObjectKind(StrEnum):
    USER = "user"
    GROUP = "group"
    SERVICE_PRINCIPAL = "servicePrincipal"
    MANAGED_IDENTITY = "managedIdentity"


@dataclass(frozen=True)
class DirectoryObject:
    """A principal as the directory knows it (never with credentials)."""

    id: str
    tenant_id: str
    kind: ObjectKind
    name: str
    display_name: str
    enabled: bool
    body: Mapping[str, Any] = field(repr=False)
    created_at: datetime

    @classmethod
    def from_row(cls, row: Principal) -> DirectoryObject:
        return cls(
            id=row.id,
            tenant_id=row.tenant_id,
            kind=ObjectKind(row.kind),
            name=row.name,
            display_name=row.display_name,
            enabled=row.enabled,
            body=MappingProxyType(dict(row.body or {})),
            created_at=as_utc(row.created_at),
        )

    @property
    def upn(self) -> str | None:
        if self.kind is not ObjectKind.USER:
            return None
        return str(self.body.get("userPrincipalName") or self.name)

    @property
    def client_id(self) -> str | None:
        """The appId of a service principal, the client id of a managed identity."""
        if self.kind in (ObjectKind.SERVICE_PRINCIPAL, ObjectKind.MANAGED_IDENTITY):
            return self.name
        return None

    @property
    def application_id(self) -> str:
        """The Graph object id of a service principal's application."""
        application = self.body.get("application")
        if isinstance(application, Mapping) and isinstance(application.get("id"), str):
            return str(application["id"])
        # Principals made outside this module (the bootstrap admin) get a stable derived id.
        return str(uuid.uuid5(_APPLICATION_NAMESPACE, self.id))

    @property
    def public_client(self) -> bool:
        application = self.body.get("application")
        return isinstance(application, Mapping) and bool(application.get("isFallbackPublicClient"))

    @property
    def resource_id(self) -> str | None:
        """A managed identity's ARM id (or its host's), for ``xms_mirid``."""
        value = self.body.get("xms_mirid") or self.body.get("resourceId")
        return value if isinstance(value, str) and value else None


def transitive_groups(direct: Mapping[str, Iterable[str]], oid: str) -> frozenset[str]:
    """Every group ``oid`` belongs to through any chain of memberships; cycles end the walk.

    >>> sorted(transitive_groups({"u": ["g1"], "g1": ["g2"], "g2": ["g1"]}, "u"))
    ['g1', 'g2']
    """
    seen: set[str] = set()
    queue = deque(direct.get(oid, ()))
    while queue:
        group = queue.popleft()
        if group in seen or group == oid:
            continue
        seen.add(group)
        queue.extend(direct.get(group, ()))
    return frozenset(seen)


class Directory:
    """The store-backed directory; see the module docstring."""

    def __init__(self, db: Database, *, default_tenant: str) -> None:
        self._db = db
        self.default_tenant = default_tenant
        self.credentials = Credentials(db)
        self._lock = threading.Lock()
        self._generation = 0
        self._active: dict[tuple[str, str], bool] = {}
        self._groups: dict[str, frozenset[str]] = {}
        self._held: dict[str, bool] = {}
        self._member_of: dict[str, frozenset[str]] | None = None
        self._tenants: frozenset[str] | None = None

    # -- the hot path: cached -------------------------------------------------------------

    def is_active(self, tenant_id: str, oid: str) -> bool:
        """May tokens of ``oid`` in ``tenant_id`` be used? False when disabled or deleted.

        Tenants this directory does not hold belong to trusted external issuers, which answer
        for their own principals: True.
        """
        if not self.owns_tenant(tenant_id):
            return True
        key = (tenant_id, oid)
        cached = self._active.get(key)
        if cached is not None:
            return cached
        generation = self._generation
        with self._db.reader() as session:
            row = session.get(Principal, oid)
            active = row is not None and row.tenant_id == tenant_id and row.enabled
        self._remember(self._active, key, active, generation)
        return active

    def groups_of(self, oid: str) -> frozenset[str]:
        """The object ids of every group ``oid`` is a member of, directly or through groups."""
        cached = self._groups.get(oid)
        if cached is not None:
            return cached
        generation = self._generation
        member_of = self._member_of
        if member_of is None:
            member_of = self._load_memberships()
            with self._lock:
                if generation == self._generation:
                    self._member_of = member_of
        groups = transitive_groups(member_of, oid)
        self._remember(self._groups, oid, groups, generation)
        return groups

    def holds(self, oid: str) -> bool:
        """Is ``oid`` the object id of one of our objects (any kind, any of our tenants)?

        Object ids are lower-case GUIDs here and RBAC compares them case-insensitively, so
        ``oid`` is too.
        """
        key = oid.lower()
        cached = self._held.get(key)
        if cached is not None:
            return cached
        generation = self._generation
        with self._db.reader() as session:
            held = session.get(Principal, key) is not None
        self._remember(self._held, key, held, generation)
        return held

    def owns_tenant(self, tenant_id: str) -> bool:
        tenants = self._tenants
        if tenants is None:
            generation = self._generation
            with self._db.reader() as session:
                found = set(session.scalars(select(Principal.tenant_id).distinct()))
            tenants = frozenset({self.default_tenant, *found})
            with self._lock:
                if generation == self._generation:
                    self._tenants = tenants
        return tenant_id in tenants

    def resolve_tenant(self, segment: str) -> str | None:
        """The tenant an authority path names: a tenant id we hold; ``common`` and
        ``organizations`` stand for the default tenant (one directory, no home-realm choice)."""
        if segment.lower() in ("common", "organizations"):
            return self.default_tenant
        lowered = segment.lower()
        return lowered if self.owns_tenant(lowered) else None

    def on_changes(self, changes: Sequence[Change]) -> None:
        """Change-feed subscriber: drop the caches when principals or memberships changed."""
        if any(
            c.kind in (PRINCIPALS_CHANGE, MEMBERSHIPS_CHANGE, "bootstrap", RESET) for c in changes
        ):
            self.invalidate()

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1
            self._active = {}
            self._groups = {}
            self._held = {}
            self._member_of = None
            self._tenants = None

    def _remember(self, cache: dict[Any, Any], key: Any, value: Any, generation: int) -> None:
        with self._lock:
            # A write that committed while we read would leave a stale entry: drop it instead.
            if generation != self._generation:
                return
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[key] = value

    def _load_memberships(self) -> dict[str, frozenset[str]]:
        direct: dict[str, set[str]] = {}
        with self._db.reader() as session:
            for row in session.execute(select(Membership.member_id, Membership.group_id)):
                direct.setdefault(row.member_id, set()).add(row.group_id)
        return {member: frozenset(groups) for member, groups in direct.items()}

    # -- reading --------------------------------------------------------------------------

    def get(self, oid: str, *, tenant_id: str | None = None) -> DirectoryObject | None:
        with self._db.reader() as session:
            row = session.get(Principal, oid)
        if row is None or (tenant_id is not None and row.tenant_id != tenant_id):
            return None
        return DirectoryObject.from_row(row)

    def require(
        self, oid: str, *, tenant_id: str, kinds: Iterable[ObjectKind] | None = None
    ) -> DirectoryObject:
        """The object or 404 (``Request_ResourceNotFound``, as Graph says)."""
        found = self.get(oid, tenant_id=tenant_id)
        if found is None or (kinds is not None and found.kind not in set(kinds)):
            raise NotFound(
                f"Resource '{oid}' does not exist or one of its queried reference-property "
                "objects are not present.",
                code="Request_ResourceNotFound",
            )
        return found

    def find_by_name(self, tenant_id: str, name: str) -> DirectoryObject | None:
        """A user by UPN (any case), a service principal by appId, an MI by client id."""
        with self._db.reader() as session:
            row = session.scalar(
                select(Principal).where(
                    Principal.tenant_id == tenant_id, Principal.name == _name_key(name)
                )
            )
        return None if row is None else DirectoryObject.from_row(row)

    def find_user(self, tenant_id: str, upn: str) -> DirectoryObject | None:
        found = self.find_by_name(tenant_id, upn)
        return found if found is not None and found.kind is ObjectKind.USER else None

    def find_client(self, tenant_id: str, client_id: str) -> DirectoryObject | None:
        """The service principal (or managed identity) whose appId / client id this is."""
        found = self.find_by_name(tenant_id, client_id)
        if found is None or found.kind not in (
            ObjectKind.SERVICE_PRINCIPAL,
            ObjectKind.MANAGED_IDENTITY,
        ):
            return None
        return found

    def find_application(self, tenant_id: str, application_id: str) -> DirectoryObject | None:
        """A service principal by its application's object id (or by appId)."""
        for candidate in self.list_objects(tenant_id, ObjectKind.SERVICE_PRINCIPAL):
            if application_id in (candidate.application_id, candidate.client_id):
                return candidate
        return None

    def find_managed_identity(self, tenant_id: str, resource_id: str) -> DirectoryObject | None:
        wanted = resource_id.rstrip("/").lower()
        for candidate in self.list_objects(tenant_id, ObjectKind.MANAGED_IDENTITY):
            if (candidate.resource_id or "").rstrip("/").lower() == wanted:
                return candidate
        return None

    def list_objects(self, tenant_id: str, kind: ObjectKind) -> list[DirectoryObject]:
        with self._db.reader() as session:
            rows = session.scalars(
                select(Principal)
                .where(Principal.tenant_id == tenant_id, Principal.kind == kind.value)
                .order_by(Principal.created_at, Principal.id)
            )
            return [DirectoryObject.from_row(row) for row in rows]

    def members(self, group_id: str) -> list[DirectoryObject]:
        """Direct members of a group."""
        with self._db.reader() as session:
            rows = session.scalars(
                select(Principal)
                .join(Membership, Membership.member_id == Principal.id)
                .where(Membership.group_id == group_id)
                .order_by(Principal.created_at, Principal.id)
            )
            return [DirectoryObject.from_row(row) for row in rows]

    # -- writing: objects -----------------------------------------------------------------

    def create_user(
        self,
        tenant_id: str,
        upn: str,
        display_name: str,
        password: str,
        *,
        enabled: bool = True,
        mail_nickname: str | None = None,
    ) -> DirectoryObject:
        upn = upn.strip()
        local, at, domain = upn.partition("@")
        if not (local and at and domain) or len(upn) > 256 or any(c.isspace() for c in upn):
            raise _bad_request(f"'{upn}' is not a valid userPrincipalName (name@domain).")
        check_password(password)
        body = {"userPrincipalName": upn, "mailNickname": mail_nickname or local}
        row = self._new_principal(tenant_id, ObjectKind.USER, upn, display_name, body, enabled)
        return self._insert(row, credentials=[password_row(row.id, "password", password)])

    def create_group(
        self,
        tenant_id: str,
        display_name: str,
        *,
        description: str | None = None,
        mail_nickname: str | None = None,
    ) -> DirectoryObject:
        oid = str(uuid.uuid4())
        body = {
            "description": description,
            "mailNickname": mail_nickname or display_name.replace(" ", ""),
            "securityEnabled": True,
            "mailEnabled": False,
        }
        row = self._new_principal(
            tenant_id, ObjectKind.GROUP, oid, display_name, body, True, oid=oid
        )
        return self._insert(row)

    def create_application(
        self,
        tenant_id: str,
        display_name: str,
        *,
        public_client: bool = False,
        identifier_uris: Sequence[str] = (),
        app_id: str | None = None,
    ) -> DirectoryObject:
        """An application and its service principal (one object here, see the module doc)."""
        app_id = app_id or str(uuid.uuid4())
        body = {
            "appId": app_id,
            "displayName": display_name,
            "servicePrincipalType": "Application",
            "application": {
                "id": str(uuid.uuid4()),
                "isFallbackPublicClient": public_client,
                "identifierUris": list(identifier_uris),
            },
        }
        row = self._new_principal(
            tenant_id, ObjectKind.SERVICE_PRINCIPAL, app_id, display_name, body, True
        )
        return self._insert(row)

    def create_managed_identity(
        self,
        tenant_id: str,
        display_name: str,
        *,
        resource_id: str,
        user_assigned: bool = True,
    ) -> DirectoryObject:
        """A managed identity: its client id is the ``name``, its ARM id ``xms_mirid`` (the
        body the control plane also writes for system-assigned identities)."""
        client_id = str(uuid.uuid4())
        body = {
            "appId": client_id,
            "xms_mirid": resource_id,
            "type": "UserAssigned" if user_assigned else "SystemAssigned",
            "servicePrincipalType": "ManagedIdentity",
        }
        row = self._new_principal(
            tenant_id, ObjectKind.MANAGED_IDENTITY, client_id, display_name, body, True
        )
        return self._insert(row)

    def update(
        self,
        oid: str,
        *,
        tenant_id: str,
        display_name: str | None = None,
        enabled: bool | None = None,
        password: str | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> DirectoryObject:
        """Change names, ``accountEnabled`` or a user's password (which revokes their sessions)."""
        if password is not None:
            check_password(password)
        with self._db.transaction() as session:
            row = session.get(Principal, oid)
            if row is None or row.tenant_id != tenant_id:
                raise _not_found(oid)
            if display_name is not None:
                row.display_name = display_name
            if enabled is not None:
                row.enabled = enabled
            if body:
                row.body = {**(row.body or {}), **body}
            if password is not None:
                if row.kind != ObjectKind.USER:
                    raise _bad_request("Only users have passwords.")
                session.execute(
                    delete(Credential).where(
                        Credential.principal_id == oid, Credential.kind == "password"
                    )
                )
                session.add(password_row(oid, "password", password))
            if password is not None or enabled is False:
                # A reset password or a disabled account ends every session (Entra revokes
                # refresh tokens on both).
                _revoke_sessions(session, oid)
            Database.record_change(session, PRINCIPALS_CHANGE, oid)
            updated = DirectoryObject.from_row(row)
        self.invalidate()
        return updated

    def set_enabled(self, oid: str, enabled: bool, *, tenant_id: str) -> DirectoryObject:
        return self.update(oid, tenant_id=tenant_id, enabled=enabled)

    def delete(self, oid: str, *, tenant_id: str) -> None:
        """Delete the object, its credentials, memberships and sessions (role assignments stay,
        orphaned, as in Azure)."""
        with self._db.transaction() as session:
            row = session.get(Principal, oid)
            if row is None or row.tenant_id != tenant_id:
                raise _not_found(oid)
            session.execute(delete(Credential).where(Credential.principal_id == oid))
            session.execute(
                delete(Membership).where(
                    (Membership.member_id == oid) | (Membership.group_id == oid)
                )
            )
            _revoke_sessions(session, oid)
            session.execute(delete(DeviceCode).where(DeviceCode.principal_id == oid))
            session.delete(row)
            Database.record_change(session, PRINCIPALS_CHANGE, oid)
            Database.record_change(session, MEMBERSHIPS_CHANGE, oid)
        self.invalidate()

    # -- writing: memberships -------------------------------------------------------------

    def add_member(self, group_id: str, member_id: str, *, tenant_id: str) -> None:
        if group_id == member_id:
            raise _bad_request("A group cannot be a member of itself.")
        with self._db.transaction() as session:
            group = session.get(Principal, group_id)
            member = session.get(Principal, member_id)
            if group is None or group.tenant_id != tenant_id or group.kind != ObjectKind.GROUP:
                raise _not_found(group_id)
            if member is None or member.tenant_id != tenant_id:
                raise _not_found(member_id)
            if session.get(Membership, (group_id, member_id)) is not None:
                raise _bad_request("One or more added object references already exist.")
            session.add(Membership(group_id=group_id, member_id=member_id))
            Database.record_change(session, MEMBERSHIPS_CHANGE, group_id)
        self.invalidate()

    def remove_member(self, group_id: str, member_id: str, *, tenant_id: str) -> None:
        with self._db.transaction() as session:
            group = session.get(Principal, group_id)
            if group is None or group.tenant_id != tenant_id:
                raise _not_found(group_id)
            link = session.get(Membership, (group_id, member_id))
            if link is None:
                raise _not_found(member_id)
            session.delete(link)
            Database.record_change(session, MEMBERSHIPS_CHANGE, group_id)
        self.invalidate()

    # -- internals ------------------------------------------------------------------------

    @staticmethod
    def _new_principal(
        tenant_id: str,
        kind: ObjectKind,
        name: str,
        display_name: str,
        body: dict[str, Any],
        enabled: bool,
        *,
        oid: str | None = None,
    ) -> Principal:
        display_name = display_name.strip()
        if not display_name or len(display_name) > 256:
            raise _bad_request("displayName must have 1 to 256 characters.")
        return Principal(
            id=oid or str(uuid.uuid4()),
            tenant_id=tenant_id,
            kind=kind.value,
            name=_name_key(name),
            display_name=display_name,
            enabled=enabled,
            body=body,
            created_at=utcnow(),
        )

    def _insert(self, row: Principal, *, credentials: Sequence[Credential] = ()) -> DirectoryObject:
        try:
            with self._db.transaction() as session:
                session.add(row)
                session.flush()
                for credential in credentials:
                    session.add(credential)
                Database.record_change(session, PRINCIPALS_CHANGE, row.id)
        except IntegrityError:
            raise _bad_request(
                f"Another object with the same value for property '{row.name}' already exists."
            ) from None
        self.invalidate()
        return DirectoryObject.from_row(row)


def _name_key(name: str) -> str:
    # UPNs, appIds and GUIDs all compare case-insensitively.
    return name.strip().lower()


def _revoke_sessions(session: Session, oid: str) -> None:
    session.execute(delete(RefreshToken).where(RefreshToken.principal_id == oid))


def _not_found(oid: str) -> NotFound:
    return NotFound(
        f"Resource '{oid}' does not exist or one of its queried reference-property objects "
        "are not present.",
        code="Request_ResourceNotFound",
    )


def _bad_request(message: str) -> BadRequest:
    return BadRequest(message, code="Request_BadRequest")
