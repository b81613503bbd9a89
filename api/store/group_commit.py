"""Group commit: writes that arrive while one is running go to PostgreSQL together.

A write submitted while nothing is running starts at once, alone; the ones that
arrive meanwhile wait for that round trip and then go as one statement, as many
as fit in a batch. Nothing waits for a timer, so a lone write is as fast as
before, and under load each statement (its round trip, its executor start, its
commit and WAL flush) serves several requests.

Why (bench/README.md, "Optimizations"): an append is one small statement, and its
fixed cost is most of it. Serially on one connection, PostgreSQL spent ~0.41 ms of
CPU per single-append statement and ~0.13 ms per append in statements of 8, the
client ~0.14 vs ~0.04 ms.

Each write is all or nothing on its own, as when it ran alone: the statement
applies the whole batch or nothing. A write the statement did not take (the writer
says which: for appends, a context locked elsewhere or a refusal) and every write
of a batch the server refused (a statement timeout, any SQLSTATE: nothing was
written) are written again one at a time, so each caller gets the answer its own
write gets. Anything else (the connection lost mid-statement: written or not,
unknown) is every caller's error, as it would have been alone.

A write alone may wait for a lock: after `stall_s` the next batch starts beside
it, so writes with other keys do not wait too.

Each statement is one use of the connector, bounded by its deadline
(api/store/deadline.py); a caller waits no longer than that either, from the moment
it submits: when the drainers are all held up by a server that does not answer, it
fails with DatabaseTimeout (its write, if not begun, is never written).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

import asyncpg

from api.store.deadline import DatabaseTimeout
from api.store.direct import Direct

if TYPE_CHECKING:
    from api.db import Connector

W = TypeVar("W")  # a write
R = TypeVar("R")  # its result

Writer = Callable[[Direct, Sequence[W]], Awaitable[Sequence[R | None]]]
"""Runs writes as ONE statement: a result per write, in order, or None for a write
the statement did not take, which is then written alone. Alone, a write gets its
result (or the statement's error)."""


class GroupCommit(Generic[W, R]):
    """The writes of one process to one database, gathered (module docstring).

    `key`: writes with the same key never share a batch (appends to one context:
    the statement gives each context one version range). `weight` and `max_weight`
    bound a batch (a write heavier than that goes alone); `max_writes` too.
    """

    def __init__(
        self,
        db: Connector,
        write: Writer[W, R],
        *,
        key: Callable[[W], Hashable],
        weight: Callable[[W], int],
        max_weight: int,
        max_writes: int = 64,
    ) -> None:
        self._db = db
        self._write = write
        self._key = key
        self._weight = weight
        self._max_weight = max_weight
        self._max_writes = max_writes
        self._waiting: list[tuple[W, asyncio.Future[R]]] = []
        self._keys_in_flight: set[Hashable] = set()
        self._drainers = 0  # tasks writing batches, one at a time each
        # The loop keeps only weak references to tasks: these keep the drainers alive.
        self._tasks: set[asyncio.Task[None]] = set()
        self._stuck = 0  # drainers whose statement runs longer than stall_s
        self._timeout = db.timeout
        self.loop = asyncio.get_running_loop()

    stall_s = 0.02
    """A statement running longer than this lets the next batch start beside it (a
    statement of appends takes ~1-3 ms: longer, it waits for a lock)."""
    max_drainers = 4
    """Statements of this group at once, at most (each holds a pooled connection)."""

    async def submit(self, write: W) -> R:
        """Write `write` (alone or with others) and return its result."""
        future: asyncio.Future[R] = self.loop.create_future()
        self._waiting.append((write, future))
        if self._drainers == self._stuck < self.max_drainers:  # none, or all stuck
            self._drain()
        if self._timeout is None:
            return await future
        try:
            async with asyncio.timeout(self._timeout):
                # on time out the future is cancelled: a write not begun is skipped
                return await future
        except TimeoutError:
            if not future.cancelled():  # the write's own error
                raise
            raise DatabaseTimeout(self._timeout) from None

    @property
    def waiting(self) -> int:
        """Writes submitted and not yet answered (tests wait on it)."""
        return len(self._waiting) + len(self._keys_in_flight)

    def _drain(self) -> None:
        # A task of its own: a caller that goes away must not take the others' write
        # with it (its own is written anyway, as a write whose client left is).
        self._drainers += 1
        task = self.loop.create_task(self._drain_queue())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain_queue(self) -> None:
        try:
            while batch := self._take():
                stuck = [False]
                timer = self.loop.call_later(self.stall_s, self._stalled, stuck)
                try:
                    await self._run(batch)
                finally:
                    timer.cancel()
                    self._stuck -= stuck[0]
                    self._keys_in_flight.difference_update(self._key(w) for w, _ in batch)
        except BaseException as exc:  # cancelled (the loop is closing): no one is left out
            _fail(self._waiting, exc)
            self._waiting = []
            raise
        finally:
            self._drainers -= 1

    def _stalled(self, stuck: list[bool]) -> None:
        """A statement runs long (waiting for a row lock, most likely): writes to other
        contexts go on without it, in a statement of their own."""
        stuck[0] = True
        self._stuck += 1
        if self._drainers == self._stuck < self.max_drainers and any(
            self._key(w) not in self._keys_in_flight for w, _ in self._waiting
        ):
            self._drain()

    def _take(self) -> list[tuple[W, asyncio.Future[R]]]:
        """The next batch, in arrival order: the first write that can go, then the ones
        that fit; the rest keep their places. A write whose key is in a statement
        already waits for it (writes to one context keep their order)."""
        batch: list[tuple[W, asyncio.Future[R]]] = []
        keys = self._keys_in_flight
        weight = 0
        rest: list[tuple[W, asyncio.Future[R]]] = []
        for i, entry in enumerate(self._waiting):
            write, future = entry
            if future.done():  # its caller was cancelled before the write began
                continue
            if len(batch) >= self._max_writes:
                rest.extend(self._waiting[i:])
                break
            key, w = self._key(write), self._weight(write)
            if key in keys or (batch and weight + w > self._max_weight):
                rest.append(entry)
                continue
            batch.append(entry)
            keys.add(key)
            weight += w
        self._waiting = rest
        return batch

    async def _run(self, batch: list[tuple[W, asyncio.Future[R]]]) -> None:
        try:
            results = await self._statement([write for write, _ in batch])
        except asyncpg.PostgresError as exc:
            if len(batch) == 1:
                _fail(batch, exc)
                return
            results = [None] * len(batch)  # refused: nothing was written
        except BaseException as exc:
            _fail(batch, exc)
            if not isinstance(exc, Exception):
                raise
            return
        alone = []
        for entry, result in zip(batch, results, strict=True):
            future = entry[1]
            if result is None:
                assert len(batch) > 1, "a write alone gets its result"
                alone.append(entry)
            elif not future.done():
                future.set_result(result)
        for entry in alone:  # each for its own answer
            await self._run([entry])

    async def _statement(self, writes: list[W]) -> Sequence[R | None]:
        async with self._db.single_statement() as direct:
            return await self._write(direct, writes)


def _fail(batch: list[tuple[W, asyncio.Future[R]]], exc: BaseException) -> None:
    for _, future in batch:
        if future.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(exc)
