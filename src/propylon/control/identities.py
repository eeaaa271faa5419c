"""The managed identities of online endpoints, as directory principals.

A system-assigned identity is a ``managedIdentity`` principal of the server's tenant, created in
the transaction that creates (or switches on) it and deleted with the endpoint — both written to
the change feed as a principals change, as the directory's own changes are, so that every
replica's directory cache learns of them within a second: ``name`` is its
client id, ``body`` is ``{"appId": client id, "xms_mirid": endpoint id}`` — what the identity
provider puts in the tokens it issues to the endpoint's instances. A user-assigned identity is a
principal that already exists (found by its ``xms_mirid``); attaching one needs
``Microsoft.ManagedIdentity/userAssignedIdentities/assign/action`` on it, as on Azure, so that
nobody borrows an identity they may not use.

Example::

    identity = identities.assign_in(session, eid, "my-endpoint", body.identity, {}, authorize)
    identity["principalId"], identity["tenantId"]
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from propylon.control.actions import ASSIGN_USER_IDENTITY, Authorize
from propylon.control.schemas import ManagedServiceIdentity
from propylon.control.validation import identity_type
from propylon.errors import BadRequest
from propylon.identity.directory import PRINCIPALS_CHANGE
from propylon.runtime.base import IdentitySpec
from propylon.store import Database, canonical, utcnow
from propylon.store.models import Principal

__all__ = ["EndpointIdentities"]


class EndpointIdentities:
    def __init__(self, db: Database, tenant_id: str) -> None:
        self._db = db
        self._tenant = tenant_id

    def assign_in(
        self,
        session: Session,
        endpoint_id: str,
        name: str,
        wanted: ManagedServiceIdentity | None,
        before: dict[str, Any],
        authorize: Authorize,
    ) -> dict[str, Any]:
        """The endpoint's ``identity`` body; keeps the system-assigned principal across updates."""
        kind = identity_type(wanted)
        old = before.get("identity") or {}
        principal_id = old.get("principalId") if "SystemAssigned" in old.get("type", "") else None
        result: dict[str, Any] = {"type": kind}
        if "SystemAssigned" in kind:
            if principal_id is None or session.get(Principal, principal_id) is None:
                principal_id = self._create_in(session, before.get("id", endpoint_id), name)
            result["principalId"] = principal_id
            result["tenantId"] = self._tenant
        elif principal_id is not None:
            self.release_in(session, old)
        if "UserAssigned" in kind and wanted is not None:
            attached = {canonical(rid) for rid in old.get("userAssignedIdentities") or {}}
            for rid in wanted.user_assigned_identities or {}:
                if canonical(rid) not in attached:
                    authorize(ASSIGN_USER_IDENTITY, rid)
            result["tenantId"] = self._tenant
            result["userAssignedIdentities"] = {
                rid: self._user_assigned_in(session, rid)
                for rid in (wanted.user_assigned_identities or {})
            }
        return result

    def release_in(self, session: Session, identity: dict[str, Any]) -> None:
        """Delete the system-assigned principal of an ``identity`` body, if it has one."""
        principal_id = identity.get("principalId")
        if principal_id and "SystemAssigned" in identity.get("type", ""):
            principal = session.get(Principal, principal_id)
            if principal is not None:
                session.delete(principal)
                # every replica's directory cache forgets it: its tokens stop working at once
                Database.record_change(session, PRINCIPALS_CHANGE, principal.id)

    def spec_for(self, identity: dict[str, Any]) -> IdentitySpec | None:
        """What the instances act as: the system-assigned identity, else the first user-assigned."""
        if "SystemAssigned" in identity.get("type", "") and identity.get("principalId"):
            with self._db.reader() as session:
                principal = session.get(Principal, identity["principalId"])
            if principal is not None:
                return IdentitySpec(principal.id, principal.name, self._tenant)
        for assigned in (identity.get("userAssignedIdentities") or {}).values():
            return IdentitySpec(assigned["principalId"], assigned["clientId"], self._tenant)
        return None

    def _create_in(self, session: Session, endpoint_id: str, name: str) -> str:
        principal_id = str(uuid.uuid4())
        client_id = str(uuid.uuid4())
        session.add(
            Principal(
                id=principal_id,
                tenant_id=self._tenant,
                kind="managedIdentity",
                name=client_id,
                display_name=name,
                enabled=True,
                body={"appId": client_id, "xms_mirid": endpoint_id},
                created_at=utcnow(),
            )
        )
        Database.record_change(session, PRINCIPALS_CHANGE, principal_id)
        return principal_id

    def _user_assigned_in(self, session: Session, resource_id: str) -> dict[str, str]:
        wanted = canonical(resource_id)
        rows = session.scalars(
            select(Principal).where(
                Principal.tenant_id == self._tenant, Principal.kind == "managedIdentity"
            )
        )
        for row in rows:
            if canonical(str(row.body.get("xms_mirid", ""))) == wanted:
                return {"principalId": row.id, "clientId": row.name}
        raise BadRequest(
            f"'identity.userAssignedIdentities' names {resource_id!r}, which is not a "
            "user-assigned identity in this tenant.",
            code="IdentityNotFound",
            target="identity.userAssignedIdentities",
        )
