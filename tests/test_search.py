"""Similarity search through the GraphQL API: similarMessages, Message.similar and
setMessageEmbedding; plus the store's two paths (exact and HNSW) on the same data.

The rolled-back `client` also sees rows other tests committed, some with
embeddings, so every test searches around its own random direction in 1536-d:
other rows are ~1.0 away from it, this test's rows much closer.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from api.app import create_app
from api.store.contexts import create_context as store_create
from api.store.inputs import NewMessage
from api.store.messages import append_messages
from api.store.search import (
    DEFAULT_TUNING,
    QueryVector,
    Scope,
    SearchRequest,
    _route,
    _Scope,
    explain,
    search,
)
from tests.conftest import (
    GraphQLClient,
    RollbackConnector,
    StatementLog,
    graphql_client,
    test_settings,
)
from tests.helpers import assistant, fork, user

DIM = 1536

SEARCH = (
    "query($e: [Float!], $text: String, $first: Int, $scope: SearchScope, $cid: ID,"
    " $roles: [MessageRole!], $max: Float) {"
    " similarMessages(embedding: $e, text: $text, first: $first, scope: $scope,"
    " contextId: $cid, roles: $roles, maxDistance: $max) {"
    " distance message { id content role deletedAt hasEmbedding context { id } } } }"
)
SEARCH_LEAN = SEARCH.replace("deletedAt hasEmbedding context { id }", "")
SET_EMBEDDING = (
    "mutation($id: ID!, $e: [Float!]!) {"
    " setMessageEmbedding(id: $id, embedding: $e) { id hasEmbedding } }"
)


# --- vectors -------------------------------------------------------------------------


def unit(v: list[float]) -> list[float]:
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def random_direction(rng: random.Random) -> list[float]:
    return unit([rng.gauss(0, 1) for _ in range(DIM)])


def toward(base: list[float], other: list[float], t: float) -> list[float]:
    """A unit vector between base (t=0) and other (t=1)."""
    return unit([(1 - t) * a + t * b for a, b in zip(base, other, strict=True)])


def distance(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return 1 - dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


class Space:
    """This test's corner of the vector space: a query direction and rows at chosen
    distances from it (t = how far towards an unrelated direction)."""

    def __init__(self) -> None:
        self.rng = random.Random(uuid.uuid4().int)
        self.query = random_direction(self.rng)
        self.away = random_direction(self.rng)

    def at(self, t: float) -> list[float]:
        # A little noise so no two rows are equidistant by construction.
        wobble = random_direction(self.rng)
        return toward(toward(self.query, self.away, t), wobble, 0.001)


# --- GraphQL helpers -------------------------------------------------------------------


async def similar(
    client: GraphQLClient, query: str = SEARCH, **variables: Any
) -> list[dict[str, Any]]:
    data = await client.data(query, variables)
    matches: list[dict[str, Any]] = data["similarMessages"]
    return matches


async def similar_error(client: GraphQLClient, **variables: Any) -> dict[str, Any]:
    return await client.error(SEARCH, variables)


def contents(matches: list[dict[str, Any]]) -> list[str]:
    return [m["message"]["content"] for m in matches]


async def context_with(
    client: GraphQLClient, rows: Sequence[tuple[str, list[float] | None]], role: str = "USER"
) -> tuple[str, list[str]]:
    """A root context whose messages have these contents and embeddings; (id, message ids)."""
    messages = [
        {"role": role, "content": c, **({"embedding": e} if e is not None else {})} for c, e in rows
    ]
    data = await client.data(
        "mutation($m: [MessageInput!]) { createContext(messages: $m) {"
        " id messages(first: 500) { nodes { id } } } }",
        {"m": messages},
    )
    ctx = data["createContext"]
    return ctx["id"], [n["id"] for n in ctx["messages"]["nodes"]]


async def append_rows(
    client: GraphQLClient, context_id: str, rows: Sequence[tuple[str, list[float] | None]]
) -> list[str]:
    messages = [
        {"role": "USER", "content": c, **({"embedding": e} if e is not None else {})}
        for c, e in rows
    ]
    data = await client.data(
        "mutation($id: ID!, $m: [MessageInput!]!) {"
        " appendMessages(contextId: $id, messages: $m) { messages { id } } }",
        {"id": context_id, "m": messages},
    )
    return [m["id"] for m in data["appendMessages"]["messages"]]


# --- setMessageEmbedding -------------------------------------------------------------


async def test_set_message_embedding_updates_has_embedding(client: GraphQLClient) -> None:
    space = Space()
    cid, (mid,) = await context_with(client, [("no vector yet", None)])
    assert await similar(client, e=space.query, scope="CONTEXT", cid=cid) == []
    data = await client.data(SET_EMBEDDING, {"id": mid, "e": space.at(0.1)})
    assert data["setMessageEmbedding"] == {"id": mid, "hasEmbedding": True}
    node = await client.data("query($id: ID!) { message(id: $id) { hasEmbedding } }", {"id": mid})
    assert node["message"]["hasEmbedding"] is True
    # Replacing it moves the message in the search.
    (match,) = await similar(client, e=space.query, scope="CONTEXT", cid=cid)
    assert match["distance"] == pytest.approx(distance(space.query, space.at(0.1)), abs=0.01)
    await client.data(SET_EMBEDDING, {"id": mid, "e": space.query})
    (match,) = await similar(client, e=space.query, scope="CONTEXT", cid=cid)
    assert match["distance"] == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize(
    ("size", "fragment"), [(1535, "exactly 1536 numbers (got 1535)"), (1537, "(got 1537)")]
)
async def test_set_message_embedding_wrong_size(
    client: GraphQLClient, size: int, fragment: str
) -> None:
    _, (mid,) = await context_with(client, [("m", None)])
    error = await client.error(SET_EMBEDDING, {"id": mid, "e": [0.1] * size})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert fragment in error["message"]
    node = await client.data("query($id: ID!) { message(id: $id) { hasEmbedding } }", {"id": mid})
    assert node["message"]["hasEmbedding"] is False


async def test_set_message_embedding_rejects_infinity(client: GraphQLClient) -> None:
    """1e400 is valid JSON that parses to infinity: refused, nothing stored."""
    _, (mid,) = await context_with(client, [("m", None)])
    vector = ",".join(["0.5"] * (DIM - 1) + ["1e400"])
    body = (
        '{"query": ' + json.dumps(SET_EMBEDDING) + ', "variables": {"id": "' + mid + '", "e": ['
        f"{vector}]}}}}"
    )
    response = await client.http.post(
        "/graphql", content=body, headers={"content-type": "application/json"}
    )
    error = response.json()["errors"][0]
    # GraphQL's Float refuses it first; check_embedding would otherwise.
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "inf" in error["message"]
    node = await client.data("query($id: ID!) { message(id: $id) { hasEmbedding } }", {"id": mid})
    assert node["message"]["hasEmbedding"] is False


async def test_set_message_embedding_unknown_and_malformed_ids(client: GraphQLClient) -> None:
    vector = [0.1] * DIM
    error = await client.error(SET_EMBEDDING, {"id": str(uuid.uuid4()), "e": vector})
    assert error["extensions"]["code"] == "NOT_FOUND"
    error = await client.error(SET_EMBEDDING, {"id": "nope", "e": vector})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


# --- similarMessages: ordering, scopes, filters ------------------------------------------


async def test_results_are_exactly_sorted_with_distances(client: GraphQLClient) -> None:
    space = Space()
    ts = [0.35, 0.05, 0.6, 0.2, 0.45, 0.1, 0.3]
    rows = [(f"t={t}", space.at(t)) for t in ts]
    await context_with(client, rows)
    matches = await similar(client, e=space.query, first=len(ts), max=0.8)
    expected = sorted(rows, key=lambda r: distance(space.query, r[1]))
    assert contents(matches) == [c for c, _ in expected]
    for m, (_, v) in zip(matches, expected, strict=True):
        assert m["distance"] == pytest.approx(distance(space.query, v), abs=1e-5)
    assert [m["distance"] for m in matches] == sorted(m["distance"] for m in matches)


async def test_first_defaults_to_10_and_max_distance_filters(client: GraphQLClient) -> None:
    space = Space()
    await context_with(client, [(f"r{i}", space.at(0.02 * i)) for i in range(15)])
    assert len(await similar(client, e=space.query, max=0.9)) == 10
    near = await similar(client, e=space.query, first=15, max=distance(space.query, space.at(0.09)))
    assert contents(near) == ["r0", "r1", "r2", "r3", "r4"]


async def test_roles_filter(client: GraphQLClient) -> None:
    space = Space()
    data = await client.data(
        "mutation($m: [MessageInput!]) { createContext(messages: $m) { id } }",
        {
            "m": [
                user("u-near", embedding=space.at(0.05)),
                assistant("a-mid", embedding=space.at(0.1)),
                {"role": "SYSTEM", "content": "s-far", "embedding": space.at(0.3)},
                user("u-far", embedding=space.at(0.4)),
            ]
        },
    )
    cid = data["createContext"]["id"]
    got = await similar(client, e=space.query, scope="CONTEXT", cid=cid, roles=["USER"])
    assert contents(got) == ["u-near", "u-far"]
    got = await similar(
        client, e=space.query, scope="CONTEXT", cid=cid, roles=["SYSTEM", "ASSISTANT"]
    )
    assert contents(got) == ["a-mid", "s-far"]
    assert await similar(client, e=space.query, scope="CONTEXT", cid=cid, roles=[]) == []


async def test_deleted_messages_and_contexts(client: GraphQLClient) -> None:
    space = Space()
    live, (keep, gone) = await context_with(
        client, [("keep", space.at(0.1)), ("gone", space.at(0.05))]
    )
    dead, _ = await context_with(client, [("in deleted context", space.at(0.01))])
    await client.data("mutation($id: ID!) { deleteMessage(id: $id) { id } }", {"id": gone})
    await client.data("mutation($id: ID!) { deleteContext(id: $id) { id } }", {"id": dead})
    assert contents(await similar(client, e=space.query, max=0.5)) == ["keep"]
    assert contents(await similar(client, e=space.query, scope="TREE", cid=live)) == ["keep"]
    assert contents(await similar(client, e=space.query, scope="CONTEXT", cid=live)) == ["keep"]
    # A deleted context's own history is still readable, and searchable by CONTEXT.
    assert contents(await similar(client, e=space.query, scope="CONTEXT", cid=dead)) == [
        "in deleted context"
    ]
    assert await similar(client, e=space.query, scope="TREE", cid=dead) == []


async def test_context_scope_follows_the_snapshot_rule(client: GraphQLClient) -> None:
    """CONTEXT = the fork's visible history: inherited up to the fork version, even
    from a deleted parent; never the parent's later messages; never deleted ones."""
    space = Space()
    parent, ids = await context_with(client, [(f"p{i}", space.at(0.05 * i)) for i in range(1, 5)])
    child = await fork(client, parent, 2)
    await append_rows(client, child["id"], [("c3", space.at(0.12))])
    await append_rows(client, parent, [("p5 after the fork", space.at(0.01))])
    await client.data("mutation($id: ID!) { deleteContext(id: $id) { id } }", {"id": parent})
    got = await similar(client, e=space.query, scope="CONTEXT", cid=child["id"])
    assert contents(got) == ["p1", "p2", "c3"]
    assert [m["message"]["context"]["id"] for m in got] == [parent, parent, child["id"]]
    # The parent is deleted: TREE keeps only the fork's own messages.
    got = await similar(client, e=space.query, scope="TREE", cid=child["id"])
    assert contents(got) == ["c3"]
    # A message deleted in the parent after the fork stays in the fork's history
    # (snapshot), but deleted messages are never search results.
    await client.data("mutation($id: ID!) { restoreContext(id: $id) { id } }", {"id": parent})
    await client.data("mutation($id: ID!) { deleteMessage(id: $id) { id } }", {"id": ids[0]})
    got = await similar(client, e=space.query, scope="CONTEXT", cid=child["id"])
    assert contents(got) == ["p2", "c3"]


async def test_tree_scope_covers_the_whole_fork_tree(client: GraphQLClient) -> None:
    space = Space()
    root, _ = await context_with(client, [("root", space.at(0.3))])
    a = await fork(client, root)
    await append_rows(client, a["id"], [("a", space.at(0.2))])
    b = await fork(client, a["id"])
    await append_rows(client, b["id"], [("b", space.at(0.1))])
    sibling = await fork(client, root)
    await append_rows(client, sibling["id"], [("sibling", space.at(0.05))])
    other, _ = await context_with(client, [("other tree", space.at(0.0))])
    for start in (root, a["id"], b["id"], sibling["id"]):
        got = await similar(client, e=space.query, scope="TREE", cid=start)
        assert contents(got) == ["sibling", "b", "a", "root"], start
    # A deleted context's messages leave the tree; its forks' messages stay.
    await client.data("mutation($id: ID!) { deleteContext(id: $id) { id } }", {"id": a["id"]})
    got = await similar(client, e=space.query, scope="TREE", cid=b["id"])
    assert contents(got) == ["sibling", "b", "root"]
    assert "other tree" not in contents(got)
    assert contents(await similar(client, e=space.query, max=0.25))[:1] == ["other tree"]


# --- argument errors ---------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["CONTEXT", "TREE"])
async def test_context_id_required_and_checked(client: GraphQLClient, scope: str) -> None:
    e = [0.1] * DIM
    error = await similar_error(client, e=e, scope=scope)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "`contextId` is required" in error["message"]
    error = await similar_error(client, e=e, scope=scope, cid=str(uuid.uuid4()))
    assert error["extensions"]["code"] == "NOT_FOUND"
    error = await similar_error(client, e=e, scope=scope, cid="not-a-uuid")
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize("first", [0, -1, 101])
async def test_first_bounds(client: GraphQLClient, first: int) -> None:
    error = await similar_error(client, e=[0.1] * DIM, first=first)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "between 1 and 100" in error["message"]


async def test_first_max_is_the_setting(conn: AsyncConnection) -> None:
    app = create_app(test_settings(max_search_results=5), connector=RollbackConnector(conn))
    async with graphql_client(app) as client:
        assert await similar(client, e=[0.1] * DIM, first=5, max=0.0) == []
        error = await similar_error(client, e=[0.1] * DIM, first=6)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "between 1 and 5" in error["message"]
    assert "CTXGRAPH_MAX_SEARCH_RESULTS" in error["message"]


@pytest.mark.parametrize(
    ("variables", "fragment"),
    [
        ({}, "exactly one of `embedding`"),
        ({"e": [0.1] * DIM, "text": "hello"}, "exactly one of `embedding`"),
        ({"e": [0.1] * 3}, "exactly 1536 numbers (got 3)"),
        ({"e": [0.1] * DIM, "max": -0.5}, "`maxDistance` must be >= 0"),
    ],
)
async def test_bad_arguments(
    client: GraphQLClient, variables: dict[str, Any], fragment: str
) -> None:
    error = await similar_error(client, **variables)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert fragment in error["message"]


async def test_text_without_provider_says_how_to_configure_one(client: GraphQLClient) -> None:
    error = await similar_error(client, text="what did we say about pricing?")
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "CTXGRAPH_EMBEDDINGS_URL" in error["message"]
    assert "CTXGRAPH_EMBEDDINGS_API_KEY" in error["message"]


# --- Message.similar -------------------------------------------------------------------

MESSAGE_SIMILAR = (
    "query($id: ID!, $scope: SearchScope, $first: Int, $roles: [MessageRole!]) {"
    " message(id: $id) { similar(scope: $scope, first: $first, roles: $roles) {"
    " distance message { content } } } }"
)


async def test_message_similar_excludes_itself(client: GraphQLClient) -> None:
    space = Space()
    _, (me, *_) = await context_with(
        client, [("me", space.query), ("near", space.at(0.1)), ("far", space.at(0.4))]
    )
    data = await client.data(MESSAGE_SIMILAR, {"id": me, "scope": "CONTEXT"})
    assert contents(data["message"]["similar"]) == ["near", "far"]
    data = await client.data(MESSAGE_SIMILAR, {"id": me, "scope": "ALL", "first": 1})
    assert contents(data["message"]["similar"]) == ["near"]
    data = await client.data(MESSAGE_SIMILAR, {"id": me, "scope": "TREE", "roles": ["SYSTEM"]})
    assert data["message"]["similar"] == []


async def test_message_similar_is_empty_without_embedding(client: GraphQLClient) -> None:
    space = Space()
    _, (bare, _) = await context_with(client, [("bare", None), ("other", space.query)])
    data = await client.data(MESSAGE_SIMILAR, {"id": bare})
    assert data["message"]["similar"] == []
    error = await client.error(MESSAGE_SIMILAR, {"id": bare, "first": 0})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


async def test_message_similar_in_a_page_of_history(client: GraphQLClient) -> None:
    """Nested under a history page: each node searches its own owner's context."""
    space = Space()
    parent, _ = await context_with(client, [("p1", space.at(0.1)), ("p2", space.at(0.2))])
    child = await fork(client, parent)
    await append_rows(client, child["id"], [("c3", space.at(0.15))])
    data = await client.data(
        "query($id: ID!) { context(id: $id) { messages(first: 10) { nodes { content"
        " similar(scope: CONTEXT) { message { content } } } } } }",
        {"id": child["id"]},
    )
    nodes = data["context"]["messages"]["nodes"]
    # p1 and p2 are owned by the parent: their CONTEXT is the parent's history.
    assert {n["content"]: contents(n["similar"]) for n in nodes} == {
        "p1": ["p2"],
        "p2": ["p1"],
        "c3": ["p1", "p2"],
    }


# --- never short; the two paths agree -------------------------------------------------------


async def test_selective_filter_is_never_short(client: GraphQLClient) -> None:
    """A role that is 4 rows among 300, all far from the query: the index alone finds
    none of them in its first candidates; the search still returns all 4, in order."""
    space = Space()
    rows = [user(f"near {i}", embedding=space.at(0.001 * i)) for i in range(296)]
    rows += [
        {"role": "SYSTEM", "content": f"far {i}", "embedding": space.at(0.5 + 0.05 * i)}
        for i in range(4)
    ]
    data = await client.data(
        "mutation($m: [MessageInput!]) { createContext(messages: $m) { id } }", {"m": rows}
    )
    cid = data["createContext"]["id"]
    for scope in ("ALL", "TREE", "CONTEXT"):
        got = await similar(client, e=space.query, scope=scope, cid=cid, roles=["SYSTEM"], first=3)
        assert contents(got) == ["far 0", "far 1", "far 2"], scope


async def test_index_path_alone_would_be_short(conn: AsyncConnection) -> None:
    """The exact fallback is load-bearing: without iterative scans the same query
    through the HNSW index returns fewer rows than exist."""
    space = Space()
    ctx = await store_create(conn, None, {}, [])
    messages = [
        NewMessage(role="user", content=f"n{i}", embedding=space.at(0.001 * i)) for i in range(200)
    ]
    messages += [
        NewMessage(role="system", content=f"f{i}", embedding=space.at(0.6 + 0.05 * i))
        for i in range(3)
    ]
    await append_messages(conn, ctx.id, messages, None)
    req = SearchRequest(k=3, scope="all", roles=("system",))
    q = QueryVector(values=space.query)
    off = replace(DEFAULT_TUNING, path="index", iterative_scan="off", ef_search=40, candidates=3)
    async with conn.begin_nested():
        short = await search(conn, q, req, off)
    assert len(short.rows) < 3
    async with conn.begin_nested():
        full = await search(conn, q, req)
    assert [r.content for r in full.rows] == ["f0", "f1", "f2"]
    assert full.path == "index+exact"


async def test_exact_and_index_paths_agree(conn: AsyncConnection) -> None:
    space = Space()
    ctx = await store_create(conn, None, {}, [])
    rng = random.Random(7)
    await append_messages(
        conn,
        ctx.id,
        [
            NewMessage(role="user", content=f"r{i}", embedding=space.at(rng.random() * 0.5))
            for i in range(120)
        ],
        None,
    )
    q = QueryVector(values=space.query)
    scopes: tuple[Scope, ...] = ("context", "tree")
    for scope in scopes:
        req = SearchRequest(k=20, scope=scope, context_id=ctx.id)
        async with conn.begin_nested():
            exact = await search(conn, q, req, replace(DEFAULT_TUNING, path="exact"))
        async with conn.begin_nested():
            # HNSW is approximate and its graph layers are random per build: with the
            # default ef_search one of the 20 was sometimes missed (1 CI run in ~12).
            # The widest candidate list pgvector allows makes the scan exhaustive here.
            tuning = replace(DEFAULT_TUNING, path="index", ef_search=1000)
            index = await search(conn, q, req, tuning)
        assert exact.path == "exact"
        assert index.path == "index"
        assert [r.id for r in index.rows] == [r.id for r in exact.rows]
        assert [r.distance for r in index.rows] == pytest.approx([r.distance for r in exact.rows])


async def test_ann_statement_uses_the_hnsw_index(conn: AsyncConnection) -> None:
    """The planner does not cost TOAST reads and flips to a sequential scan + sort;
    the index statement pins the HNSW index (enable_seqscan off, random_page_cost)."""
    q = QueryVector(values=[0.1] * DIM)
    for roles in (None, ("system",)):
        async with conn.begin_nested():
            plan = "\n".join(
                await explain(conn, q, SearchRequest(k=10, roles=roles), analyze=False)
            )
        assert "Index Scan using ix_messages_embedding_hnsw" in plan, plan


def _search_statements(log: StatementLog) -> list[str]:
    """The statements of a search, without the test connector's savepoints."""
    return [
        s.split("(")[0].split()[0] + (" set_config" if "set_config" in s else "")
        for s in log.statements
        if not s.startswith(("SAVEPOINT", "RELEASE"))
    ]


async def test_statements_per_search(client: GraphQLClient, statements: StatementLog) -> None:
    """A fixed number of statements whatever k: scope lookup or index settings, the
    search, and (index path, scan ran out) the exact fallback."""
    space = Space()
    cid, _ = await context_with(client, [(f"r{i}", space.at(0.01 * i)) for i in range(5)])
    seen = []
    for first in (1, 5):
        statements.clear()
        await similar(client, SEARCH_LEAN, e=space.query, first=first, scope="CONTEXT", cid=cid)
        seen.append(_search_statements(statements))
    assert seen == [["SELECT set_config", "WITH"]] * 2, statements.statements
    seen = []
    for first in (1, 5, 100):
        statements.clear()
        await similar(client, SEARCH_LEAN, e=space.query, first=first, max=0.5)
        seen.append(_search_statements(statements))
    for s in seen:
        assert s in (
            ["SELECT set_config", "WITH"],
            ["SELECT set_config", "WITH", "SELECT set_config", "WITH"],
        ), s


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        (_Scope("all", None), "index"),
        (_Scope("context", 50, None, 1e5), "exact"),
        (_Scope("tree", 2_000, [], 1e5), "exact"),
        # Exact costs 12 us a row; the index ~30 us per visited tuple, and visits
        # 40 * t / n tuples to collect 40 candidates: the crossover is ~3,200 rows
        # at 100k (measured: a 4,853-row tree, 26 ms by index, 57 ms exact).
        (_Scope("tree", 3_000, [], 1e5), "exact"),
        (_Scope("tree", 4_853, [], 1e5), "index"),
        (_Scope("context", 30_000, None, 1e7), "exact"),
        (_Scope("context", 40_000, None, 1e7), "index"),
        # 0.05% of the table: the index would give up at max_scan_tuples first.
        (_Scope("tree", 5_000, [], 1e7), "exact"),
        # Never analyzed (reltuples -1): the set is the table as far as we know.
        (_Scope("tree", 5_000, [], -1), "index"),
    ],
)
def test_routing_between_exact_and_index(scope: _Scope, expected: str) -> None:
    assert _route(scope, DEFAULT_TUNING) == expected


# --- the embedding variable's short coercion path (api/graphql/execution.py) -------------


@pytest.mark.parametrize(
    ("items", "fragment"),
    [
        ("NaN", "nan"),  # json.loads reads NaN; GraphQL's Float refuses it
        ("-Infinity", "inf"),
        ("true", "true"),  # a bool is not a Float
        ('"0.5"', "0.5"),  # nor is a string
        ("null", "null"),  # [Float!] refuses null items
        (str(2**60 + 1), "1152921504606846977"),  # an int no float holds exactly
    ],
)
async def test_embedding_variable_refusals_are_graphql_cores(
    client: GraphQLClient, items: str, fragment: str
) -> None:
    """Vectors the short path does not take get graphql-core's own errors, for both
    the nullable search argument and setMessageEmbedding's non-null one."""
    _, (mid,) = await context_with(client, [("m", None)])
    vector = ",".join(["0.5"] * (DIM - 1) + [items])
    for query, extra in ((SEARCH, ""), (SET_EMBEDDING, f', "id": "{mid}"')):
        body = f'{{"query": {json.dumps(query)}, "variables": {{"e": [{vector}]{extra}}}}}'
        response = await client.http.post(
            "/graphql", content=body, headers={"content-type": "application/json"}
        )
        (error,) = response.json()["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
        assert "Variable '$e' has invalid value" in error["message"]
        assert fragment in error["message"].lower()
    node = await client.data("query($id: ID!) { message(id: $id) { hasEmbedding } }", {"id": mid})
    assert node["message"]["hasEmbedding"] is False


async def test_embedding_variable_with_ints_and_exact_values(client: GraphQLClient) -> None:
    """Ints (JSON.stringify(0) is "0") are floats; values arrive exactly as sent."""
    space = Space()
    vector = space.at(0.05)
    vector[:4] = [0, 1, -1, 0]
    cid, (mid,) = await context_with(client, [("m", None)])
    data = await client.data(SET_EMBEDDING, {"id": mid, "e": vector})
    assert data["setMessageEmbedding"]["hasEmbedding"] is True
    (match,) = await similar(client, e=vector, scope="CONTEXT", cid=cid)
    assert match["distance"] == pytest.approx(0.0, abs=1e-5)
    # the same vector given inline (a literal, not a variable) finds the same match
    literal = "[" + ",".join(repr(float(x)) for x in vector) + "]"
    inline = await client.data(
        "query($cid: ID) { similarMessages(embedding: " + literal + ", scope: CONTEXT,"
        " contextId: $cid) { distance message { id } } }",
        {"cid": cid},
    )
    assert inline["similarMessages"][0]["message"]["id"] == mid
    assert inline["similarMessages"][0]["distance"] == pytest.approx(0.0, abs=1e-5)


def test_finite_floats_takes_only_what_graphql_core_would_coerce_as_is() -> None:
    from api.graphql.execution import finite_floats

    assert finite_floats([0.5, 1, -2]) == [0.5, 1.0, -2.0]
    assert [type(v) for v in finite_floats([0, 1]) or []] == [float, float]
    assert finite_floats([]) == []
    for refused in (
        [0.5, math.nan],
        [math.inf],
        [1e308, 1e308],  # each finite, the sum is not: the long way (still accepted there)
        [True, 0.5],
        [2**53 + 1],
        [[0.5]],
        (0.5, 1.0),
        "0.5",
    ):
        assert finite_floats(refused) is None, refused
