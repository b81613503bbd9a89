"""uvicorn's HTTP/1.1 protocol (httptools), writing a response's head with its body.

uvicorn writes the status line and headers to the socket when the app sends
`http.response.start`, and the body when it sends `http.response.body`: two
send() calls and, with TCP_NODELAY, two TCP segments for every answer, each
waking the client to read half a response. Node's `res.end(body)` (PostGraphile)
writes both at once. Here the head of a response with a Content-Length waits
for the first write of its body and goes out in the same call.

Why: `RequestResponseCycle.send` was 8.1% of the server's CPU under the sidebar
load (py-spy, `python -m bench run --workloads sidebar --profile`), nearly all
of it in the socket writes (bench/README.md, "Optimizations").

Everything else is uvicorn's own: a response without Content-Length (chunked
streams, subscriptions over multipart or SSE) or with an empty body writes its
head at once, as does everything written outside a response (100 Continue).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


class HeadWithBodyProtocol(HttpToolsProtocol):
    """`uvicorn.run(..., http=HeadWithBodyProtocol)`."""

    def on_headers_complete(self) -> None:
        before = self.cycle
        super().on_headers_complete()
        # A new cycle per request; none for an upgrade (WebSocket), which leaves
        # this protocol. The cycle's task has not run yet: it is only scheduled.
        if self.cycle is not before:
            # a stand-in for the cycle's writes; anything else goes to the transport
            self.cycle.transport = cast(
                asyncio.Transport, ResponseWriter(self.transport, self.cycle)
            )


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
