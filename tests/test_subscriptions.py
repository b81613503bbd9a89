"""Subscription.messageAppended over graphql-transport-ws, in-process.

The app runs with its real lifespan (its own engine and the LISTEN connection)
on the test database: subscriptions need real commits, so every test makes its
own uniquely named contexts. The module's app re-checks only once an hour, so
a message that arrives here was announced by NOTIFY (or by the listener's
reconnect), not found by the periodic safety net.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
import sqlalchemy as sa
from fastapi import FastAPI
from httpx_ws import AsyncWebSocketSession, WebSocketDisconnect, aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from api.db import EngineConnector, count_statements
from api.realtime import Hub, Listener, Realtime, listener_dsn
from api.store import messages as messages_store
from api.store.inputs import NewMessage
from api.store.notify import CHANNEL
from tests.conftest import GraphQLClient, test_settings
from tests.helpers import append, create_context, fork, user

NEVER = 3600.0  # a re-check interval no test waits for
TIMEOUT = 15.0  # upper bound of every wait; a healthy run takes milliseconds

MESSAGE_FIELDS = "id version content role"
SUBSCRIPTION = (
    "subscription($id: ID!, $after: Int) { messageAppended(contextId: $id, afterVersion: $after)"
    " { %s } }"
)


class Socket:
    """A graphql-transport-ws client on one WebSocket; sorts messages by operation id."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.inbox: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._ids = 0

    async def subscribe(
        self,
        context_id: str,
        after_version: int | None = None,
        fields: str = MESSAGE_FIELDS,
        query: str | None = None,
    ) -> str:
        self._ids += 1
        op = str(self._ids)
        variables = {"id": context_id, "after": after_version}
        payload = {"query": query or SUBSCRIPTION % fields, "variables": variables}
        await self.ws.send_json({"id": op, "type": "subscribe", "payload": payload})
        return op

    async def complete(self, op: str) -> None:
        await self.ws.send_json({"id": op, "type": "complete"})

    async def receive(self, op: str) -> dict[str, Any]:
        """The next protocol message of operation `op`."""
        async with asyncio.timeout(TIMEOUT):
            while not self.inbox[op]:
                message = await self.ws.receive_json()
                self.inbox[message.get("id", "")].append(message)
        return self.inbox[op].pop(0)

    async def messages(self, op: str, n: int) -> list[dict[str, Any]]:
        """The next `n` messageAppended payloads of `op` (each must be data, not an error)."""
        result = []
        for _ in range(n):
            message = await self.receive(op)
            assert message["type"] == "next", message
            assert "errors" not in message["payload"], message
            result.append(message["payload"]["data"]["messageAppended"])
        return result

    async def error(self, op: str) -> dict[str, Any]:
        """The single error that ends `op`."""
        message = await self.receive(op)
        assert message["type"] == "next", message
        assert message["payload"]["data"] is None
        [error] = message["payload"]["errors"]
        assert (await self.receive(op))["type"] == "complete"
        return error  # type: ignore[no-any-return]


class Session:
    """HTTP and WebSocket clients of one in-process app."""

    def __init__(self, app: FastAPI, http: httpx.AsyncClient) -> None:
        self.app = app
        self.http = http
        self.client = GraphQLClient(http)
        self._stack = AsyncExitStack()

    @property
    def hub(self) -> Hub:
        realtime: Realtime = self.app.state.realtime
        return realtime.hub

    @asynccontextmanager
    async def connect(self, init: bool = True) -> AsyncIterator[Socket]:
        """A WebSocket for the block (opened and closed in the same task)."""
        ws: AsyncWebSocketSession
        async with aconnect_ws("/graphql", self.http, subprotocols=["graphql-transport-ws"]) as ws:
            if init:
                await ws.send_json({"type": "connection_init", "payload": {}})
                assert (await ws.receive_json(timeout=TIMEOUT))["type"] == "connection_ack"
            yield Socket(ws)

    async def socket(self, init: bool = True) -> Socket:
        """A WebSocket closed when the session ends (use in the test's own task)."""
        return await self._stack.enter_async_context(self.connect(init))

    async def close(self) -> None:
        await self._stack.aclose()


@asynccontextmanager
async def running(app: FastAPI, lifespan: bool = True) -> AsyncIterator[Session]:
    """Clients of `app` (with its lifespan). Use in the test body: httpx-ws's ASGI
    transport cannot be torn down from another task (an async fixture)."""
    async with AsyncExitStack() as stack:
        if lifespan:
            await stack.enter_async_context(app.router.lifespan_context(app))
        http = await stack.enter_async_context(
            httpx.AsyncClient(transport=ASGIWebSocketTransport(app), base_url="http://test")
        )
        session = Session(app, http)
        stack.push_async_callback(session.close)
        yield session


@pytest_asyncio.fixture(scope="module")
async def app(database_url: str) -> AsyncIterator[FastAPI]:
    app = create_app(test_settings(database_url=database_url, subscription_recheck_interval=NEVER))
    async with app.router.lifespan_context(app):
        yield app


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll a condition of the server's state (not a sleep standing in for one)."""
    async with asyncio.timeout(TIMEOUT):
        while not condition():
            await asyncio.sleep(0.005)
    assert condition(), what


def tag() -> str:
    return uuid.uuid4().hex[:8]


def texts(n: int, prefix: str) -> list[dict[str, Any]]:
    return [user(f"{prefix}-{i}") for i in range(n)]


async def test_replay_after_version_then_live(app: FastAPI) -> None:
    async with running(app, lifespan=False) as s:
        t = tag()
        ctx = await create_context(s.client, t, texts(5, t))
        socket = await s.socket()
        op = await socket.subscribe(ctx["id"], after_version=2)
        replay = await socket.messages(op, 3)
        assert [(m["version"], m["content"]) for m in replay] == [
            (3, f"{t}-2"),
            (4, f"{t}-3"),
            (5, f"{t}-4"),
        ]
        await append(s.client, ctx["id"], [user("six"), user("seven")])
        await append(s.client, ctx["id"], [user("eight")])
        live = await socket.messages(op, 3)
        assert [(m["version"], m["content"]) for m in live] == [
            (6, "six"),
            (7, "seven"),
            (8, "eight"),
        ]
        assert live[0]["role"] == "USER"


async def test_without_after_version_only_new_messages(app: FastAPI) -> None:
    async with running(app, lifespan=False) as s:
        t = tag()
        ctx = await create_context(s.client, t, texts(3, t))
        socket = await s.socket()
        op = await socket.subscribe(ctx["id"])
        await wait_until(
            lambda: [w.delivered for w in s.hub.watches(uuid.UUID(ctx["id"]))] == [3],
            "the subscription starts at the context's latestVersion",
        )
        await append(s.client, ctx["id"], [user("new")])
        [message] = await socket.messages(op, 1)
        assert (message["version"], message["content"]) == (4, "new")


async def test_no_gap_and_no_duplicate_while_appending(app: FastAPI) -> None:
    """Subscribers join while a writer appends (single messages and batches):
    each gets every version exactly once, in order."""
    async with running(app, lifespan=False) as s:
        t = tag()
        ctx = await create_context(s.client, t, texts(2, t))
        cid = ctx["id"]
        batches = [1, 3, 1, 1, 2, 1, 5, 1, 1, 1] * 3
        total = 2 + sum(batches)
        reached = [asyncio.Event() for _ in range(3)]

        async def writer() -> None:
            for i, size in enumerate(batches):
                if i % 10 == 5:
                    reached[i // 10].set()
                await append(s.client, cid, texts(size, f"{t}-b{i}"))

        async def subscriber(n: int, after: int | None) -> list[int]:
            await reached[n].wait()
            async with s.connect() as socket:
                if after is not None:
                    op = await socket.subscribe(cid, after_version=after)
                    return [m["version"] for m in await socket.messages(op, total - after)]
                # Where it starts depends on the writer; from there on nothing may be missing.
                await wait_until(lambda: len(s.hub.watches(key)) == n, "the others subscribed")
                others = set(s.hub.watches(key))
                op = await socket.subscribe(cid)
                await wait_until(lambda: len(s.hub.watches(key)) == n + 1, "subscribed")
                [mine] = set(s.hub.watches(key)) - others
                # where it started (`delivered` moves on as soon as a message goes out)
                await wait_until(lambda: mine.started is not None, "started")
                start = mine.started
                assert start is not None
                versions = [m["version"] for m in await socket.messages(op, total - start)]
                return [start, *versions]

        key = uuid.UUID(cid)
        async with asyncio.timeout(TIMEOUT * 2):
            results = await asyncio.gather(
                writer(), subscriber(0, 0), subscriber(1, 4), subscriber(2, None)
            )
        assert results[1] == list(range(1, total + 1))
        assert results[2] == list(range(5, total + 1))
        start, *rest = results[3]
        assert rest == list(range(start + 1, total + 1))

        # Nothing else is pending: the next message after a sentinel append is the sentinel.
        socket = await s.socket()
        op = await socket.subscribe(cid, after_version=total)
        await append(s.client, cid, [user("sentinel")])
        assert [m["version"] for m in await socket.messages(op, 1)] == [total + 1]


async def test_fork_replays_inherited_history_and_gets_only_its_own_appends(
    app: FastAPI,
) -> None:
    async with running(app, lifespan=False) as s:
        t = tag()
        parent = await create_context(s.client, t, texts(4, t))
        child = await fork(s.client, parent["id"], 2)
        await append(s.client, child["id"], [user("child-3")])
        socket = await s.socket()
        op = await socket.subscribe(child["id"], after_version=0)
        replay = await socket.messages(op, 3)
        assert [m["content"] for m in replay] == [f"{t}-0", f"{t}-1", "child-3"]
        await append(s.client, parent["id"], [user("parent-5")])
        await append(s.client, child["id"], [user("child-4")])
        [live] = await socket.messages(op, 1)
        assert (live["version"], live["content"]) == (4, "child-4")


async def test_deleted_messages_are_not_sent(app: FastAPI) -> None:
    async with running(app, lifespan=False) as s:
        t = tag()
        ctx = await create_context(s.client, t, texts(3, t))
        second = await s.client.data(
            "query($id: ID!) { context(id: $id) { message(version: 2) { id } } }",
            {"id": ctx["id"]},
        )
        await s.client.data(
            "mutation($id: ID!) { deleteMessage(id: $id) { id } }",
            {"id": second["context"]["message"]["id"]},
        )
        socket = await s.socket()
        op = await socket.subscribe(ctx["id"], after_version=0)
        assert [m["version"] for m in await socket.messages(op, 2)] == [1, 3]
        await append(s.client, ctx["id"], [user("four")])
        assert [m["version"] for m in await socket.messages(op, 1)] == [4]


async def test_nested_fields_are_fresh_for_every_message(app: FastAPI) -> None:
    """DataLoaders live as long as the WebSocket: each message must not see a stale context."""
    async with running(app, lifespan=False) as s:
        t = tag()
        ctx = await create_context(s.client, t, texts(1, t))
        socket = await s.socket()
        op = await socket.subscribe(
            ctx["id"], after_version=0, fields="version context { latestVersion messageCount }"
        )
        [first] = await socket.messages(op, 1)
        assert first["context"] == {"latestVersion": 1, "messageCount": 1}
        await append(s.client, ctx["id"], [user("two")])
        [second] = await socket.messages(op, 1)
        assert second == {"version": 2, "context": {"latestVersion": 2, "messageCount": 2}}


async def test_errors_carry_codes(app: FastAPI) -> None:
    async with running(app, lifespan=False) as s:
        socket = await s.socket()
        malformed = await socket.error(await socket.subscribe("not-a-uuid"))
        assert malformed["extensions"]["code"] == "BAD_USER_INPUT"
        assert "contextId" in malformed["message"]
        assert malformed["path"] == ["messageAppended"]

        unknown_id = str(uuid.uuid4())
        unknown = await socket.error(await socket.subscribe(unknown_id))
        assert unknown["extensions"]["code"] == "NOT_FOUND"
        assert unknown_id in unknown["message"]

        ctx = await create_context(s.client, tag())
        negative = await socket.error(await socket.subscribe(ctx["id"], after_version=-1))
        assert negative["extensions"]["code"] == "BAD_USER_INPUT"
        assert "afterVersion" in negative["message"]

        # GraphQL's own refusals (here an unknown field) are coded too.
        invalid = await socket.subscribe(
            ctx["id"],
            query="subscription($id: ID!, $after: Int) { messageAppended("
            "contextId: $id, afterVersion: $after) { noSuchField } }",
        )
        refusal = await socket.receive(invalid)
        assert refusal["type"] == "error", refusal
        assert [e["extensions"]["code"] for e in refusal["payload"]] == ["BAD_USER_INPUT"]

        # The socket still serves: errors end one operation, not the connection.
        op = await socket.subscribe(ctx["id"], after_version=0)
        await append(s.client, ctx["id"], [user("still here")])
        assert [m["content"] for m in await socket.messages(op, 1)] == ["still here"]


def leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    return [
        leaf
        for e in group.exceptions
        for leaf in (leaves(e) if isinstance(e, BaseExceptionGroup) else [e])
    ]


async def close_code(app: FastAPI, subprotocol: str, init: bool) -> int | None:
    """The code the server closes a new WebSocket with (None if it does not close)."""
    codes = []
    try:
        async with running(app, lifespan=False) as s:
            ws: AsyncWebSocketSession
            async with aconnect_ws("/graphql", s.http, subprotocols=[subprotocol]) as ws:
                if init:
                    await ws.send_json({"type": "connection_init", "payload": {}})
                await ws.receive_json(timeout=TIMEOUT)
                await ws.receive_json(timeout=TIMEOUT)
    except* WebSocketDisconnect as closed:
        codes = [e.code for e in leaves(closed) if isinstance(e, WebSocketDisconnect)]
    assert len(codes) <= 1
    return codes[0] if codes else None


async def test_legacy_protocol_is_refused(app: FastAPI) -> None:
    assert await close_code(app, "graphql-ws", init=True) == 4406


async def test_subscriptions_per_connection_are_capped(database_url: str) -> None:
    app = create_app(
        test_settings(
            database_url=database_url,
            subscriptions_per_connection=2,
            subscription_recheck_interval=NEVER,
        )
    )
    async with running(app) as s:
        ctx = await create_context(s.client, tag())
        socket = await s.socket()
        first = await socket.subscribe(ctx["id"], after_version=0)
        second = await socket.subscribe(ctx["id"], after_version=0)
        await wait_until(lambda: len(s.hub.watches()) == 2, "two subscriptions run")
        over = await socket.error(await socket.subscribe(ctx["id"], after_version=0))
        assert over["extensions"]["code"] == "BAD_USER_INPUT"
        assert "CTXGRAPH_SUBSCRIPTIONS_PER_CONNECTION" in over["message"]

        # Another connection has its own allowance; completing one frees a slot.
        other = await s.socket()
        elsewhere = await other.subscribe(ctx["id"], after_version=0)
        await socket.complete(first)
        await wait_until(lambda: len(s.hub.watches()) == 2, "the completed one is gone")
        third = await socket.subscribe(ctx["id"], after_version=0)
        await append(s.client, ctx["id"], [user("one")])
        for sock, op in ((socket, second), (socket, third), (other, elsewhere)):
            assert [m["content"] for m in await sock.messages(op, 1)] == ["one"]


async def test_connection_init_timeout_closes_the_socket(database_url: str) -> None:
    app = create_app(test_settings(database_url=database_url, subscription_init_timeout=0.2))
    async with app.router.lifespan_context(app):
        assert await close_code(app, "graphql-transport-ws", init=False) == 4408


async def test_a_lost_notification_is_caught_up_by_the_recheck(database_url: str) -> None:
    """Messages committed without any NOTIFY still arrive (the periodic re-read)."""
    app = create_app(test_settings(database_url=database_url, subscription_recheck_interval=0.2))
    async with running(app) as s:
        t = tag()
        ctx = await create_context(s.client, t)
        socket = await s.socket()
        op = await socket.subscribe(ctx["id"], after_version=0)
        others = [await s.socket() for _ in range(3)]
        for other in others:
            await other.subscribe((await create_context(s.client, t))["id"], after_version=0)
        await wait_until(
            lambda: len(s.hub.watches()) == 4 and all(w.waiting for w in s.hub.watches()), "idle"
        )
        connector: EngineConnector = app.state.connector
        statements: list[str] = []
        undo = count_statements(connector.engine, statements.append)
        try:
            await wait_until(
                lambda: sum("latest_version FROM contexts" in q for q in statements) >= 3,
                "three re-checks",
            )
        finally:
            undo()
        # Idle subscribers cost one query per interval for the process, nothing each.
        assert all("latest_version FROM contexts" in q for q in statements), statements
        # An append no one announces (the store's appends notify): only the re-check sees it.
        silent = (
            "WITH bumped AS (UPDATE contexts SET latest_version = latest_version + 1,"
            " message_count = message_count + 1 WHERE id = :cid"
            " RETURNING id, latest_version - 1 AS base_version, own_tokens AS base_tokens) "
            + messages_store.insert_messages_sql("bumped")
        )
        params = messages_store.message_params([NewMessage(role="user", content="silent")])
        async with connector.transaction() as conn:
            await conn.execute(sa.text(silent), {**params, "cid": uuid.UUID(ctx["id"])})
        assert [m["content"] for m in await socket.messages(op, 1)] == ["silent"]


async def test_subscribers_survive_a_killed_listener_connection(app: FastAPI) -> None:
    async with running(app, lifespan=False) as s:
        realtime: Realtime = app.state.realtime
        listener = realtime.listener
        assert listener is not None
        await listener.wait_connected(TIMEOUT)
        t = tag()
        ctx = await create_context(s.client, t)
        socket = await s.socket()
        op = await socket.subscribe(ctx["id"], after_version=0)
        await append(s.client, ctx["id"], [user("before")])
        assert [m["content"] for m in await socket.messages(op, 1)] == ["before"]

        connections = listener.connections
        listener.backoff_min = 1.0  # time to append while no one listens
        try:
            await kill_listener(app, listener)
            await append(s.client, ctx["id"], [user("during")])
            assert listener.connections == connections, "appended while not listening"
            # Announced by no one: the reconnect makes every subscriber catch up.
            assert [m["content"] for m in await socket.messages(op, 1)] == ["during"]
            assert listener.connections == connections + 1
        finally:
            listener.backoff_min = 0.05
        await append(s.client, ctx["id"], [user("after")])
        assert [m["content"] for m in await socket.messages(op, 1)] == ["after"]


async def test_the_listener_listens_only_while_someone_subscribes(database_url: str) -> None:
    """Every append's NOTIFY wakes every listening backend: a process without subscribers
    does not LISTEN. The first subscription starts it (and a re-read, for what committed
    before); the keepalive tick after the last one ends stops it."""
    app = create_app(test_settings(database_url=database_url, subscription_recheck_interval=0.2))
    async with running(app) as s:
        realtime: Realtime = app.state.realtime
        listener = realtime.listener
        assert listener is not None
        assert listener.connected
        ctx = await create_context(s.client, tag())

        async def unheard(text: str) -> None:
            """Append; once a LISTEN of the test's own has the notification, the app's
            listener has had time to get it too, were it listening."""
            own = await asyncpg.connect(listener.dsn)
            heard = asyncio.Event()
            await own.add_listener(CHANNEL, lambda *_: heard.set())
            try:
                before = s.hub.notifications
                await append(s.client, ctx["id"], [user(text)])
                await asyncio.wait_for(heard.wait(), TIMEOUT)
                await asyncio.sleep(0.1)
                assert s.hub.notifications == before
            finally:
                await own.close()

        await unheard("before anyone subscribes")
        assert (listener.listening, listener.listens) == (False, 0)

        async with s.connect() as socket:
            op = await socket.subscribe(ctx["id"], after_version=0)
            await wait_until(lambda: listener.listening, "LISTEN for the first subscriber")
            assert listener.listens == 1
            before = s.hub.notifications
            await append(s.client, ctx["id"], [user("heard")])
            assert [m["content"] for m in await socket.messages(op, 2)] == [
                "before anyone subscribes",
                "heard",
            ]
            await wait_until(lambda: s.hub.notifications > before, "announced by NOTIFY")

        await wait_until(lambda: not s.hub.watched, "the subscription ended")
        await wait_until(lambda: not listener.listening, "UNLISTEN at the next tick")
        await unheard("after the last one left")
        assert listener.connections == 1  # one connection throughout


async def kill_listener(app: FastAPI, listener: Listener) -> None:
    connector: EngineConnector = app.state.connector
    async with connector.transaction() as conn:
        killed = (
            await conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE pid = :pid AND application_name = 'ctxgraph-listener'"
                ),
                {"pid": listener.backend_pid},
            )
        ).scalar_one()
    assert killed is True


async def test_one_read_serves_every_subscriber_of_a_context(app: FastAPI) -> None:
    """A notification wakes many subscribers of one context; they share one history read."""
    async with running(app, lifespan=False) as s:
        t = tag()
        ctx = await create_context(s.client, t, texts(1, t))
        cid = uuid.UUID(ctx["id"])
        sockets = [await s.socket() for _ in range(4)]
        ops = [(sock, await sock.subscribe(ctx["id"], after_version=1)) for sock in sockets]
        ops += [(sock, await sock.subscribe(ctx["id"], after_version=1)) for sock in sockets]
        await wait_until(
            lambda: len(s.hub.watches(cid)) == 8 and all(w.waiting for w in s.hub.watches(cid)),
            "every subscriber is idle",
        )
        reads: list[str] = []
        connector: EngineConnector = app.state.connector
        undo = count_statements(
            connector.engine, lambda sql: reads.append(sql) if "WITH RECURSIVE" in sql else None
        )
        try:
            await append(s.client, ctx["id"], [user("shared")])
            for sock, op in ops:
                assert [m["version"] for m in await sock.messages(op, 1)] == [2]
        finally:
            undo()
        assert len(reads) == 1, reads


async def test_a_subscriber_survives_a_dead_pooled_connection(
    database_url: str, engine: AsyncEngine, live_client: GraphQLClient
) -> None:
    """The read after a wake-up meets a killed pooled connection: the subscriber retries."""
    app = create_app(
        test_settings(
            database_url=database_url,
            pool_size=1,
            pool_max_overflow=0,
            subscription_recheck_interval=NEVER,
        )
    )
    async with running(app) as s:
        ctx = await create_context(live_client, tag())  # appends go through another pool
        socket = await s.socket()
        op = await socket.subscribe(ctx["id"], after_version=0)
        await append(live_client, ctx["id"], [user("one")])
        assert [m["content"] for m in await socket.messages(op, 1)] == ["one"]

        connector: EngineConnector = app.state.connector
        async with connector.read() as conn:  # the pool's only connection
            pid = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
        async with engine.connect() as conn:
            killed = await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            assert killed.scalar_one() is True
        await append(live_client, ctx["id"], [user("two")])
        assert [m["content"] for m in await socket.messages(op, 1)] == ["two"]


@pytest.mark.parametrize(
    ("url", "dsn"),
    [
        ("postgres://u:p@db:5432/app", "postgresql://u:p@db:5432/app"),
        (
            "postgresql+asyncpg://u:p@db/app?ssl=require",
            "postgresql://u:p@db/app?sslmode=require",
        ),
        ("postgresql://u@db/app?sslmode=verify-full", "postgresql://u@db/app?sslmode=verify-full"),
        (
            "postgresql+asyncpg://postgres:@/postgres?host=/tmp/pg",
            "postgresql://postgres:@/postgres?host=/tmp/pg",
        ),
    ],
)
def test_listener_dsn_is_libpq_style(url: str, dsn: str) -> None:
    """asyncpg.connect takes libpq's sslmode, not SQLAlchemy's ssl."""
    assert listener_dsn(url) == dsn
