"""Alembic environment (async, asyncpg).

The URL comes from, in order: `config.attributes["url"]` (set by
api.migrate), DATABASE_URL, or the embedded PostgreSQL in CTXGRAPH_DATA_DIR,
which is started for the duration of the command.
"""

import asyncio
from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import models
from api.db import EmbeddedPostgres, to_asyncpg_url
from api.settings import get_settings

config = context.config
if config.config_file_name is not None:  # `alembic` CLI: log like alembic.ini says
    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = models.metadata


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render pgvector's type with its import (autogenerate forgets it)."""
    if type_ == "type" and type(obj).__name__ == "VECTOR":
        autogen_context.imports.add("import pgvector.sqlalchemy")
        return f"pgvector.sqlalchemy.Vector({obj.dim})"
    return False


def database_url() -> str:
    url: str | None = config.attributes.get("url")
    if url:
        return to_asyncpg_url(url)
    settings = get_settings()
    if settings.database_url:
        return to_asyncpg_url(settings.database_url)
    embedded = EmbeddedPostgres(settings.pgdata_dir)
    config.attributes["embedded"] = embedded  # keep the handle alive for the command
    return embedded.start()


def configure(connection: Connection | None = None, **kwargs: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_item=render_item,
        compare_type=True,
        compare_server_default=False,
        **kwargs,
    )


def run_migrations_offline() -> None:
    configure(url=database_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_async_engine(
        database_url(),
        poolclass=pool.NullPool,
        connect_args={"statement_cache_size": 0, "prepared_statement_cache_size": 0},
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
