"""Fan-out across processes: two real `ctxgraph serve` on one database.

A client subscribes on one process and appends through the other; every
message arrives, in order, once. The database here is this module's own
embedded server, because one test restarts it under the running servers.
The servers re-check only once an hour, so what arrives was announced by
NOTIFY or caught up after the listener reconnected.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]  # no stubs
import httpx
import pytest
from httpx_ws import AsyncWebSocketSession, aconnect_ws

from api.db import EmbeddedPostgres
from api.migrate import upgrade_to_head
from api.realtime import LISTENER_APPLICATION_NAME, listener_dsn
from tests.conftest import GraphQLClient
from tests.dbutil import running_server
from tests.helpers import append, create_context, user
from tests.test_subscriptions import TIMEOUT, Socket

pytestmark = pytest.mark.slow


@dataclass
class Cluster:
    """One database, two API processes."""

    pgdata: Path
    url: str
    server: EmbeddedPostgres
    a: str
    b: str

    def restart_database(self) -> None:
        self.server.stop()
        self.server = EmbeddedPostgres(self.pgdata)
        assert self.server.start() == self.url


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    pgdata = Path(tmp_path_factory.mktemp("pg-realtime")) / "pgdata"
    server = EmbeddedPostgres(pgdata)
    url = server.start()
    upgrade_to_head(url)
    env = {"DATABASE_URL": url, "CTXGRAPH_SUBSCRIPTION_RECHECK_INTERVAL": "3600"}
    c = Cluster(pgdata, url, server, "", "")
    try:
        with ExitStack() as stack:
            c.a = stack.enter_context(running_server(env))
            c.b = stack.enter_context(running_server(env))
            yield c
    finally:
        c.server.stop()


@asynccontextmanager
async def subscriber(base: str) -> AsyncIterator[Socket]:
    """A graphql-transport-ws connection to the process at `base` (use in the test body)."""
    ws: AsyncWebSocketSession
    async with (
        httpx.AsyncClient() as http,
        aconnect_ws(
            base.replace("http", "ws", 1) + "/graphql", http, subprotocols=["graphql-transport-ws"]
        ) as ws,
    ):
        await ws.send_json({"type": "connection_init", "payload": {}})
        assert (await ws.receive_json(timeout=TIMEOUT))["type"] == "connection_ack"
        yield Socket(ws)


@asynccontextmanager
async def client(base: str) -> AsyncIterator[GraphQLClient]:
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
        yield GraphQLClient(http)


async def listeners(url: str) -> int:
    conn = await asyncpg.connect(listener_dsn(url))
    try:
        n: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            LISTENER_APPLICATION_NAME,
        )
        return n
    finally:
        await conn.close()


async def test_subscribe_on_one_process_append_through_the_other(cluster: Cluster) -> None:
    async with client(cluster.b) as b:
        ctx = await create_context(b, f"mp-{uuid.uuid4().hex[:8]}", [user("m0")])
        async with subscriber(cluster.a) as a1, subscriber(cluster.a) as a2:
            ops = [(a1, await a1.subscribe(ctx["id"], after_version=0))]
            ops.append((a1, await a1.subscribe(ctx["id"], after_version=1)))
            ops.append((a2, await a2.subscribe(ctx["id"], after_version=0)))
            for sock, op in ops[:1] + ops[2:]:
                assert [m["content"] for m in await sock.messages(op, 1)] == ["m0"]

            sizes = [1, 2, 1, 3, 1, 1, 4, 1, 2, 1]
            async with asyncio.timeout(TIMEOUT * 2):
                for i, size in enumerate(sizes):
                    await append(b, ctx["id"], [user(f"m{i}-{j}") for j in range(size)])
            expected = [f"m{i}-{j}" for i, size in enumerate(sizes) for j in range(size)]
            for sock, op in ops:
                got = await sock.messages(op, len(expected))
                assert [m["content"] for m in got] == expected
                assert [m["version"] for m in got] == list(range(2, 2 + len(expected)))

            # One LISTEN connection per process, however many subscribers.
            assert await listeners(cluster.url) == 2


async def append_retrying(b: GraphQLClient, context_id: str, message: dict[str, Any]) -> int:
    """Append one message (with a client id, so a retry cannot duplicate it) until it
    succeeds: the first requests after a database restart may meet dead connections."""
    query = (
        "mutation($id: ID!, $m: [MessageInput!]!) { appendMessages(contextId: $id, messages: $m)"
        " { messages { version } } }"
    )
    async with asyncio.timeout(TIMEOUT * 4):
        while True:
            try:
                response = await b.http.post(
                    "/graphql",
                    json={"query": query, "variables": {"id": context_id, "m": [message]}},
                )
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 200 and response.json()["data"]:
                version: int = response.json()["data"]["appendMessages"]["messages"][0]["version"]
                return version
            await asyncio.sleep(0.1)  # the database is coming back up


async def test_subscribers_receive_everything_after_a_database_restart(
    cluster: Cluster,
) -> None:
    async with client(cluster.b) as b:
        ctx = await create_context(b, f"restart-{uuid.uuid4().hex[:8]}")
        async with subscriber(cluster.a) as a:
            op = await a.subscribe(ctx["id"], after_version=0)
            await append(b, ctx["id"], [user("before")])
            assert [m["content"] for m in await a.messages(op, 1)] == ["before"]

            await asyncio.to_thread(cluster.restart_database)

            contents = [f"after-{i}" for i in range(5)]
            versions = [
                await append_retrying(b, ctx["id"], user(c, id=str(uuid.uuid4()))) for c in contents
            ]
            assert versions == [2, 3, 4, 5, 6]
            got = await a.messages(op, len(contents))
            assert [(m["version"], m["content"]) for m in got] == list(
                zip(versions, contents, strict=True)
            )
            await append(b, ctx["id"], [user("sentinel")])
            assert [m["version"] for m in await a.messages(op, 1)] == [7]
            # Each process is listening again (B's listener reconnects on its own backoff).
            async with asyncio.timeout(TIMEOUT):
                while await listeners(cluster.url) != 2:
                    await asyncio.sleep(0.1)
