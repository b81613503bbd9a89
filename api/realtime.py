"""Realtime fan-out: one LISTEN connection per process, dispatched to subscribers.

Appends NOTIFY `ctxgraph_messages` with `<context_id>:<latest_version>` from their
own statement, so it is delivered when, and only if, they commit
(api/store/notify.py). Each API process runs one `Listener` (one direct asyncpg
connection, whatever the number of subscribers) that hands every notification
to the process's `Hub`; the hub wakes the `Watch`es of that context. The
connection LISTENs only while the process has subscribers: every listening
backend is woken by every append's NOTIFY, ~0.13 ms of PostgreSQL CPU per append
and listener when measured (bench/README.md, "Optimizations"), worth paying only
for someone. A woken
subscriber never trusts the notification for content: it reads the history
after the last version it delivered from the database. So a dropped
notification, a listener reconnect or a slow consumer loses nothing: the
listener wakes everyone after it reconnects, and every few seconds one query
(for the whole process) finds the contexts whose latest version is past what
their subscribers were told, and wakes those.

The listener needs a session-level connection: LISTEN does not work through a
transaction-pooling PgBouncer, hence CTXGRAPH_DATABASE_DIRECT_URL.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped, unused-ignore]  # no stubs

from api.db import (
    Connector,
    DatabaseConfigError,
    is_pooled,
    redact,
    to_asyncpg_url,
    to_libpq_url,
)
from api.settings import Settings
from api.store.notify import CHANNEL, latest_versions, parse_payload

log = logging.getLogger("ctxgraph.realtime")

T = TypeVar("T")

LISTENER_APPLICATION_NAME = "ctxgraph-listener"


class Watch:
    """One subscriber's interest in one context, woken by the hub."""

    def __init__(self, context_id: uuid.UUID) -> None:
        self.context_id = context_id
        self.notified_version = -1
        """The highest version announced for this context since the watch began."""
        self.delivered: int | None = None
        """The subscriber's position: the last version it delivered (None: not started)."""
        self.started: int | None = None
        """Where the subscriber started: the version it delivers after (None: not started)."""
        self.waiting = False
        """True while the subscriber is idle, waiting for news."""
        self._forced = False
        self._event = asyncio.Event()

    def wake(self, version: int | None) -> None:
        """A notification (`version`) or a catch-up request for everyone (None)."""
        if version is None:
            self._forced = True
        elif version > self.notified_version:
            self.notified_version = version
        self._event.set()

    async def wait(self, seen: int, timeout: float | None) -> bool:
        """Wait until a version above `seen` is announced, at most `timeout` seconds.

        `seen` is `notified_version` as it was when the caller's last read
        began: that read saw everything announced up to then, so only a later
        announcement (or a catch-up request) is news. True when woken, False on
        timeout; the caller re-reads either way, the timeout being the safety
        net for notifications that never came.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        self.waiting = True
        try:
            while True:
                if self._forced or self.notified_version > seen:
                    self._forced = False
                    return True
                # No await between the check above and clear(): no wake-up is lost.
                self._event.clear()
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return False
                try:
                    await asyncio.wait_for(self._event.wait(), remaining)
                except TimeoutError:
                    return False
        finally:
            self.waiting = False


@dataclass
class _Flight:
    task: asyncio.Future[Any]
    epoch: int


@dataclass
class _Interest:
    """The watches of one context, and reads of it in flight (shared by its watches)."""

    watches: set[Watch] = field(default_factory=set)
    epoch: int = 0
    """Bumped on every wake-up; a read started before the latest one cannot be shared."""
    flights: dict[Any, _Flight] = field(default_factory=dict)


class Hub:
    """The subscribers of one process, by context id."""

    def __init__(self) -> None:
        self._interests: dict[uuid.UUID, _Interest] = {}
        self.notifications = 0
        """Notifications dispatched (for tests and metrics)."""
        self.on_demand: Callable[[], None] = lambda: None
        """Called when the first watch begins and when the last one ends (the listener)."""

    @property
    def watched(self) -> bool:
        """Whether anyone in this process watches a context."""
        return bool(self._interests)

    @contextmanager
    def watch(self, context_id: uuid.UUID) -> Iterator[Watch]:
        """Register interest in a context for the duration of the block."""
        w = Watch(context_id)
        first = not self._interests
        interest = self._interests.setdefault(context_id, _Interest())
        interest.watches.add(w)
        if first:
            self.on_demand()
        try:
            yield w
        finally:
            interest.watches.discard(w)
            if not interest.watches and self._interests.get(context_id) is interest:
                del self._interests[context_id]
                if not self._interests:
                    self.on_demand()

    def watches(self, context_id: uuid.UUID | None = None) -> list[Watch]:
        """The current watches (of one context, or all): for metrics and tests."""
        interests = (
            self._interests.values()
            if context_id is None
            else [i for c, i in self._interests.items() if c == context_id]
        )
        return [w for i in interests for w in i.watches]

    def dispatch(self, context_id: uuid.UUID, version: int) -> None:
        """Wake the watches of a context (a notification arrived)."""
        self.notifications += 1
        interest = self._interests.get(context_id)
        if interest is None:
            return
        interest.epoch += 1
        for w in interest.watches:
            w.wake(version)

    def context_ids(self) -> list[uuid.UUID]:
        """The contexts someone watches."""
        return list(self._interests)

    def catch_up(self, latest: dict[uuid.UUID, int]) -> int:
        """Wake the watches behind their context's latest version (the periodic re-check);
        how many. A watch already told of that version has read after it: not behind."""
        woken = 0
        for context_id, version in latest.items():
            interest = self._interests.get(context_id)
            if interest is None:
                continue
            behind = [
                w
                for w in interest.watches
                if w.delivered is not None and version > max(w.delivered, w.notified_version)
            ]
            if behind:
                interest.epoch += 1
                for w in behind:
                    w.wake(version)
                woken += len(behind)
        return woken

    def wake_all(self) -> None:
        """Make every watch re-read (after the listener was disconnected)."""
        for interest in self._interests.values():
            interest.epoch += 1
            for w in interest.watches:
                w.wake(None)

    async def shared_read(
        self, context_id: uuid.UUID, key: Any, fetch: Callable[[], Awaitable[T]]
    ) -> T:
        """Run `fetch`, or join an identical read of this context already in flight.

        A hundred subscribers of one context woken by one notification then
        cost one query, not a hundred. A read is joined only if it started
        after the context's latest wake-up, so it sees what that wake-up
        announced. `key` must identify the read (e.g. the version after which
        it reads); every caller of one key must fetch the same thing.
        """
        interest = self._interests.get(context_id)
        if interest is None:  # not watched: nothing to share with
            return await fetch()
        flight = interest.flights.get(key)
        if flight is None or flight.epoch != interest.epoch:
            flight = _Flight(asyncio.ensure_future(fetch()), interest.epoch)
            interest.flights[key] = flight
            flight.task.add_done_callback(_forget(interest, key, flight))
        # shield: a subscriber that goes away must not cancel the read of the others.
        result: T = await asyncio.shield(flight.task)
        return result


def _forget(
    interest: _Interest, key: Any, flight: _Flight
) -> Callable[[asyncio.Future[Any]], None]:
    def done(task: asyncio.Future[Any]) -> None:
        if interest.flights.get(key) is flight:
            del interest.flights[key]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may be gone already

    return done


def listener_dsn(url: str) -> str:
    """A plain postgresql:// DSN for asyncpg.connect from any accepted DATABASE_URL form."""
    libpq = urlsplit(to_libpq_url(to_asyncpg_url(url)))
    # to_asyncpg_url renamed libpq's sslmode for SQLAlchemy; asyncpg.connect wants sslmode.
    query = [("sslmode" if k == "ssl" else k, v) for k, v in parse_qsl(libpq.query)]
    return urlunsplit(libpq._replace(query=urlencode(query, safe="/")))


class Listener:
    """The process's one LISTEN connection; reconnects with backoff, forever.

    The connection stays open; LISTEN runs while the hub has watches: at once when
    the first one begins, UNLISTEN at the next keepalive tick that finds none. Each
    LISTEN (after a reconnect too) wakes every watch, so subscribers catch up on
    what was appended while no one was listening.
    """

    def __init__(
        self,
        hub: Hub,
        dsn: str,
        *,
        keepalive: float = 5.0,
        connect_timeout: float = 10.0,
        command_timeout: float = 5.0,
        backoff_min: float = 0.05,
        backoff_max: float = 5.0,
    ) -> None:
        self.hub = hub
        self.dsn = dsn
        self._keepalive = keepalive
        self._connect_timeout = connect_timeout
        # LISTEN, UNLISTEN and the keepalive: a server that stops answering is noticed
        # within this, the connection dropped and a new one tried (with backoff).
        self._command_timeout = command_timeout
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._nudge = asyncio.Event()
        """Set when the hub's demand changed or the connection was lost."""
        hub.on_demand = self._nudge.set
        self.connections = 0
        """How many times the connection was (re-)established."""
        self.listens = 0
        """How many times LISTEN was run."""
        self.listening = False
        """Whether LISTEN is in place now."""
        self.backend_pid: int | None = None
        self.last_error: str | None = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ctxgraph-listener")

    async def wait_connected(self, timeout: float) -> None:
        """Until the connection is up, ready to LISTEN (TimeoutError otherwise)."""
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def _on_notification(self, conn: object, pid: int, channel: str, payload: object) -> None:
        parsed = parse_payload(str(payload))
        if parsed is None:
            log.warning("ignoring a malformed notification on %s: %.100r", channel, payload)
            return
        self.hub.dispatch(*parsed)

    async def _run(self) -> None:
        backoff = self.backoff_min
        while True:
            established = self.connections
            try:
                conn = await asyncpg.connect(
                    self.dsn,
                    timeout=self._connect_timeout,
                    command_timeout=self._command_timeout,
                    server_settings={"application_name": LISTENER_APPLICATION_NAME},
                )
            except Exception as exc:
                self.last_error = str(exc) or type(exc).__name__
                log.warning("listener cannot connect (retry in %.2fs): %s", backoff, exc)
            else:
                try:
                    await self._listen(conn)
                except Exception as exc:
                    log.warning("listener connection lost: %s", str(exc) or type(exc).__name__)
                finally:
                    self._connected.clear()
                    self.listening = False
                    self.backend_pid = None
                    conn.terminate()
            if self.connections > established:
                backoff = self.backoff_min
            # Retry soon after a loss, but never spin on a database that is down
            # or that accepts and drops connections.
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.backoff_max)

    async def _listen(self, conn: asyncpg.Connection) -> None:
        lost = False

        def on_lost(_conn: object) -> None:
            nonlocal lost
            lost = True
            self._nudge.set()

        conn.add_termination_listener(on_lost)
        self.backend_pid = conn.get_server_pid()
        self.connections += 1
        self._connected.set()
        if self.connections > 1:
            log.info("listener reconnected; subscribers catch up from the database")
        tick = False
        while not conn.is_closed():
            # cleared before the hub is looked at: a change after the look sets it again
            self._nudge.clear()
            if lost:
                log.warning("listener connection closed by the server; reconnecting")
                return
            if self.hub.watched and not self.listening:
                await conn.add_listener(CHANNEL, self._on_notification)
                self.listening = True
                self.listens += 1
                # Whatever was appended while no one listened is found by re-reading.
                self.hub.wake_all()
            elif tick and not self.hub.watched and self.listening:
                await conn.remove_listener(CHANNEL, self._on_notification)
                self.listening = False
            try:
                await asyncio.wait_for(self._nudge.wait(), self._keepalive)
                tick = False
            except TimeoutError:
                tick = True
                # A dead peer without a FIN (network cut) shows only on traffic.
                await conn.fetchval("SELECT 1", timeout=min(self._keepalive, self._command_timeout))


@dataclass
class Realtime:
    """The realtime machinery of one process: the hub, its listener, the limits."""

    hub: Hub
    listener: Listener | None
    recheck_interval: float
    """Seconds between two safety-net checks for messages nobody announced."""
    max_per_connection: int
    """Subscriptions one WebSocket connection may run at once."""
    _recheck: asyncio.Task[None] | None = None

    @classmethod
    def create(cls, settings: Settings, listen_url: str | None) -> Realtime:
        """The hub, listening on `listen_url` (None: no listener, subscribers only poll)."""
        hub = Hub()
        listener = None
        if listen_url is not None:
            if settings.database_direct_url is None and is_pooled(listen_url, settings):
                log.warning(
                    "DATABASE_URL goes through a transaction pooler, where LISTEN misses "
                    "notifications: set CTXGRAPH_DATABASE_DIRECT_URL to a direct URL (until "
                    "then subscribers rely on the %ss re-check)",
                    settings.subscription_recheck_interval,
                )
            listener = Listener(
                hub,
                listener_dsn(listen_url),
                keepalive=settings.subscription_recheck_interval,
                connect_timeout=settings.connect_timeout,
                command_timeout=settings.database_timeout,
            )
        return cls(
            hub=hub,
            listener=listener,
            recheck_interval=settings.subscription_recheck_interval,
            max_per_connection=settings.subscriptions_per_connection,
        )

    @property
    def subscriber_timeout(self) -> float | None:
        """How long an idle subscriber waits before re-reading on its own: forever when
        the process-wide re-check runs, else (no lifespan, e.g. some tests) the interval."""
        return None if self._recheck is not None else self.recheck_interval

    async def start(self, connector: Connector, timeout: float) -> None:
        """Start the re-check and the listener; DatabaseConfigError if its connection
        is not up within `timeout`."""
        self._recheck = asyncio.create_task(self._recheck_loop(connector), name="ctxgraph-recheck")
        if self.listener is None:
            return
        self.listener.start()
        try:
            await self.listener.wait_connected(timeout)
        except TimeoutError:
            await self.stop()
            raise DatabaseConfigError(
                "cannot LISTEN for realtime notifications at "
                f"{redact(self.listener.dsn)}: {self.listener.last_error or 'timed out'} "
                "(set CTXGRAPH_DATABASE_DIRECT_URL to a direct, non-pooled URL)"
            ) from None

    async def stop(self) -> None:
        if self._recheck is not None:
            self._recheck.cancel()
            try:
                await self._recheck
            except asyncio.CancelledError:
                pass
            self._recheck = None
        if self.listener is not None:
            await self.listener.stop()

    async def _recheck_loop(self, connector: Connector) -> None:
        """The safety net for notifications that never came: one query per interval for
        the whole process (not one per subscriber), waking only the subscribers behind."""
        while True:
            await asyncio.sleep(self.recheck_interval)
            ids = self.hub.context_ids()
            if not ids:
                continue
            try:
                async with connector.read() as conn:
                    latest = await latest_versions(conn, ids)
            except Exception as exc:
                log.warning(
                    "realtime re-check failed (next in %.1fs): %s", self.recheck_interval, exc
                )
                continue
            if behind := self.hub.catch_up(latest):
                log.info("re-check woke %d subscribers that missed a notification", behind)
