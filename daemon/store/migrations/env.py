"""Alembic environment: runs on the connection the Store hands over (or on its URL)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context
from sqlmodel import SQLModel

from eowatch.daemon.store import tables  # noqa: F401  (registers the tables)

config = context.config
target_metadata = SQLModel.metadata


def run(connection: sa.engine.Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    engine = sa.create_engine(config.attributes.get("connection_url")
                              or config.get_main_option("sqlalchemy.url"))
    with engine.begin() as conn:
        run(conn)
