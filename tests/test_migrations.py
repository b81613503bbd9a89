"""The schema exists only through migrations, and they round-trip without drift."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
from alembic import command

from api.migrate import alembic_config, head_revision
from tests.dbutil import REPO, _libpq, scratch_database


async def _fetch(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(_libpq(url))
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def _tables(url: str) -> set[str]:
    rows = asyncio.run(_fetch(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
    return {r["tablename"] for r in rows}


def test_downgrade_upgrade_check_round_trip(database_url: str) -> None:
    with scratch_database(database_url) as url:
        config = alembic_config(url)
        command.upgrade(config, "head")
        command.check(config)  # raises when models and migrations differ
        assert {"contexts", "messages", "alembic_version"} <= _tables(url)
        command.downgrade(config, "base")
        assert _tables(url) == {"alembic_version"}
        command.upgrade(config, "head")
        command.check(config)
        version = asyncio.run(_fetch(url, "SELECT version_num FROM alembic_version"))
        assert [r["version_num"] for r in version] == [head_revision()]


def test_hnsw_index_opclass_and_parameters(database_url: str) -> None:
    """alembic check cannot see index parameters or opclasses, so read pg_indexes."""
    rows = asyncio.run(
        _fetch(
            database_url,
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_messages_embedding_hnsw'",
        )
    )
    assert len(rows) == 1
    indexdef = rows[0]["indexdef"]
    assert "USING hnsw (embedding vector_cosine_ops)" in indexdef
    assert "m='16'" in indexdef
    assert "ef_construction='128'" in indexdef


def test_seed_plan_indexes_exist(database_url: str) -> None:
    rows = asyncio.run(
        _fetch(
            database_url, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
        )
    )
    defs = {r["indexname"]: r["indexdef"] for r in rows}
    assert "(context_id, version)" in defs["uq_messages_context_id_version"]
    assert "(deleted_at)" in defs["ix_messages_deleted_at"]
    assert "(parent_id, created_at, id)" in defs["ix_contexts_parent_id_created_at"]
    assert "gin (metadata jsonb_path_ops)" in defs["ix_contexts_metadata_gin"]


def test_alembic_cli_without_database_url_uses_embedded_server(tmp_path: Path) -> None:
    """`alembic upgrade head` / `check` / `downgrade base` from the repo root, no DATABASE_URL."""
    env = {
        k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CTXGRAPH_DATABASE_URL"}
    }
    env["CTXGRAPH_DATA_DIR"] = str(tmp_path / "data")
    alembic = str(Path(sys.executable).parent / "alembic")
    for args in (["upgrade", "head"], ["check"], ["downgrade", "base"], ["upgrade", "head"]):
        result = subprocess.run(
            [alembic, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    assert (tmp_path / "data" / "pgdata" / "PG_VERSION").exists()


def test_prefix_token_sums_are_backfilled(database_url: str) -> None:
    """0002 fills the running token sums of rows written before it existed."""
    with scratch_database(database_url) as url:
        config = alembic_config(url)
        command.upgrade(config, "0001")
        asyncio.run(
            _fetch(
                url,
                "WITH r AS (INSERT INTO contexts (id, latest_version) VALUES"
                " ('00000000-0000-4000-8000-000000000001', 3),"
                " ('00000000-0000-4000-8000-000000000002', 0) RETURNING id)"
                " INSERT INTO messages (context_id, version, role, content, token_count)"
                " VALUES ('00000000-0000-4000-8000-000000000001', 1, 'user', 'a', 5),"
                " ('00000000-0000-4000-8000-000000000001', 2, 'assistant', 'b', NULL),"
                " ('00000000-0000-4000-8000-000000000001', 3, 'user', 'c', 7)",
            )
        )
        command.upgrade(config, "head")
        messages = asyncio.run(
            _fetch(url, "SELECT version, prefix_tokens FROM messages ORDER BY version")
        )
        assert [(r["version"], r["prefix_tokens"]) for r in messages] == [(1, 5), (2, 5), (3, 12)]
        contexts = asyncio.run(_fetch(url, "SELECT id::text, own_tokens FROM contexts ORDER BY id"))
        assert [r["own_tokens"] for r in contexts] == [12, 0]


def test_parts_columns_are_added_without_rewriting_messages(database_url: str) -> None:
    """0004 adds parts, status and usage as catalog-only columns: the messages table keeps
    its file (no rewrite, whatever its size) and its rows, which read as before (NULL
    parts: one text part, the content; NULL status: COMPLETED)."""
    with scratch_database(database_url) as url:
        config = alembic_config(url)
        command.upgrade(config, "0002")
        asyncio.run(
            _fetch(
                url,
                "WITH r AS (INSERT INTO contexts (id, latest_version) VALUES"
                " ('00000000-0000-4000-8000-000000000001', 2) RETURNING id)"
                " INSERT INTO messages (context_id, version, role, content, prefix_tokens)"
                " VALUES ('00000000-0000-4000-8000-000000000001', 1, 'user', 'a', 0),"
                " ('00000000-0000-4000-8000-000000000001', 2, 'assistant', 'b', 0)",
            )
        )
        node = "SELECT relfilenode FROM pg_class WHERE relname = 'messages'"
        before = asyncio.run(_fetch(url, node))[0]["relfilenode"]
        command.upgrade(config, "head")
        assert asyncio.run(_fetch(url, node))[0]["relfilenode"] == before
        rows = asyncio.run(
            _fetch(url, "SELECT content, parts, status, usage FROM messages ORDER BY version")
        )
        assert [tuple(r) for r in rows] == [("a", None, None, None), ("b", None, None, None)]
        constraint = asyncio.run(
            _fetch(
                url,
                "SELECT convalidated FROM pg_constraint WHERE conname = 'ck_messages_status_valid'",
            )
        )
        assert [r["convalidated"] for r in constraint] == [True]
