"""A real PostgreSQL server for the database tests (fixtures, registered by tests/conftest.py).

``postgres_server`` (session) runs a throwaway PostgreSQL cluster from Debian's
``postgresql`` package: ``initdb`` into a temporary folder, ``pg_ctl start`` on a free
loopback port. PostgreSQL refuses to run as root, so under root (CI) the cluster belongs to
the ``postgres`` system user and its commands run through ``runuser``. ``pg_url`` gives each
test a fresh database on it, dropped afterwards.

Without the package the PostgreSQL tests skip with the reason; ``ROBOPREF_REQUIRE_PG=1``
(set by ``.ci/run``) turns that skip into a failure, so CI never passes without them.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

PG_USER = "robopref"


def _require_or_skip(reason: str):
    if os.environ.get("ROBOPREF_REQUIRE_PG") == "1":
        pytest.fail(f"{reason} (ROBOPREF_REQUIRE_PG=1 makes this a failure)")
    pytest.skip(reason)


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_cluster_owner(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@pytest.fixture(scope="session")
def postgres_server():
    """``(host, port)`` of a PostgreSQL server started for this test session."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        _require_or_skip("PostgreSQL is not installed (no initdb): install Debian's "
                         "postgresql package to run the PostgreSQL tests")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        _require_or_skip("running as root without runuser: PostgreSQL cannot start as root")
    root = Path(tempfile.mkdtemp(prefix="robopref-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        try:
            shutil.chown(root, "postgres")
            shutil.chown(sockets, "postgres")
        except LookupError:
            _require_or_skip("no 'postgres' system user: reinstall Debian's postgresql package")
        root.chmod(0o755)
    port = _free_port()
    try:
        subprocess.run(
            _as_cluster_owner([str(bin_dir / "initdb"), "-D", str(data), "-U", PG_USER,
                               "-A", "trust", "-E", "UTF8", "--no-sync"]),
            check=True, capture_output=True, text=True, timeout=120,
        )
        options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            _as_cluster_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
                               "-l", str(root / "server.log"), "-w", "-t", "60", "start"]),
            check=True, capture_output=True, text=True, timeout=120,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
        output = getattr(exc, "stderr", "") or ""
        shutil.rmtree(root, ignore_errors=True)
        _require_or_skip(f"PostgreSQL did not start: {output.strip()} {log.strip()}"[:600])
    try:
        yield "127.0.0.1", port
    finally:
        subprocess.run(
            _as_cluster_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                               "-w", "stop"]),
            capture_output=True, timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_server):
    """A SQLAlchemy URL of a new, empty database on the session's server (dropped after)."""
    import psycopg

    host, port = postgres_server
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = f"host={host} port={port} user={PG_USER} dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')  # a generated name, never input
    yield f"postgresql+psycopg://{PG_USER}@{host}:{port}/{name}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """The label database URL of each backend in turn: a SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'labels.db'}"
    return request.getfixturevalue("pg_url")
