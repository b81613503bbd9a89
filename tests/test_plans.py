"""Planned reads (api/graphql/plans.py) answer exactly as graphql-core does.

Every planned document is sent twice, on the same data: to the app (its plan
answers) and to the app with CTXGRAPH_PLANS=false (graphql-core executes it field
by field). The two responses must be equal, for roots, forks, a deleted context
and a missing id, with every kind of page; where a plan does not answer (an
invalid argument), the error is graphql-core's. tests/test_plan_equality.py
generates many more selections the same way.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest
from graphql import parse
from sqlalchemy.ext.asyncio import AsyncConnection

from api.app import create_app
from api.graphql.plans import make_plan
from api.graphql.schema import build_schema
from api.security.limits import check_operation
from tests.conftest import (
    GraphQLClient,
    RollbackConnector,
    StatementLog,
    graphql_client,
    test_settings,
)
from tests.helpers import append, assistant, create_context, fork, user

CHAT = (
    "query($id: ID!) { context(id: $id) @D { id name messageCount __typename"
    " messages(last: 3) { nodes { id version role content tokenCount createdAt deletedAt } } } }"
)
PAGED = (
    "query($id: ID!, $first: Int, $after: String, $last: Int, $before: String) {"
    " ctx: context(id: $id) @D { ... on Context { id } latestVersion"
    " messages(first: $first, after: $after, last: $last, before: $before) {"
    " totalCount __typename pageInfo { hasNextPage hasPreviousPage startCursor endCursor }"
    " edges { __typename cursor node { ...M } } nodes { version } } } }"
    " fragment M on Message { id content role model toolName hasEmbedding }"
)
TREE = (
    "query($id: ID!, $del: Boolean) { context(id: $id) @D { id name forkVersion"
    " parent { id name latestVersion metadata"
    " forks(first: 2, includeDeleted: $del) { nodes { id name forkVersion deletedAt }"
    " edges { cursor } pageInfo { hasNextPage endCursor } } } } }"
)
PARENT = "query($id: ID!) { context(id: $id) @D { id parent { id name deletedAt messageCount } } }"
COLUMNS = (
    "query($id: ID!) { context(id: $id) @D { id name metadata createdAt updatedAt deletedAt"
    " messageCount totalTokens latestVersion forkVersion } }"
)
SIDEBAR = (
    "query($first: Int, $after: String, $last: Int) {"
    " contexts(first: $first, after: $after, last: $last) @D {"
    " nodes { id name messageCount updatedAt } edges { cursor node { id } }"
    " pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"
)


def planned(doc: str) -> str:
    return doc.replace(" @D", "")


async def both(
    client: GraphQLClient,
    reference: GraphQLClient,
    runs: list[bool],
    doc: str,
    variables: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(planned response, graphql-core's response); checks which path answered."""
    runs.clear()
    expected = await reference.execute(planned(doc), variables)
    assert runs == [], "the reference app has no plans"
    answer = await client.execute(planned(doc), variables)
    assert len(runs) <= 1
    return answer, expected


async def _family(client: GraphQLClient) -> dict[str, str]:
    """A root with a deleted message, a fork and a fork of it, a deleted sibling."""
    root = await create_context(
        client,
        "root",
        [user("u1"), assistant("a1"), user("u2"), assistant("a2"), user("u3")],
        metadata={"team": "x"},
    )
    messages = await client.data(
        "query($id: ID!) { context(id: $id) { messages { nodes { id } } } }", {"id": root["id"]}
    )
    await client.data(
        "mutation($id: ID!) { deleteMessage(id: $id) { id } }",
        {"id": messages["context"]["messages"]["nodes"][1]["id"]},
    )
    child = await fork(client, root["id"], 3, name="child")
    await append(client, child["id"], [assistant("c1"), user("c2")])
    grandchild = await fork(client, child["id"], 4, name="grandchild")
    await append(client, grandchild["id"], [assistant("g1")])
    sibling = await fork(client, root["id"], 2, name="sibling")
    await client.data("mutation($id: ID!) { deleteContext(id: $id) { id } }", {"id": sibling["id"]})
    await fork(client, root["id"], 5, name="late")
    return {
        "root": root["id"],
        "child": child["id"],
        "grandchild": grandchild["id"],
        "sibling": sibling["id"],
        "missing": str(uuid.uuid4()),
    }


async def test_planned_reads_answer_as_graphql_core(
    client: GraphQLClient, reference: GraphQLClient, plan_runs: list[bool], statements: StatementLog
) -> None:
    ids = await _family(client)
    answered = 0
    cases: list[tuple[str, dict[str, Any]]] = [
        (CHAT, {}),
        (COLUMNS, {}),
        (PARENT, {}),
        (TREE, {}),
        (TREE, {"del": True}),
        (PAGED, {}),
        (PAGED, {"first": 2}),
        (PAGED, {"last": 2}),
        (PAGED, {"first": 0}),
    ]
    for name, cid in ids.items():
        for doc, extra in cases:
            variables = {"id": cid, **extra}
            answer, expected = await both(client, reference, plan_runs, doc, variables)
            assert answer == expected, (name, doc, extra)
            assert "errors" not in answer
            answered += plan_runs[0]
        # pages after and before a cursor of a first page
        first = await client.data(planned(PAGED), {"id": cid, "first": 2})
        if first["ctx"] is not None:
            cursor = first["ctx"]["messages"]["pageInfo"]["endCursor"]
            for extra in ({"first": 2, "after": cursor}, {"last": 1, "before": cursor}):
                answer, expected = await both(
                    client, reference, plan_runs, PAGED, {"id": cid, **extra}
                )
                assert answer == expected, (name, extra)
                answered += plan_runs[0]
    # every read answered by its plan: 5 ids x 9 cases, 2 cursor pages of the 4 that exist
    assert answered == len(ids) * len(cases) + 4 * 2

    # a planned chat page, a branch switcher: one statement each; the chat page with
    # the branches made at its messages: two (the page, the forks at its messages)
    for doc in (CHAT, TREE):
        statements.clear()
        await client.data(planned(doc), {"id": ids["grandchild"]})
        assert len(statements) == 1, doc
    branches = CHAT.replace("deletedAt }", "deletedAt forks { id name } }")
    for name, cid in ids.items():
        plan_runs.clear()
        answer, expected = await both(client, reference, plan_runs, branches, {"id": cid})
        assert answer == expected, name
        assert plan_runs == [True], name
    statements.clear()
    page = await client.data(planned(branches), {"id": ids["root"]})
    assert len(statements) == 2
    assert any(n["forks"] for n in page["context"]["messages"]["nodes"])


async def test_planned_context_lists_answer_as_graphql_core(
    client: GraphQLClient, reference: GraphQLClient, plan_runs: list[bool]
) -> None:
    await _family(client)
    pages: list[dict[str, Any]] = [{}, {"first": 2}, {"last": 2}, {"first": 0}]
    first = await client.data(planned(SIDEBAR), {"first": 2})
    pages.append({"first": 3, "after": first["contexts"]["pageInfo"]["endCursor"]})
    for variables in pages:
        answer, expected = await both(client, reference, plan_runs, SIDEBAR, variables)
        assert answer == expected, variables
        assert "errors" not in answer
        assert plan_runs == [True]


async def test_planned_timestamps_and_long_integers_are_written_as_graphql_cores(
    client: GraphQLClient, reference: GraphQLClient, plan_runs: list[bool]
) -> None:
    """A plan leaves UTC datetimes for the JSON encoder to write (`plans._plain`); beside
    metadata with an integer beyond 64 bits (which orjson refuses) they still come out
    as graphql-core writes them."""
    chat = await create_context(client, "big", [user("hi")], metadata={"big": 2**70})
    for doc in (COLUMNS, CHAT):
        answer, expected = await both(client, reference, plan_runs, doc, {"id": chat["id"]})
        assert answer == expected
        assert plan_runs == [True]
    assert answer["data"]["context"]["messages"]["nodes"][0]["createdAt"].endswith("+00:00")
    columns = await client.data(planned(COLUMNS), {"id": chat["id"]})
    assert columns["context"]["metadata"] == {"big": 2**70}


async def test_plans_read_metadata_only_where_they_write_it(
    client: GraphQLClient, reference: GraphQLClient, plan_runs: list[bool], statements: StatementLog
) -> None:
    """Metadata is the one column decoded in Python (JSONB): a plan that writes none
    selects NULL in its place; one that writes it anywhere (a fork in a page, the
    parent) gets every context's real value, as graphql-core does."""
    ids = await _family(client)
    lean = "NULL::jsonb AS"
    cases: list[tuple[str, dict[str, Any], bool]] = [
        (SIDEBAR, {"first": 5}, True),
        (CHAT, {"id": ids["root"]}, True),
        (PARENT, {"id": ids["child"]}, True),
        (SIDEBAR.replace("nodes { id", "nodes { metadata id"), {"first": 5}, False),
        (TREE, {"id": ids["child"]}, False),  # the parent's metadata
        (
            TREE.replace("parent { id name latestVersion metadata", "parent { id"),
            {"id": ids["child"]},
            True,
        ),
        (
            TREE.replace("latestVersion metadata", "latestVersion").replace(
                "forkVersion deletedAt }", "forkVersion deletedAt metadata }"
            ),
            {"id": ids["child"]},
            False,
        ),  # the siblings'
    ]
    for doc, variables, leaves_out in cases:
        answer, expected = await both(client, reference, plan_runs, doc, variables)
        assert answer == expected, doc
        assert plan_runs == [True], doc
        statements.clear()
        await client.data(planned(doc), variables)
        assert len(statements) == 1, doc
        assert (lean in statements.statements[0]) is leaves_out, doc
    metadata = await client.data(
        planned(SIDEBAR.replace("nodes { id", "nodes { metadata id")), {"first": 10}
    )
    assert {"team": "x"} in [n["metadata"] for n in metadata["contexts"]["nodes"]]


@pytest.mark.parametrize(
    ("doc", "variables"),
    [
        (CHAT, {"id": "not-a-uuid"}),  # the id is refused
        # a page of an existing context with arguments its field refuses
        (PAGED, {"id": "$ID", "first": -1}),
        (PAGED, {"id": "$ID", "first": 1, "last": 1}),
        (PAGED, {"id": "$ID", "after": "forged"}),
        (TREE, {"id": "$ID", "del": "yes"}),  # not a Boolean
        (SIDEBAR, {"first": 100_000}),  # over the page size limit
        (SIDEBAR, {"after": "bm90IGEgY3Vyc29y"}),
    ],
)
async def test_errors_are_graphql_cores(
    client: GraphQLClient,
    reference: GraphQLClient,
    plan_runs: list[bool],
    doc: str,
    variables: dict[str, Any],
) -> None:
    ctx = await create_context(client, "one", [user("m")])
    variables = {k: ctx["id"] if v == "$ID" else v for k, v in variables.items()}
    answer, expected = await both(client, reference, plan_runs, doc, variables)
    assert answer["errors"], answer
    assert answer == expected
    # the plan did not run (refused arguments, or variables the entry refused): nothing
    # was read by it; graphql-core reported the error
    assert plan_runs in ([False], [])


SCHEMA = build_schema()._schema


@pytest.mark.parametrize(
    "doc",
    [
        planned(CHAT),
        planned(PAGED),
        planned(TREE),
        planned(PARENT),
        planned(COLUMNS),
        planned(SIDEBAR),
        # the bench's documents (bench/workloads.py)
        "query ChatPage($id: ID!) { context(id: $id) { id name messageCount"
        " messages(last: 50) { nodes { id version role content tokenCount createdAt } } } }",
        "query Sidebar { contexts(first: 20) { nodes { id name messageCount updatedAt } } }",
        "query Tree($id: ID!) { context(id: $id) { id name forkVersion parent { id name"
        " latestVersion forks { nodes { id name forkVersion } } } } }",
        # the same leaf twice, through a fragment on the object's own type
        "query { context(id: 1) { id ...F } } fragment F on Context { id name }",
        # what clients select around a chat page: directives, abstract fragments,
        # a header with the parent and the root, the ancestors
        "query { context(id: 1) @include(if: true) { id @skip(if: false) } }",
        "query($t: Boolean!) { context(id: 1) { id name @include(if: $t) } }",
        "query { context(id: 1) { ... on Node { id } } }",
        "query { context(id: 1) { messages { totalCount } parent { id } } }",
        "query { context(id: 1) { forkVersion parent { id name } root { id }"
        " messages(last: 5) { nodes { id } } } }",
        "query { context(id: 1) { ancestors { id name } root { __typename id } } }",
        "query { contexts(orderBy: {field: NAME, direction: ASC}) { nodes { id } } }",
        "query { contexts(filter: {rootsOnly: true}) { nodes { id } } }",
        "mutation { appendMessages(contextId: 1, messages: []) { messages { id } } }",
        "query { context(id: 1) { messages(last: 5) { nodes { id forks { id name } } } } }",
    ],
)
def test_shapes_with_a_plan(doc: str) -> None:
    assert make_plan(SCHEMA, parse(doc), None, {"t": True}) is not None


@pytest.mark.parametrize(
    "doc",
    [
        "query { context(id: 1) @cacheControl { id } }",  # an unknown directive: invalid
        "mutation { deleteContext(id: 1) { id } }",
        "subscription { messageAppended(contextId: 1) { id } }",
        "query { a: context(id: 1) { id } b: context(id: 2) { id } }",  # two root fields
        "query { node(id: 1) { id } }",
        "query { context(id: 1) { messages(roles: [USER]) { nodes { id } } } }",
        "query { context(id: 1) { forks { nodes { id } } } }",
        "query { context(id: 1) { a: messages(first: 1) { nodes { id } }"
        " b: messages(first: 2) { nodes { id } } } }",
        "query { context(id: 1) { messages { nodes { id context { id } } } } }",
        "query { context(id: 1) { parent { parent { id } } } }",
        "query { context(id: 1) { parent { forks { nodes { id } } } messages { totalCount } } }",
        "query { context(id: 1) { parent { forks { nodes { id } } } root { id } } }",
        "query { contexts(first: 1) { totalCount } }",
        "query { contexts { nodes { messages { nodes { id } } } } }",
        "mutation { appendMessages(contextId: 1, messages: []) { context { id } } }",
        "mutation { appendMessages(contextId: 1, messages: []) { messages { forks { id } } } }",
        "query { __typename }",
    ],
)
def test_shapes_without_a_plan(doc: str) -> None:
    assert make_plan(SCHEMA, parse(doc), None) is None


def test_the_named_operation_is_planned() -> None:
    doc = parse("query A { contexts { nodes { id } } } mutation B { deleteContext(id: 1) { id } }")
    assert make_plan(SCHEMA, doc, "A") is not None
    assert make_plan(SCHEMA, doc, "B") is None
    assert make_plan(SCHEMA, doc, None) is None  # ambiguous: graphql-core says so


async def test_a_planned_text_is_answered_by_its_plan_every_time(
    conn: AsyncConnection,
    reference: GraphQLClient,
    executed: list[str | None],
    caplog: pytest.LogCaptureFixture,
    statements: StatementLog,
) -> None:
    """A planned text never reaches graphql-core, from its first request on: same
    answer as graphql-core's, same log line."""
    caplog.set_level(logging.INFO, logger="ctxgraph.access")
    app = create_app(test_settings(), connector=RollbackConnector(conn))
    named = "query ChatPage" + planned(CHAT).removeprefix("query")
    async with graphql_client(app) as client:
        ids = await _family(client)
        answers = []
        for cid in (ids["child"], ids["child"], ids["missing"]):
            executed.clear()
            statements.clear()
            answers.append(await client.execute(named, {"id": cid}))
            assert answers[-1] == await reference.execute(planned(CHAT), {"id": cid})
            assert executed == [planned(CHAT)]  # the reference's; the planned text: never
            assert len(statements) == 2  # the planned read and the reference: one each
    assert answers[0] == answers[1]
    assert answers[2] == {"data": {"context": None}}
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "ctxgraph.access"]
    chat_pages = [line for line in lines if line.get("operation_name") == "ChatPage"]
    assert len(chat_pages) == 3
    assert all(line["operation"] == "query" and line["status"] == 200 for line in chat_pages)


async def test_query_limits_apply_to_texts_answered_by_their_plan(
    conn: AsyncConnection, statements: StatementLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A text is checked against the limits for each request's variables, unless no
    variables could put it over them (then once, when it is first prepared)."""
    checks: list[dict[str, Any] | None] = []

    def counted(*args: Any) -> None:
        checks.append(args[3])
        check_operation(*args)

    monkeypatch.setattr("api.graphql.operation.check_operation", counted)
    app = create_app(test_settings(max_query_cost=100), connector=RollbackConnector(conn))
    query = "query($n: Int) { contexts(first: $n) { nodes { id } } }"
    async with graphql_client(app) as client:
        await client.data(query, {"n": 5})
        await client.data(query, {"n": 5})
        # 500 objects at worst: over the limit, so each request is checked
        assert checks == [{"n": 500}, {"n": 5}, {"n": 5}]
        statements.clear()
        body = await client.execute(query, {"n": 200})
        assert body["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX", body
        assert "CTXGRAPH_MAX_QUERY_COST" in body["errors"][0]["message"]
        assert len(statements) == 0

        small = "query($id: ID!) { context(id: $id) { id messages(last: 20) { nodes { id } } } }"
        ctx = await create_context(client, "small", [user("m")])
        checks.clear()
        for _ in range(3):
            await client.data(small, {"id": ctx["id"]})
        assert checks == [{"id": 500}]  # once: within the limits whatever $id


@pytest.mark.parametrize("how", ["batch", "get", "charset", "multipart"])
async def test_a_planned_text_sent_any_way_is_answered_by_its_plan(
    conn: AsyncConnection, executed: list[str | None], how: str
) -> None:
    """A batch item, a GET, a JSON content type with parameters, an Accept header
    naming streaming types: one entry, one plan (the answer is JSON)."""
    settings = test_settings(max_batch_operations=2)  # batching is off by default
    app = create_app(settings, connector=RollbackConnector(conn))
    query = planned(CHAT)
    async with graphql_client(app) as client:
        ctx = await create_context(client, "known", [user("hello")])
        variables = {"id": ctx["id"]}
        executed.clear()
        expected = await client.execute(query, variables)
        assert executed == []
        payload = {"query": query, "variables": variables}
        if how == "batch":
            response = await client.http.post("/graphql", json=[payload])
            assert response.json() == [expected]
        elif how == "get":
            params = {"query": query, "variables": json.dumps(variables)}
            response = await client.http.get("/graphql", params=params)
            assert response.json() == expected
        elif how == "charset":
            response = await client.http.post(
                "/graphql",
                content=json.dumps(payload),
                headers={"content-type": "application/json; charset=utf-8"},
            )
            assert response.json() == expected
        else:
            response = await client.http.post(
                "/graphql", json=payload, headers={"accept": "multipart/mixed, application/json"}
            )
            assert response.json() == expected
        assert response.status_code == 200, response.text
        assert executed == []
