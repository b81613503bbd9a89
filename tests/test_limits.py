"""Bounded queries: tokens, depth, aliases, cost, batches, body size, introspection.

Every refusal is QUERY_TOO_COMPLEX (or 413) naming the limit's setting, and
happens before any SQL runs (counted with the `statements` fixture).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from graphql import get_introspection_query

from api.app import create_app
from tests.conftest import (
    GraphQLClient,
    RollbackConnector,
    StatementLog,
    graphql_client,
    test_settings,
)
from tests.helpers import append, create_context, fork, user

# GraphiQL 4 (graphql-js 16) asks for this: 9 levels of ofType, depth 15.
GRAPHIQL_INTROSPECTION = get_introspection_query(
    descriptions=True,
    specified_by_url=True,
    directive_is_repeatable=True,
    schema_description=True,
    input_value_deprecation=True,
)


def refused(body: dict[str, Any], setting: str) -> str:
    assert body.get("data") is None, body
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX", error
    assert setting in error["message"], error["message"]
    message: str = error["message"]
    return message


async def test_graphiql_introspection_query_passes(client: GraphQLClient) -> None:
    assert GRAPHIQL_INTROSPECTION.count("ofType") >= 7
    data = await client.data(GRAPHIQL_INTROSPECTION)
    names = {t["name"] for t in data["__schema"]["types"]}
    assert {"Context", "Message", "MessageConnection"} <= names


async def test_normal_contract_queries_pass(client: GraphQLClient) -> None:
    root = await create_context(client, "limits", [user(f"m{i}") for i in range(3)])
    child = await fork(client, root["id"], 2)
    await append(client, child["id"], [user("c1")])
    rid, cid = root["id"], child["id"]
    queries = [
        # A full history page and the largest page in one go.
        (
            "query($id: ID!) { context(id: $id) { messages(first: 500) { nodes { id version "
            "role content tokenCount context { id } } pageInfo { hasNextPage endCursor } "
            "totalCount } } }",
            {"id": cid},
        ),
        # A dashboard: 50 contexts with their 50 latest messages (edges and nodes).
        (
            "{ contexts(first: 50) { totalCount edges { cursor node { id name messageCount "
            "latestVersion parent { id } root { id } messages(last: 50) { edges { cursor node { "
            "id version content } } } } } pageInfo { hasNextPage } } }",
            None,
        ),
        # The fork tree around a context, with each fork's first messages.
        (
            "query($id: ID!) { context(id: $id) { ancestors { id name } depth root { id "
            "descendants(first: 100) { nodes { id forkVersion parent { id } messages(first: 20) "
            "{ nodes { version } } } } forks(first: 100) { nodes { id } } } } }",
            {"id": rid},
        ),
        # A message with its context, its branches and neighbours.
        (
            "query($id: ID!) { context(id: $id) { message(version: 2) { id forks { id "
            "messages(first: 10) { nodes { id } } } similar(first: 10) { distance message { id } } "
            "context { id } } } }",
            {"id": rid},
        ),
        (
            "query($id: ID!) { node(id: $id) { id ... on Context { messages(last: 100) { nodes "
            "{ id } } } } }",
            {"id": cid},
        ),
    ]
    for query, variables in queries:
        await client.data(query, variables)


async def test_cost_refused_before_any_sql(client: GraphQLClient, statements: StatementLog) -> None:
    statements.clear()
    body = await client.execute(
        "{ contexts(first: 500) { nodes { id messages(last: 500) { nodes { id } } } } }"
    )
    message = refused(body, "CTXGRAPH_MAX_QUERY_COST")
    assert "250,500" in message
    assert "50,000" in message
    assert len(statements) == 0, statements.statements


async def test_cost_uses_variables_and_their_defaults(
    client: GraphQLClient, statements: StatementLog
) -> None:
    query = (
        "query($n: Int = 500, $m: Int) { contexts(first: $n) { edges { node { "
        "messages(last: $m) { nodes { id } } } } } }"
    )
    statements.clear()
    refused(await client.execute(query, {"m": 500}), "CTXGRAPH_MAX_QUERY_COST")
    # Only the variable's value makes it cheap: 10 + 10 x 500 objects.
    await client.data(query, {"n": 10, "m": 500})
    assert len(statements) > 0
    statements.clear()
    # Unset page sizes count as the default page size (50): 50 x 50 passes...
    await client.data("{ contexts { nodes { messages { nodes { id } } } } }")
    # ...but three nested connections of 50 do not (50 + 2,500 + 125,000).
    statements.clear()
    refused(
        await client.execute(
            "{ contexts { nodes { forks { nodes { messages { nodes { id } } } } } } }"
        ),
        "CTXGRAPH_MAX_QUERY_COST",
    )
    assert len(statements) == 0


async def test_cost_counts_aliases_and_fragments(
    client: GraphQLClient, statements: StatementLog
) -> None:
    statements.clear()
    fragment = "fragment Page on Context { messages(last: 500) { nodes { id } } }"
    body = await client.execute(
        "{ a: contexts(first: 100) { nodes { ...Page } } b: contexts(first: 100) "
        "{ nodes { ...Page } } } " + fragment
    )
    refused(body, "CTXGRAPH_MAX_QUERY_COST")
    assert len(statements) == 0


async def test_exponential_fragments_are_refused_quickly(
    client: GraphQLClient, statements: StatementLog
) -> None:
    # Each fragment spreads the next twice: 2^40 copies if expanded naively. The
    # analysis memoizes fragments, so this answers at once (a hang would time out CI).
    fragments = " ".join(
        f"fragment F{i} on Query {{ ...F{i + 1} a{i}: __typename ...F{i + 1} }}" for i in range(40)
    )
    statements.clear()
    body = await client.execute(
        "{ ...F0 } " + fragments + " fragment F40 on Query { contexts { nodes { id } } }"
    )
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert len(statements) == 0


async def test_depth_refused(client: GraphQLClient, statements: StatementLog) -> None:
    def nested(levels: int) -> str:
        return (
            '{ context(id: "123e4567-e89b-12d3-a456-426614174000") { '
            + "parent { " * (levels - 2)
            + "id"
            + " }" * (levels - 2)
            + " } }"
        )

    await client.data(nested(20))  # exactly the limit
    statements.clear()
    message = refused(await client.execute(nested(21)), "CTXGRAPH_MAX_QUERY_DEPTH")
    assert "20" in message
    assert len(statements) == 0


async def test_depth_through_fragments_refused(
    client: GraphQLClient, statements: StatementLog
) -> None:
    statements.clear()
    body = await client.execute(
        '{ ...A } fragment A on Query { context(id: "123e4567-e89b-12d3-a456-426614174000") '
        "{ ...B } } fragment B on Context { parent { ...C } } "
        "fragment C on Context { " + "root { " * 18 + "id" + " }" * 18 + " }"
    )
    refused(body, "CTXGRAPH_MAX_QUERY_DEPTH")
    assert len(statements) == 0


async def test_introspection_fan_out_refused(client: GraphQLClient) -> None:
    # Each level of `fields { type { fields ...` multiplies the answer: graphql-core's
    # introspection depth rule and the cost limit both stop it.
    for levels in (3, 4):
        body = await client.execute(
            "{ __schema { types { "
            + "fields { type { " * levels
            + "name"
            + " } }" * levels
            + " } } }"
        )
        (error,) = body["errors"]
        assert error["extensions"]["code"] in {"QUERY_TOO_COMPLEX", "BAD_USER_INPUT"}, error
        assert body.get("data") is None


async def test_aliases_refused(client: GraphQLClient, statements: StatementLog) -> None:
    await client.data("{ " + " ".join(f"a{i}: __typename" for i in range(30)) + " }")
    statements.clear()
    ids = " ".join(
        f'm{i}: message(id: "123e4567-e89b-12d3-a456-4266141740{i:02d}") {{ id }}'
        for i in range(31)
    )
    message = refused(await client.execute("{ " + ids + " }"), "CTXGRAPH_MAX_QUERY_ALIASES")
    assert "31 aliases" in message
    assert len(statements) == 0


async def test_tokens_refused(client: GraphQLClient, statements: StatementLog) -> None:
    statements.clear()
    fields = " ".join("__typename" for _ in range(2_100))
    message = refused(await client.execute("{ " + fields + " }"), "CTXGRAPH_MAX_QUERY_TOKENS")
    assert "2000" in message
    # Comments count too: they cost parsing time all the same.
    comments = "\n".join("# padding" for _ in range(2_100))
    refused(await client.execute(comments + "\n{ __typename }"), "CTXGRAPH_MAX_QUERY_TOKENS")
    assert len(statements) == 0


async def test_deep_nesting_is_a_coded_error(client: GraphQLClient) -> None:
    # Past what the parser will nest, and past the token limit: both are client errors.
    for levels in (400, 5_000):
        body = await client.execute("{ " + "a { " * levels + "b" + " }" * levels + " }")
        (error,) = body["errors"]
        assert error["extensions"]["code"] in {"QUERY_TOO_COMPLEX", "BAD_USER_INPUT"}, error


async def test_limits_follow_settings(conn: Any) -> None:
    app = create_app(
        test_settings(max_query_depth=3, max_query_aliases=0, max_query_cost=10),
        connector=RollbackConnector(conn),
    )
    async with graphql_client(app) as client:
        refused(
            await client.execute("{ contexts { nodes { parent { id } } } }"),
            "CTXGRAPH_MAX_QUERY_DEPTH",
        )
        refused(await client.execute("{ x: __typename }"), "CTXGRAPH_MAX_QUERY_ALIASES")
        refused(
            await client.execute("{ contexts(first: 11) { nodes { id } } }"),
            "CTXGRAPH_MAX_QUERY_COST",
        )
        await client.data("{ contexts(first: 10) { nodes { id } } }")


@pytest.fixture
async def http(conn: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(test_settings(max_body_bytes=4096), connector=RollbackConnector(conn))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def test_batched_operations_refused(
    http: httpx.AsyncClient, statements: StatementLog
) -> None:
    statements.clear()
    response = await http.post("/graphql", json=[{"query": "{ contexts { totalCount } }"}] * 2)
    assert response.status_code == 400
    refused(response.json(), "CTXGRAPH_MAX_BATCH_OPERATIONS")
    assert len(statements) == 0


async def test_batches_up_to_the_setting(conn: Any) -> None:
    app = create_app(test_settings(max_batch_operations=2), connector=RollbackConnector(conn))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        ok = await http.post("/graphql", json=[{"query": "{ __typename }"}] * 2)
        assert ok.status_code == 200
        assert ok.json() == [{"data": {"__typename": "Query"}}] * 2
        too_many = await http.post("/graphql", json=[{"query": "{ __typename }"}] * 3)
        assert too_many.status_code == 400
        refused(too_many.json(), "CTXGRAPH_MAX_BATCH_OPERATIONS=2")


async def test_body_over_the_limit_is_413(
    http: httpx.AsyncClient, statements: StatementLog
) -> None:
    statements.clear()
    big = json.dumps({"query": "{ __typename }", "variables": {"x": "y" * 5000}})
    response = await http.post(
        "/graphql", content=big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    (error,) = response.json()["errors"]
    assert "CTXGRAPH_MAX_BODY_BYTES=4096" in error["message"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b" " * 1000

    response = await http.post(
        "/graphql", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert len(statements) == 0
    small = await http.post("/graphql", json={"query": "{ __typename }"})
    assert small.json() == {"data": {"__typename": "Query"}}


async def test_introspection_can_be_disabled(conn: Any) -> None:
    app = create_app(test_settings(introspection=False), connector=RollbackConnector(conn))
    async with graphql_client(app) as client:
        for query in ("{ __schema { types { name } } }", '{ __type(name: "Context") { name } }'):
            error = await client.error(query)
            assert error["extensions"]["code"] == "FORBIDDEN"
            assert "CTXGRAPH_INTROSPECTION" in error["message"]
        assert await client.data("{ __typename }") == {"__typename": "Query"}


async def test_limits_apply_over_websocket(conn: Any) -> None:
    from httpx_ws import AsyncWebSocketSession, aconnect_ws
    from httpx_ws.transport import ASGIWebSocketTransport

    app = create_app(test_settings(), connector=RollbackConnector(conn))
    deep = (
        'subscription { messageAppended(contextId: "123e4567-e89b-12d3-a456-426614174000") '
        "{ context { " + "parent { " * 20 + "id" + " }" * 20 + " } } }"
    )
    costly = "{ contexts(first: 500) { nodes { messages(last: 500) { nodes { id } } } } }"
    ws: AsyncWebSocketSession
    async with (
        httpx.AsyncClient(transport=ASGIWebSocketTransport(app), base_url="http://test") as http,
        aconnect_ws("/graphql", http, subprotocols=["graphql-transport-ws"]) as ws,
    ):
        await ws.send_json({"type": "connection_init", "payload": {}})
        assert (await ws.receive_json(timeout=10))["type"] == "connection_ack"
        for op_id, query, setting in (
            ("deep", deep, "CTXGRAPH_MAX_QUERY_DEPTH"),
            ("costly", costly, "CTXGRAPH_MAX_QUERY_COST"),
        ):
            await ws.send_json({"id": op_id, "type": "subscribe", "payload": {"query": query}})
            while True:
                message = await ws.receive_json(timeout=10)
                if message.get("id") == op_id and message["type"] in ("next", "error"):
                    break
            payload = message["payload"]
            errors = payload if isinstance(payload, list) else payload["errors"]
            refused({"data": None, "errors": errors}, setting)
