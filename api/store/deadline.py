"""A client-side bound on one use of the database (CTXGRAPH_DATABASE_TIMEOUT).

A server that stops answering (stopped, a stalled VM, a partition that drops packets
without resets) accepts connections into its listen backlog and never enforces its
own statement_timeout: only the client can bound the wait. One use (a read, a
transaction, a one-statement write) gets one deadline for all of it:

- Getting a connection (waiting for the pool, connecting) is cancelled at the
  deadline: nothing is held yet, and SQLAlchemy's pool gives back what it took.
- Once a connection is held, a timer terminates it at the deadline: the statement in
  flight fails at once, and nothing waits on the server. Cancelling the statement
  instead would have asyncpg send a cancel request on a new connection and wait for
  the old one to acknowledge it, and SQLAlchemy close it gracefully: both talk to the
  server that does not answer.
- A connection whose deadline passed is invalidated, never returned to the pool:
  what it was doing when it was cut is unknown.

The caller sees `DatabaseTimeout`, which api/security/failures.py reports as
SERVICE_UNAVAILABLE. For a write that means "unknown": a statement the server had
received may still commit when it resumes (retries with message ids are safe).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


class DatabaseTimeout(TimeoutError):
    """The database did not answer within the client-side bound."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the database did not answer within {seconds:g} s")
        self.seconds = seconds


class Deadline:
    """The end of one use of the database (module docstring). One timer does both:
    while the connection is being got it cancels the task (as `asyncio.timeout`
    would), once it is held it terminates it."""

    __slots__ = ("seconds", "expired", "_task", "_driver", "_acquiring", "_timer")

    def __init__(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self.seconds = seconds
        self.expired = False
        """Whether the deadline passed before the use ended (its connection is cut)."""
        self._task = asyncio.current_task()
        self._driver: Any = None
        self._acquiring = False
        self._timer: asyncio.TimerHandle | None = loop.call_at(loop.time() + seconds, self._expire)

    async def acquire(self, opening: Awaitable[T]) -> T:
        """`opening` (a checkout: the pool's queue, a connect) if it ends in time."""
        self._acquiring = True
        try:
            return await opening
        except BaseException as exc:
            self.disarm()  # nothing to guard
            # our cancellation (and no one else's, as asyncio.timeout decides): a timeout
            if (
                isinstance(exc, asyncio.CancelledError)
                and self.expired
                and self._task is not None
                and self._task.uncancel() == 0
            ):
                raise DatabaseTimeout(self.seconds) from None
            raise
        finally:
            self._acquiring = False

    def guard(self, driver: Any) -> None:
        """Terminate `driver` (the asyncpg connection of this use) at the deadline."""
        if self.expired:  # passed while the checkout finished: do not start
            driver.terminate()
        self._driver = driver

    def _expire(self) -> None:
        self.expired = True
        self._timer = None
        if self._driver is not None:
            self._driver.terminate()
        elif self._acquiring and self._task is not None:
            self._task.cancel()

    def disarm(self) -> None:
        """The use is over: its connection goes back (or away) now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._driver = None

    def error(self) -> DatabaseTimeout:
        return DatabaseTimeout(self.seconds)
