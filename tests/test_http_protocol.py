"""The server's HTTP protocol (api/http_protocol.py): uvicorn's httptools protocol
with a response's head written in the same socket write as its body.

The protocol runs as uvicorn runs it, on a transport that records each write: the
number of writes is what this module changes, and a real socket would not show it.
`ctxgraph serve` itself is exercised through it by tests/test_cli.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from api.http_protocol import CtxgraphProtocol, ResponseWriter


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
