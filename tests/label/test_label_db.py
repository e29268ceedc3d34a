"""The label database: migrations equal the models, SQLite settings, format-version checks,
tokens stored hashed."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from labelkit import new_store
from sqlalchemy import create_engine, inspect

from robopref.label import LabelDatabaseError, database, open_database
from robopref.label.database import database_url
from robopref.label.schema import FORMAT_VERSION, Base


def _shape(engine) -> dict:
    """Everything about the tables that matters: columns, keys, constraints, indexes."""
    insp = inspect(engine)
    shape = {}
    for table in sorted(set(insp.get_table_names()) - {"alembic_version"}):
        shape[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)
            ],
            "pk": insp.get_pk_constraint(table)["constrained_columns"],
            "fks": sorted((f["name"], tuple(f["constrained_columns"]), f["referred_table"])
                          for f in insp.get_foreign_keys(table)),
            "unique": sorted((u["name"], tuple(u["column_names"]))
                             for u in insp.get_unique_constraints(table)),
            "checks": sorted((c["name"], " ".join(c["sqltext"].split()))
                             for c in insp.get_check_constraints(table)),
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                              for i in insp.get_indexes(table)),
        }
    return shape


def test_migrations_create_the_tables_the_models_describe(tmp_path):
    db = open_database(tmp_path / "migrated.db")
    reference = create_engine(f"sqlite:///{tmp_path / 'models.db'}")
    Base.metadata.create_all(reference)
    migrated_shape, model_shape = _shape(db.engine), _shape(reference)
    assert set(migrated_shape) == {"meta", "projects", "segments", "queries", "annotators",
                                   "labels"}
    assert migrated_shape == model_shape
    # Alembic's own comparison too (types, nullability, indexes, unique constraints).
    with db.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    db.close()
    reference.dispose()


def test_sqlite_is_opened_in_wal_mode_with_a_busy_timeout(tmp_path):
    db = open_database(f"sqlite:///{tmp_path / 'l.db'}")
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    db.close()


def test_a_plain_path_and_a_sqlite_url_open_the_same_file_and_reopening_is_harmless(tmp_path):
    path = tmp_path / "sub" / "labels.db"
    assert database_url(path) == f"sqlite:///{path}"
    store = new_store(path)
    store.create_annotator("ann")
    store.db.close()
    again = new_store(f"sqlite:///{path}")
    assert [a.name for a in again.annotators()] == ["ann"]
    again.db.close()


def _set_format_version(path, value: str) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE meta SET value = ? WHERE key = 'format_version'", (value,))


def test_a_database_of_a_newer_format_is_refused_with_one_line(tmp_path):
    path = tmp_path / "labels.db"
    open_database(path).close()
    _set_format_version(path, str(FORMAT_VERSION + 1))
    with pytest.raises(LabelDatabaseError) as caught:
        open_database(path)
    message = str(caught.value)
    assert "\n" not in message
    assert f"format version {FORMAT_VERSION + 1}" in message and "upgrade robopref" in message


def test_a_database_at_an_unknown_migration_is_refused(tmp_path):
    path = tmp_path / "labels.db"
    open_database(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999_future'")
    with pytest.raises(LabelDatabaseError, match="migration this robopref does not know"):
        open_database(path)


def test_someone_elses_database_is_not_touched(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    with pytest.raises(LabelDatabaseError, match="not a robopref label database"):
        open_database(path)
    with sqlite3.connect(path) as connection:
        tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
    assert tables == {"customers"}


def test_bad_urls_fail_with_one_line(tmp_path):
    with pytest.raises(LabelDatabaseError, match="not a database URL"):
        open_database("://nowhere")
    with pytest.raises(LabelDatabaseError, match="not a database SQLAlchemy knows"):
        open_database("nonsense://")
    # A dialect whose driver is not installed: the message says to install one.
    with pytest.raises(LabelDatabaseError, match="install its driver"):
        open_database("mysql+mysqldb://nobody@127.0.0.1/none")
    # A PostgreSQL server that is not there: one line saying so, nothing left behind.
    with pytest.raises(LabelDatabaseError, match="connection failed.*server is running"):
        open_database("postgresql://nobody@127.0.0.1:1/none")


def test_tokens_are_stored_hashed_never_in_plain_text(tmp_path):
    path = tmp_path / "labels.db"
    store = new_store(path)
    _, token = store.create_annotator("ann")
    with store.db.engine.connect() as connection:
        stored = connection.exec_driver_sql("SELECT token_hash FROM annotators").scalar()
    assert stored == hashlib.sha256(token.encode()).hexdigest() and stored != token
    store.db.close()
    # Nowhere in the database files (main file, WAL, shared memory) does the token appear.
    for file in tmp_path.iterdir():
        assert token.encode() not in file.read_bytes(), file.name
    assert len(token) >= 40  # 32 random bytes, URL-safe base64


def test_threads_opening_a_fresh_database_at_once_all_succeed(tmp_path):
    """The server and the loop may be first to touch a new file together; Alembic's global
    state must not let one thread's migration break another's."""
    import threading

    path, results = tmp_path / "fresh.db", []

    def open_it() -> None:
        try:
            open_database(path).close()
            results.append("ok")
        except Exception as exc:  # collected and shown by the assert
            results.append(repr(exc))

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == ["ok"] * 6


class _CursorLockedAtFirst:
    """A DB-API cursor whose WAL switch meets a concurrent switch ``locked_times`` times."""

    def __init__(self, locked_times: int, error: str = "database is locked") -> None:
        self.locked_times, self.error, self.calls = locked_times, error, 0

    def execute(self, statement: str) -> None:
        self.calls += 1
        if self.calls <= self.locked_times:
            raise sqlite3.OperationalError(self.error)


def test_wal_switch_waits_out_a_concurrent_switch_instead_of_failing():
    """SQLite answers a WAL switch that races another with "locked" at once, past its busy
    handler; the connection hook retries it (the race behind a rare failure of the thread
    test above under load)."""
    cursor = _CursorLockedAtFirst(locked_times=3)
    database._enable_wal(cursor)
    assert cursor.calls == 4


def test_wal_switch_passes_other_errors_and_a_lock_past_the_timeout(monkeypatch):
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        database._enable_wal(_CursorLockedAtFirst(locked_times=1, error="disk I/O error"))
    monkeypatch.setattr(database, "BUSY_TIMEOUT_S", 0.05)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        database._enable_wal(_CursorLockedAtFirst(locked_times=10**9))
