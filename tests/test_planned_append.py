"""The planned append (api/graphql/plans.py, `_append_plan`): the same answer and the
same write as graphql-core's path, errors that are graphql-core's, and a write that
is never run twice.

As in tests/test_plans.py, the `reference` app (CTXGRAPH_PLANS=false) runs the same
operation through graphql-core, on the same data.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from api.app import create_app
from tests.conftest import (
    GraphQLClient,
    RollbackConnector,
    StatementLog,
    graphql_client,
    test_settings,
)
from tests.helpers import create_context, fork, user
from tests.test_plans import planned

APPEND = (
    "mutation Append($id: ID!, $m: [MessageInput!]!, $v: Int) {"
    " appendMessages(contextId: $id, messages: $m, expectedVersion: $v) @D {"
    " __typename messages { __typename version role content tokenCount model toolName"
    " toolCallId deletedAt hasEmbedding } } }"
)
WITH_IDS = (
    "mutation($id: ID!, $m: [MessageInput!]!) { out: appendMessages(contextId: $id,"
    " messages: $m) @D { messages { id version createdAt } } }"
)
HISTORY = "query($id: ID!) { context(id: $id) { latestVersion messages { nodes { content } } } }"
BATCH = [
    {"role": "USER", "content": "hello", "tokenCount": 2},
    {"role": "ASSISTANT", "content": "hi", "model": "m-1"},
    {"role": "TOOL", "content": "{}", "toolName": "t", "toolCallId": "c1"},
]


async def contents(client: GraphQLClient, context_id: str) -> list[str]:
    data = await client.data(HISTORY, {"id": context_id})
    return [n["content"] for n in data["context"]["messages"]["nodes"]]


async def test_a_planned_append_answers_and_writes_as_graphql_core(
    client: GraphQLClient, reference: GraphQLClient, plan_runs: list[bool]
) -> None:
    a = await create_context(client, "a", [user("first")])
    b = await create_context(client, "b", [user("first")])
    for v in (None, 4):
        plan_runs.clear()
        expected = await reference.execute(planned(APPEND), {"id": a["id"], "m": BATCH, "v": v})
        assert plan_runs == []
        answer = await client.execute(planned(APPEND), {"id": b["id"], "m": BATCH, "v": v})
        assert plan_runs == [True]
        assert answer == expected
        assert "errors" not in answer
    assert [m["version"] for m in answer["data"]["appendMessages"]["messages"]] == [5, 6, 7]
    assert await contents(client, a["id"]) == await contents(client, b["id"])
    assert await contents(client, b["id"]) == ["first"] + ["hello", "hi", "{}"] * 2

    # with client ids (two statements in a transaction) and the id-like columns
    batch = [{"role": "USER", "content": "x", "id": "6f1b5c1e-0d7e-4d1b-9e55-1f3f6f0e9a01"}]
    answer = await client.execute(planned(WITH_IDS), {"id": b["id"], "m": batch})
    assert "errors" not in answer, answer
    [message] = answer["data"]["out"]["messages"]
    assert (message["id"], message["version"]) == (batch[0]["id"], 8)
    assert message["createdAt"].endswith("+00:00")
    # the exact retry returns the stored message and appends nothing
    again = await client.execute(planned(WITH_IDS), {"id": b["id"], "m": batch})
    assert again == answer
    assert len(await contents(client, b["id"])) == 8


async def test_refused_appends_are_graphql_cores_and_write_nothing(
    client: GraphQLClient, reference: GraphQLClient, plan_runs: list[bool]
) -> None:
    ctx = await create_context(client, "c", [user("one")])
    gone = await fork(client, ctx["id"])
    await client.data("mutation($id: ID!) { deleteContext(id: $id) { id } }", {"id": gone["id"]})
    cases: list[dict[str, Any]] = [
        {"id": "not-a-uuid", "m": BATCH},
        {"id": "00000000-0000-4000-8000-000000000000", "m": BATCH},  # no such context
        {"id": gone["id"], "m": BATCH},  # deleted
        {"id": ctx["id"], "m": BATCH, "v": 7},  # version conflict
        {"id": ctx["id"], "m": BATCH, "v": -1},
        {"id": ctx["id"], "m": []},
        {"id": ctx["id"], "m": [{"role": "USER", "content": "x", "id": "nope"}]},
        {"id": ctx["id"], "m": [{"role": "USER", "content": "x", "tokenCount": -3}]},
        {"id": ctx["id"], "m": [{"role": "ROBOT", "content": "x"}]},  # a variables error
    ]
    for variables in cases:
        plan_runs.clear()
        expected = await reference.execute(planned(APPEND), variables)
        answer = await client.execute(planned(APPEND), variables)
        # refused by the plan's store call (NOT_FOUND, CONTEXT_DELETED, VERSION_CONFLICT),
        # by the services before it ran, or by the entry (a variables error)
        assert plan_runs in ([True], [False], []), variables
        assert answer == expected, variables
        assert answer["errors"], variables
    assert await contents(client, ctx["id"]) == ["one"]


async def test_a_planned_append_skips_graphql_core_and_logs_as_a_mutation(
    client: GraphQLClient,
    executed: list[str | None],
    caplog: pytest.LogCaptureFixture,
    statements: StatementLog,
) -> None:
    caplog.set_level(logging.INFO, logger="ctxgraph.access")
    ctx = await create_context(client, "d")
    text = planned(APPEND)
    for n in range(3):
        executed.clear()
        body = await client.execute(text, {"id": ctx["id"], "m": [user(f"m{n}")]})
        assert body["data"]["appendMessages"]["messages"][0]["version"] == n + 1
        assert executed == []
    executed.clear()
    statements.clear()
    conflict = await client.execute(text, {"id": ctx["id"], "m": [user("late")], "v": 1})
    assert conflict["errors"][0]["extensions"]["code"] == "VERSION_CONFLICT"
    assert conflict["data"] is None
    assert conflict["errors"][0]["path"] == ["appendMessages"]
    # the plan reports the refusal itself: one append statement and one read of why,
    # never a second append by graphql-core
    assert executed == []
    sent = [q for q in statements.statements if "SAVEPOINT" not in q]  # the test's own
    assert len(sent) == 2, sent
    assert await contents(client, ctx["id"]) == ["m0", "m1", "m2"]
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "ctxgraph.access"]
    appends = [line for line in lines if line.get("operation_name") == "Append"]
    assert [(line["operation"], line.get("error_codes")) for line in appends] == [
        ("mutation", None),
        ("mutation", None),
        ("mutation", None),
        ("mutation", ["VERSION_CONFLICT"]),
    ]


async def test_a_write_that_fails_after_its_statement_is_reported_not_retried(
    conn: AsyncConnection, plan_runs: list[bool]
) -> None:
    """The append's statement ran, then the connection broke: the plan reports the
    failure itself (SERVICE_UNAVAILABLE) instead of letting graphql-core append again."""
    rollback = RollbackConnector(conn)

    class BreaksAfterTheStatement(RollbackConnector):
        @asynccontextmanager
        async def transaction(self) -> AsyncIterator[AsyncConnection]:
            async with rollback.transaction() as c:
                yield c
            raise ConnectionResetError("connection lost after the statement")

        # single_statement: RollbackConnector's, a savepoint by this transaction()

    async with graphql_client(create_app(test_settings(), connector=rollback)) as good:
        ctx = await create_context(good, "e")
        app = create_app(test_settings(), connector=BreaksAfterTheStatement(conn))
        async with graphql_client(app) as bad:
            for _ in range(2):
                plan_runs.clear()
                response = await bad.http.post(
                    "/graphql",
                    json={
                        "query": planned(APPEND),
                        "variables": {"id": ctx["id"], "m": [user("once")]},
                    },
                )
                assert response.status_code == 503  # as graphql-core's path answers it
                body = response.json()
                assert plan_runs == [True]
                assert body["data"] is None
                [error] = body["errors"]
                assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
                assert error["path"] == ["appendMessages"]
                assert "connection lost" not in json.dumps(body)
        # each request appended exactly once (the savepoint was released)
        assert await contents(good, ctx["id"]) == ["once", "once"]
