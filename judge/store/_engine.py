"""Connecting to the store's database and migrating it to the current schema."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from judge.errors import StoreError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
SUPPORTED = ("sqlite", "postgresql")
# An arbitrary constant: the key of the PostgreSQL advisory lock taken while migrating.
_PG_MIGRATION_LOCK = 0x6A75_6467_6500
SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalise_url(url: str) -> str:
    """Validate a database URL and pick the driver: ``postgresql://`` means psycopg 3.

    Raises:
        StoreError: for a URL SQLAlchemy cannot parse or a backend judge does not support.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(
            f"Bad database URL {url!r}: {exc}. Expected e.g. sqlite:////path/judge.db or "
            "postgresql://user@host:5432/db."
        ) from exc
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED:
        raise StoreError(
            f"Unsupported database backend '{backend}' in JUDGE_DATABASE_URL "
            f"{parsed.render_as_string(hide_password=True)!r}. Supported: {', '.join(SUPPORTED)}."
        )
    if backend == "postgresql" and parsed.get_driver_name() in ("psycopg2", "psycopg"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend == "postgresql":
        driver = parsed.drivername
        if driver != "postgresql":
            raise StoreError(
                f"Unsupported PostgreSQL driver '{driver}'; judge uses psycopg 3: "
                "write the URL as postgresql://… or postgresql+psycopg://…."
            )
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str) -> Engine:
    """An engine for a normalised URL, with SQLite set up for concurrent processes."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return create_engine(url, pool_pre_ping=True, future=True)
    kwargs: dict[str, Any] = {}
    memory = parsed.database in (None, "", ":memory:")
    if memory:
        # One shared connection, or every connection would see its own empty database.
        kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
        kwargs.update(connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A write transaction takes the write lock up front: a deferred transaction that
        # reads and then writes can fail at once with "database is locked" under WAL,
        # which busy_timeout does not retry.
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def alembic_config(connection: Connection | None = None) -> Any:
    """An Alembic ``Config`` built in code (no alembic.ini) for judge's migrations."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _script_dir() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str | None:
    """The newest migration revision shipped with this version of judge."""
    return _script_dir().get_current_head()


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        if sys.platform == "win32":  # pragma: no cover - judge is developed on POSIX
            import msvcrt

            fh.seek(0)
            while True:
                try:
                    msvcrt.locking(fh.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    continue
            try:
                yield
            finally:
                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def migrate(engine: Engine) -> None:
    """Upgrade the database to the newest revision, once even if many processes start.

    PostgreSQL serialises migrating processes with an advisory lock, SQLite with a lock
    file beside the database; each process re-checks the revision once it holds the lock.

    Raises:
        StoreError: when the database cannot be reached, or is at a revision newer than
            this version of judge knows.
    """
    from alembic import command

    head = head_revision()
    try:
        with engine.connect() as conn:
            if current_revision(conn) == head:
                return
            conn.rollback()
            with _migration_lock(engine, conn):
                if current_revision(conn) == head:
                    return
                _check_known(conn)
                conn.commit()
                command.upgrade(alembic_config(conn), "head")
                conn.commit()
    except SQLAlchemyError as exc:
        url = engine.url.render_as_string(hide_password=True)
        raise StoreError(f"Cannot open the store at {url}: {exc}") from exc


def _check_known(conn: Connection) -> None:
    current = current_revision(conn)
    if current is None:
        return
    known = {rev.revision for rev in _script_dir().walk_revisions()}
    if current not in known:
        raise StoreError(
            f"The store is at schema revision '{current}', which this version of judge does "
            f"not know (known: {', '.join(sorted(known))}). Upgrade judge."
        )


@contextlib.contextmanager
def _migration_lock(engine: Engine, conn: Connection) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        conn.commit()
        try:
            yield
        finally:
            conn.rollback()
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
            conn.commit()
        return
    database = engine.url.database
    if database in (None, "", ":memory:"):
        yield
        return
    with _file_lock(Path(os.fspath(database) + ".migrate.lock")):
        yield
