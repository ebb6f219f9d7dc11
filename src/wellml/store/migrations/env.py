"""Alembic environment: runs on the connection wellml hands over in ``config.attributes``."""

from __future__ import annotations

from alembic import context

from wellml.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only the `alembic` command line gets here
    raise SystemExit("run migrations through wellml (they are applied when a store opens)")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
