"""Reading histories: the visible messages of contexts through their fork chains.

A context's history is its own messages plus, for each ancestor A reached
through the fork L that links the chain into A, A's messages with
version <= the smallest fork version on the way down and not deleted before
L was created (design.md, "snapshot rule"). Every read here is ONE statement
whatever the fork depth: a recursive CTE walks up the chain (one row per
segment) and a LATERAL keyset range scan on (context_id, version) reads each
segment. Many contexts are read in the same statement (DataLoader batches),
partitioned by the context asked for (`leaf`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from api.store.records import MESSAGE_NAMES, for_ids, message_select_list, statement, typed


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    """Which messages of a history to consider (Context.messages arguments)."""

    from_version: int | None = None
    to_version: int | None = None
    roles: tuple[str, ...] | None = None
    include_inherited: bool = True
    include_deleted: bool = False

    @property
    def is_whole_history(self) -> bool:
        """True when the filter selects exactly what the context's counters count."""
        return (
            self.from_version is None
            and self.to_version is None
            and self.roles is None
            and self.include_inherited
            and not self.include_deleted
        )


@dataclass(frozen=True, slots=True)
class HistoryPageRequest:
    filter: HistoryFilter
    size: int
    backward: bool
    after_version: int | None = None
    before_version: int | None = None


@dataclass(slots=True)
class HistoryPage:
    """One page of a history, ascending by version, with exact page info."""

    rows: list[Row[Any]]
    has_next: bool
    has_previous: bool


def chain_cte(include_inherited: bool) -> str:
    """Segments of each leaf's history: owner, version cap and snapshot time.

    `cap` is the smallest fork version between the leaf and the owner (PostgreSQL's
    LEAST ignores NULLs); `snap` is the creation time of the fork that links
    the chain into the owner (NULL for the leaf's own messages).
    """
    seed = (
        "SELECT c.id AS leaf, c.id AS owner, c.parent_id, c.fork_version, c.created_at,"
        " NULL::bigint AS cap, NULL::timestamptz AS snap"
        " FROM contexts c WHERE c.id = ANY(:ids)"
    )
    if not include_inherited:
        return f"chain AS ({seed})"
    # The parent by a LATERAL subquery with LIMIT 1 (it is found by primary key, so
    # the limit changes nothing), which the planner cannot flatten into a join: a
    # prepared statement's generic plan, chosen after five executions, does not know
    # how many ids come in and hashed the chain against a sequential scan of every
    # context at each level (EXPLAIN: 4.1 instead of 1.5 ms per depth-5 chat page).
    return (
        f"chain AS ({seed}"
        " UNION ALL"
        " SELECT ch.leaf, p.id, p.parent_id, p.fork_version, p.created_at,"
        " LEAST(ch.cap, ch.fork_version), ch.created_at"
        " FROM chain ch CROSS JOIN LATERAL"
        " (SELECT * FROM contexts p WHERE p.id = ch.parent_id LIMIT 1) p)"
    )


def _segment_conditions(f: HistoryFilter, params: dict[str, Any]) -> list[str]:
    conditions = ["m.context_id = ch.owner", "(ch.cap IS NULL OR m.version <= ch.cap)"]
    if not f.include_deleted:
        # For own messages snap is NULL, so only undeleted ones pass.
        conditions.append("(m.deleted_at IS NULL OR m.deleted_at > ch.snap)")
    if f.from_version is not None:
        conditions.append("m.version >= :from_version")
        params["from_version"] = f.from_version
    if f.to_version is not None:
        conditions.append("m.version <= :to_version")
        params["to_version"] = f.to_version
    if f.roles is not None:
        conditions.append("m.role = ANY(:roles)")
        params["roles"] = list(f.roles)
    return conditions


_MESSAGE_NAMES = ", ".join(MESSAGE_NAMES)


# Which part of the statement a row comes from: the page itself, or a probe that
# tells whether anything matching lies at or beyond one of the cursors.
_PAGE, _AT_OR_BEFORE_AFTER, _AT_OR_AFTER_BEFORE = 0, 1, 2


async def history_pages(
    conn: AsyncConnection, context_ids: Sequence[uuid.UUID], req: HistoryPageRequest
) -> dict[uuid.UUID, HistoryPage]:
    """One page of the history of each context, in one statement.

    Page info is exact in both directions: besides the page (fetched one row
    long to see whether it continues), the statement probes each given cursor
    for a matching message on its far side, so `first/before` knows there is
    more after the window and `last/after` that there is more before it.
    """
    params: dict[str, Any] = {"ids": list(context_ids)}
    sql = f"WITH RECURSIVE {chain_cte(req.filter.include_inherited)} {pages_sql(req, params)}"
    sql, params = for_ids(sql, params)
    stmt = typed(sql, sa.column("leaf", sa.Uuid), sa.column("part", sa.Integer), messages=True)
    return split_pages(await conn.execute(stmt, params), context_ids, req)


def pages_sql(req: HistoryPageRequest, params: dict[str, Any], *, parts: bool = True) -> str:
    """The SELECT of `history_pages` (after its `chain` CTE): rows of (leaf, part,
    message columns...; `parts=False`: no parts and usage); adds its parameters to
    `params` (:ids, the leaves, is the caller's)."""
    params["lim"] = req.size + 1
    base = _segment_conditions(req.filter, params)
    order = "DESC" if req.backward else "ASC"
    page = list(base)
    probes: list[tuple[int, str]] = []
    if req.after_version is not None:
        page.append("m.version > :after_version")
        params["after_version"] = req.after_version
        probes.append((_AT_OR_BEFORE_AFTER, "m.version <= :after_version"))
    if req.before_version is not None:
        page.append("m.version < :before_version")
        params["before_version"] = req.before_version
        probes.append((_AT_OR_AFTER_BEFORE, "m.version >= :before_version"))
    branches = [
        f"SELECT ch.leaf, {_PAGE} AS part, m.* FROM chain ch CROSS JOIN LATERAL ("
        f"SELECT {message_select_list('m', parts=parts)} FROM messages m"
        f" WHERE {' AND '.join(page)}"
        f" ORDER BY m.version {order} LIMIT :lim) m"
    ]
    for part, bound in probes:
        branches.append(
            f"SELECT ch.leaf, {part} AS part, m.* FROM chain ch CROSS JOIN LATERAL ("
            f"SELECT {message_select_list('m', parts=parts)} FROM messages m"
            f" WHERE {' AND '.join([*base, bound])} LIMIT 1) m"
        )
    sign = -1 if req.backward else 1
    return (
        f"SELECT leaf, part, {_MESSAGE_NAMES} FROM ("
        " SELECT u.*, row_number() OVER (PARTITION BY u.leaf, u.part"
        f" ORDER BY u.version * {sign}) AS rn FROM ({' UNION ALL '.join(branches)}) u"
        ") r WHERE rn <= :lim"
    )


def split_pages(
    rows: Iterable[Any], context_ids: Sequence[uuid.UUID], req: HistoryPageRequest
) -> dict[uuid.UUID, HistoryPage]:
    """The pages of `pages_sql`'s rows (leaf, part, message...), with their page info;
    rows of any other part are skipped."""
    pages = {cid: HistoryPage(rows=[], has_next=False, has_previous=False) for cid in context_ids}
    beyond: dict[int, set[uuid.UUID]] = {_AT_OR_BEFORE_AFTER: set(), _AT_OR_AFTER_BEFORE: set()}
    for row in rows:
        leaf, part = row[0], row[1]  # by position: a Row's attribute lookup is 10x slower
        if part == _PAGE:
            pages[leaf].rows.append(row)
        elif part in beyond:
            beyond[part].add(leaf)
    for cid, p in pages.items():
        more = len(p.rows) > req.size
        del p.rows[req.size :]
        before_page = cid in beyond[_AT_OR_BEFORE_AFTER]
        after_page = cid in beyond[_AT_OR_AFTER_BEFORE]
        if req.backward:
            p.rows.reverse()
            p.has_previous, p.has_next = more or before_page, after_page
        else:
            p.has_next, p.has_previous = more or after_page, before_page
    return pages


async def history_counts(
    conn: AsyncConnection, context_ids: Sequence[uuid.UUID], f: HistoryFilter
) -> dict[uuid.UUID, int]:
    """How many messages of each history match the filter (totalCount), in one statement.

    Each segment is counted in a LATERAL subquery: a range scan of the (context_id,
    version) index. As a plain join the planner, estimating 100 chain rows, hashed
    the chain against a sequential scan of every message in the database.
    """
    params: dict[str, Any] = {"ids": list(context_ids)}
    conditions = _segment_conditions(f, params)
    sql = (
        f"WITH RECURSIVE {chain_cte(f.include_inherited)} "
        "SELECT ch.leaf, sum(s.n) AS n FROM chain ch CROSS JOIN LATERAL ("
        f"SELECT count(*) AS n FROM messages m WHERE {' AND '.join(conditions)}) s"
        " GROUP BY ch.leaf"
    )
    result = await conn.execute(statement(sql), params)
    counts = dict.fromkeys(context_ids, 0)
    counts.update({row.leaf: int(row.n) for row in result})
    return counts


def history_totals_at_sql() -> str:
    """CTEs ending in `totals(n, tokens)`: the count and token sum of the visible
    history of context :ids[0] up to version :v (the counters of a fork there).

    Independent of the history's length: a context's own messages have contiguous
    versions (fork_version+1 .. latest_version) and are never removed, so per segment
    of the chain the count up to a version is a subtraction and the token sum is the
    `prefix_tokens` of the message at that version (one index probe). Only the
    messages invisible under the snapshot rule are then read and subtracted, from
    the partial index of deleted messages: O(deleted messages), not O(history).
    """
    invisible = (
        "m.context_id = ch.owner AND m.version <= s.hi AND m.deleted_at IS NOT NULL"
        " AND (ch.snap IS NULL OR m.deleted_at <= ch.snap)"
    )
    return (
        f"{chain_cte(True)}, totals AS ("
        "SELECT coalesce(sum(greatest(s.hi - coalesce(ch.fork_version, 0), 0) - d.n), 0) AS n,"
        " coalesce(sum(coalesce(top.prefix_tokens, 0) - d.tokens), 0) AS tokens"
        " FROM chain ch CROSS JOIN LATERAL (SELECT LEAST(ch.cap, CAST(:v AS bigint)) AS hi) s"
        " LEFT JOIN LATERAL (SELECT m.prefix_tokens FROM messages m"
        " WHERE m.context_id = ch.owner AND m.version = s.hi) top ON true"
        " CROSS JOIN LATERAL (SELECT count(*) AS n, coalesce(sum(m.token_count), 0) AS tokens"
        f" FROM messages m WHERE {invisible}) d)"
    )
