"""The benchmark harness end to end on a tiny data set: build, serve, drive, report.

A fresh database on the test server gets the migrations and a small generated
data set; `ctxgraph serve` runs on it as a real process and the driver (wrk
when installed, else the Python driver) loads each workload for a second. It
checks the harness, not the speed: no errors, non-empty figures, reports written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import sqlalchemy as sa

from bench.dataset import DatasetSpec, connect, generate, load_into
from bench.load import have_wrk
from bench.runner import RunConfig, run

TINY = DatasetSpec(roots=20, forks=10, messages=1_500, max_depth=5, seed=7)
# the search variant (embeddings) and the parts variant (tool calls) in one
TINY_SEARCH = dataclasses.replace(TINY, embeddings=400, tool_calls=0.3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _admin(url: str, sql: str) -> None:
    async with connect(url) as conn:
        await conn.execute(sa.text(sql))


@pytest.fixture
def bench_db_url(database_url: str) -> Iterator[str]:
    """A fresh, empty database on the test server, dropped afterwards."""
    name = f"bench_smoke_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(database_url, f"CREATE DATABASE {name}"))
    parts = urlsplit(database_url)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    asyncio.run(_admin(database_url, f"DROP DATABASE {name} WITH (FORCE)"))


def test_generator_is_deterministic_and_consistent() -> None:
    a, b = generate(TINY), generate(TINY)
    assert [m[:3] for m in a.messages] == [m[:3] for m in b.messages]
    assert len(a.contexts) == 30
    assert len(a.messages) == 1_500
    assert max(c.depth for c in a.contexts) == 5
    for c in a.contexts:
        # a history's versions are 1..latest with no gaps, inherited ones included
        assert len(c.tokens) == c.latest_version + 1
        if c.parent is not None:
            assert c.fork_version is not None
            assert c.tokens[: c.fork_version + 1] == c.parent.tokens[: c.fork_version + 1]


@pytest.mark.slow
def test_harness_end_to_end(bench_db_url: str, tmp_path: Path) -> None:
    manifest = load_into(bench_db_url, TINY_SEARCH)
    assert manifest["counter_mismatches"] == 0
    assert (manifest["contexts"], manifest["messages"], manifest["embedded"]) == (30, 1_500, 400)

    cfg = RunConfig(
        data_dir=None,
        database_url=bench_db_url,
        dataset=manifest,
        out=tmp_path / "run",
        workloads=[
            "chat-page",
            "sidebar",
            "tree",
            "append",
            "fork",
            "search-all",
            "search-context",
            "mix",
            "chat-page-apollo",
            "chat-page-header",
            "chat-page-directive",
            "chat-page-parts",
            "append-formatted",
        ],
        connections=4,
        duration=1.0,
        warmup=0.0,
        port=_free_port(),
        driver="wrk" if have_wrk() else "python",
        wait_quiet=0,
        ids=20,
        statement_samples=5,
    )
    report = run(cfg)

    measured = {r["workload"]: r for r in report["results"] if not r.get("skipped")}
    assert set(measured) == set(cfg.workloads)  # search too: the data set has embeddings
    for name, r in measured.items():
        assert r["errors"] == 0, (name, r["error_detail"])
        assert r["requests"] > 0, name
        assert r["rps"] > 0, (name, r)
        assert 0 < r["p50_ms"] <= r["p99_ms"], (name, r)
        assert r["statements_per_request"] > 0, name
        assert r["cpu"]["server_ms_per_req"] > 0, name
    # the read workloads are batched: a handful of statements, never one per row; the
    # chat page as clients select it is one statement, answered by its plan
    assert measured["chat-page"]["statements_per_request"] <= 3
    assert measured["sidebar"]["statements_per_request"] <= 2
    shapes = ["chat-page", "chat-page-apollo", "chat-page-header", "chat-page-directive"]
    for shape in [*shapes, "chat-page-parts"]:
        assert measured[shape]["statements_per_request"] == 1, shape
        assert measured[shape]["planned_share"] == 1, shape
    assert measured["sidebar"]["planned_share"] == 1

    # the HNSW index the migration defines was dropped for the COPY and built again
    async def index_def() -> str:
        async with connect(bench_db_url) as conn:
            q = "SELECT pg_get_indexdef(CAST('ix_messages_embedding_hnsw' AS regclass))"
            return str((await conn.execute(sa.text(q))).scalar_one())

    assert "USING hnsw (embedding vector_cosine_ops)" in asyncio.run(index_def())

    written = json.loads((cfg.out / "results.json").read_text())
    assert [r["workload"] for r in written["results"]] == cfg.workloads
    table = (cfg.out / "results.md").read_text()
    assert "| chat-page |" in table
