"""What the tool-call rules cost an append, by history length and fork depth.

    python -m bench.tool_calls [--data-dir /tmp/ctxgraph-bench/tools] [--appends 300]

An append with tool calls or results asks the history about their call ids
(api/store/messages.py `_ANSWERS`: a primary-key probe of `tool_calls` per call id
and per segment of the fork chain). This measures, through the store's own `append`
(the appendMessages path: group commit, one statement), single appends one at a time
on contexts whose histories hold 10 and 10,000 answered tool calls, and on a fork 5
deep of the long one: a plain text message, an ASSISTANT message with one tool call,
and the TOOL message answering it. If the checks scanned the history, the long
history's appends would cost more; they should cost the same. It also prints the
probe statement's plan (EXPLAIN ANALYZE) on the long history.

Uses an embedded PostgreSQL in --data-dir (created, migrated; contexts are added on
every run). Prints a JSON report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from api.db import EmbeddedPostgres, EngineConnector, create_engine
from api.migrate import upgrade_to_head
from api.settings import Settings
from api.store import contexts as contexts_store
from api.store import messages as messages_store
from api.store.inputs import Limits, NewMessage, check_new_messages

LIMITS = Limits()


def call(call_id: str) -> NewMessage:
    part = {"type": "tool_call", "call_id": call_id, "name": "get_weather", "arguments": {"i": 1}}
    return NewMessage(role="assistant", parts=[part], token_count=10)


def result(call_id: str) -> NewMessage:
    part = {"type": "tool_result", "call_id": call_id, "output": "18C", "is_error": False}
    return NewMessage(role="tool", parts=[part], token_count=5)


async def history_of(db: EngineConnector, exchanges: int) -> uuid.UUID:
    """A context with `exchanges` answered tool calls (in batches of 500 messages)."""
    async with db.transaction() as conn:
        ctx = await contexts_store.create_context(conn, f"tools-{exchanges}", {}, [])
    done = 0
    while done < exchanges:
        n = min(250, exchanges - done)
        batch: list[NewMessage] = []
        for k in range(done, done + n):
            batch += [call(f"h{k}"), result(f"h{k}")]
        await messages_store.append(db, ctx.id, check_new_messages(batch, LIMITS), None)
        done += n
    return ctx.id  # type: ignore[no-any-return]


async def timed(db: EngineConnector, context_id: uuid.UUID, messages: list[NewMessage]) -> float:
    checked = check_new_messages(messages, LIMITS)
    started = time.perf_counter()
    await messages_store.append(db, context_id, checked, None)
    return (time.perf_counter() - started) * 1000


def summary(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {
        "p50_ms": round(statistics.median(values), 3),
        "p95_ms": round(values[int(0.95 * (len(values) - 1))], 3),
        "mean_ms": round(statistics.fmean(values), 3),
    }


async def measure(db: EngineConnector, context_id: uuid.UUID, appends: int) -> dict[str, Any]:
    plain: list[float] = []
    calls: list[float] = []
    results: list[float] = []
    tag = uuid.uuid4().hex[:8]
    for i in range(appends):
        plain.append(await timed(db, context_id, [NewMessage(role="user", content=f"q{i}")]))
        calls.append(await timed(db, context_id, [call(f"m{tag}{i}")]))
        results.append(await timed(db, context_id, [result(f"m{tag}{i}")]))
    return {
        "plain_append": summary(plain),
        "tool_call_append": summary(calls),
        "tool_result_append": summary(results),
    }


async def probe_plan(db: EngineConnector, context_id: uuid.UUID) -> list[str]:
    probes = json.dumps(
        [{"context_id": str(context_id), "ord": 0, "part": 0, "call_id": "h5000", "kind": "result"}]
    )
    sql = str(messages_store._TOOL_ANSWERS).replace(":probes", "CAST(:probes AS text)")
    async with db.read() as conn:
        rows = await conn.execute(
            sa.text(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}"), {"probes": probes}
        )
        return [r[0] for r in rows]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/ctxgraph-bench/tools"))
    parser.add_argument("--appends", type=int, default=300)
    parser.add_argument("--long", type=int, default=10_000)
    args = parser.parse_args()
    server = EmbeddedPostgres(args.data_dir / "pgdata")
    url = server.start()
    await asyncio.to_thread(upgrade_to_head, url)
    engine = create_engine(url, Settings(_env_file=None))  # type: ignore[call-arg]
    db = EngineConnector(engine)
    report: dict[str, Any] = {"appends_each": args.appends}
    try:
        short = await history_of(db, 10)
        long = await history_of(db, args.long)
        async with db.transaction() as conn:
            fork = long
            for _ in range(5):
                fork = (await contexts_store.fork_context(conn, fork, None, None, None)).id
        for label, cid in (
            ("10 tool calls", short),
            (f"{args.long} tool calls", long),
            (f"{args.long} tool calls, fork depth 5", fork),
        ):
            report[label] = await measure(db, cid, args.appends)
        report["probe_plan_long_history"] = await probe_plan(db, long)
    finally:
        await engine.dispose()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
