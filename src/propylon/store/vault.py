"""Retrievable secrets (endpoint keys and the like), sealed under the master key in ``secrets``.

Example::

    vault = Vault(db, sealer)
    with db.transaction() as session:
        vault.put_in(session, "endpoint/<id>/primary", "k3y")
    vault.get("endpoint/<id>/primary")  # -> "k3y"
"""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.orm import Session

from propylon.store.database import Database, utcnow
from propylon.store.models import SecretRow
from propylon.store.secrets import Sealer

__all__ = ["Vault"]


class Vault:
    def __init__(self, db: Database, sealer: Sealer) -> None:
        self._db = db
        self._sealer = sealer

    def put_in(self, session: Session, name: str, value: str) -> None:
        row = session.get(SecretRow, name)
        sealed = self._sealer.seal(name, value.encode())
        if row is None:
            session.add(SecretRow(name=name, ciphertext=sealed, updated_at=utcnow()))
        else:
            row.ciphertext = sealed
            row.updated_at = utcnow()
        Database.record_change(session, "secret", name)

    def put(self, name: str, value: str) -> None:
        with self._db.transaction() as session:
            self.put_in(session, name, value)

    def get(self, name: str) -> str | None:
        with self._db.reader() as session:
            row = session.get(SecretRow, name)
            return None if row is None else self._sealer.open(name, row.ciphertext).decode()

    def delete_prefix_in(self, session: Session, prefix: str) -> None:
        session.execute(delete(SecretRow).where(SecretRow.name.startswith(prefix)))
        Database.record_change(session, "secret", prefix)
