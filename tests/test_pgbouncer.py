"""Through a real PgBouncer in transaction pooling mode (.ci/pgbouncer.sh sets it up).

Two `ctxgraph serve` processes on the PgBouncer URL (CTXGRAPH_DB_POOLED=true;
LISTEN/NOTIFY on the direct URL), 50 concurrent clients appending and reading:
zero errors, every context's versions contiguous, counters exact, and fewer
server connections than the two processes' pools hold (PgBouncer multiplexes).
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]  # no stubs published
import httpx
import pytest

from tests.dbutil import _libpq, running_server

PGBOUNCER_URL = os.environ.get("CTXGRAPH_PGBOUNCER_URL")
DIRECT_URL = os.environ.get("CTXGRAPH_PGBOUNCER_DIRECT_URL")

pytestmark = [
    pytest.mark.skipif(
        not PGBOUNCER_URL,
        reason="CTXGRAPH_PGBOUNCER_URL is not set: run `bash .ci/pgbouncer.sh`, which starts "
        "PgBouncer in front of a PostgreSQL and runs this file through it",
    ),
    pytest.mark.slow,
]

CLIENTS = 50
ROUNDS = 12
CONTEXTS = 10

APPEND = (
    "mutation($id: ID!, $m: [MessageInput!]!) { appendMessages(contextId: $id, messages: $m) "
    "{ messages { version tokenCount } } }"
)
PAGE = (
    "query($id: ID!) { context(id: $id) { latestVersion messages(last: 20) { nodes { version } "
    "} } }"
)
FULL = (
    "query($id: ID!, $after: String) { context(id: $id) { messageCount totalTokens "
    "latestVersion messages(first: 500, after: $after) { nodes { version tokenCount } "
    "pageInfo { hasNextPage endCursor } } } }"
)


@pytest.fixture(scope="module")
def servers() -> Iterator[list[str]]:
    assert PGBOUNCER_URL is not None
    env = {
        "DATABASE_URL": PGBOUNCER_URL,
        "CTXGRAPH_DB_POOLED": "true",
        "CTXGRAPH_ACCESS_LOG": "false",
        "CTXGRAPH_POOL_SIZE": "5",
        "CTXGRAPH_POOL_MAX_OVERFLOW": "5",
    }
    if DIRECT_URL:
        env["CTXGRAPH_DATABASE_DIRECT_URL"] = DIRECT_URL
    with ExitStack() as stack:
        yield [stack.enter_context(running_server(env)) for _ in range(2)]


async def gql(http: httpx.AsyncClient, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    response = await http.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body["errors"]
    data: dict[str, Any] = body["data"]
    return data


async def full_history(http: httpx.AsyncClient, cid: str) -> tuple[dict[str, Any], list[int], int]:
    versions: list[int] = []
    tokens = 0
    after = None
    while True:
        context = (await gql(http, FULL, {"id": cid, "after": after}))["context"]
        page = context["messages"]
        versions += [n["version"] for n in page["nodes"]]
        tokens += sum(n["tokenCount"] for n in page["nodes"])
        if not page["pageInfo"]["hasNextPage"]:
            return context, versions, tokens
        after = page["pageInfo"]["endCursor"]


async def test_fifty_clients_two_servers_through_pgbouncer(servers: list[str]) -> None:
    # Idle connections are dropped before the server's keep-alive timeout (uvicorn: 5 s)
    # can close them: reusing one the server is closing that moment fails the request
    # with ReadError('') (httpx's default expiry is also 5 s: a race, seen in CI).
    limits = httpx.Limits(keepalive_expiry=1.0)
    clients = [
        httpx.AsyncClient(base_url=servers[i % 2], timeout=60, limits=limits)
        for i in range(len(servers))
    ]
    tag = uuid.uuid4().hex[:8]
    try:
        ids = []
        for i in range(CONTEXTS):
            data = await gql(
                clients[i % 2],
                "mutation($n: String) { createContext(name: $n) { id } }",
                {"n": f"pgb-{tag}-{i}"},
            )
            ids.append(data["createContext"]["id"])

        acked: dict[str, list[tuple[int, int]]] = defaultdict(list)  # (version, tokens)
        errors: list[str] = []

        async def client(n: int) -> None:
            rng = random.Random(n)
            http = clients[n % 2]
            for _ in range(ROUNDS):
                cid = rng.choice(ids)
                try:
                    tokens = [rng.randint(1, 9) for _ in range(rng.randint(1, 2))]
                    msgs = [{"role": "USER", "content": f"c{n}", "tokenCount": t} for t in tokens]
                    stored = (await gql(http, APPEND, {"id": cid, "m": msgs}))["appendMessages"]
                    got = [(m["version"], m["tokenCount"]) for m in stored["messages"]]
                    # One append's versions are consecutive.
                    assert [v for v, _ in got] == list(range(got[0][0], got[0][0] + len(got)))
                    acked[cid] += got
                    page = (await gql(http, PAGE, {"id": rng.choice(ids)}))["context"]
                    versions = [m["version"] for m in page["messages"]["nodes"]]
                    # A page of the history has no gap (latestVersion is read by another
                    # statement, so appends committed in between may make it differ).
                    if versions:
                        assert versions == list(range(versions[0], versions[0] + len(versions)))
                except Exception as exc:  # collected: the assertion below reports them all
                    errors.append(f"client {n}: {exc!r}"[:300])

        await asyncio.gather(*(client(n) for n in range(CLIENTS)))
        assert errors == [], f"{len(errors)} errors, e.g. {errors[:5]}"

        for cid in ids:
            for http in clients:  # both processes see the same, exact state
                context, versions, tokens = await full_history(http, cid)
                expected = sorted(acked[cid])
                assert versions == [v for v, _ in expected] == list(range(1, len(expected) + 1))
                assert context["messageCount"] == context["latestVersion"] == len(expected)
                assert context["totalTokens"] == tokens == sum(t for _, t in expected)
        assert sum(len(v) for v in acked.values()) >= CLIENTS * ROUNDS
    finally:
        for http in clients:
            await http.aclose()

    if DIRECT_URL:
        conn = await asyncpg.connect(_libpq(DIRECT_URL))
        try:
            backends = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            )
        finally:
            await conn.close()
        # 2 processes x (5 + 5) pooled connections would be 20; PgBouncer serves them with
        # at most its pool of 10, plus each process's LISTEN connection and this one.
        assert backends <= 10 + 2 + 1
