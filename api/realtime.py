"""Realtime fan-out: one LISTEN connection per process, dispatched to subscribers.

Appends NOTIFY `ctxgraph_messages` with `<context_id>:<latest_version>` from their
own statement, so it is delivered when, and only if, they commit
(api/store/notify.py). Each API process runs one `Listener` (one direct asyncpg
connection, whatever the number of subscribers) that hands every notification
to the process's `Hub`; the hub wakes the `Watch`es of that context. A woken
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

    @contextmanager
    def watch(self, context_id: uuid.UUID) -> Iterator[Watch]:
        """Register interest in a context for the duration of the block."""
        w = Watch(context_id)
        interest = self._interests.setdefault(context_id, _Interest())
        interest.watches.add(w)
        try:
            yield w
        finally:
            interest.watches.discard(w)
            if not interest.watches and self._interests.get(context_id) is interest:
                del self._interests[context_id]

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

    Each (re)connection wakes every watch, so subscribers catch up on what was
    appended while no one was listening.
    """

    def __init__(
        self,
        hub: Hub,
        dsn: str,
        *,
        keepalive: float = 5.0,
        connect_timeout: float = 10.0,
        backoff_min: float = 0.05,
        backoff_max: float = 5.0,
    ) -> None:
        self.hub = hub
        self.dsn = dsn
        self._keepalive = keepalive
        self._connect_timeout = connect_timeout
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self.connections = 0
        """How many times LISTEN was (re-)established."""
        self.backend_pid: int | None = None
        self.last_error: str | None = None

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ctxgraph-listener")

    async def wait_listening(self, timeout: float) -> None:
        """Until LISTEN is in place (TimeoutError otherwise)."""
        await asyncio.wait_for(self._listening.wait(), timeout)

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
                    server_settings={"application_name": LISTENER_APPLICATION_NAME},
                )
            except Exception as exc:
                self.last_error = str(exc) or type(exc).__name__
                log.warning("listener cannot connect (retry in %.2fs): %s", backoff, exc)
            else:
                try:
                    await self._listen(conn)
                except Exception as exc:
                    log.warning("listener connection lost: %s", exc)
                finally:
                    self._listening.clear()
                    self.backend_pid = None
                    conn.terminate()
            if self.connections > established:
                backoff = self.backoff_min
            # Retry soon after a loss, but never spin on a database that is down
            # or that accepts and drops connections.
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.backoff_max)

    async def _listen(self, conn: asyncpg.Connection) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(CHANNEL, self._on_notification)
        self.backend_pid = conn.get_server_pid()
        self.connections += 1
        self._listening.set()
        if self.connections > 1:
            log.info("listener reconnected; subscribers catch up from the database")
        # Whatever was appended while no one listened is found by re-reading.
        self.hub.wake_all()
        while not conn.is_closed():
            try:
                await asyncio.wait_for(lost.wait(), self._keepalive)
            except TimeoutError:
                # A dead peer without a FIN (network cut) shows only on traffic.
                await conn.fetchval("SELECT 1", timeout=self._keepalive)
            else:
                log.warning("listener connection closed by the server; reconnecting")
                return


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
        """Start the re-check and listening; DatabaseConfigError if LISTEN is not in
        place within `timeout`."""
        self._recheck = asyncio.create_task(self._recheck_loop(connector), name="ctxgraph-recheck")
        if self.listener is None:
            return
        self.listener.start()
        try:
            await self.listener.wait_listening(timeout)
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
