"""The benchmark data set: deterministic, generated locally, bulk-loaded with COPY.

The shape follows the PostGraphile anchor's seed.py (../shared/anchors/postgraphile)
so results compare: 2,000 root contexts, 500 forks, 100,000 messages of 200-800
characters of lorem words with token_count = chars / 4, every context owning at
least one message and the rest spread by lognormal weights. One difference is
ctxgraph's own semantics: forks reach down to depth 5 (20 chains of five forks,
the rest hanging off "popular" roots or other forks), and a fork's own messages
continue after its fork version, so its history inherits its ancestors' messages.

The counters (message_count, total_tokens, latest_version, updated_at) are computed
while generating, exactly as the API would have maintained them, then verified in
SQL against the history the API serves.

The search variant (`embeddings`) gives that many messages a 1536-d embedding from
bench/search/dataset.py's clustered generator (each context has a home cluster
that supplies about half of its messages' vectors), COPYs them with the rows and
builds the HNSW index once afterwards, as a bulk load should.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import random
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from api.db import EmbeddedPostgres, to_asyncpg_url
from api.migrate import upgrade_to_head

if TYPE_CHECKING:
    import asyncpg
    import numpy as np

LOREM = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua enim ad minim veniam quis nostrud "
    "exercitation ullamco laboris nisi aliquip ex ea commodo consequat duis aute irure "
    "in reprehenderit voluptate velit esse cillum eu fugiat nulla pariatur excepteur "
    "sint occaecat cupidatat non proident sunt culpa qui officia deserunt mollit anim "
    "id est laborum curabitur pretium tincidunt lacus nulla gravida orci a odio nullam "
    "varius turpis et commodo pharetra est eros bibendum elit nec luctus magna felis "
    "sollicitudin mauris integer fringilla vector graph query context model token"
).split()

BASE_TIME = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
ROLES = ("user", "assistant")  # version 1 = user, 2 = assistant, ... (as in the anchor)
MANIFEST = "bench-dataset.json"


@dataclass(frozen=True)
class DatasetSpec:
    """How big the data set is; everything else derives from `seed`."""

    roots: int = 2_000
    forks: int = 500
    messages: int = 100_000
    max_depth: int = 5
    seed: int = 42
    embeddings: int = 0
    """Messages (the first ones generated) with an embedding: the search variant."""
    tool_calls: float = 0.0
    """Share of ASSISTANT messages that call a tool, answered by the TOOL message after
    them (the parts variant, for chat-page-parts). Decided by a random stream of its own:
    every text, count and version is the same as without."""

    @classmethod
    def scaled(
        cls, scale: float, seed: int = 42, embeddings: int = 0, tool_calls: float = 0.0
    ) -> DatasetSpec:
        """The default shape times `scale` (the anchor's --scale)."""
        return cls(
            roots=max(1, round(2_000 * scale)),
            forks=round(500 * scale),
            messages=round(100_000 * scale),
            seed=seed,
            embeddings=embeddings,
            tool_calls=tool_calls,
        )


@dataclass
class GenContext:
    id: uuid.UUID
    name: str
    created_at: dt.datetime
    parent: GenContext | None
    fork_version: int | None
    depth: int
    own: int  # messages owned by this context
    # visible history by version (index 0 = version 0): timestamps and cumulative tokens
    times: list[dt.datetime] = field(default_factory=list, repr=False)
    tokens: list[int] = field(default_factory=list, repr=False)

    @property
    def latest_version(self) -> int:
        return len(self.tokens) - 1

    @property
    def updated_at(self) -> dt.datetime:
        return self.times[-1]

    @property
    def own_tokens(self) -> int:
        """Tokens of the messages this context owns (its history above the fork)."""
        return self.tokens[-1] - self.tokens[self.fork_version or 0]


@dataclass
class Generated:
    contexts: list[GenContext]
    # (id, context_id, version, created_at, role, content, token_count, prefix_tokens),
    # in COPY order
    messages: list[tuple[uuid.UUID, uuid.UUID, int, dt.datetime, str, str, int, int]]
    # the parts variant: message index -> (role, parts, content) replacing the plain text
    parts: dict[int, tuple[str, list[dict[str, Any]], str]] = field(default_factory=dict)
    # its tool_calls rows: (context_id, call_id, kind, version)
    tool_calls: list[tuple[uuid.UUID, str, str, int]] = field(default_factory=list)


def det_uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def make_text(rng: random.Random, min_len: int, max_len: int) -> str:
    """Lorem words cut to a random length in [min_len, max_len] (the anchor's generator)."""
    target = rng.randint(min_len, max_len)
    words = rng.choices(LOREM, k=target // 3 + 8)  # avg word+space ~6.3 chars: always overshoots
    s = " ".join(words)[:target]
    cut = s.rfind(" ")
    if cut > min_len - 2:
        s = s[:cut]
    return s[0].upper() + s[1:] + "."


def token_count(content: str) -> int:
    return max(1, round(len(content) / 4))


def allocate_counts(rng: random.Random, n_ctx: int, total: int) -> list[int]:
    """Every context owns >= 1 message; the rest is spread by lognormal weights
    (largest-remainder rounding) so that the sum is exactly `total`."""
    if total < n_ctx:
        raise ValueError(f"need at least one message per context ({total} < {n_ctx})")
    weights = [rng.lognormvariate(0.0, 0.9) for _ in range(n_ctx)]
    wsum = sum(weights)
    rest = total - n_ctx
    raw = [rest * w / wsum for w in weights]
    counts = [1 + math.floor(r) for r in raw]
    short = total - sum(counts)
    order = sorted(range(n_ctx), key=lambda i: (raw[i] - math.floor(raw[i]), -i), reverse=True)
    for i in order[:short]:
        counts[i] += 1
    return counts


def generate(spec: DatasetSpec) -> Generated:
    """The whole data set in memory (about 60 MB at the default size)."""
    rng = random.Random(spec.seed)
    counts = allocate_counts(rng, spec.roots + spec.forks, spec.messages)
    contexts: list[GenContext] = []
    messages: list[tuple[uuid.UUID, uuid.UUID, int, dt.datetime, str, str, int, int]] = []

    def add_messages(c: GenContext, start: dt.datetime) -> None:
        ts = start
        for _ in range(c.own):
            version = c.latest_version + 1
            ts = ts + dt.timedelta(seconds=rng.randint(5, 900))
            content = make_text(rng, 200, 800)
            tokens = token_count(content)
            c.times.append(ts)
            c.tokens.append(c.tokens[-1] + tokens)
            role = ROLES[(version - 1) % 2]
            messages.append((det_uuid(rng), c.id, version, ts, role, content, tokens, c.own_tokens))

    for i in range(spec.roots):
        created = BASE_TIME + dt.timedelta(seconds=rng.randint(0, 180 * 86400))
        c = GenContext(
            id=det_uuid(rng),
            name=f"Chat {i + 1:05d}: " + make_text(rng, 12, 40).rstrip("."),
            created_at=created,
            parent=None,
            fork_version=None,
            depth=0,
            own=counts[i],
            times=[created],
            tokens=[0],
        )
        add_messages(c, created)
        contexts.append(c)

    roots = list(contexts)
    popular = roots[: max(1, spec.roots // 8)]  # parents with several direct forks
    forks: list[GenContext] = []
    # Chains reaching max_depth first (the deep chat-page workload reads their leaves),
    # then forks of popular roots or of existing forks that are not too deep.
    chains = min(spec.forks // spec.max_depth, max(1, spec.forks // 25)) if spec.forks else 0
    for j in range(spec.forks):
        if j < chains * spec.max_depth:
            parent = (
                forks[-1] if j % spec.max_depth else popular[(j // spec.max_depth) % len(popular)]
            )
        elif rng.random() < 0.7 or not forks:
            parent = rng.choice(popular)
        else:
            parent = rng.choice(forks)
            while parent.depth >= spec.max_depth:
                assert parent.parent is not None
                parent = parent.parent
        fv = rng.randint(1, parent.latest_version)
        created = parent.times[fv] + dt.timedelta(seconds=rng.randint(60, 86400))
        c = GenContext(
            id=det_uuid(rng),
            name=f"Fork {j + 1:05d} of {parent.name[:10]} @v{fv}",
            created_at=created,
            parent=parent,
            fork_version=fv,
            depth=parent.depth + 1,
            own=counts[spec.roots + j],
            # a fork's visible history starts as its parent's up to fv
            times=[*parent.times[: fv + 1]],
            tokens=[*parent.tokens[: fv + 1]],
        )
        # the fork's own messages come after it was made
        add_messages(c, created)
        forks.append(c)
        contexts.append(c)
    data = Generated(contexts=contexts, messages=messages)
    if spec.tool_calls:
        _add_tool_calls(data, spec)
    return data


def _add_tool_calls(data: Generated, spec: DatasetSpec) -> None:
    """Turn a share of ASSISTANT messages into tool calls answered by the next message of
    the same context (a TOOL message): their texts stay, their parts and roles change."""
    rng = random.Random(f"{spec.seed}:tool-calls")
    messages = data.messages
    for i, m in enumerate(messages[:-1]):
        following = messages[i + 1]
        if m[4] != "assistant" or i in data.parts or following[1] != m[1]:
            continue
        if rng.random() >= spec.tool_calls:
            continue
        call_id = f"call_{det_uuid(rng).hex[:24]}"
        call = {
            "type": "tool_call",
            "call_id": call_id,
            "name": rng.choice(["search_docs", "get_weather", "run_sql"]),
            "arguments": {"query": make_text(rng, 10, 40), "limit": rng.randint(1, 20)},
        }
        data.parts[i] = ("assistant", [{"type": "text", "text": m[5]}, call], m[5])
        result = {
            "type": "tool_result",
            "call_id": call_id,
            "output": following[5],
            "is_error": False,
        }
        data.parts[i + 1] = ("tool", [result], "")
        data.tool_calls.append((m[1], call_id, "call", m[2]))
        data.tool_calls.append((m[1], call_id, "result", following[2]))


def libpq_dsn(url: str) -> str:
    """The URL without SQLAlchemy's driver suffix (for libpq tools)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[AsyncConnection]:
    """One autocommit connection to `url` (VACUUM and CREATE DATABASE need it)."""
    engine = create_async_engine(
        to_asyncpg_url(url), poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    try:
        async with engine.connect() as conn:
            yield conn
    finally:
        await engine.dispose()


def embeddings_of(data: Generated, spec: DatasetSpec) -> np.ndarray:
    """Clustered unit vectors for the first `spec.embeddings` messages (search variant)."""
    import numpy as np  # the bench extra (and dev, for the harness test)

    from bench.search.dataset import CLUSTERS, ClusteredVectors

    n = min(spec.embeddings, len(data.messages))
    gen = ClusteredVectors(spec.seed)
    home = {c.id: i % CLUSTERS for i, c in enumerate(data.contexts)}
    homes = np.array([home[m[1]] for m in data.messages[:n]], dtype=np.int64)
    own_home = gen.rng.random(n) < 0.5
    clusters = np.where(own_home, homes, gen.rng.integers(0, CLUSTERS, n))
    return gen.rows(clusters)


_HNSW = "ix_messages_embedding_hnsw"


async def _copy_messages(driver: asyncpg.Connection, data: Generated, spec: DatasetSpec) -> None:
    """The messages by COPY, in the load's transaction: the search variant's with their
    embeddings (the HNSW index dropped first and built again after), the parts variant's
    with their parts and tool_calls rows."""
    columns = [
        "id", "context_id", "version", "created_at", "role", "content", "token_count",
        "prefix_tokens",
    ]  # fmt: skip
    rows: list[Any] = list(data.messages)
    if data.parts:
        # COPY is binary: jsonb's binary form is a version byte, then the text
        await driver.set_type_codec(
            "jsonb",
            encoder=lambda text: b"\x01" + text.encode(),
            decoder=lambda raw: json.loads(raw[1:]),
            schema="pg_catalog",
            format="binary",
        )
        columns.append("parts")
        for i, changed in enumerate(data.parts.get(i) for i in range(len(rows))):
            m = rows[i]
            if changed is None:
                rows[i] = (*m, None)
            else:
                role, parts, content = changed
                rows[i] = (*m[:4], role, content, *m[6:], json.dumps(parts))
        await driver.copy_records_to_table(
            "tool_calls",
            columns=["context_id", "call_id", "kind", "version"],
            records=data.tool_calls,
        )
    if not spec.embeddings:
        await driver.copy_records_to_table("messages", columns=columns, records=rows)
        return
    from pgvector.asyncpg import register_vector

    # one HNSW build after the rows, not one graph insertion per row
    hnsw = await driver.fetchval("SELECT pg_get_indexdef(CAST($1 AS regclass))", _HNSW)
    await driver.execute(f"DROP INDEX {_HNSW}")
    vectors = embeddings_of(data, spec)
    await register_vector(driver)
    records = [(*m, vectors[i] if i < len(vectors) else None) for i, m in enumerate(rows)]
    await driver.copy_records_to_table("messages", columns=[*columns, "embedding"], records=records)
    await driver.execute("SET LOCAL maintenance_work_mem = '2GB'")
    await driver.execute("SET LOCAL max_parallel_maintenance_workers = 2")
    await driver.execute(hnsw)


async def _load(url: str, data: Generated, spec: DatasetSpec) -> dict[str, Any]:
    async with connect(url) as conn:
        # COPY is asyncpg's binary copy: several times faster than INSERTs
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        await driver.execute("SET synchronous_commit = off")
        async with driver.transaction():
            await driver.copy_records_to_table(
                "contexts",
                columns=[
                    "id", "name", "created_at", "updated_at", "message_count", "total_tokens",
                    "latest_version", "parent_id", "fork_version", "own_tokens",
                ],
                records=[
                    (
                        c.id, c.name, c.created_at, c.updated_at, c.latest_version,
                        c.tokens[-1], c.latest_version,
                        None if c.parent is None else c.parent.id, c.fork_version, c.own_tokens,
                    )
                    for c in data.contexts
                ],
            )  # fmt: skip
            await _copy_messages(driver, data, spec)
        await driver.execute("VACUUM ANALYZE contexts")
        await driver.execute("VACUUM ANALYZE messages")
        await driver.execute("CHECKPOINT")
        return await _verify(conn)


# The counters must equal what the API serves: the visible history through the
# fork chain (same snapshot rule as api/store/history.py, no deletions here).
_VERIFY_COUNTERS = """
WITH RECURSIVE chain AS (
    SELECT c.id AS leaf, c.id AS owner, c.parent_id, c.fork_version, NULL::bigint AS cap
      FROM contexts c
    UNION ALL
    SELECT ch.leaf, p.id, p.parent_id, p.fork_version, LEAST(ch.cap, ch.fork_version)
      FROM chain ch JOIN contexts p ON p.id = ch.parent_id
), visible AS (
    SELECT ch.leaf, count(*) AS n, sum(m.token_count) AS tokens, max(m.version) AS latest,
           count(DISTINCT m.version) AS distinct_versions
      FROM chain ch JOIN messages m
        ON m.context_id = ch.owner AND (ch.cap IS NULL OR m.version <= ch.cap)
     GROUP BY ch.leaf
)
SELECT count(*) FILTER (WHERE v.n <> c.message_count OR v.tokens <> c.total_tokens
                          OR v.latest <> c.latest_version OR v.distinct_versions <> v.n
                          OR v.latest <> v.n) AS mismatches
  FROM contexts c JOIN visible v ON v.leaf = c.id
"""

# The running token sums forks read (migrations 0002): each message's prefix_tokens
# and each context's own_tokens must equal the sums over the messages it owns.
_VERIFY_PREFIX_SUMS = """
SELECT (SELECT count(*) FROM (
          SELECT prefix_tokens, sum(token_count) OVER (PARTITION BY context_id
                 ORDER BY version) AS running FROM messages) p
         WHERE p.prefix_tokens <> p.running)
     + (SELECT count(*) FROM contexts c
         WHERE c.own_tokens <> (SELECT coalesce(sum(m.token_count), 0) FROM messages m
                                 WHERE m.context_id = c.id)) AS mismatches
"""


async def _verify(conn: AsyncConnection) -> dict[str, Any]:
    async def one(sql: str) -> Any:
        return (await conn.execute(sa.text(sql))).one()

    counts = await one(
        "SELECT count(*) AS contexts, count(*) FILTER (WHERE parent_id IS NULL) AS roots,"
        " count(*) FILTER (WHERE parent_id IS NOT NULL) AS forks FROM contexts"
    )
    depth = await one(
        "WITH RECURSIVE d AS (SELECT id, 0 AS depth FROM contexts WHERE parent_id IS NULL"
        " UNION ALL SELECT c.id, d.depth + 1 FROM contexts c JOIN d ON c.parent_id = d.id)"
        " SELECT max(depth) AS max_depth, count(*) FILTER (WHERE depth = 5) AS depth5 FROM d"
    )
    msgs = await one(
        "SELECT count(*) AS messages, round(avg(length(content))) AS avg_chars,"
        " count(embedding) AS embedded FROM messages"
    )
    per = await one(
        "SELECT min(message_count) AS min, round(avg(message_count), 1) AS avg,"
        " max(message_count) AS max,"
        " count(*) FILTER (WHERE message_count >= 50 AND parent_id IS NULL) AS roots_ge50"
        " FROM contexts"
    )
    mismatches = (await one(_VERIFY_COUNTERS)).mismatches
    mismatches += (await one(_VERIFY_PREFIX_SUMS)).mismatches
    fp_messages = (
        await one(
            "SELECT md5(string_agg(m.id::text || ':' || m.version || ':' || m.role || ':'"
            " || md5(m.content) || ':' || m.created_at::text, ',' ORDER BY m.context_id,"
            " m.version)) AS fp FROM messages m"
        )
    ).fp
    fp_contexts = (
        await one(
            "SELECT md5(string_agg(concat_ws(':', id, name, parent_id, fork_version,"
            " message_count, total_tokens, latest_version, updated_at), ',' ORDER BY id)) AS fp"
            " FROM contexts"
        )
    ).fp
    size = (await one("SELECT pg_size_pretty(pg_database_size(current_database())) AS s")).s
    return {
        "contexts": counts.contexts,
        "roots": counts.roots,
        "forks": counts.forks,
        "max_depth": depth.max_depth,
        "depth5_forks": depth.depth5,
        "messages": msgs.messages,
        "avg_chars": int(msgs.avg_chars or 0),
        "embedded": msgs.embedded,
        "messages_per_context": {"min": per.min, "avg": float(per.avg), "max": per.max},
        "roots_with_50_messages": per.roots_ge50,
        "counter_mismatches": mismatches,
        "fingerprint": {"messages": fp_messages, "contexts": fp_contexts},
        "db_size": size,
    }


def pgdata_dir(data_dir: Path) -> Path:
    """Where the embedded server keeps its files (what `ctxgraph serve` uses for
    CTXGRAPH_DATA_DIR=data_dir)."""
    return (data_dir / "pgdata").resolve()


def read_manifest(data_dir: Path) -> dict[str, Any] | None:
    path = data_dir / MANIFEST
    if not path.exists():
        return None
    manifest: dict[str, Any] = json.loads(path.read_text())
    return manifest


def load_into(url: str, spec: DatasetSpec) -> dict[str, Any]:
    """Migrate the (empty) database at `url` and load the data set into it.

    Returns the spec, the figures that prove the load (counts, counter check,
    fingerprint) and the timings.
    """
    t0 = time.perf_counter()
    data = generate(spec)
    t_generate = time.perf_counter() - t0
    t1 = time.perf_counter()
    upgrade_to_head(url)
    t_migrate = time.perf_counter() - t1
    t2 = time.perf_counter()
    figures = asyncio.run(_load(url, data, spec))
    t_load = time.perf_counter() - t2
    return {
        "spec": asdict(spec),
        **figures,
        "seconds": {
            "generate": round(t_generate, 2),
            "migrate": round(t_migrate, 2),
            "copy_vacuum_verify": round(t_load, 2),
        },
    }


def build(data_dir: Path, spec: DatasetSpec, force: bool = False) -> dict[str, Any]:
    """A fresh embedded PostgreSQL in data_dir with the data set loaded (see load_into);
    the result is also written to data_dir/bench-dataset.json."""
    t_all = time.perf_counter()
    if data_dir.exists() and any(data_dir.iterdir()):
        if not force:
            raise FileExistsError(f"{data_dir} is not empty (use --force to rebuild it)")
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    server = EmbeddedPostgres(pgdata_dir(data_dir))
    url = server.start()
    try:
        manifest = load_into(url, spec)
    finally:
        server.stop()
    manifest["seconds"]["total"] = round(time.perf_counter() - t_all, 2)
    (data_dir / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def iter_summary(manifest: dict[str, Any]) -> Iterator[str]:
    """Human-readable lines about a built data set."""
    per = manifest["messages_per_context"]
    yield (
        f"contexts   : {manifest['contexts']} ({manifest['roots']} roots, {manifest['forks']}"
        f" forks; max depth {manifest['max_depth']}, {manifest['depth5_forks']} at depth 5)"
    )
    yield (
        f"messages   : {manifest['messages']} (avg {manifest['avg_chars']} chars;"
        f" {manifest.get('embedded', 0)} with an embedding)"
    )
    yield (
        f"history    : min {per['min']}, avg {per['avg']}, max {per['max']} messages;"
        f" roots with >= 50: {manifest['roots_with_50_messages']}"
    )
    yield f"counters   : {manifest['counter_mismatches']} mismatches with the served history"
    fp = manifest["fingerprint"]
    yield f"fingerprint: messages {fp['messages']} contexts {fp['contexts']}"
    yield f"db size    : {manifest['db_size']}; seconds {manifest['seconds']}"
