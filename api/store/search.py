"""Similarity search: the messages nearest to a vector by cosine distance (`<=>`).

Results are exactly sorted (distance, then id) and never short: when at least
k messages match the scope and filters, k come back. Two execution paths:

- exact: compute the distance of every message of the filtered set and sort.
  The set is found through the B-tree on (context_id, version) (the history
  chain for CONTEXT, the owning contexts for TREE); its cost grows with the
  size of the set (each 6 KB vector is read from TOAST), its recall is 1.0.
- index: the HNSW index with pgvector's iterative scans
  (`hnsw.iterative_scan = relaxed_order`), so filters applied after the index
  scan (role, scope, deleted rows) make it read further instead of returning
  fewer rows. relaxed_order may emit rows slightly out of order, so the first
  `candidates` rows are taken in a MATERIALIZED CTE and re-sorted exactly. If
  the scan yields fewer than `candidates` rows (the filtered set is small, or
  far from the query so that `hnsw.max_scan_tuples` stops the scan), the
  exact path runs instead: that is what keeps results from ever being short.

Routing: ALL uses the index. CONTEXT and TREE know the size n of their set
before searching (a context's message_count; the owned rows of a tree's live
contexts); sets of up to 2,000 rows, and larger ones while reading them all
is estimated cheaper than the index scan's visits, use the exact path (see
`_route` and the measured costs in `SearchTuning`). A 50-row context through
the index alone: recall@10 0.588, 6 of 200 queries short; exactly: 4.5 ms.

Per transaction (SET LOCAL through set_config(..., true)), so `search` must
run inside one: the HNSW settings; for the index statement, no sequential
scans or explicit sorts (the planner does not cost TOAST reads and misjudges
the filters: it flipped to "read everything, sort" plans of 90-770 ms at
10k rows where the index answers in 4 ms); and custom plans for every search
statement (prepared statements switch to generic plans after five runs, which
were 5-10x slower).

The figures behind the defaults: bench/search/results/ (`python -m
bench.search --rows 100000`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from api.store.guards import context_not_found
from api.store.history import HistoryFilter, _segment_conditions, chain_cte
from api.store.records import message_select_list, statement, typed

Scope = Literal["context", "tree", "all"]
Path = Literal["exact", "index", "index+exact"]


@dataclass(frozen=True, slots=True)
class SearchTuning:
    """Knobs of the search, with defaults chosen from the benchmark (bench/search).

    ef_search: HNSW candidate list per scan iteration. Recall@10 of unfiltered
        queries at 100k rows (m=16, ef_construction=128): 0.939 at 40, 0.969 at 64,
        0.984 at 100, 0.994 at 200, for 7-9 ms a query: 200 keeps a margin over
        the 0.98 target for ~1.5 ms.
    candidates: rows taken from the relaxed-order index scan before the exact
        re-sort (at least k). With k: recall@10 0.955 for a role kept by 2% of the
        rows; with 40: 0.983 (for 44 ms instead of 26 ms at 100k rows).
    max_scan_tuples: how far an iterative scan may go before giving up (then the
        exact path answers).
    exact_max_rows: CONTEXT / TREE sets up to this size are always searched exactly
        (about 25 ms at the measured 12 us a row); larger ones by the cost model of
        `_route`, with these measured costs (100k rows, bench/search/results):
    exact_row_us: the exact path's cost per row of the set (reading its 6 KB vector
        from TOAST and the distance): a 4,853-row tree took 57-72 ms (p50).
    index_visit_us: the index path's cost per tuple it visits (graph hops, heap
        checks, filters): the same tree (4.9% of the table, ~800 visits for 40
        candidates) took 26-45 ms through the index, recall@10 0.994.
    random_page_cost: planner cost of a random page for the index statement.
    force_index: enable_seqscan = off for the index statement.
    iterative_scan / path: "off" / forced paths exist for the benchmark, which
        reproduces what goes wrong without them.
    """

    ef_search: int = 200
    candidates: int = 40
    max_scan_tuples: int = 20_000
    exact_max_rows: int = 2_000
    exact_row_us: float = 12.0
    index_visit_us: float = 30.0
    random_page_cost: float = 1.1
    force_index: bool = True
    iterative_scan: Literal["relaxed_order", "strict_order", "off"] = "relaxed_order"
    path: Literal["auto", "exact", "index"] = "auto"


DEFAULT_TUNING = SearchTuning()


@dataclass(frozen=True, slots=True)
class QueryVector:
    """The query: a vector given by the caller, or the stored embedding of a message."""

    values: list[float] | None = None
    message_id: uuid.UUID | None = None

    def sql(self, params: dict[str, Any]) -> str:
        if self.values is not None:
            # pgvector's text form '[x,y,...]' is a JSON array: orjson writes it in
            # ~0.05 ms, where asyncpg's float4[] encoder took 0.6 ms of client CPU
            # (per-item type checks) and Python's float formatting 1.1 ms. Cast once:
            # a scalar subquery is an InitPlan, while a bare cast of the parameter is
            # redone for every row once PostgreSQL uses a generic plan.
            params["q"] = orjson.dumps(self.values).decode()
            return "(SELECT CAST(CAST(:q AS text) AS vector))"
        params["qid"] = self.message_id
        # An uncorrelated scalar subquery: evaluated once (InitPlan), usable by the index.
        return "(SELECT qm.embedding FROM messages qm WHERE qm.id = :qid)"


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """What to search: k results in a scope, optionally filtered."""

    k: int
    scope: Scope = "all"
    context_id: uuid.UUID | None = None
    roles: tuple[str, ...] | None = None
    max_distance: float | None = None
    exclude_id: uuid.UUID | None = None


@dataclass(slots=True)
class SearchResult:
    """Message records with a `distance` attribute, nearest first, and how they were found."""

    rows: list[Row[Any]]
    path: Path
    estimated_rows: int | None = None
    candidates: int = 0
    notes: list[str] = field(default_factory=list)


_MSG = message_select_list("m")
# A scalar subquery stays a per-row SubPlan (a primary-key probe for each candidate
# the index yields); NOT EXISTS became an anti-join that scans every deleted context
# per query. A bare boolean SubPlan is estimated at 50% selectivity; `(...) IS NULL`
# at 0.5%, which made the planner expect ~50 matching rows and sort them all.
_OWNER_LIVE = "(SELECT c.deleted_at IS NULL FROM contexts c WHERE c.id = m.context_id)"
_RESULT = (sa.column("distance", sa.Float),)


@dataclass(frozen=True, slots=True)
class _Scope:
    """The filtered set: how to enumerate it (exact) and how to test a row (index)."""

    kind: Scope
    estimated_rows: int | None
    context_ids: list[uuid.UUID] | None = None  # TREE: the live contexts of the tree
    table_rows: float = 0.0  # pg_class.reltuples of messages (0 or -1: never analyzed)


# Every search statement is planned for its actual parameters. The driver prepares
# statements, and after five executions PostgreSQL may switch to a generic plan,
# which does not know the query vector, the roles or the LIMIT: measured at 100k
# rows, a role-filtered index search went from 12-20 ms to 76-194 ms a query.
_CUSTOM_PLANS = "set_config('plan_cache_mode', 'force_custom_plan', true) AS custom_plans"
_TABLE_ROWS = "(SELECT reltuples FROM pg_class WHERE oid = 'messages'::regclass) AS table_rows"


async def _resolve_scope(conn: AsyncConnection, req: SearchRequest) -> _Scope:
    if req.scope == "all":
        return _Scope("all", None)
    assert req.context_id is not None
    if req.scope == "context":
        row = (
            await conn.execute(
                statement(
                    f"SELECT message_count, {_TABLE_ROWS}, {_CUSTOM_PLANS}"
                    " FROM contexts WHERE id = :cid"
                ),
                {"cid": req.context_id},
            )
        ).one_or_none()
        if row is None:
            raise context_not_found(req.context_id)
        return _Scope("context", int(row.message_count), None, float(row.table_rows))
    # TREE: up to the root, then every descendant; deleted contexts are walked
    # through (their forks belong to the tree) but their messages are excluded.
    sql = (
        "WITH RECURSIVE up AS ("
        " SELECT c.id, c.parent_id FROM contexts c WHERE c.id = :cid"
        " UNION ALL SELECT p.id, p.parent_id FROM up JOIN contexts p ON p.id = up.parent_id),"
        " down AS ("
        " SELECT c.id, c.deleted_at, c.latest_version - coalesce(c.fork_version, 0) AS own"
        " FROM contexts c WHERE c.id = (SELECT id FROM up WHERE parent_id IS NULL)"
        " UNION ALL SELECT c.id, c.deleted_at, c.latest_version - coalesce(c.fork_version, 0)"
        " FROM down JOIN contexts c ON c.parent_id = down.id)"
        " SELECT count(*) AS n,"
        " coalesce(array_agg(id) FILTER (WHERE deleted_at IS NULL), '{}') AS ids,"
        " coalesce(sum(own) FILTER (WHERE deleted_at IS NULL), 0) AS own,"
        f" {_TABLE_ROWS}, {_CUSTOM_PLANS} FROM down"
    )
    row = (await conn.execute(statement(sql), {"cid": req.context_id})).one()
    if row.n == 0:
        raise context_not_found(req.context_id)
    return _Scope("tree", int(row.own), list(row.ids), float(row.table_rows))


def _row_filters(req: SearchRequest, params: dict[str, Any]) -> list[str]:
    conditions = ["m.deleted_at IS NULL"]
    if req.roles is not None:
        conditions.append("m.role = ANY(:roles)")
        params["roles"] = list(req.roles)
    if req.exclude_id is not None:
        conditions.append("m.id <> :exclude")
        params["exclude"] = req.exclude_id
    return conditions


def _context_chain(req: SearchRequest, params: dict[str, Any]) -> tuple[str, list[str]]:
    """The history chain of CONTEXT scope and the conditions joining a message to it.

    Deleted messages are never returned, so the snapshot rule reduces to the
    version caps (an inherited message deleted after the fork is still deleted).
    """
    params["ids"] = [req.context_id]
    conditions = _segment_conditions(HistoryFilter(include_deleted=True), params)
    return chain_cte(True), conditions


def _exact_sql(query: QueryVector, req: SearchRequest, scope: _Scope) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {"k": req.k}
    q = query.sql(params)
    conditions = [*_row_filters(req, params), "m.embedding IS NOT NULL"]
    prefix = ""
    distance = f"m.embedding <=> {q}"
    if scope.kind == "context":
        chain, joins = _context_chain(req, params)
        prefix = f"RECURSIVE {chain}, "
        # One range scan of (context_id, version) per segment of the chain. OFFSET 0
        # keeps the subquery from being flattened into a hash join over a sequential
        # scan of all messages (the planner cannot tell the chain is a few rows).
        rows = (
            "SELECT s.id, s.distance FROM chain ch CROSS JOIN LATERAL ("
            f"SELECT m.id, {distance} AS distance FROM messages m"
            f" WHERE {' AND '.join([*joins, *conditions])} OFFSET 0) s"
        )
    else:
        if scope.kind == "tree":
            params["ctx"] = scope.context_ids
            conditions.append("m.context_id = ANY(CAST(:ctx AS uuid[]))")
        else:
            conditions.append(_OWNER_LIVE)
        rows = (
            f"SELECT m.id, {distance} AS distance FROM messages m WHERE {' AND '.join(conditions)}"
        )
    # MATERIALIZED and no ORDER BY inside: the HNSW index cannot be used here,
    # so the set is enumerated through the B-tree and sorted exactly.
    outer = "WHERE d.distance IS NOT NULL"
    if req.max_distance is not None:
        outer += " AND d.distance <= :maxd"
        params["maxd"] = req.max_distance
    sql = (
        f"WITH {prefix}d AS MATERIALIZED ({rows}),"
        f" top AS (SELECT d.id, d.distance FROM d {outer} ORDER BY d.distance, d.id LIMIT :k)"
        f" SELECT top.distance, {_MSG} FROM top JOIN messages m ON m.id = top.id"
        " ORDER BY top.distance, m.id"
    )
    return sql, params


async def _exact(
    conn: AsyncConnection, query: QueryVector, req: SearchRequest, scope: _Scope
) -> list[Row[Any]]:
    sql, params = _exact_sql(query, req, scope)
    return list(await conn.execute(typed(sql, *_RESULT, messages=True), params))


async def _set_local(conn: AsyncConnection, settings: dict[str, str]) -> None:
    params: dict[str, Any] = {}
    for i, (name, value) in enumerate(settings.items()):
        params[f"n{i}"], params[f"v{i}"] = name, value
    calls = ", ".join(f"set_config(:n{i}, :v{i}, true)" for i in range(len(settings)))
    await conn.execute(statement(f"SELECT {calls}"), params)


async def _configure_index_scan(conn: AsyncConnection, tuning: SearchTuning, fetch: int) -> None:
    """Transaction-local settings for the index statement.

    The planner does not cost TOAST reads (each candidate's 6 KB vector) and
    misjudges how many rows the filters keep, so it flips between the HNSW scan
    and "read everything, sort": with random_page_cost 4 to a sequential scan,
    with enable_seqscan off to the B-tree on deleted_at plus a sort. Sequential
    scans and explicit sorts are disabled for this statement (the re-sort of the
    candidates has no alternative, so it stays), which leaves the HNSW scan.
    """
    force = "off" if tuning.force_index else "on"
    await _set_local(
        conn,
        {
            "hnsw.ef_search": str(max(tuning.ef_search, fetch)),
            "hnsw.iterative_scan": tuning.iterative_scan,
            "hnsw.max_scan_tuples": str(tuning.max_scan_tuples),
            "random_page_cost": str(tuning.random_page_cost),
            "enable_seqscan": force,
            "enable_sort": force,
            "plan_cache_mode": "force_custom_plan",
        },
    )


async def _reset_planner(conn: AsyncConnection) -> None:
    """Undo the index statement's planner settings before an exact statement."""
    await conn.execute(
        statement(
            "SELECT set_config(name, reset_val, true) FROM pg_settings"
            " WHERE name IN ('random_page_cost', 'enable_seqscan', 'enable_sort')"
        )
    )


def _index_sql(
    query: QueryVector, req: SearchRequest, scope: _Scope, fetch: int
) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {"fetch": fetch, "k": req.k}
    q = query.sql(params)
    conditions = _row_filters(req, params)
    prefix = ""
    if scope.kind == "context":
        chain, joins = _context_chain(req, params)
        prefix = f"RECURSIVE {chain}, "
        conditions.append(f"EXISTS (SELECT 1 FROM chain ch WHERE {' AND '.join(joins)})")
    elif scope.kind == "tree":
        # `IS TRUE` keeps the planner from answering through the B-tree on context_id
        # (that is the exact path, chosen here only for small sets).
        params["ctx"] = scope.context_ids
        conditions.append("(m.context_id = ANY(CAST(:ctx AS uuid[]))) IS TRUE")
    else:
        conditions.append(_OWNER_LIVE)
    outer = "WHERE cand.distance IS NOT NULL"
    if req.max_distance is not None:
        outer += " AND cand.distance <= :maxd"
        params["maxd"] = req.max_distance
    sql = (
        f"WITH {prefix}cand AS MATERIALIZED ("
        f"SELECT m.id, m.embedding <=> {q} AS distance FROM messages m"
        f" WHERE {' AND '.join(conditions)} ORDER BY m.embedding <=> {q} LIMIT :fetch),"
        # `+ 0`: PostgreSQL 17+ knows the CTE's rows come ordered by distance and
        # would only "finish" the sort (Incremental Sort reading k + 1 rows). In
        # relaxed order they are not sorted: hide the ordering to force a full sort.
        " top AS (SELECT cand.id, cand.distance FROM cand"
        f" {outer} ORDER BY cand.distance + 0, cand.id LIMIT :k)"
        " SELECT f.found, top.distance, "
        f"{_MSG} FROM (SELECT count(*) AS found FROM cand) f"
        " LEFT JOIN top ON true LEFT JOIN messages m ON m.id = top.id"
        " ORDER BY top.distance, m.id"
    )
    return sql, params


async def _index(
    conn: AsyncConnection, query: QueryVector, req: SearchRequest, scope: _Scope, fetch: int
) -> tuple[list[Row[Any]], int]:
    """The nearest rows by the HNSW index, and how many candidates the scan produced."""
    sql, params = _index_sql(query, req, scope, fetch)
    stmt = typed(sql, sa.column("found", sa.Integer), *_RESULT, messages=True)
    result = list(await conn.execute(stmt, params))
    found = int(result[0].found)
    return [r for r in result if r.id is not None], found


def _fetch(req: SearchRequest, tuning: SearchTuning) -> int:
    """How many rows to take from the index scan before the exact re-sort.

    Unfiltered (ALL, no roles) the first k rows come from the scan's first
    ef_search candidates, which are exactly ordered: overfetching bought no recall
    (0.9935 either way at 100k rows) and costs a TOAST read per extra row.
    """
    if req.scope == "all" and req.roles is None:
        return req.k
    return max(req.k, tuning.candidates)


def _route(scope: _Scope, tuning: SearchTuning) -> Literal["exact", "index"]:
    """Exact or index for a scope of n rows in a table of t (see SearchTuning's costs).

    The exact path reads all n rows; the index path, to collect `candidates` rows
    that pass a filter keeping n / t of the table, visits about candidates * t / n
    tuples. Exact wins while n * exact_row_us <= candidates * t / n * index_visit_us,
    and is the only sure answer when the index would stop at max_scan_tuples first.
    """
    if tuning.path != "auto":
        return tuning.path
    n = scope.estimated_rows
    if n is None:  # ALL: the index, whose filters (roles, deleted) keep most rows
        return "index"
    if n <= tuning.exact_max_rows:
        return "exact"
    t = max(scope.table_rows, float(n))
    visits = tuning.candidates * t / n
    if visits > tuning.max_scan_tuples:
        return "exact"
    return "exact" if n * tuning.exact_row_us <= visits * tuning.index_visit_us else "index"


async def search(
    conn: AsyncConnection,
    query: QueryVector,
    req: SearchRequest,
    tuning: SearchTuning = DEFAULT_TUNING,
) -> SearchResult:
    """The k messages nearest to `query` in the request's scope, nearest first.

    Raises NotFound when the scope's context does not exist. Must run inside a
    transaction (the index path sets transaction-local settings).
    """
    scope = await _resolve_scope(conn, req)
    if req.roles == ():
        return SearchResult([], "exact", scope.estimated_rows)
    if _route(scope, tuning) == "exact":
        rows = await _exact(conn, query, req, scope)
        return SearchResult(rows, "exact", scope.estimated_rows)
    fetch = _fetch(req, tuning)
    await _configure_index_scan(conn, tuning, fetch)
    rows, found = await _index(conn, query, req, scope, fetch)
    if found < fetch and tuning.path == "auto":
        # The scan ran out (small or distant filtered set): only an exact scan is sure.
        if tuning.force_index:
            await _reset_planner(conn)
        rows = await _exact(conn, query, req, scope)
        return SearchResult(rows, "index+exact", scope.estimated_rows, found)
    return SearchResult(rows, "index", scope.estimated_rows, found)


async def explain(
    conn: AsyncConnection,
    query: QueryVector,
    req: SearchRequest,
    tuning: SearchTuning = DEFAULT_TUNING,
    analyze: bool = True,
) -> list[str]:
    """The plan of the statement `search` would run first (for the benchmark)."""
    scope = await _resolve_scope(conn, req)
    if _route(scope, tuning) == "exact":
        sql, params = _exact_sql(query, req, scope)
    else:
        fetch = _fetch(req, tuning)
        await _configure_index_scan(conn, tuning, fetch)
        sql, params = _index_sql(query, req, scope, fetch)
    options = "ANALYZE, BUFFERS" if analyze else "COSTS"
    result = await conn.execute(statement(f"EXPLAIN ({options}) {sql}"), params)
    return [str(row[0]) for row in result]
