"""Fork-tree reads: ancestors, direct forks, descendants, the forks at a message.

Each function serves many contexts in one statement (DataLoader batches):
rows carry `grp`, the context they were asked for.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from api.store.records import CONTEXTS, context_select_list, typed

_CTX = context_select_list("c")
_CTX_NAMES = ", ".join("meta" if c.name == "metadata" else c.name for c in CONTEXTS.columns)


async def ancestors(
    conn: AsyncConnection, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Row[Any]]]:
    """Ancestors of each context, root first, parent last (empty for a root)."""
    sql = (
        "WITH RECURSIVE up(grp, id, depth) AS ("
        " SELECT c.id, c.parent_id, 1 FROM contexts c"
        " WHERE c.id = ANY(:ids) AND c.parent_id IS NOT NULL"
        " UNION ALL SELECT up.grp, p.parent_id, up.depth + 1 FROM up"
        " JOIN contexts p ON p.id = up.id WHERE p.parent_id IS NOT NULL)"
        f" SELECT up.grp, {_CTX} FROM up JOIN contexts c ON c.id = up.id"
        " ORDER BY up.grp, up.depth DESC"
    )
    out: dict[uuid.UUID, list[Row[Any]]] = {i: [] for i in ids}
    for row in await conn.execute(
        typed(sql, sa.column("grp", sa.Uuid), contexts=True), {"ids": list(ids)}
    ):
        out[row.grp].append(row)
    return out


async def forks_at(
    conn: AsyncConnection, keys: Sequence[tuple[uuid.UUID, int]]
) -> dict[tuple[uuid.UUID, int], list[Row[Any]]]:
    """Live forks made at (context, version), oldest first (Message.forks)."""
    sql = (
        f"SELECT {_CTX} FROM contexts c"
        " JOIN unnest(CAST(:pids AS uuid[]), CAST(:versions AS bigint[])) AS k(pid, v)"
        " ON c.parent_id = k.pid AND c.fork_version = k.v"
        " WHERE c.deleted_at IS NULL ORDER BY c.created_at, c.id"
    )
    params = {"pids": [k[0] for k in keys], "versions": [k[1] for k in keys]}
    out: dict[tuple[uuid.UUID, int], list[Row[Any]]] = {k: [] for k in keys}
    for row in await conn.execute(typed(sql, contexts=True), params):
        out[(row.parent_id, row.fork_version)].append(row)
    return out


@dataclass(frozen=True, slots=True)
class TreeQuery:
    """Which relatives to list: direct forks, or descendants down to max_depth."""

    descendants: bool
    include_deleted: bool = False
    max_depth: int | None = None


def _source(q: TreeQuery) -> str:
    """CTEs ending in `src(grp, depth, <context columns>)`."""
    live = "" if q.include_deleted else " WHERE c.deleted_at IS NULL"
    if not q.descendants:
        return (
            f"src AS (SELECT c.parent_id AS grp, 1 AS depth, {_CTX} FROM contexts c"
            f" WHERE c.parent_id = ANY(:ids){live.replace(' WHERE', ' AND')})"
        )
    # Deleted contexts are hidden but still walked through: their forks are listed.
    limit = " WHERE down.depth < :max_depth" if q.max_depth is not None else ""
    return (
        "down(grp, id, depth) AS ("
        " SELECT c.parent_id, c.id, 1 FROM contexts c WHERE c.parent_id = ANY(:ids)"
        " UNION ALL SELECT down.grp, c.id, down.depth + 1 FROM down"
        f" JOIN contexts c ON c.parent_id = down.id{limit}),"
        f" src AS (SELECT down.grp, down.depth, {_CTX} FROM down"
        f" JOIN contexts c ON c.id = down.id{live})"
    )


def _key(q: TreeQuery, alias: str) -> str:
    if q.descendants:
        return f"({alias}.depth, {alias}.created_at, {alias}.id)"
    return f"({alias}.created_at, {alias}.id)"


@dataclass(frozen=True, slots=True)
class TreePageRequest:
    query: TreeQuery
    size: int
    after: tuple[Any, ...] | None = None


@dataclass(slots=True)
class TreePage:
    rows: list[Row[Any]]
    has_next: bool
    has_previous: bool


async def tree_pages(
    conn: AsyncConnection, ids: Sequence[uuid.UUID], req: TreePageRequest
) -> dict[uuid.UUID, TreePage]:
    """A page of forks or descendants of each context (oldest first / by depth)."""
    q, size, after = req.query, req.size, req.after
    params: dict[str, Any] = {"ids": list(ids), "lim": size + 1, "max_depth": q.max_depth}
    key = _key(q, "s")
    branches = []
    if after is None:
        branches.append(
            f"SELECT s.*, false AS probe, row_number() OVER (PARTITION BY s.grp ORDER BY {key})"
            " AS rn FROM src s"
        )
    else:
        names = [f"a{i}" for i in range(len(after))]
        params.update(zip(names, after, strict=True))
        cursor = "(" + ", ".join(f":{n}" for n in names) + ")"
        branches.append(
            f"SELECT s.*, false AS probe, row_number() OVER (PARTITION BY s.grp ORDER BY {key})"
            f" AS rn FROM src s WHERE {key} > {cursor}"
        )
        branches.append(f"SELECT s.*, true AS probe, 1 AS rn FROM src s WHERE {key} <= {cursor}")
    sql = (
        f"WITH RECURSIVE {_source(q)}"
        f" SELECT grp, depth, probe, {_CTX_NAMES} FROM ({' UNION ALL '.join(branches)}) u"
        f" WHERE rn <= :lim ORDER BY grp, probe, {_key(q, 'u')}"
    )
    stmt = typed(
        sql,
        sa.column("grp", sa.Uuid),
        sa.column("depth", sa.Integer),
        sa.column("probe", sa.Boolean),
        contexts=True,
    )
    pages = {i: TreePage(rows=[], has_next=False, has_previous=False) for i in ids}
    for row in await conn.execute(stmt, params):
        page = pages[row.grp]
        if row.probe:
            page.has_previous = True
        else:
            page.rows.append(row)
    for page in pages.values():
        page.has_next = len(page.rows) > size
        del page.rows[size:]
    return pages


async def tree_counts(
    conn: AsyncConnection, ids: Sequence[uuid.UUID], q: TreeQuery
) -> dict[uuid.UUID, int]:
    sql = f"WITH RECURSIVE {_source(q)} SELECT grp, count(*) AS n FROM src GROUP BY grp"
    counts = dict.fromkeys(ids, 0)
    result = await conn.execute(sa.text(sql), {"ids": list(ids), "max_depth": q.max_depth})
    counts.update({row.grp: row.n for row in result})
    return counts
