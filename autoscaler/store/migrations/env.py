"""Alembic environment: the engine comes from ``config.attributes`` (see store.engine)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from autoscaler.store.models import Base

engine: Engine = context.config.attributes["engine"]
if context.is_offline_mode():
    raise RuntimeError("offline migrations are not supported; run `autoscaler db upgrade`")

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
