"""The database connection: engine, sessions, migrations, and the change feed's write side.

SQLite (WAL mode, in the data dir) by default; PostgreSQL through ``PROPYLON_DATABASE_URL``.
The schema is owned by Alembic (``store/migrations``); :meth:`Database.migrate` brings any database
to head before the server serves a request.

Example::

    db = Database.connect("sqlite:///state/propylon.db")
    db.migrate()
    with db.transaction() as session:
        session.add(Meta(key="k", value="v"))
        db.record_change(session, "meta", "k")
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, delete, event, func, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from propylon.errors import ConfigurationError, ServiceUnavailable
from propylon.store.models import Change, Meta

__all__ = ["Database", "as_utc", "utcnow"]

_MIGRATIONS = Path(__file__).parent / "migrations"
# Changes a transaction recorded, written when it commits (Session.info key).
_PENDING = "propylon.pending_changes"
# The PostgreSQL advisory lock that puts change rows in commit order (any fixed number).
_FEED_LOCK = 0x70726F70
# Meta key: the highest change id ever pruned (followers behind it have missed changes).
PRUNED_THROUGH = "changes_pruned_through"


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite returns ``DateTime(timezone=True)`` naive)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Database:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        event.listen(self._sessions, "before_commit", _write_pending_changes)
        event.listen(self._sessions, "after_rollback", _drop_pending_changes)

    @classmethod
    def connect(cls, url: str) -> Database:
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ConfigurationError(
                f"database URL {url.rsplit('@', maxsplit=1)[-1]!r} is malformed."
            ) from None
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        options: dict[str, Any] = {"pool_pre_ping": True}
        if parsed.drivername.startswith("sqlite"):
            options["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            options.update(pool_size=10, max_overflow=20)
        try:
            engine = create_engine(parsed, **options)
        except (ArgumentError, ImportError) as exc:
            raise ConfigurationError(f"database URL is not usable: {exc}") from None
        if parsed.drivername.startswith("sqlite"):
            event.listen(engine, "connect", _sqlite_pragmas)
        return cls(engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        try:
            with self.engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except OperationalError as exc:
            raise ConfigurationError(f"cannot open the database URL: {exc.orig}") from None

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits on normal exit and rolls back on any exception."""
        session = self._sessions()
        try:
            with session.begin():
                yield session
        except OperationalError as exc:
            raise ServiceUnavailable(
                "The state store is unavailable; retry shortly.", code="StoreUnavailable"
            ) from exc
        finally:
            session.close()

    @contextmanager
    def reader(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
        except OperationalError as exc:
            raise ServiceUnavailable(
                "The state store is unavailable; retry shortly.", code="StoreUnavailable"
            ) from exc
        finally:
            session.close()

    @staticmethod
    def record_change(session: Session, kind: str, key: str) -> None:
        """Append to the change feed when the caller's transaction commits.

        The row is written at commit, after a lock on PostgreSQL, so that revisions follow commit
        order and a follower that has read revision *n* has seen every change below it. Ids come
        from a sequence when the row is inserted: written mid-transaction, a long transaction
        could commit revision 10 after a follower had read 11, and the follower would never see
        it. (SQLite lets one writer at a time in, so its order is the commit order anyway.)
        """
        session.info.setdefault(_PENDING, []).append((kind, key.lower()))

    def revision(self) -> int:
        with self._sessions() as session:
            return int(session.scalar(select(func.coalesce(func.max(Change.id), 0))) or 0)

    def changes_since(self, revision: int, limit: int = 10_000) -> list[Change]:
        with self._sessions() as session:
            rows = session.scalars(
                select(Change).where(Change.id > revision).order_by(Change.id).limit(limit)
            )
            return list(rows)

    def prune_changes(self, before: datetime) -> int:
        """Delete the changes recorded before ``before``, except the newest (the revision never
        goes back), and remember the highest id deleted (:meth:`pruned_through`)."""
        with self.transaction() as session:
            newest = session.scalar(select(func.max(Change.id)))
            through = session.scalar(
                select(func.max(Change.id)).where(Change.at < before, Change.id < newest)
            )
            if through is None:
                return 0
            result = session.execute(delete(Change).where(Change.id <= through))
            mark = session.get(Meta, PRUNED_THROUGH, with_for_update=True)
            if mark is None:
                session.add(Meta(key=PRUNED_THROUGH, value=str(through)))
            elif int(mark.value) < through:
                mark.value = str(through)
            return int(getattr(result, "rowcount", 0) or 0)

    def pruned_through(self) -> int:
        """The highest change id pruned so far (0: none)."""
        with self._sessions() as session:
            mark = session.get(Meta, PRUNED_THROUGH)
            return int(mark.value) if mark is not None else 0

    def check(self) -> bool:
        try:
            self.revision()
        except SQLAlchemyError:
            return False
        return True

    def dispose(self) -> None:
        self.engine.dispose()


def _write_pending_changes(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    if session.get_bind().dialect.name == "postgresql":
        # Held until the commit ends: the next writer's rows get higher ids and commit later.
        session.execute(select(func.pg_advisory_xact_lock(_FEED_LOCK)))
    now = utcnow()
    session.add_all([Change(kind=kind, key=key, at=now) for kind, key in pending])


def _drop_pending_changes(session: Session) -> None:
    session.info.pop(_PENDING, None)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the gateway's readers run beside the control plane's writer; NORMAL sync is
    # durable across process crashes (SIGKILL), which is what the data dir must survive.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
