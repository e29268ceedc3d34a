"""Alembic environment for the label database.

robopref runs migrations itself (``robopref.label.database.open_database``) and hands this
script its open connection through ``config.attributes["connection"]``, so the SQLite
pragmas and locking set up there apply to migrations too. Without one (a developer running
``alembic -x url=sqlite:///labels.db revision --autogenerate``), it connects to that URL.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from robopref.label.schema import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most constraints; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("give the database: alembic -x url=sqlite:///labels.db ...")
    engine = create_engine(url)
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("the label database migrates online only (robopref opens it itself)")
run_migrations_online()
