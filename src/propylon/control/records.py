"""Reading and changing the control plane's rows inside one caller's transaction.

:class:`propylon.store.ResourceStore` owns ETags and the change feed; these helpers add what the
control plane needs on top of it in the same session: a locked read that answers 404 in ARM's
words, children of a parent, the provisioning state, and deleting a resource with everything below.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from propylon.errors import NotFound
from propylon.store import Database, canonical, new_etag, utcnow
from propylon.store.models import Resource

__all__ = ["children_in", "delete_tree_in", "get_in", "require_in", "set_state_in"]


def get_in(session: Session, resource_id: str, *, lock: bool = False) -> Resource | None:
    return session.get(Resource, canonical(resource_id), with_for_update=lock)


def require_in(
    session: Session, resource_id: str, what: str, name: str, *, lock: bool = False
) -> Resource:
    """The row, or 404 ``ResourceNotFound`` saying which resource is missing."""
    row = get_in(session, resource_id, lock=lock)
    if row is None:
        raise NotFound(f"Could not find {what} {name!r}.", code="ResourceNotFound")
    return row


def children_in(session: Session, parent: str, type_: str) -> list[Resource]:
    rows = session.scalars(
        select(Resource)
        .where(Resource.parent == canonical(parent), Resource.type == type_)
        .order_by(Resource.created_at)
    )
    return list(rows)


def set_state_in(session: Session, row: Resource, state: str, **properties: Any) -> None:
    """Write ``properties.provisioningState`` (and any other properties) with a fresh ETag."""
    body = dict(row.body)
    body["properties"] = {**body.get("properties", {}), **properties, "provisioningState": state}
    row.body = body
    row.state = state
    row.etag = new_etag()
    row.modified_at = utcnow()
    Database.record_change(session, row.type, row.id)


def delete_tree_in(session: Session, row: Resource) -> None:
    """Delete a row and every row whose id lies below it (deployments, instance sets, versions)."""
    session.execute(delete(Resource).where(Resource.id.startswith(row.id + "/")))
    session.delete(row)
    Database.record_change(session, row.type, row.id)
