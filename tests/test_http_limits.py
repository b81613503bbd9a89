"""Limits on what one client may hold of a server process (api/http_protocol.py), over
real sockets against `ctxgraph serve`: the request head's size, the time a head or a
body may take, and the connections a process holds.

The servers run with small limits and timeouts. A client that is closed is seen closed
(EOF) within a bound; the lower bound on the time shows it was the timeout that closed
it. Slow clients trickle their bytes with sleeps: the slowness is what is tested.
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from api.listener import OPEN_FILES_RESERVE
from tests.dbutil import REPO, running_server
from tests.helpers import append, create_context, user
from tests.test_realtime_multiprocess import client, subscriber

pytestmark = pytest.mark.slow

MAX_HEAD_BYTES = 4096
MAX_HEADER_COUNT = 20
HEAD_TIMEOUT = 1.0
BODY_TIMEOUT = 1.5
LIMITS = {
    "CTXGRAPH_MAX_HEAD_BYTES": str(MAX_HEAD_BYTES),
    "CTXGRAPH_MAX_HEADER_COUNT": str(MAX_HEADER_COUNT),
    "CTXGRAPH_HEAD_TIMEOUT": str(HEAD_TIMEOUT),
    "CTXGRAPH_BODY_TIMEOUT": str(BODY_TIMEOUT),
}
SLACK = 5.0
"""Seconds a close may come after its timeout on a busy machine (the upper bound)."""

QUERY = b'{"query":"{ contexts(first: 1) { totalCount } }"}'


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[str]:
    with running_server({"DATABASE_URL": database_url, **LIMITS}) as base:
        yield base


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, Any]:
        assert self.headers["content-type"] == "application/json", self.headers
        (error,) = json.loads(self.body)["errors"]
        assert isinstance(error, dict)
        return error


@dataclass
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self) -> Response:
        async with asyncio.timeout(SLACK):
            head = await self.reader.readuntil(b"\r\n\r\n")
            status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
            headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return Response(int(status_line.split()[1]), headers, body)

    async def closed(self, within: float) -> bytes:
        """What the server sent until it closed the connection, which must be within
        `within` seconds."""
        received = b""
        async with asyncio.timeout(within):
            while chunk := await self.reader.read(65536):
                received += chunk
        return received


@asynccontextmanager
async def connect(base: str) -> AsyncIterator[Connection]:
    url = urlsplit(base)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        yield Connection(reader, writer)
    finally:
        writer.close()
        with suppress(OSError):
            await writer.wait_closed()


def parse(received: bytes) -> Response:
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    assert len(body) == int(headers["content-length"]), received
    return Response(int(status_line.split()[1]), headers, body)


def head_of(
    size: int, *, method: bytes = b"GET", path: bytes = b"/healthz", extra: bytes = b""
) -> bytes:
    """A request head of exactly `size` bytes (with its blank line), padded by a header."""
    start = b"%s %s HTTP/1.1\r\nhost: x\r\n%s" % (method, path, extra)
    padding = size - len(start) - len(b"x-pad: \r\n\r\n")
    head = start + b"x-pad: " + b"a" * padding + b"\r\n\r\n"
    assert len(head) == size
    return head


def post_head(length: int, size: int | None = None) -> bytes:
    extra = b"content-type: application/json\r\ncontent-length: %d\r\n" % length
    if size is None:
        return b"POST /graphql HTTP/1.1\r\nhost: x\r\n" + extra + b"\r\n"
    return head_of(size, method=b"POST", path=b"/graphql", extra=extra)


# --- the head's size ------------------------------------------------------------------


async def test_a_head_over_the_limit_is_refused_before_its_end(server: str) -> None:
    """20 MB of headers were read and parsed: now the answer comes once the limit is
    passed, while the head has not ended, and the connection is closed."""
    async with connect(server) as conn:
        await conn.send(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        await conn.send(b"x-filler: " + b"a" * 100 + b"\r\n")  # 1 line
        lines = b"".join(b"x-filler-%d: %s\r\n" % (i, b"a" * 100) for i in range(200))
        await conn.send(lines)  # about 23 KiB, the head still open
        answer = parse(await conn.closed(within=SLACK))
    assert answer.status == 431
    assert answer.headers["connection"] == "close"
    error = answer.error()
    assert error["extensions"] == {"code": "BAD_USER_INPUT"}
    assert "CTXGRAPH_MAX_HEAD_BYTES" in error["message"]


async def test_a_head_at_the_limit_is_served_one_byte_more_is_not(server: str) -> None:
    async with connect(server) as conn:
        await conn.send(head_of(MAX_HEAD_BYTES))
        assert (await conn.response()).status == 200
        # a head at the limit with its body in the same write
        await conn.send(post_head(len(QUERY), size=MAX_HEAD_BYTES) + QUERY)
        answer = await conn.response()
        assert answer.status == 200
        assert json.loads(answer.body)["data"]["contexts"]["totalCount"] >= 0
        # and one whose end is the byte past the limit
        await conn.send(head_of(MAX_HEAD_BYTES + 1))
        refused = parse(await conn.closed(within=SLACK))
    assert refused.status == 431
    assert refused.error()["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize("count", [MAX_HEADER_COUNT, MAX_HEADER_COUNT + 1])
async def test_header_lines_are_counted(server: str, count: int) -> None:
    lines = b"".join(b"x-h%d: v\r\n" % i for i in range(count - 1))  # host is one more
    async with connect(server) as conn:
        await conn.send(b"GET /healthz HTTP/1.1\r\nhost: x\r\n" + lines + b"\r\n")
        answer = await conn.response()
        if count <= MAX_HEADER_COUNT:
            assert answer.status == 200
            return
        assert answer.status == 431
        assert "CTXGRAPH_MAX_HEADER_COUNT" in answer.error()["message"]
        assert await conn.closed(within=SLACK) == b""


async def test_a_websocket_upgrade_with_too_many_header_lines_is_refused(server: str) -> None:
    upgrade = (
        b"GET /graphql HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n"
        b"sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"sec-websocket-protocol: graphql-transport-ws\r\n"
    )
    lines = b"".join(b"x-h%d: v\r\n" % i for i in range(MAX_HEADER_COUNT))
    async with connect(server) as conn:
        await conn.send(upgrade + lines + b"\r\n")
        answer = parse(await conn.closed(within=SLACK))
    assert answer.status == 431
    assert "CTXGRAPH_MAX_HEADER_COUNT" in answer.error()["message"]


# --- timeouts ---------------------------------------------------------------------------


async def test_a_partial_head_is_closed_after_the_head_timeout(server: str) -> None:
    async with connect(server) as conn:
        await conn.send(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        started = time.monotonic()
        answer = parse(await conn.closed(within=HEAD_TIMEOUT + SLACK))
        elapsed = time.monotonic() - started
    assert elapsed >= HEAD_TIMEOUT - 0.1
    assert answer.status == 408
    assert "CTXGRAPH_HEAD_TIMEOUT" in answer.error()["message"]


async def test_a_silent_connection_is_closed_after_the_head_timeout(server: str) -> None:
    async with connect(server) as conn:
        started = time.monotonic()
        assert await conn.closed(within=HEAD_TIMEOUT + SLACK) == b""
        assert time.monotonic() - started >= HEAD_TIMEOUT - 0.1


async def trickle(conn: Connection, data: bytes, every: float) -> None:
    """Send `data` a byte at a time, `every` seconds apart, until done or refused."""
    with suppress(OSError):
        for i in range(len(data)):
            await conn.send(data[i : i + 1])
            await asyncio.sleep(every)


async def test_a_head_trickled_a_byte_at_a_time_is_closed(server: str) -> None:
    """Each byte comes well within the head timeout: it is a deadline for the whole
    head, not an idle timer."""
    async with connect(server) as conn:
        started = time.monotonic()
        sender = asyncio.create_task(
            trickle(conn, b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: " + b"a" * 1000, 0.2)
        )
        try:
            answer = parse(await conn.closed(within=HEAD_TIMEOUT + SLACK))
        finally:
            sender.cancel()
        elapsed = time.monotonic() - started
    assert elapsed >= HEAD_TIMEOUT - 0.1
    assert answer.status == 408


async def test_a_partial_body_is_closed_after_the_body_timeout(server: str) -> None:
    async with connect(server) as conn:
        await conn.send(post_head(len(QUERY)) + QUERY[:10])
        started = time.monotonic()
        answer = parse(await conn.closed(within=BODY_TIMEOUT + SLACK))
        elapsed = time.monotonic() - started
    assert elapsed >= BODY_TIMEOUT - 0.1
    assert answer.status == 408
    assert "CTXGRAPH_BODY_TIMEOUT" in answer.error()["message"]


async def test_a_body_trickled_a_byte_at_a_time_is_closed(server: str) -> None:
    async with connect(server) as conn:
        await conn.send(post_head(len(QUERY)))
        started = time.monotonic()
        sender = asyncio.create_task(trickle(conn, QUERY, 0.2))
        try:
            received = await conn.closed(within=BODY_TIMEOUT + SLACK)
        finally:
            sender.cancel()
        elapsed = time.monotonic() - started
    assert elapsed >= BODY_TIMEOUT - 0.1
    assert parse(received).status == 408


async def test_requests_in_pieces_within_the_timeouts_are_served(server: str) -> None:
    """Keep-alive, a head and a body that come in several writes, pipelining: as before."""
    async with connect(server) as conn:
        for _ in range(2):
            await conn.send(post_head(len(QUERY)) + QUERY)
            assert (await conn.response()).status == 200
        head = post_head(len(QUERY))
        for piece in (head[:10], head[10:], QUERY[:10], QUERY[10:]):
            await conn.send(piece)
            await asyncio.sleep(0.05)
        answer = await conn.response()
        assert answer.status == 200
        assert json.loads(answer.body)["data"]["contexts"]["totalCount"] >= 0
        await conn.send((post_head(len(QUERY)) + QUERY) * 3)
        assert [(await conn.response()).status for _ in range(3)] == [200] * 3


async def test_subscriptions_outlive_the_timeouts(server: str) -> None:
    """An upgraded WebSocket leaves the HTTP protocol: neither timeout applies to it."""
    async with client(server) as http:
        ctx = await create_context(http, f"limits-{uuid.uuid4().hex[:8]}", [user("m0")])
        async with subscriber(server) as ws, connect(server) as head, connect(server) as body:
            op = await ws.subscribe(ctx["id"], after_version=1)
            await head.send(b"GET /healthz HTTP/1.1\r\n")
            await body.send(post_head(len(QUERY)) + QUERY[:10])
            # both timeouts have passed once these two are closed
            assert parse(await head.closed(within=HEAD_TIMEOUT + SLACK)).status == 408
            assert parse(await body.closed(within=BODY_TIMEOUT + SLACK)).status == 408
            await append(http, ctx["id"], [user("after the timeouts")])
            (message,) = await ws.messages(op, 1)
            assert message["content"] == "after the timeouts"


async def test_cuts_are_counted_in_metrics(server: str) -> None:
    async with connect(server) as conn:
        await conn.send(head_of(MAX_HEAD_BYTES + 1))
        assert parse(await conn.closed(within=SLACK)).status == 431
    async with httpx.AsyncClient(base_url=server) as http:
        text = (await http.get("/metrics")).text
    cut = re.search(
        r'^ctxgraph_http_requests_cut_total\{reason="head_too_large"\} (\S+)', text, re.M
    )
    assert cut is not None
    assert float(cut[1]) >= 1
    assert re.search(r"^ctxgraph_http_connections_max \d", text, re.M)
    opened = re.search(r"^ctxgraph_http_connections (\S+)", text, re.M)
    assert opened is not None
    assert float(opened[1]) >= 1


# --- the connection cap -------------------------------------------------------------------

MAX_CONNECTIONS = 4


async def test_connections_over_the_cap_get_503_those_under_it_are_served(
    database_url: str,
) -> None:
    env = {"DATABASE_URL": database_url, "CTXGRAPH_MAX_CONNECTIONS": str(MAX_CONNECTIONS)}
    with running_server(env) as base:
        async with (
            connect(base) as c1,
            connect(base) as c2,
            connect(base) as c3,
            connect(base) as c4,
        ):
            held = [c1, c2, c3, c4]
            for conn in held:  # answered: the server holds each of them now
                await conn.send(head_of(200))
                assert (await conn.response()).status == 200
            async with connect(base) as over:
                await over.send(head_of(200))
                refused = parse(await over.closed(within=SLACK))
            assert refused.status == 503
            assert refused.headers["retry-after"] == "1"
            assert refused.error()["extensions"]["code"] == "SERVICE_UNAVAILABLE"
            assert "CTXGRAPH_MAX_CONNECTIONS" in refused.error()["message"]
            for conn in held:
                await conn.send(head_of(200))
                assert (await conn.response()).status == 200
            # one of them goes: a new connection takes its place
            await c4.send(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            assert (await c4.response()).status == 200
            assert await c4.closed(within=SLACK) == b""
            statuses = []
            for _ in range(20):  # the server may see the new connection before c4's end
                async with connect(base) as new:
                    await new.send(head_of(200))
                    statuses.append((await new.response()).status)
                if statuses[-1] == 200:
                    break
            assert statuses[-1] == 200, statuses


# --- every worker ---------------------------------------------------------------------------


async def test_every_worker_process_applies_the_limits(database_url: str) -> None:
    """uvicorn spawns its workers; each reads the limits from the environment."""
    env = {"DATABASE_URL": database_url, **LIMITS}
    with running_server(env, args=["--workers", "2"]) as base:
        for _ in range(8):  # the kernel spreads connections over the workers' sockets
            async with connect(base) as conn:
                await conn.send(head_of(MAX_HEAD_BYTES + 1))
                assert parse(await conn.closed(within=SLACK)).status == 431


# --- the open-files limit ---------------------------------------------------------------


def _allowed_under(soft: int, hard: int, connections: int) -> tuple[int, int]:
    """allow_open_files(connections) in a process started with these limits: what it
    returns, and the soft limit it leaves."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    script = (
        "import resource; from api.listener import allow_open_files; "
        f"print(allow_open_files({connections}), resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        preexec_fn=limit,
        capture_output=True,
        text=True,
        check=True,
    )
    allowed, left = done.stdout.split()
    return int(allowed), int(left)


def test_the_open_files_limit_is_raised_to_fit_the_connections() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 4096 + OPEN_FILES_RESERVE:
        pytest.skip(f"the hard open-files limit here is {hard}")
    assert _allowed_under(1024, hard, 4096) == (4096, 4096 + OPEN_FILES_RESERVE)


def test_the_connection_cap_is_lowered_to_what_the_open_files_limit_fits() -> None:
    assert _allowed_under(1024, 1024, 4096) == (1024 - OPEN_FILES_RESERVE, 1024)
