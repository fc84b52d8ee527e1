"""Alembic environment for gembatch.

The tool passes its own connection in ``config.attributes["connection"]``
(see ``gembatch.store.database.upgrade``). From a checkout, ``alembic`` builds an engine
from ``GEMBATCH_DB`` or ``sqlalchemy.url`` in alembic.ini.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from gembatch.store.models import Base

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None and "connection" not in config.attributes:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=True,
        compare_type=True,
        # One transaction per migration, so a failure leaves the last good revision.
        transaction_per_migration=True,
    )


def run_migrations_offline() -> None:
    url = os.environ.get("GEMBATCH_DB") or config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return

    from gembatch.common.locations import resolve
    from gembatch.store.database import make_engine, sqlite_foreign_keys

    url = os.environ.get("GEMBATCH_DB") or config.get_main_option("sqlalchemy.url")
    engine = make_engine(resolve(None, url).db_url)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            sqlite_foreign_keys(conn, on=False)
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()
        if conn.in_transaction():
            conn.commit()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
