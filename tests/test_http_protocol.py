"""The server's HTTP protocol (api/http_protocol.py): uvicorn's httptools protocol
with a response's head written in the same socket write as its body, and what of
uvicorn the adapter relies on.

Most tests run the protocol as uvicorn runs it, on a transport that records each write;
one counts the server's write system calls on a real socket. Its limits on heads, slow
requests and connections are tested over real sockets in tests/test_http_limits.py.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import subprocess
import tomllib
from collections.abc import AsyncIterator
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from packaging.requirements import Requirement
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from api.http_protocol import CtxgraphProtocol, ResponseWriter
from tests.dbutil import REPO, running_server


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 40000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass


async def serve_one(
    app: Any,
    request: bytes,
    protocol: type[HttpToolsProtocol] = CtxgraphProtocol,
    transport: RecordingTransport | None = None,
) -> RecordingTransport:
    """One request through the protocol; the transport once its task is done."""
    config = Config(app=app, http=protocol, log_level="critical", lifespan="off")
    state = ServerState()
    server = protocol(config=config, server_state=state, app_state={})
    transport = transport or RecordingTransport()
    server.connection_made(transport)
    server.data_received(request)
    while state.tasks:
        await asyncio.gather(*state.tasks, return_exceptions=True)
    return transport


def post(body: bytes = b"{}") -> bytes:
    return (
        b"POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )


async def answer(scope: Scope, receive: Receive, send: Send) -> None:
    await Response(b'{"data":{}}', media_type="application/json")(scope, receive, send)


async def test_head_and_body_in_one_write() -> None:
    transport = await serve_one(answer, post())
    assert len(transport.writes) == 1
    (written,) = transport.writes
    assert written.startswith(b"HTTP/1.1 200 OK\r\n")
    head, _, body = written.partition(b"\r\n\r\n")
    assert b"content-length: 11" in head
    assert body == b'{"data":{}}'
    assert not transport.closed


async def test_the_writer_lets_go_of_the_cycle() -> None:
    """The cycle holds its writer; once the head is written the writer no longer holds
    the cycle, so requests leave no reference cycles for the garbage collector."""
    config = Config(app=answer, http=CtxgraphProtocol, log_level="critical", lifespan="off")
    state = ServerState()
    server = CtxgraphProtocol(config=config, server_state=state, app_state={})
    server.connection_made(RecordingTransport())
    server.data_received(post())
    writer = server.cycle.transport
    assert isinstance(writer, ResponseWriter)
    assert writer.cycle is server.cycle  # until the response starts
    while state.tasks:
        await asyncio.gather(*state.tasks)
    assert writer.cycle is None


async def test_uvicorns_own_protocol_writes_twice() -> None:
    """What the module is for: without it the head is a write of its own."""
    transport = await serve_one(answer, post(), protocol=HttpToolsProtocol)
    assert len(transport.writes) == 2
    assert transport.writes[0].endswith(b"\r\n\r\n")
    assert transport.writes[1] == b'{"data":{}}'


async def test_body_in_several_messages() -> None:
    async def parts(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"6")]}
        )
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"def"})

    transport = await serve_one(parts, post())
    assert len(transport.writes) == 2
    assert transport.writes[0].endswith(b"\r\n\r\nabc")
    assert transport.writes[1] == b"def"


async def test_streamed_response_writes_its_head_at_once() -> None:
    """No Content-Length (chunked: multipart subscriptions, SSE): the client gets the
    head before the first event, however long that takes."""
    transport = RecordingTransport()
    seen_before_first_chunk: list[int] = []

    async def events() -> AsyncIterator[bytes]:
        seen_before_first_chunk.append(len(transport.writes))
        yield b"event"

    async def stream(scope: Scope, receive: Receive, send: Send) -> None:
        await StreamingResponse(events(), media_type="text/event-stream")(scope, receive, send)

    await serve_one(stream, post(), transport=transport)
    assert seen_before_first_chunk == [1]  # the head, already written
    assert b"transfer-encoding: chunked" in transport.writes[0]
    assert transport.writes[1:] == [b"5\r\nevent\r\n", b"0\r\n\r\n"]


@pytest.mark.parametrize("method", [b"HEAD", b"GET"])
async def test_no_body_to_carry_the_head(method: bytes) -> None:
    """HEAD writes no body, an empty body writes nothing: the head goes out alone."""

    async def empty(scope: Scope, receive: Receive, send: Send) -> None:
        content = b"ignored for HEAD" if scope["method"] == "HEAD" else b""
        await Response(content, media_type="text/plain")(scope, receive, send)

    request = b"%s /healthz HTTP/1.1\r\nhost: x\r\n\r\n" % method
    transport = await serve_one(empty, request)
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[0].endswith(b"\r\n\r\n")
    assert b"".join(transport.writes[1:]) == b""
    assert not transport.closed


async def test_a_response_abandoned_after_its_start_closes_the_connection() -> None:
    async def fails(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"6")]}
        )
        raise RuntimeError("boom")

    transport = await serve_one(fails, post())
    assert transport.closed
    assert transport.writes == []


async def test_pipelined_requests_each_in_one_write() -> None:
    transport = await serve_one(answer, post() + post())
    assert len(transport.writes) == 2
    assert all(w.endswith(b'\r\n\r\n{"data":{}}') for w in transport.writes)


# --- what the adapter relies on in uvicorn ------------------------------------------------

# The methods of HttpToolsProtocol it overrides or calls, with their parameters.
PROTOCOL_METHODS = {
    "__init__": ["self", "config", "server_state", "app_state", "_loop"],
    "connection_made": ["self", "transport"],
    "connection_lost": ["self", "exc"],
    "data_received": ["self", "data"],
    "on_message_begin": ["self"],
    "on_headers_complete": ["self"],
    "on_message_complete": ["self"],
    "_unset_keepalive_if_required": ["self"],
    "send_400_response": ["self", "msg"],
}


def test_uvicorn_is_declared_with_a_bounded_range_that_holds_the_installed_one() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (uvicorn,) = [
        Requirement(d) for d in project["dependencies"] if Requirement(d).name == "uvicorn"
    ]
    assert any(spec.operator == "<" for spec in uvicorn.specifier), uvicorn
    assert uvicorn.specifier.contains(version("uvicorn")), (uvicorn, version("uvicorn"))


@pytest.mark.parametrize(("name", "parameters"), PROTOCOL_METHODS.items())
def test_the_protocol_methods_the_adapter_uses(name: str, parameters: list[str]) -> None:
    method = getattr(HttpToolsProtocol, name)
    assert list(inspect.signature(method).parameters) == parameters


async def test_the_state_the_adapter_reads() -> None:
    """Attributes of uvicorn's protocol, its cycle and its flow control that the adapter
    reads or replaces, as uvicorn sets them while it serves a request."""
    assert {408, 431, 503} <= STATUS_LINE.keys()
    config = Config(app=answer, http=CtxgraphProtocol, log_level="critical", lifespan="off")
    state = ServerState()
    server = CtxgraphProtocol(config=config, server_state=state, app_state={})
    assert server.app is config.loaded_app  # swapped for one answer of too many headers
    server.connection_made(RecordingTransport())
    assert server.connections is state.connections
    assert server in state.connections
    assert isinstance(server.flow, FlowControl)
    assert server.flow.read_paused is False
    assert server.timeout_keep_alive_task is None
    server.data_received(post())
    cycle = server.cycle
    assert isinstance(cycle, RequestResponseCycle)
    assert isinstance(cycle.transport, ResponseWriter)  # replaced before the cycle writes
    assert server.headers is cycle.scope["headers"]
    assert (cycle.response_started, cycle.response_complete) == (False, False)
    assert (cycle.chunked_encoding, cycle.expected_content_length) == (None, 0)
    while state.tasks:
        await asyncio.gather(*state.tasks)
    assert (cycle.response_started, cycle.response_complete) == (True, True)
    assert cycle.chunked_encoding is False


def _writes(pid: int) -> int:
    """The write system calls of a process so far (write/writev: uvloop's sockets)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    raise AssertionError("no syscw in /proc/PID/io")


def _read_response(conn: socket.socket) -> bytes:
    received = b""
    while b"\r\n\r\n" not in received:
        received += conn.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[
            1
        ]
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head


@pytest.mark.slow
def test_head_and_body_in_one_write_on_a_real_socket(database_url: str) -> None:
    """The server writes each answer with one system call (uvicorn alone: two)."""
    processes: list[subprocess.Popen[bytes]] = []
    # WARNING: no access log lines, which are writes too
    env = {"DATABASE_URL": database_url, "CTXGRAPH_LOG_LEVEL": "WARNING"}
    with (
        running_server(env, process_to=processes) as base,
        socket.create_connection(
            (urlsplit(base).hostname, urlsplit(base).port), timeout=10
        ) as conn,
    ):
        request = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"
        conn.sendall(request)
        _read_response(conn)
        before = _writes(processes[0].pid)
        for _ in range(50):
            conn.sendall(request)
            assert _read_response(conn).startswith(b"HTTP/1.1 200 ")
        writes = _writes(processes[0].pid) - before
    assert 50 <= writes < 60, writes
