"""First come, first served: admission to the database connections of one process.

SQLAlchemy's async pool hands a returned connection to its queue, and asyncio's queue
wakes its oldest waiter: but a request arriving before that waiter runs takes the
connection first, and the waiter, finding the queue empty, waits again at the back.
Under load that lets newcomers pass while some requests starve until a timeout: the
tail was bimodal, tens of milliseconds for half of the requests, seconds for a tenth
(issue 27; bench/README.md, "Saturation"). Overflow connections, closed whenever the
pool was full on their way back, added PostgreSQL sessions opened and closed by the
hundred per second.

The gate puts every use of a connection in one line: at most `capacity` uses (the
pool's size: nothing waits inside the pool) hold one, the others wait in arrival order
(asyncio.Semaphore hands a released slot to its oldest waiter; a newcomer never passes
a waiter). The line is bounded: past `max_waiting` waiters, or after `max_wait`
seconds in it, a use is refused at once with `Saturated` (503, SERVICE_UNAVAILABLE,
with Retry-After), never left to wait unfairly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from api.store.deadline import DatabaseTimeout


class Saturated(ConnectionError):
    """The process cannot take this use of the database now: retry shortly."""

    def __init__(self, why: str) -> None:
        super().__init__(f"the server is saturated: {why}")
        self.why = why


Observer = Callable[[float | None, str | None], None]
"""Told of each use that waited: (seconds waited, None) or (None, why it was refused)."""


class Gate:
    """A bounded, first-come line in front of the pool (module docstring)."""

    def __init__(self, capacity: int, max_waiting: int, max_wait: float) -> None:
        self.capacity = capacity
        self.max_waiting = max_waiting
        self.max_wait = max_wait
        self.waiting = 0
        """Uses in the line now (the /metrics gauge reads it)."""
        self.in_use = 0
        """Uses holding a slot now."""
        self.observer: Observer | None = None
        self._slots = asyncio.Semaphore(capacity)

    async def enter(self, limit: float | None = None) -> None:
        """Take a slot, waiting in line if none is free: at most `max_wait` seconds
        (then Saturated), and at most `limit`, the caller's bound on its use of the
        database (then DatabaseTimeout, as when the database does not answer)."""
        if not self._slots.locked():
            await self._slots.acquire()  # free now: returns without suspending
            self.in_use += 1
            return
        if self.waiting >= self.max_waiting:
            self._observe(None, "queue full")
            raise Saturated(
                f"{self.waiting} requests already wait for a database connection "
                "(CTXGRAPH_DB_QUEUE_LIMIT)"
            )
        wait = self.max_wait if limit is None else min(self.max_wait, limit)
        started = time.monotonic()
        self.waiting += 1
        try:
            async with asyncio.timeout(wait):
                await self._slots.acquire()
        except TimeoutError:
            self._observe(None, "waited too long")
            if wait < self.max_wait:
                raise DatabaseTimeout(wait) from None
            raise Saturated(
                f"no database connection was free within {wait:g} s (CTXGRAPH_DB_QUEUE_TIMEOUT)"
            ) from None
        finally:
            self.waiting -= 1
        self.in_use += 1
        self._observe(time.monotonic() - started, None)

    def leave(self) -> None:
        self.in_use -= 1
        self._slots.release()

    def _observe(self, waited: float | None, refused: str | None) -> None:
        if self.observer is not None:
            self.observer(waited, refused)
