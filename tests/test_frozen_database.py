"""A database that stops answering: every wait on it is bounded client-side.

A frozen server (SIGSTOP of the postmaster and all its backends: what a stalled VM,
a network partition without resets or a saturated disk looks like from the client)
accepts connections into its listen backlog and never answers, and never enforces its
own statement_timeout. These tests freeze a separate embedded server (never the test
session's), run the real app on it (uvicorn in-process, its lifespan, a real pool, the
realtime listener, the embeddings worker) and check with a monotonic clock around real
requests that everything answers within the configured bound, with 503 /
SERVICE_UNAVAILABLE, and that everything works again after SIGCONT without a restart.

The bound is set small (CTXGRAPH_DATABASE_TIMEOUT=2) so the tests are quick; `SLACK`
allows for scheduling on a loaded machine. It is a correctness bound, not a benchmark.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI
from httpx_ws import AsyncWebSocketSession, aconnect_ws
from pydantic import ValidationError

from api.app import create_app
from api.db import EmbeddedPostgres
from api.migrate import upgrade_to_head
from api.settings import Settings
from tests.conftest import test_settings
from tests.test_embeddings import FakeProvider

pytestmark = pytest.mark.slow

BOUND = 2.0
"""CTXGRAPH_DATABASE_TIMEOUT of the app under test, seconds."""
SLACK = 1.0
"""What a loaded test machine may add to it (event loop and process scheduling)."""


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


class Server:
    """A separate embedded PostgreSQL that the tests freeze and thaw."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self.embedded = EmbeddedPostgres(pgdata)
        self.url = ""
        self.stopped: list[int] = []

    @property
    def postmaster(self) -> int:
        return int((self.pgdata / "postmaster.pid").read_text().split()[0])

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """SIGSTOP the postmaster, then every process it forked; SIGCONT them all on
        the way out, whatever happens in the block."""
        try:
            postmaster = self.postmaster
            self.stopped.append(postmaster)
            os.kill(postmaster, signal.SIGSTOP)  # first: a stopped postmaster forks no one
            children = _children(postmaster)
            assert children, "the postmaster's backends and workers"
            self.stopped += children
            _signal_all(children, signal.SIGSTOP)
            yield
        finally:
            self.thaw()

    def thaw(self) -> None:
        _signal_all(self.stopped, signal.SIGCONT)
        self.stopped.clear()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    # Not under pytest's basetemp: a pytest session starting meanwhile (another
    # checkout's) takes the other users' access to /tmp/pytest-of-root away, and the
    # server runs as its own user.
    with tempfile.TemporaryDirectory(prefix="ctxgraph-frozen-", ignore_cleanup_errors=True) as d:
        srv = Server(Path(d) / "pgdata")
        srv.url = srv.embedded.start()
        try:
            upgrade_to_head(srv.url)
            yield srv
        finally:
            srv.thaw()  # never leave a stopped postgres behind
            srv.embedded.stop()


def settings_for(server: Server, **overrides: Any) -> Settings:
    return test_settings(
        database_url=server.url,
        database_timeout=BOUND,
        statement_timeout=BOUND * 0.75,
        pool_size=2,
        pool_max_overflow=2,
        subscription_recheck_interval=0.5,
        access_log=False,
        **overrides,
    )


async def until(condition: Callable[[], bool], what: str, within: float) -> float:
    """Wait until `condition()` holds (checked every 20 ms); the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.02)  # polling interval of a state the app exposes
    return time.monotonic() - started


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """The app under uvicorn on a real socket of 127.0.0.1, lifespan included."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await until(lambda: server.started or task.done(), "uvicorn started", 30)
        if task.done():
            task.result()
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    provider = FakeProvider()
    await provider.start()
    yield provider
    await provider.stop()


READ_PAGE = "query($id: ID!) { context(id: $id) { id messages(last: 10) { nodes { content } } } }"
READ_LIST = "{ contexts(first: 5) { totalCount nodes { id name totalTokens } } }"
APPEND = (
    "mutation($id: ID!, $m: [MessageInput!]!) { appendMessages(contextId: $id, messages: $m)"
    " { messages { version } } }"
)
CREATE = 'mutation { createContext(name: "frozen") { id } }'


class Timed:
    """Real requests over a real socket, each timed with a monotonic clock."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def post(self, query: str, **variables: Any) -> tuple[float, httpx.Response]:
        started = time.monotonic()
        response = await self.http.post("/graphql", json={"query": query, "variables": variables})
        return time.monotonic() - started, response

    async def ready(self) -> tuple[float, httpx.Response]:
        started = time.monotonic()
        response = await self.http.get("/readyz")
        return time.monotonic() - started, response

    def wave(self, context_id: str) -> list[Any]:
        """Every kind of use of the database a request makes: a planned read (asyncpg
        directly), reads through SQLAlchemy, an append alone (group commit), an append
        with client ids and a createContext (transactions), and /readyz."""
        return [
            *(self.post(READ_PAGE, id=context_id) for _ in range(3)),
            *(self.post(READ_LIST) for _ in range(3)),
            self.post(APPEND, id=context_id, m=[{"role": "USER", "content": "a"}]),
            self.post(APPEND, id=context_id, m=[{"role": "USER", "content": "b", "tokenCount": 1}]),
            self.post(
                APPEND,
                id=context_id,
                m=[{"role": "USER", "content": "c", "id": str(uuid.uuid4())}],
            ),
            self.post(CREATE),
            self.ready(),
        ]


def assert_unavailable_in_time(answers: list[tuple[float, httpx.Response]]) -> None:
    *graphql, (ready_s, ready) = answers
    for elapsed, response in graphql:
        assert elapsed <= BOUND + SLACK, (elapsed, response.text)
        assert response.status_code == 503, response.text
        (error,) = response.json()["errors"]
        assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE", error
        assert error["message"].startswith("The database did not answer"), error
    assert ready_s < 2.0, ready_s  # /readyz answers within 2 s, whatever the database does
    assert ready.status_code == 503, ready.text


def assert_answered(answers: list[tuple[float, httpx.Response]]) -> None:
    *graphql, (_, ready) = answers
    for _, response in graphql:
        assert response.status_code == 200, response.text
        assert "errors" not in response.json(), response.text
    assert ready.status_code == 200, ready.text


async def test_requests_and_readyz_fail_within_the_bound_and_recover(server: Server) -> None:
    app = create_app(settings_for(server))
    async with serving(app) as base:
        # no request may outlive the bound by much: this cuts a hanging one short
        timeout = httpx.Timeout(BOUND + SLACK + 5)
        async with httpx.AsyncClient(base_url=base, timeout=timeout) as http:
            timed = Timed(http)
            _, created = await timed.post(CREATE)
            context_id = created.json()["data"]["createContext"]["id"]
            # the pool holds connections, so the first wave meets statements that hang,
            # new connections that hang and a pool to wait for
            assert_answered(await asyncio.gather(*timed.wave(context_id)))

            with server.frozen():
                assert_unavailable_in_time(await asyncio.gather(*timed.wave(context_id)))
                # again: the connections that timed out were discarded, new ones hang
                assert_unavailable_in_time(await asyncio.gather(*timed.wave(context_id)))

            # nothing restarted: the same requests succeed at once
            assert_answered(await asyncio.gather(*timed.wave(context_id)))
            assert_answered(await asyncio.gather(*timed.wave(context_id)))


async def test_listener_and_embeddings_worker_notice_and_recover(
    server: Server, fake: FakeProvider
) -> None:
    settings = settings_for(server, embeddings_url=fake.url, embeddings_poll_interval=0.2)
    app = create_app(settings)
    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        timed = Timed(http)
        _, created = await timed.post(CREATE)
        context_id = created.json()["data"]["createContext"]["id"]
        listener = app.state.realtime.listener
        worker = app.state.embedding_worker
        subscription = (
            "subscription($id: ID!) { messageAppended(contextId: $id, afterVersion: 0)"
            " { version content } }"
        )
        ws: AsyncWebSocketSession
        protocols = ["graphql-transport-ws"]
        async with aconnect_ws(f"{base}/graphql", http, subprotocols=protocols) as ws:
            await ws.send_text(json.dumps({"type": "connection_init"}))
            assert json.loads(await ws.receive_text())["type"] == "connection_ack"
            await ws.send_text(
                json.dumps(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {"query": subscription, "variables": {"id": context_id}},
                    }
                )
            )
            # the subscription is live (its first read is done) once it hears the first
            # message (replayed from version 0 if appended before it began)
            _, before = await timed.post(
                APPEND, id=context_id, m=[{"role": "USER", "content": "before the freeze"}]
            )
            assert "errors" not in before.json(), before.text
            heard = json.loads(await asyncio.wait_for(ws.receive_text(), 30))
            assert heard["payload"]["data"]["messageAppended"]["content"] == "before the freeze"
            assert listener.listening
            connections = listener.connections
            failures = worker.failures

            with server.frozen():
                # the keepalive (every 0.5 s here) finds the server silent within its
                # timeout and drops the connection
                noticed = await until(lambda: not listener.connected, "the listener", 30)
                assert noticed <= 0.5 + 0.5 + SLACK
                # the worker's next look for work (every 0.2 s) fails: each statement is
                # cut at the bound, the connection is discarded (a graceful close that
                # SQLAlchemy gives 2 s at most), and it backs off
                failed = await until(lambda: worker.failures > failures, "the worker", 30)
                assert failed <= 0.2 + BOUND + 2 + SLACK

            # the listener reconnects by itself, and subscribers hear appends again
            await until(lambda: listener.connections > connections, "a new connection", 30)
            await until(lambda: listener.listening, "LISTEN again", 30)
            _, appended = await timed.post(
                APPEND, id=context_id, m=[{"role": "USER", "content": "after the thaw"}]
            )
            assert "errors" not in appended.json(), appended.text
            heard = json.loads(await asyncio.wait_for(ws.receive_text(), 30))
            assert heard["payload"]["data"]["messageAppended"]["content"] == "after the thaw"

        # and the worker embeds again what is appended without an embedding
        read = (
            "query($id: ID!) { context(id: $id) { messages(last: 1) { nodes { hasEmbedding } } } }"
        )

        async def embedded() -> bool:
            _, r = await timed.post(read, id=context_id)
            return bool(r.json()["data"]["context"]["messages"]["nodes"][0]["hasEmbedding"])

        started = time.monotonic()
        while not await embedded():
            assert time.monotonic() - started < 30, "the worker embeds again"
            await asyncio.sleep(0.1)  # polling interval of the worker's result


def test_the_statement_timeout_must_stay_below_the_database_timeout() -> None:
    # a slow statement is reported as slow only if the server cancels it first
    with pytest.raises(ValidationError, match="CTXGRAPH_STATEMENT_TIMEOUT"):
        test_settings(statement_timeout=5, database_timeout=5)
    assert test_settings(statement_timeout=0, database_timeout=1).statement_timeout == 0
    defaults = test_settings()
    assert 0 < defaults.statement_timeout < defaults.database_timeout <= 5
