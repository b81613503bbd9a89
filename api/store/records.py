"""How rows of each table are selected, so every query returns the same record shape.

Records are SQLAlchemy `Row`s whose attributes are the SQLModel field names
(`meta` for the `metadata` column). Messages carry `has_embedding` instead of
the 6 KB vector, which no read path needs.
"""

import functools
import re
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.engine.result import result_tuple
from sqlalchemy.sql.selectable import TextualSelect

from models import Context, Message

CONTEXTS: sa.Table = Context.__table__  # type: ignore[attr-defined]
MESSAGES: sa.Table = Message.__table__  # type: ignore[attr-defined]


def _attribute_name(column: sa.Column[Any]) -> str:
    return "meta" if column.name == "metadata" else column.name


# Running token sums kept for O(1) fork counters (api/store/contexts.py): written
# by appends, read only by forks, so no record carries them.
_BOOKKEEPING = {"own_tokens", "prefix_tokens"}
CONTEXT_COLUMNS = [c for c in CONTEXTS.columns if c.name not in _BOOKKEEPING]


def context_select_list(alias: str, prefix: str = "", *, meta: bool = True) -> str:
    """`alias.col AS attr, ...` for every context column (`prefix` + attr when given).

    `meta=False` selects NULL for the metadata: for a planned read that does not
    write it, so that no row's JSONB is decoded (in Python) for nothing.
    """
    return ", ".join(
        f"{'NULL::jsonb' if c.name == 'metadata' and not meta else f'{alias}.{c.name}'}"
        f" AS {prefix}{_attribute_name(c)}"
        for c in CONTEXT_COLUMNS
    )


CONTEXTS_AS_C = {meta: context_select_list("c", meta=meta) for meta in (True, False)}
"""`context_select_list("c", meta=...)` by `meta`: the store's statements alias contexts `c`."""

CONTEXT_NAMES = ", ".join(_attribute_name(c) for c in CONTEXT_COLUMNS)
"""The attribute names `context_select_list` gives, to select them again from a subquery."""

context_record = result_tuple([_attribute_name(c) for c in CONTEXT_COLUMNS])
"""A context record (a Row, as a query returns it) from its values in column order:
for statements that return a context's columns beside other rows' (prefixed)."""


MESSAGE_COLUMNS = [
    c for c in MESSAGES.columns if c.name != "embedding" and c.name not in _BOOKKEEPING
]


MESSAGE_NAMES = [c.name for c in MESSAGE_COLUMNS] + ["has_embedding"]
"""The names `message_select_list` gives, in its order."""


_PARTS_COLUMNS = frozenset({"parts", "usage"})


def _message_column(alias: str, name: str, parts: bool) -> str:
    # NULL is COMPLETED (models/message.py STATUSES): records carry the enum's value, so
    # Message.status is a plain column field like role
    if name == "status":
        return f"coalesce({alias}.status, 'completed') AS status"
    if not parts and name in _PARTS_COLUMNS:
        return f"NULL::jsonb AS {name}"
    return f"{alias}.{name}"


def message_select_list(alias: str, *, parts: bool = True) -> str:
    """`alias.col, ...` for every message column except the embedding, plus has_embedding
    (and the status as the API names it: 'completed' for NULL).

    `parts=False` selects NULL for the parts and usage: for a planned read that writes
    neither, so that no row's JSONB is decoded (in Python) for nothing."""
    cols = ", ".join(_message_column(alias, c.name, parts) for c in MESSAGE_COLUMNS)
    return f"{cols}, ({alias}.embedding IS NOT NULL) AS has_embedding"


def context_result_columns(prefix: str = "") -> list[sa.ColumnClause[Any]]:
    return [sa.column(prefix + _attribute_name(c), c.type) for c in CONTEXT_COLUMNS]


def message_result_columns() -> list[sa.ColumnClause[Any]]:
    return [sa.column(c.name, c.type) for c in MESSAGE_COLUMNS] + [
        sa.column("has_embedding", sa.Boolean)
    ]


_STATEMENTS: dict[tuple[Any, ...], Any] = {}
_MAX_STATEMENTS = 1024
S = TypeVar("S", sa.TextClause, TextualSelect)


def _cached(key: tuple[Any, ...], build: Callable[[], S]) -> S:
    found: S | None = _STATEMENTS.get(key)
    if found is None:
        if len(_STATEMENTS) >= _MAX_STATEMENTS:
            _STATEMENTS.clear()
        found = _STATEMENTS[key] = build()
    return found


def statement(sql: str) -> sa.TextClause:
    """The text statement for `sql`, built once and then reused.

    Building one (parsing the bind parameters, computing SQLAlchemy's cache key) took
    ~100 us per execution (bench/README.md, "Optimizations"). The SQL of this layer
    never inlines values, so there are few distinct texts; the bound only guards
    against a mistake. Every statement of the store goes through here or `typed`.
    """
    return _cached((sql,), lambda: sa.text(sql))


def typed(
    sql: str,
    *extra: sa.ColumnClause[Any],
    contexts: bool = False,
    messages: bool = False,
    context_prefix: str = "",
) -> TextualSelect:
    """A text statement whose result columns are typed like the model's (JSONB, UUID...),
    built once per text and column list (as `statement`): `extra`, then the context
    columns (named `context_prefix` + attribute), then the message columns."""

    def build() -> TextualSelect:
        columns: list[sa.ColumnClause[Any]] = list(extra)
        if contexts:
            columns += context_result_columns(context_prefix)
        if messages:
            columns += message_result_columns()
        return sa.text(sql).columns(*columns)

    # the type's class, not its repr: SQLAlchemy builds a type's repr from its
    # constructor's signature (inspect), ~40 us per statement; one call site always
    # passes the same types for the same text
    key = (sql, tuple((c.name, type(c.type)) for c in extra), contexts, messages, context_prefix)
    return _cached(key, build)


_IDS = re.compile(r"CAST\(:ids AS uuid\[\]\)|:ids\b")


def for_ids(sql: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A statement over context ids `:ids` (a uuid[] parameter), as it is sent for
    `params`: with exactly one id (a chat page, a fork, one context) the array is
    written ARRAY[CAST(:id AS uuid)].

    Why: asyncpg prepares every statement, and after five executions PostgreSQL
    may switch to a generic plan, made without the parameters' values. For an
    unknown uuid[] it assumes ten ids, which kept these statements on a custom
    plan (planned again at every execution, ~0.7 ms for a chat page's) or, before
    the chain's parent lookup was a LATERAL, picked a generic plan that scanned
    every context. With a one-element array in the text the generic plan knows the
    count and is chosen: a chat page 1.27 -> 0.39 ms, on a depth-5 fork 1.94 ->
    0.94 ms per execution (prepared, 200 executions, bench data set).
    """
    ids = params.get("ids")
    if ids is None or len(ids) != 1 or "id" in params:
        return sql, params
    one = {k: v for k, v in params.items() if k != "ids"}
    one["id"] = ids[0]
    return _one_id(sql), one


@functools.lru_cache(maxsize=256)
def _one_id(sql: str) -> str:
    # a handful of statement texts, each rewritten once (the regex takes tens of us)
    return _IDS.sub("ARRAY[CAST(:id AS uuid)]", sql)


def row_index(row: Any) -> dict[str, int] | None:
    """Attribute name -> position of a store record, when the row has the map its result
    shares: reading a Row by position is ten times cheaper than by attribute (the
    plain-field shortcut, api/graphql/execution.py, reads every column of a page).

    SQLAlchemy's private `Row._key_to_index` (SQLAlchemy is bounded in pyproject.toml;
    tests/test_adapters.py fails if it moves); None, and reads by name, otherwise."""
    if type(row) is not Row:
        return None
    index = getattr(row, "_key_to_index", None)
    return index if type(index) is dict else None
