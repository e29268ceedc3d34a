"""Open the label database by URL: SQLite by default, PostgreSQL by URL, migrated to head.

``open_database("labels.db")`` (a plain path) and ``open_database("sqlite:///labels.db")``
open a SQLite file; ``open_database("postgresql+psycopg://user@host/db")`` a PostgreSQL
database through the same code (the driver package must be installed). Either way the
schema is brought to the newest Alembic revision before the first query, so the server, the
training loop and the CLI can each be the first to touch a fresh database.

SQLite is shared between processes (the loop enqueues while the server takes labels), so
each connection gets WAL mode (readers never block the writer), a busy timeout (a writer
waits for the lock instead of failing at once), ``synchronous=FULL`` (an acknowledged
commit survives a crash) and foreign keys. Transactions start with ``BEGIN IMMEDIATE``:
sqlite3's default deferred BEGIN lets two readers both try to upgrade to writers, and one
then fails with "database is locked" without waiting; taking the write lock up front makes
them queue behind the busy timeout instead.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, create_engine, event, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from robopref.label.errors import LabelDatabaseError
from robopref.label.schema import FORMAT_VERSION, FORMAT_VERSION_KEY, Meta

MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_S = 30.0
# Alembic keeps its running environment in module globals (alembic.context), so two threads
# of one process must not migrate at once; processes are serialised by the database lock.
_ALEMBIC_LOCK = threading.Lock()


@dataclass
class Database:
    """An open, migrated label database: an engine and a session factory over it."""

    url: str
    engine: Engine
    sessions: sessionmaker[Session]

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session inside one transaction: committed on success, rolled back on error."""
        with self.sessions() as session, session.begin():
            yield session

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def close(self) -> None:
        self.engine.dispose()


def database_url(target: str | Path) -> str:
    """A SQLAlchemy URL for ``target``: a URL is kept, a plain path becomes ``sqlite:///``."""
    text = str(target)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


def _sqlite_connect(dbapi_connection, _record) -> None:
    # Hand BEGIN to SQLAlchemy (see _sqlite_begin) and set per-connection pragmas; these are
    # constant statements, and journal_mode=WAL persists in the file once set.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout = 30000")
    _enable_wal(cursor)
    cursor.execute("PRAGMA synchronous = FULL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _enable_wal(cursor) -> None:
    # Switching a fresh file to WAL takes an exclusive lock, and SQLite answers "database is
    # locked" at once, without its busy handler, when another connection is switching it at
    # the same moment (the server and the loop both first to open a new database); so wait
    # here, as the busy timeout would, until the file is in WAL mode.
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise LabelDatabaseError(
            f"'{url}' is not a database URL: give a file path, sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST/DB"
        ) from None
    if parsed.get_backend_name() != "sqlite":
        try:
            return create_engine(parsed, pool_pre_ping=True)
        except NoSuchModuleError:
            raise LabelDatabaseError(
                f"'{parsed.drivername}' is not a database SQLAlchemy knows: give a file path, "
                "sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
            ) from None
        except ModuleNotFoundError as exc:
            raise LabelDatabaseError(
                f"cannot open {parsed.render_as_string(hide_password=True)} ({exc}): install "
                "its driver (e.g. 'uv pip install psycopg[binary]' for PostgreSQL)"
            ) from None
    kwargs: dict = {"connect_args": {"timeout": BUSY_TIMEOUT_S, "check_same_thread": False}}
    if parsed.database in (None, "", ":memory:"):
        # One shared connection, or every pooled connection would see its own empty database.
        kwargs["poolclass"] = StaticPool
    else:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, **kwargs)
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _stored_version(connection: Connection, url: str) -> int | None:
    """The database's format version; ``None`` for an empty database (migrations create it).

    Refuses a database that holds other tables than ours, so a wrong URL never gets robopref's
    tables added to someone else's database.
    """
    tables = set(inspect(connection).get_table_names())
    if not tables:
        return None
    if "meta" not in tables:
        raise LabelDatabaseError(
            f"{url} holds tables but is not a robopref label database (no meta table): "
            "point --db at a new file or the label database"
        )
    value = connection.execute(
        select(Meta.value).where(Meta.key == FORMAT_VERSION_KEY)
    ).scalar_one_or_none()
    try:
        return int(value)
    except (TypeError, ValueError):
        raise LabelDatabaseError(
            f"{url} has no readable format version (meta.format_version = {value!r}): "
            "restore the database from a backup"
        ) from None


def _check_version(version: int | None, url: str) -> None:
    if version is not None and version > FORMAT_VERSION:
        raise LabelDatabaseError(
            f"label database {url} has format version {version}, this robopref reads up to "
            f"{FORMAT_VERSION}: upgrade robopref to the release that wrote it"
        )


def _alembic_config(connection: Connection) -> Config:
    # Programmatic configuration: no alembic.ini ships or is needed at runtime.
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def migrate(engine: Engine, url: str) -> int:
    """Bring the schema to the newest revision; returns the format version it then has."""
    with engine.connect() as connection:
        # Checked before migrating: a newer database may hold revisions this code lacks.
        _check_version(_stored_version(connection, url), url)
        connection.commit()
        config = _alembic_config(connection)
        heads = set(ScriptDirectory.from_config(config).get_heads())
        current = set(MigrationContext.configure(connection).get_current_heads())
        connection.commit()
        try:
            if current != heads:  # the common case, already at head, skips Alembic's runner
                with _ALEMBIC_LOCK:
                    command.upgrade(config, "head")
        except CommandError as exc:
            raise LabelDatabaseError(
                f"label database {url} is at a migration this robopref does not know ({exc}): "
                "upgrade robopref to the release that wrote it"
            ) from None
        connection.commit()
        version = _stored_version(connection, url)
        connection.commit()
    _check_version(version, url)
    if version != FORMAT_VERSION:
        raise LabelDatabaseError(
            f"label database {url} reached format version {version} after migrating, "
            f"expected {FORMAT_VERSION}: a migration is missing its version bump (a bug)"
        )
    return version


def open_database(target: str | Path) -> Database:
    """Open (and create or migrate) the label database at ``target`` (a URL or a path)."""
    url = database_url(target)
    engine = _make_engine(url)
    shown = engine.url.render_as_string(hide_password=True)
    try:
        migrate(engine, shown)
    except OperationalError as exc:
        engine.dispose()
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise LabelDatabaseError(
            f"cannot open label database {shown} ({first}): check the path or URL, and that "
            "the server is running and the file writable"
        ) from None
    except BaseException:
        engine.dispose()
        raise
    return Database(shown, engine, sessionmaker(engine, expire_on_commit=False))
