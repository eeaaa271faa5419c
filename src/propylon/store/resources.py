"""ARM resources in the store: one generic repository with ETags and the change feed.

Resource ids are canonicalised to lower case for storage and lookup (ARM compares them
case-insensitively); the body keeps the case the client used. Every write takes a fresh ETag;
a caller's ``If-Match`` that names an older one fails with 412 and writes nothing.

Example::

    repo = ResourceStore(db)
    res = repo.put(ResourceWrite(id=rid, parent=ws_id, type="onlineendpoints", name="e1", body={…}))
    repo.get(rid).etag
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from propylon.errors import PreconditionFailed
from propylon.store.database import Database, utcnow
from propylon.store.models import Resource

__all__ = ["ResourceStore", "ResourceWrite", "canonical"]


def canonical(resource_id: str) -> str:
    """The lookup key of an ARM id: lower case, one leading slash, no trailing slash."""
    return "/" + resource_id.strip("/").lower()


@dataclass(frozen=True)
class ResourceWrite:
    id: str
    parent: str
    type: str
    name: str
    body: dict[str, Any]
    state: str = "Succeeded"


class ResourceStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, resource_id: str) -> Resource | None:
        with self._db.reader() as session:
            return session.get(Resource, canonical(resource_id))

    def children(self, parent: str, type_: str) -> list[Resource]:
        with self._db.reader() as session:
            rows = session.scalars(
                select(Resource)
                .where(Resource.parent == canonical(parent), Resource.type == type_.lower())
                .order_by(Resource.created_at)
            )
            return list(rows)

    def list_type(self, type_: str) -> list[Resource]:
        with self._db.reader() as session:
            return list(session.scalars(select(Resource).where(Resource.type == type_.lower())))

    def put(self, write: ResourceWrite, *, if_match: str | None = None) -> tuple[Resource, bool]:
        """Create or replace; returns the stored row and whether it was created."""
        with self._db.transaction() as session:
            return self.put_in(session, write, if_match=if_match)

    def put_in(
        self, session: Session, write: ResourceWrite, *, if_match: str | None = None
    ) -> tuple[Resource, bool]:
        key = canonical(write.id)
        row = session.get(Resource, key, with_for_update=True)
        check_etag(row.etag if row else None, if_match)
        now = utcnow()
        created = row is None
        if row is None:
            row = Resource(id=key, created_at=now)
            session.add(row)
        row.parent = canonical(write.parent)
        row.type = write.type.lower()
        row.name = write.name
        row.body = write.body
        row.state = write.state
        row.modified_at = now
        row.etag = new_etag()
        Database.record_change(session, write.type.lower(), key)
        return row, created

    def set_state(self, resource_id: str, state: str, body: dict[str, Any]) -> Resource | None:
        with self._db.transaction() as session:
            row = session.get(Resource, canonical(resource_id), with_for_update=True)
            if row is None:
                return None
            row.state = state
            row.body = body
            row.etag = new_etag()
            row.modified_at = utcnow()
            Database.record_change(session, row.type, row.id)
            return row

    def delete(self, resource_id: str, *, if_match: str | None = None) -> bool:
        """Delete a resource and everything below it; False when it did not exist."""
        key = canonical(resource_id)
        with self._db.transaction() as session:
            row = session.get(Resource, key, with_for_update=True)
            if row is None:
                return False
            check_etag(row.etag, if_match)
            session.execute(delete(Resource).where(Resource.id.startswith(key + "/")))
            session.delete(row)
            Database.record_change(session, row.type, key)
            return True


def new_etag() -> str:
    return f'"{uuid.uuid4().hex}"'


def check_etag(current: str | None, if_match: str | None) -> None:
    """RFC 9110 §13.1.1: ``*`` matches any existing resource; otherwise the tags must be equal."""
    if if_match is None:
        return
    if if_match.strip() == "*":
        if current is None:
            raise PreconditionFailed("If-Match: * but the resource does not exist.")
        return
    wanted = {tag.strip().removeprefix("W/") for tag in if_match.split(",")}
    if current is None or current not in wanted:
        raise PreconditionFailed(
            "The resource has changed since the ETag in If-Match was read; GET it and retry."
        )
