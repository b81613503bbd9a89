"""Statements sent straight to asyncpg: the reads of planned requests (chat page,
tree, contexts list) and an append that is one statement, on a pooled connection
without SQLAlchemy's Connection around it (`pooled(engine)`: `Connector.direct()`,
`Connector.single_statement()`), and the statement of an append in a transaction,
on the asyncpg connection under a SQLAlchemy one (`Direct(conn)`: same transaction,
same statement timeout).

`Direct` speaks the part of `AsyncConnection` those store functions use (`await
execute(statement, params)`, then iterate, index or `.all()` the rows) and answers
with the same SQLAlchemy `Row`s, but runs the statement with asyncpg's own `fetch`.

Why: the store's statements are text built once per shape (`records.statement`,
`records.typed`); SQLAlchemy's async execute path around them (a greenlet hop, the
compiled-cache lookup, the cursor adapter, result metadata) cost ~0.6 ms of the
~0.9 ms of server CPU a sidebar statement took, asyncpg's fetch ~0.25 ms
(`bench/README.md`, "Optimizations"). Translating a statement to asyncpg's numbered
parameters is done once per statement object, by SQLAlchemy's own compiler.

Only what is the same either way takes this path: text statements whose bind
parameters carry no type (so SQLAlchemy would pass the values through unchanged)
and whose result columns need no processing by SQLAlchemy (asyncpg decodes uuid,
timestamps and JSONB itself: the dialect installs the JSON codecs on connect).
Anything else is handed to SQLAlchemy as before. Errors are asyncpg's own
(api/security/failures.py classifies both kinds by SQLSTATE), so a caller that
catches SQLAlchemy's exception classes keeps SQLAlchemy's path.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.engine import Engine, Row
from sqlalchemy.engine.result import result_tuple
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import Pool
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.selectable import TextualSelect
from sqlalchemy.sql.sqltypes import NullType
from sqlalchemy.util import greenlet_spawn

from api.errors import CtxgraphError
from api.store.deadline import Deadline

# Who wants to see every statement (tests and the benchmark count them): SQLAlchemy's
# before_cursor_execute does not fire for these, so api.db.count_statements adds its
# sink here too. By pool: an engine with other execution options shares its parent's.
_SINKS: weakref.WeakKeyDictionary[Pool, list[Callable[[str], None]]] = weakref.WeakKeyDictionary()


def listen(engine: Engine, sink: Callable[[str], None]) -> Callable[[], None]:
    """Call `sink(sql)` for every statement run directly on `engine`'s connections."""
    sinks = _SINKS.setdefault(engine.pool, [])
    sinks.append(sink)
    return lambda: sinks.remove(sink)


class _Compiled:
    """A statement as asyncpg takes it: numbered SQL, parameter names in order, and a
    Row factory made on the first rows (their column names)."""

    __slots__ = ("sql", "names", "make_row")

    def __init__(self, sql: str, names: Sequence[str]) -> None:
        self.sql = sql
        self.names = tuple(names)
        self.make_row: Callable[[Sequence[Any]], Row[Any]] | None = None


# By statement object: records.statement/typed hand out one object per text, so this
# holds as many entries as there are statement shapes (None: not for this path).
_COMPILED: weakref.WeakKeyDictionary[Any, _Compiled | None] = weakref.WeakKeyDictionary()


def _compile(stmt: Any, dialect: sa.Dialect) -> _Compiled | None:
    if isinstance(stmt, TextualSelect):
        if any(
            c.type.dialect_impl(dialect).result_processor(dialect, None) is not None
            for c in stmt.selected_columns
        ):
            return None
    elif not isinstance(stmt, TextClause):
        return None
    compiled = stmt.compile(dialect=dialect)
    if compiled.positiontup is None or any(
        not isinstance(b.type, NullType) for b in compiled.binds.values()
    ):
        return None
    return _Compiled(compiled.string, compiled.positiontup)


class Rows:
    """The rows of one statement, as much of SQLAlchemy's Result as the store uses."""

    __slots__ = ("_rows",)

    def __init__(self, rows: list[Row[Any]]) -> None:
        self._rows = rows

    def __iter__(self) -> Iterator[Row[Any]]:
        return iter(self._rows)

    def all(self) -> list[Row[Any]]:
        return self._rows

    def one_or_none(self) -> Row[Any] | None:
        if len(self._rows) > 1:
            raise sa.exc.MultipleResultsFound(
                "Multiple rows were found when one or none was required"
            )
        return self._rows[0] if self._rows else None


class Direct:
    """Statements of the store on an asyncpg connection (module docstring).

    `Direct(conn)` runs them on the asyncpg connection under a SQLAlchemy one and
    hands SQLAlchemy what it must process. `pooled(engine)` and `Direct.strict(conn)`
    have no SQLAlchemy connection to hand it to: a statement that is not for this
    path is a TypeError there (the planned reads' statements all are; their tests
    run on `strict`).
    """

    __slots__ = ("_conn", "_driver", "_dialect", "_pool")

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn: AsyncConnection | None = conn
        self._driver: Any = None  # asyncpg's Connection, looked up on first use
        self._dialect = conn.dialect
        self._pool = conn.sync_engine.pool

    @classmethod
    def _on(cls, driver: Any, dialect: sa.Dialect, pool: Pool) -> Direct:
        direct = cls.__new__(cls)
        direct._conn, direct._driver, direct._dialect, direct._pool = None, driver, dialect, pool
        return direct

    @classmethod
    async def strict(cls, conn: AsyncConnection) -> Direct:
        """On `conn`'s asyncpg connection, without falling back to SQLAlchemy."""
        driver = (await conn.get_raw_connection()).driver_connection
        return cls._on(driver, conn.dialect, conn.sync_engine.pool)

    async def execute(self, stmt: Any, params: dict[str, Any] | None = None) -> Rows:
        try:
            compiled = _COMPILED[stmt]
        except KeyError:
            compiled = _COMPILED[stmt] = _compile(stmt, self._dialect)
        if compiled is None:
            if self._conn is None:
                raise TypeError(f"needs SQLAlchemy's processing, not for Direct: {stmt}")
            return Rows(list((await self._conn.execute(stmt, params)).all()))
        driver = self._driver
        if driver is None:
            assert self._conn is not None
            driver = self._driver = (await self._conn.get_raw_connection()).driver_connection
        values = params or {}
        for sink in _SINKS.get(self._pool, ()):
            sink(compiled.sql)
        records = await driver.fetch(compiled.sql, *[values[n] for n in compiled.names])
        if not records:
            return Rows([])
        make_row = compiled.make_row
        if make_row is None:
            make_row = compiled.make_row = result_tuple(list(records[0].keys()))
        return Rows([make_row(tuple(r)) for r in records])


@asynccontextmanager
async def pooled(engine: AsyncEngine, deadline: Deadline | None = None) -> AsyncIterator[Direct]:
    """A Direct on a connection of `engine`'s pool, without SQLAlchemy's Connection;
    the checkout and the statements end by `deadline` (api/store/deadline.py).

    asyncpg runs statements outside a transaction unless told otherwise: these are
    autocommit reads. Checking a connection out and back in this way costs ~50 us of
    CPU, through `engine.connect()` ~145 us, a fifth of a sidebar's or a tree's whole
    CPU in the app (20,000 checkouts each, uvloop; bench/README.md "Optimizations").
    """
    if deadline is None:
        raw = await engine.raw_connection()
    else:
        raw = await deadline.acquire(engine.raw_connection())
        deadline.guard(raw.driver_connection)
    try:
        yield Direct._on(raw.driver_connection, engine.dialect, engine.sync_engine.pool)
    except BaseException as exc:
        cut = deadline is not None and _cut(deadline)
        # A statement the server refused leaves the connection idle and usable, as does
        # a client error the store raised between statements (VERSION_CONFLICT after an
        # append that matched no row); after anything else (cancelled mid-statement,
        # connection lost, cut at the deadline) it may be mid-protocol.
        idle = isinstance(exc, asyncpg.PostgresError | CtxgraphError) and not cut
        done = raw.close if idle else raw.invalidate
        await greenlet_spawn(done)
        if cut:
            assert deadline is not None
            raise deadline.error() from exc
        raise
    # In a greenlet: a connection beyond the pool's size is closed on the way back (I/O).
    # One cut after its last statement has answered is not given back either.
    cut = deadline is not None and _cut(deadline)
    await greenlet_spawn(raw.invalidate if cut else raw.close)


def _cut(deadline: Deadline) -> bool:
    """Whether the use's connection was terminated at its deadline; disarms it."""
    deadline.disarm()
    return deadline.expired


Reads = AsyncConnection | Direct
"""What the store's functions that planned reads (and one-statement writes) call take."""
