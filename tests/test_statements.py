"""SQL statements per request: no N+1, and exact counts per operation.

Writes that add messages also send `SELECT pg_notify(...)` (realtime fan-out,
api/store/notify.py) as a statement of its own: +1 on those counts.

Counts are every statement the engine sends (the `statements` fixture);
BEGIN/COMMIT are driver calls, not statements, and are not counted. The
single-operation counts run on `live_client` (the pooled engine, real
commits), so they are what production sends; the mutations inside the
rolled-back `client` would add a SAVEPOINT/RELEASE pair each.

Run with `-s` to print the figures:
    .venv/bin/pytest tests/test_statements.py -s -q
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from api.store.records import for_ids
from tests.conftest import GraphQLClient, StatementLog
from tests.helpers import append, create_context, fork, user

# --- N+1 -------------------------------------------------------------------------------------

NESTED = (
    "query($n: Int, $f: ContextFilter) {"
    " contexts(first: $n, filter: $f, orderBy: {field: NAME, direction: ASC}) {"
    " nodes { id name parent { id } forks(first: 3) { nodes { id } totalCount }"
    " messages(last: 5) { nodes { id content } } ancestors { id } root { id } depth } } }"
)


async def make_forest(client: GraphQLClient, tag: dict[str, str]) -> dict[str, dict[str, Any]]:
    """50 contexts named c00..c49 in groups of five: a root with 6 messages, then a
    chain of forks (depth 1..4), each with 2 messages of its own. Every root also has
    3 more forks (named z..., sorted after the 50) so forks(first: 3) has more pages.
    Any 5 consecutive names hold a root and forks at depths 1-4."""
    made: dict[str, dict[str, Any]] = {}
    for i in range(50):
        name = f"c{i:02d}"
        if i % 5 == 0:
            made[name] = await create_context(
                client, name=name, metadata=tag, messages=[user(f"{name}-{k}") for k in range(6)]
            )
        else:
            parent = made[f"c{i - 1:02d}"]
            made[name] = await fork(client, parent["id"], name=name)
            await append(client, made[name]["id"], [user(f"{name}-a"), user(f"{name}-b")])
    for i in range(0, 50, 5):
        for k in range(3):
            await fork(client, made[f"c{i:02d}"]["id"], name=f"z{i:02d}{k}")
    return made


async def measure(
    client: GraphQLClient, statements: StatementLog, query: str, variables: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    statements.clear()
    data = await client.data(query, variables)
    return data, list(statements.statements)


def show(label: str, sql: list[str]) -> None:
    print(f"\n{label}: {len(sql)} statements")  # noqa: T201 (the figures are the output)
    for s in sql:
        print("   ", " ".join(s.split())[:150])  # noqa: T201


def check_nested(data: dict[str, Any], made: dict[str, dict[str, Any]], n: int) -> None:
    """The batched answer is also the right one."""
    nodes = data["contexts"]["nodes"]
    assert [x["name"] for x in nodes] == [f"c{i:02d}" for i in range(n)]
    for i, node in enumerate(nodes):
        depth = i % 5
        group = [made[f"c{j:02d}"]["id"] for j in range(i - depth, i)]
        assert node["depth"] == depth
        assert [a["id"] for a in node["ancestors"]] == group
        assert node["root"]["id"] == (group[0] if group else node["id"])
        assert node["parent"] == ({"id": group[-1]} if group else None)
        own = [f"c{i:02d}-a", f"c{i:02d}-b"] if depth else []
        inherited = [f"c{i - depth:02d}-{k}" for k in range(6)]
        for j in range(i - depth + 1, i):
            inherited += [f"c{j:02d}-a", f"c{j:02d}-b"]
        assert [m["content"] for m in node["messages"]["nodes"]] == (inherited + own)[-5:]
        forks = node["forks"]
        expected_forks = (1 if depth < 4 else 0) + (3 if depth == 0 else 0)
        assert forks["totalCount"] == expected_forks
        assert len(forks["nodes"]) == min(3, expected_forks)


async def nested_listing_statements(
    client: GraphQLClient, statements: StatementLog, label: str
) -> None:
    tag = {"tag": uuid.uuid4().hex}
    made = await make_forest(client, tag)
    variables: dict[str, Any] = {"f": {"metadataContains": tag}}
    await client.data(NESTED, {**variables, "n": 2})  # warm the pool and caches
    small, small_sql = await measure(client, statements, NESTED, {**variables, "n": 5})
    large, large_sql = await measure(client, statements, NESTED, {**variables, "n": 50})
    check_nested(small, made, 5)
    check_nested(large, made, 50)
    show(f"nested contexts page, 5 contexts ({label})", small_sql)
    show(f"nested contexts page, 50 contexts ({label})", large_sql)
    assert len(small_sql) == len(large_sql)
    # list + parent + ancestors (root, depth) + forks page + forks count + history page
    assert len(large_sql) == 6


async def test_nested_listing_has_no_n_plus_1(
    client: GraphQLClient, statements: StatementLog
) -> None:
    await nested_listing_statements(client, statements, "one connection")


async def test_nested_listing_has_no_n_plus_1_on_the_pool(
    live_client: GraphQLClient, statements: StatementLog
) -> None:
    """Loaders on their own pooled connections, resolving concurrently: same batches."""
    await nested_listing_statements(live_client, statements, "pooled connections")


async def test_message_fields_are_batched(client: GraphQLClient, statements: StatementLog) -> None:
    """Message.context and Message.forks over a page of messages: one statement each."""
    root = await create_context(client, messages=[user(str(i)) for i in range(30)])
    for v in (3, 7, 7, 20):
        await fork(client, root["id"], v)
    child = await fork(client, root["id"])
    await append(client, child["id"], [user("own")])
    query = (
        "query($id: ID!, $n: Int) { context(id: $id) { messages(last: $n) {"
        " nodes { version context { id name } forks { id } } } } }"
    )
    _, few = await measure(client, statements, query, {"id": child["id"], "n": 3})
    data, many = await measure(client, statements, query, {"id": child["id"], "n": 31})
    show("history page with context and forks per message, 3 messages", few)
    show("history page with context and forks per message, 31 messages", many)
    nodes = data["context"]["messages"]["nodes"]
    assert len(nodes) == 31
    assert [len(n["forks"]) for n in nodes if n["version"] in (3, 7, 20, 30)] == [1, 2, 1, 1]
    # the context with its parent (the owner of the inherited messages) and the history
    # page in one statement; the forks at those versions in another
    assert len(few) == len(many) == 2


# --- exact counts per operation -----------------------------------------------------------------


CREATE = (
    "mutation($m: [MessageInput!], $meta: JSON) {"
    " createContext(messages: $m, metadata: $meta) { id latestVersion } }"
)
APPEND = (
    "mutation($id: ID!, $m: [MessageInput!]!) { appendMessages(contextId: $id, messages: $m)"
    " { messages { id version } } }"
)
FORK = "mutation($id: ID!, $v: Int) { forkContext(id: $id, atVersion: $v) { id latestVersion } }"
HISTORY = (
    "query($id: ID!, $before: String) { context(id: $id) { id messages(last: 50, before: $before)"
    " { nodes { id version content } pageInfo { hasPreviousPage hasNextPage startCursor }"
    " totalCount } } }"
)
TREE = (
    "query($id: ID!) { context(id: $id) { id name parent { id name latestVersion"
    " forks(first: 10) { nodes { id name forkVersion } } } } }"
)
LISTING = (
    "query($f: ContextFilter, $after: String) { contexts(first: 20, after: $after, filter: $f)"
    " { nodes { id name updatedAt } pageInfo { hasNextPage hasPreviousPage endCursor }"
    " totalCount } }"
)


async def test_statement_counts_per_operation(
    live_client: GraphQLClient, statements: StatementLog
) -> None:
    c = live_client
    tag = {"tag": uuid.uuid4().hex}
    figures: dict[str, int] = {}

    async def op(label: str, query: str, variables: dict[str, Any], expected: int) -> Any:
        data, sql = await measure(c, statements, query, variables)
        show(label, sql)
        figures[label] = len(sql)
        assert len(sql) == expected, label
        return data

    await c.data(CREATE, {"meta": tag})  # warm the pool

    empty = await op("createContext, no messages", CREATE, {"meta": tag}, 1)
    assert empty["createContext"]["latestVersion"] == 0
    three = await op(
        "createContext, 3 messages",
        CREATE,
        {"meta": tag, "m": [user("a"), user("b"), user("c")]},
        2,  # the statement + pg_notify for subscribers
    )
    assert three["createContext"]["latestVersion"] == 3
    cid = three["createContext"]["id"]
    # the append notifies subscribers from its own statement, in autocommit
    one = await op("appendMessages, 1 message", APPEND, {"id": cid, "m": [user("d")]}, 1)
    assert [m["version"] for m in one["appendMessages"]["messages"]] == [4]
    fifty = await op(
        "appendMessages, 50 messages",
        APPEND,
        {"id": cid, "m": [user(f"m{i}") for i in range(50)]},
        1,
    )
    assert [m["version"] for m in fifty["appendMessages"]["messages"]] == list(range(5, 55))
    with_ids = [user(f"i{i}", id=str(uuid.uuid4())) for i in range(50)]
    # client ids: the context row is locked by a statement before the append's (a transaction)
    await op("appendMessages, 50 messages with client ids", APPEND, {"id": cid, "m": with_ids}, 2)
    await op("appendMessages, replay of those 50", APPEND, {"id": cid, "m": with_ids}, 2)
    latest = await op("forkContext at the latest version", FORK, {"id": cid}, 1)
    assert latest["forkContext"]["latestVersion"] == 104
    older = await op("forkContext at an older version", FORK, {"id": cid, "v": 10}, 2)
    assert older["forkContext"]["latestVersion"] == 10

    # A fork chain 20 deep, each link with 3 messages of its own.
    chain = [cid]
    for depth in range(1, 21):
        child = await fork(c, chain[-1], metadata=tag)
        await append(c, child["id"], [user(f"d{depth}-{k}") for k in range(3)])
        chain.append(child["id"])
    # the context and its page: one statement (Query.context sees the page it will need)
    page1 = await op("history page (last: 50), fork depth 1", HISTORY, {"id": chain[1]}, 1)
    page20 = await op("history page (last: 50), fork depth 20", HISTORY, {"id": chain[20]}, 1)
    assert page20["context"]["messages"]["totalCount"] == 104 + 60
    assert [n["version"] for n in page20["context"]["messages"]["nodes"]] == list(range(115, 165))
    assert page1["context"]["messages"]["totalCount"] == 107
    cursor = page20["context"]["messages"]["pageInfo"]["startCursor"]
    back = await op(
        "history page (last: 50, before), fork depth 20",
        HISTORY,
        {"id": chain[20], "before": cursor},
        1,
    )
    assert [n["version"] for n in back["context"]["messages"]["nodes"]] == list(range(65, 115))
    assert back["context"]["messages"]["pageInfo"]["hasNextPage"] is True

    # a fork with its parent and the parent's forks (the bench's tree workload): one
    # statement, the forks page read ahead with the contexts (api/graphql/lookahead.py)
    tree = await op("fork, its parent and the parent's forks", TREE, {"id": chain[20]}, 1)
    assert tree["context"]["parent"]["id"] == chain[19]
    assert [f["id"] for f in tree["context"]["parent"]["forks"]["nodes"]] == [chain[20]]

    listing = await op(
        "contexts page (first: 20) with totalCount", LISTING, {"f": {"metadataContains": tag}}, 2
    )
    assert listing["contexts"]["totalCount"] == 25
    assert listing["contexts"]["pageInfo"]["hasNextPage"] is True
    after = listing["contexts"]["pageInfo"]["endCursor"]
    rest = await op(
        "contexts page (first: 20, after) with totalCount",
        LISTING,
        {"f": {"metadataContains": tag}, "after": after},
        2,
    )
    assert len(rest["contexts"]["nodes"]) == 5
    assert rest["contexts"]["pageInfo"]["hasPreviousPage"] is True

    print("\nstatements per operation:")  # noqa: T201
    for label, n in figures.items():
        print(f"  {n}  {label}")  # noqa: T201


def test_one_context_id_is_written_as_a_one_element_array() -> None:
    sql = "SELECT 1 FROM contexts c WHERE c.id = ANY(CAST(:ids AS uuid[]) || x) OR c.id = ANY(:ids)"
    one, params = for_ids(sql, {"ids": ["a"], "lim": 3})
    assert one == (
        "SELECT 1 FROM contexts c WHERE c.id = ANY(ARRAY[CAST(:id AS uuid)] || x)"
        " OR c.id = ANY(ARRAY[CAST(:id AS uuid)])"
    )
    assert params == {"id": "a", "lim": 3}
    assert for_ids(sql, {"ids": ["a", "b"]}) == (sql, {"ids": ["a", "b"]})
    assert for_ids(sql, {"ids": ["a"], "id": "b"})[0] == sql  # :id is taken: left alone


async def test_a_chat_page_statement_gets_a_generic_plan(
    client: GraphQLClient, conn: AsyncConnection
) -> None:
    """PostgreSQL keeps a prepared chat-page statement on one generic plan, instead of
    planning it again at every execution (api/store/records.py, for_ids)."""
    root = await create_context(client, "root", [user(f"m{i}") for i in range(8)])
    child = await fork(client, root["id"], 4)
    query = "query($id: ID!) { context(id: $id) { id messages(last: 3) { nodes { id } } } }"
    for _ in range(8):
        for cid in (root["id"], child["id"]):
            await client.data(query, {"id": cid})
    plans = (
        await conn.execute(
            sa.text(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement LIKE '%WITH RECURSIVE chain%'"
            )
        )
    ).all()
    assert plans, "the chat page's statement was not prepared"
    assert sum(generic for generic, _ in plans) >= 10, plans


PARTS_PAGE = (
    "query($id: ID!, $n: Int) { context(id: $id) { id messages(last: $n) { nodes { id version"
    " role content status parts { __typename ... on TextPart { text }"
    " ... on ToolCallPart { callId name arguments } ... on ToolResultPart { callId output }"
    " ... on ReasoningPart { text } } usage { outputTokens } } } } }"
)


async def test_a_chat_page_selecting_parts_is_one_statement(
    live_client: GraphQLClient, statements: StatementLog
) -> None:
    """Parts live on the message row: a chat page that selects them is the one statement
    of a chat page, whatever its size, with no query per message. An append with tool
    calls or results is one statement too (its history's answers read in it)."""
    c = live_client
    ctx = await create_context(c, messages=[user("q")])
    for i in range(12):  # 12 x (assistant with a call, tool result, assistant text, user)
        exchange: list[dict[str, Any]] = [
            {
                "role": "ASSISTANT",
                "parts": [
                    {"reasoning": {"text": "think"}},
                    {"toolCall": {"callId": f"k{i}", "name": "f", "arguments": {"i": i}}},
                ],
                "usage": {"outputTokens": 7},
            },
            {"role": "TOOL", "parts": [{"toolResult": {"callId": f"k{i}", "output": {"ok": i}}}]},
            {"role": "ASSISTANT", "parts": [{"text": f"done {i}"}]},
            user(f"next {i}"),
        ]
        for message in exchange:
            statements.clear()
            await append(c, ctx["id"], [message])
            assert len(statements) == 1, statements.statements
    branch = await fork(c, ctx["id"])
    for cid, label in ((ctx["id"], "root"), (branch["id"], "fork")):
        data, few = await measure(c, statements, PARTS_PAGE, {"id": cid, "n": 5})
        data, many = await measure(c, statements, PARTS_PAGE, {"id": cid, "n": 49})
        show(f"chat page selecting parts, 5 messages ({label})", few)
        show(f"chat page selecting parts, 49 messages ({label})", many)
        assert len(few) == len(many) == 1
        nodes = data["context"]["messages"]["nodes"]
        assert len(nodes) == 49
        kinds = [[p["__typename"] for p in n["parts"]] for n in nodes[-4:]]
        assert kinds == [
            ["ReasoningPart", "ToolCallPart"],
            ["ToolResultPart"],
            ["TextPart"],
            ["TextPart"],
        ]
        assert nodes[-4]["parts"][1] == {
            "__typename": "ToolCallPart",
            "callId": "k11",
            "name": "f",
            "arguments": {"i": 11},
        }
        assert nodes[-4]["usage"] == {"outputTokens": 7}
