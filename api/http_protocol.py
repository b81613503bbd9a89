"""ctxgraph's HTTP/1.1 protocol: uvicorn's httptools protocol with two changes, and the
one module that touches uvicorn's internals (pyproject.toml bounds uvicorn's version;
tests/test_http_protocol.py fails when upstream changes what this relies on).

1. A response's head is written with its body. uvicorn writes the head on
   `http.response.start` and the body on `http.response.body`: two send() calls, two TCP
   segments per answer with TCP_NODELAY. Here the head of a response with a
   Content-Length waits for its body's first write (bench/README.md, "Optimizations").
   Other heads (chunked streams, SSE, empty bodies) are written at once.

2. A client holds only what its request needs (`ConnectionLimits`). uvicorn read heads
   of any size and waited for an incomplete head or body forever. Here:
   - a head (request line and headers) is refused 431 once `max_head_bytes` of it came
     without its end, the rest unparsed; more than `max_header_count` lines: 431 too;
   - a head must complete within `head_timeout` of its first byte (the first request's:
     of the connection's opening), a body within `body_timeout` of its head: a deadline,
     so trickling bytes does not extend it; 408 and close. Not timed while this side
     stopped reading (a pipelined request waits). Idle between requests, uvicorn's
     `timeout_keep_alive` applies as before;
   - a process holds at most `max_connections` (HTTP and WebSocket); one more gets 503
     with Retry-After at once.
   The answers are GraphQL JSON errors; a refused connection lingers (`Closing`) so the
   client reads its answer rather than a reset. An upgraded WebSocket leaves this
   protocol: none of this applies to it.
"""

from __future__ import annotations

import asyncio
import functools
import json
from dataclasses import dataclass
from typing import Any, cast

from uvicorn._types import ASGI3Application
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from api.errors import BadUserInput
from api.settings import Settings, get_settings

LINGER_SECONDS = 2.0
"""How long a refused connection's input is still read (and dropped) after its answer."""

RETRY_AFTER_SECONDS = 1
"""Retry-After of the 503 a connection over the cap gets."""


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one client may hold of a server process (see the module docstring)."""

    max_head_bytes: int
    max_header_count: int
    head_timeout: float
    body_timeout: float
    max_connections: int

    @classmethod
    def from_settings(
        cls, settings: Settings, max_connections: int | None = None
    ) -> ConnectionLimits:
        return cls(
            max_head_bytes=settings.max_head_bytes,
            max_header_count=settings.max_header_count,
            head_timeout=settings.head_timeout,
            body_timeout=settings.body_timeout,
            max_connections=settings.max_connections
            if max_connections is None
            else max_connections,
        )


@functools.cache
def process_limits() -> ConnectionLimits:
    """This process's limits, read once: uvicorn spawns its workers, and each reads the
    environment `ctxgraph serve` was started with. The connection cap is lowered to what
    the process's open-files limit fits (raised first when it can be)."""
    from api.listener import allow_open_files

    settings = get_settings()
    return ConnectionLimits.from_settings(
        settings, max_connections=allow_open_files(settings.max_connections)
    )


@dataclass
class ConnectionCounts:
    """This process's connections and what the limits refused, for /metrics."""

    connections: set[Any] | None = None  # uvicorn's set of this process's open connections
    max_connections: int = 0
    refused: int = 0
    head_too_large: int = 0
    too_many_headers: int = 0
    head_timeout: int = 0
    body_timeout: int = 0

    @property
    def open(self) -> int:
        return 0 if self.connections is None else len(self.connections)


COUNTS = ConnectionCounts()


def error_json(message: str, code: str) -> bytes:
    """A GraphQL response with one error: what clients of this API parse."""
    return json.dumps({"errors": [{"message": message, "extensions": {"code": code}}]}).encode()


class Answers:
    """The protocol's own answers for one set of limits, built once per process."""

    def __init__(self, limits: ConnectionLimits) -> None:
        code = BadUserInput.code
        self.head_too_large = error_json(
            f"The request's head (request line and headers) is larger than "
            f"{limits.max_head_bytes} bytes (limit CTXGRAPH_MAX_HEAD_BYTES).",
            code,
        )
        self.too_many_headers = error_json(
            f"The request has more than {limits.max_header_count} header lines "
            f"(limit CTXGRAPH_MAX_HEADER_COUNT).",
            code,
        )
        self.head_timeout = error_json(
            f"The request's head did not arrive within {limits.head_timeout:g} s "
            f"(CTXGRAPH_HEAD_TIMEOUT).",
            code,
        )
        self.body_timeout = error_json(
            f"The request's body did not arrive within {limits.body_timeout:g} s of its head "
            f"(CTXGRAPH_BODY_TIMEOUT).",
            code,
        )
        self.over_capacity = error_json(
            f"This server process holds its limit of {limits.max_connections} connections "
            f"(CTXGRAPH_MAX_CONNECTIONS); retry in a moment.",
            "SERVICE_UNAVAILABLE",
        )


@functools.cache
def _answers(limits: ConnectionLimits) -> Answers:
    return Answers(limits)


def response(
    status: int,
    body: bytes,
    default_headers: list[tuple[bytes, bytes]],
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> bytes:
    """A whole HTTP response that closes its connection."""
    head = [STATUS_LINE[status]]
    for name, value in (
        *default_headers,
        *extra,
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"connection", b"close"),
    ):
        head += [name, b": ", value, b"\r\n"]
    head += [b"\r\n", body]
    return b"".join(head)


# Where the parser is in a connection's current request.
IDLE = 0  # between requests: nothing of the next one has arrived (blank lines at most)
HEAD = 1  # a request's head has begun
BODY = 2  # the head is complete, its body is not
UPGRADED = 3  # a WebSocket took the connection over


class CtxgraphProtocol(HttpToolsProtocol):
    """`uvicorn.run(..., http=CtxgraphProtocol)`. `limits`: this process's settings when
    omitted (`functools.partial(CtxgraphProtocol, limits=...)` for other ones)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        limits: ConnectionLimits | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits or process_limits()
        self.reading = IDLE
        self.head_bytes = 0  # bytes of the current head received so far
        self.heads_begun = 0
        self.read_timer: asyncio.TimerHandle | None = None

    # --- the connection -----------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        limits = self.limits
        if len(self.connections) >= limits.max_connections:
            COUNTS.refused += 1
            answer = response(
                503,
                _answers(limits).over_capacity,
                self.server_state.default_headers,
                ((b"retry-after", b"%d" % RETRY_AFTER_SECONDS),),
            )
            Closing.take_over(transport, answer, self.loop)
            return
        super().connection_made(transport)
        COUNTS.connections, COUNTS.max_connections = self.connections, limits.max_connections
        self.read_timer = self.loop.call_later(limits.head_timeout, self._read_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.read_timer is not None:
            self.read_timer.cancel()
            self.read_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        reading = self.reading
        if reading != BODY and len(data) > self.limits.max_head_bytes - self.head_bytes:
            self._read_within_head_room(memoryview(data))
            return
        begun = self.heads_begun
        super().data_received(data)
        if self.reading != IDLE or self.heads_begun == begun:
            # not the common case of whole requests read: something is left incomplete
            self._after_read(len(data), reading, begun)

    def _read_within_head_room(self, view: memoryview) -> None:
        """`data_received` of more bytes than the current head may still take: the parser
        gets what the head may take; if the head is still incomplete then, it is
        refused; else the rest is read as a body or the next request."""
        max_head_bytes = self.limits.max_head_bytes
        while True:
            reading, begun = self.reading, self.heads_begun
            room = max_head_bytes - self.head_bytes
            if reading == BODY or len(view) <= room:
                super().data_received(view)  # type: ignore[arg-type]  # httptools reads buffers
                self._after_read(len(view), reading, begun)
                return
            super().data_received(view[:room])  # type: ignore[arg-type]
            if self.reading == UPGRADED or self.transport.is_closing():
                return
            if self.reading == HEAD and self.heads_begun == begun + (reading == IDLE):
                COUNTS.head_too_large += 1
                self._give_up(431, _answers(self.limits).head_too_large)
                return
            view = view[room:]

    def _after_read(self, size: int, reading: int, begun: int) -> None:
        """Count a read that ended inside a head, and time the head or body it left
        incomplete (a request read whole, the common case, needs no timer)."""
        now = self.reading
        if now == HEAD:
            # All of the read belongs to this head unless an earlier request ended in it;
            # then the head's bytes so far are not known, and it is counted from the next
            # read (a pipelined head can so exceed the limit by one read, <= 256 KiB).
            if self.heads_begun == begun + (reading == IDLE):
                self.head_bytes += size
            if self.read_timer is None:
                self.read_timer = self.loop.call_later(
                    self.limits.head_timeout, self._read_timed_out
                )
        elif now == BODY:
            if self.read_timer is None:
                self.read_timer = self.loop.call_later(
                    self.limits.body_timeout, self._read_timed_out
                )
        elif now == IDLE and reading == IDLE and self.heads_begun == begun:
            # blank lines between requests, which the parser skips: they must not hold the
            # connection open either (they stop uvicorn's keep-alive timer)
            if self.read_timer is None:
                self.read_timer = self.loop.call_later(
                    self.limits.head_timeout, self._read_timed_out
                )

    def _read_timed_out(self) -> None:
        self.read_timer = None
        reading = self.reading
        if reading == UPGRADED or self.transport.is_closing():
            return
        limits = self.limits
        if self.flow.read_paused:
            # this side stopped reading (a pipelined request waits, or the app has not
            # taken the body so far): the client is not late; time it afresh
            timeout = limits.body_timeout if reading == BODY else limits.head_timeout
            self.read_timer = self.loop.call_later(timeout, self._read_timed_out)
            return
        cycle: RequestResponseCycle | None = self.cycle
        in_flight = cycle is not None and not cycle.response_complete
        if reading == BODY:
            COUNTS.body_timeout += 1
            if cycle is not None and not cycle.response_started:
                # the app waits in receive(): it sees a disconnect once the transport is
                # closed, and sends nothing of its own
                self.transport.write(
                    response(408, _answers(limits).body_timeout, self.server_state.default_headers)
                )
            self.transport.close()
        elif in_flight:
            # bytes of a next request arrived while a response is still being written;
            # once it is done, uvicorn's keep-alive timer or the next read times them
            return
        elif reading == HEAD:
            COUNTS.head_timeout += 1
            self._give_up(408, _answers(limits).head_timeout)
        else:  # nothing but blank lines since the connection opened or the last response
            self.transport.close()

    def _give_up(self, status: int, body: bytes) -> None:
        """Answer `status` and close: this protocol lets go of the connection at once."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # an earlier request's response is still being written: no room for an answer
            self.transport.close()
            return
        if self.read_timer is not None:
            self.read_timer.cancel()
            self.read_timer = None
        self._unset_keepalive_if_required()
        # what uvicorn's connection_lost would do, but the transport will report its loss
        # to the Closing protocol instead
        self.connections.discard(self)
        answer = response(status, body, self.server_state.default_headers)
        Closing.take_over(self.transport, answer, self.loop)

    def send_400_response(self, msg: str) -> None:
        """A request the parser refuses (a malformed request line or header, a bad upgrade):
        a GraphQL JSON error like every other answer, where uvicorn writes text."""
        answer = error_json(f"Malformed HTTP request: {msg}", "BAD_USER_INPUT")
        self.transport.write(response(400, answer, self.server_state.default_headers))
        self.transport.close()

    # --- parser callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.reading = HEAD
        self.heads_begun += 1

    def on_headers_complete(self) -> None:
        self.reading = BODY
        self.head_bytes = 0
        if self.read_timer is not None:
            self.read_timer.cancel()
            self.read_timer = None
        before = self.cycle
        if len(self.headers) > self.limits.max_header_count:
            COUNTS.too_many_headers += 1
            # Answered by uvicorn's own machinery as a request, so the parser goes on
            # through the body as usual. Without its headers, a WebSocket upgrade among
            # them is not honoured.
            self.headers.clear()
            app = self.app
            self.app = cast(ASGI3Application, functools.partial(_too_many_headers, self.limits))
            try:
                super().on_headers_complete()
            finally:
                self.app = app
            return
        super().on_headers_complete()
        # A new cycle per request; none for an upgrade (WebSocket), which leaves this
        # protocol. The cycle's task has not run yet: it is only scheduled.
        if self.cycle is before:
            self.reading = UPGRADED
            return
        # a stand-in for the cycle's writes; anything else goes to the transport
        self.cycle.transport = cast(asyncio.Transport, ResponseWriter(self.transport, self.cycle))

    def on_message_complete(self) -> None:
        if self.reading == BODY:
            self.reading = IDLE
            if self.read_timer is not None:
                self.read_timer.cancel()
                self.read_timer = None
        super().on_message_complete()


async def _too_many_headers(limits: ConnectionLimits, scope: Any, receive: Any, send: Any) -> None:
    body = _answers(limits).too_many_headers
    await send(
        {
            "type": "http.response.start",
            "status": 431,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Closing(asyncio.Protocol):
    """A connection past serving: its answer is written and the write side shut; what
    the client still sends is read and dropped until it closes, or LINGER_SECONDS pass.
    Closing at once would make the kernel reset the connection over unread input, and
    the client could lose the answer."""

    def __init__(self, transport: asyncio.BaseTransport, loop: asyncio.AbstractEventLoop) -> None:
        self.timer = loop.call_later(LINGER_SECONDS, transport.close)

    @classmethod
    def take_over(
        cls, transport: asyncio.Transport, answer: bytes, loop: asyncio.AbstractEventLoop
    ) -> None:
        closing = cls(transport, loop)
        transport.set_protocol(closing)
        transport.write(answer)
        if transport.can_write_eof():
            transport.write_eof()
        else:  # TLS: no half close
            transport.close()

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.timer.cancel()


class ResponseWriter:
    """The socket as one request's cycle sees it: the head of a response with a body of
    known length is held until the body's first write, and written with it."""

    __slots__ = ("transport", "cycle", "head")

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle) -> None:
        self.transport = transport
        self.cycle: RequestResponseCycle | None = cycle
        self.head: bytes | None = None

    def write(self, data: bytes) -> None:
        head = self.head
        if head is not None:
            self.head = None
            self.transport.write(head + data)
            return
        cycle = self.cycle
        if cycle is not None and cycle.response_started:  # uvicorn sets it, then writes the head
            # The head is the one write that needs the cycle's state. Let go of it: the
            # cycle holds this writer, and a reference cycle per request would be left
            # for the garbage collector.
            self.cycle = None
            # chunked_encoding is False only with a Content-Length; a HEAD request or an
            # empty body writes no body to carry the head.
            if (
                cycle.chunked_encoding is False
                and cycle.expected_content_length > 0
                and cycle.scope["method"] != "HEAD"
            ):
                self.head = data
                return
        self.transport.write(data)

    def close(self) -> None:
        # a response abandoned after its start (the app failed mid-way): nothing of it
        # is worth sending, the client sees the connection close as before
        self.head = None
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)
