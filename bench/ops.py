"""Per-operation latency and SQL statement counts, in process (issue 3's figures).

    .venv/bin/python -m bench.ops [--runs 40]

Builds a throw-away embedded PostgreSQL, then times each operation through the
ASGI app (httpx, no network) with real commits on the pooled engine: median and
p95 of `--runs` runs after warm-up, plus the SQL statements each one ran.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from api.app import create_app
from api.db import EmbeddedPostgres, EngineConnector, count_statements, create_engine
from api.migrate import upgrade_to_head
from api.settings import Settings

Op = Callable[[], Awaitable[Any]]


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedPostgres(Path(tmp) / "pgdata")
        url = server.start()
        try:
            await asyncio.to_thread(upgrade_to_head, url)
            settings = Settings(_env_file=None, access_log=False)
            engine = create_engine(url, settings)
            app = create_app(settings, connector=EngineConnector(engine))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://b") as http:
                await measure(http, engine, runs)
            await engine.dispose()
        finally:
            server.stop()


async def measure(http: httpx.AsyncClient, engine: Any, runs: int) -> None:
    async def gql(query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = (await http.post("/graphql", json={"query": query, "variables": variables})).json()
        assert "errors" not in body, body
        return body["data"]  # type: ignore[no-any-return]

    def msgs(n: int) -> list[dict[str, Any]]:
        return [{"role": "USER", "content": "x" * 400, "tokenCount": 100} for _ in range(n)]

    create_q = 'mutation($m: [MessageInput!]) { createContext(name: "b", messages: $m) { id } }'
    root = (await gql(create_q, {"m": msgs(200)}))["createContext"]["id"]
    deep = root
    for _ in range(20):
        deep = (await gql("mutation($id: ID!) { forkContext(id: $id) { id } }", {"id": deep}))[
            "forkContext"
        ]["id"]
        await gql(
            "mutation($id: ID!, $m: [MessageInput!]!) { appendMessages(contextId: $id,"
            " messages: $m) { messages { version } } }",
            {"id": deep, "m": msgs(5)},
        )
    shallow = (await gql("mutation($id: ID!) { forkContext(id: $id) { id } }", {"id": root}))[
        "forkContext"
    ]["id"]
    append_q = (
        "mutation($id: ID!, $m: [MessageInput!]!) { appendMessages(contextId: $id,"
        " messages: $m) { messages { id version } } }"
    )
    page_q = (
        "query($id: ID!) { context(id: $id) { id messages(last: 50) { nodes { id version"
        " role content tokenCount createdAt } } } }"
    )
    ops: dict[str, Op] = {
        "create (no messages)": lambda: gql(create_q, {"m": None}),
        "create (3 messages)": lambda: gql(create_q, {"m": msgs(3)}),
        "append 1": lambda: gql(append_q, {"id": root, "m": msgs(1)}),
        "append 50": lambda: gql(append_q, {"id": root, "m": msgs(50)}),
        "fork (latest)": lambda: gql(
            "mutation($id: ID!) { forkContext(id: $id) { id } }", {"id": root}
        ),
        "fork (atVersion 10)": lambda: gql(
            "mutation($id: ID!) { forkContext(id: $id, atVersion: 10) { id } }", {"id": root}
        ),
        "history page, fork depth 1": lambda: gql(page_q, {"id": shallow}),
        "history page, fork depth 20": lambda: gql(page_q, {"id": deep}),
        "contexts page (20)": lambda: gql(
            "{ contexts(first: 20) { nodes { id name messageCount updatedAt } } }"
        ),
    }
    results = {}
    for name, op in ops.items():
        for _ in range(5):
            await op()
        statements: list[str] = []
        undo = count_statements(engine, statements.append)
        await op()
        undo()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            await op()
            times.append((time.perf_counter() - start) * 1000)
        times.sort()
        results[name] = {
            "statements": len(statements),
            "p50_ms": round(statistics.median(times), 2),
            "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
        }
    print("| operation | SQL statements | p50 ms | p95 ms |\n|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['statements']} | {r['p50_ms']} | {r['p95_ms']} |")
    print(json.dumps(results))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=40)
    asyncio.run(main(parser.parse_args().runs))
