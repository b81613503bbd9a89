"""Token counters: tokenCount has a bound (CTXGRAPH_MAX_TOKEN_COUNT) and a context's
totalTokens never goes past 2,147,483,647, the largest value of `Context.totalTokens:
Int!` (GraphQL's Int is 32-bit), whichever way an append arrives: graphql-core, the
planned append, alone or in a group commit, with or without client ids, createContext.

Issue 20's reproduction: `tokenCount: 2147483647` on one append, then any append with
tokens to the same context was INTERNAL_SERVER_ERROR (integer out of range) forever.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.app import create_app
from api.db import EngineConnector
from api.errors import BadUserInput
from api.store import messages as messages_store
from api.store.inputs import MAX_TOTAL_TOKENS
from tests.conftest import (
    GraphQLClient,
    RollbackConnector,
    StatementLog,
    graphql_client,
    test_settings,
)
from tests.helpers import append, create_context, fork, get_context, user
from tests.test_concurrency import state
from tests.test_concurrency import tag as tag_fixture
from tests.test_group_commit import appends_of, contexts, said
from tests.test_planned_append import APPEND as PLANNABLE_APPEND
from tests.test_plans import planned

tag = tag_fixture  # the fixture: each test's contexts are removed after it

CAP = 2_147_483_647
APPEND = (
    "mutation($id: ID!, $m: [MessageInput!]!) { appendMessages(contextId: $id, messages: $m)"
    " { messages { version tokenCount } context { totalTokens } } }"
)
CREATE = (
    'mutation($m: [MessageInput!]) { createContext(name: "tokens", messages: $m)'
    " { id totalTokens messageCount } }"
)


@pytest_asyncio.fixture
async def roomy(conn: AsyncConnection) -> AsyncIterator[GraphQLClient]:
    """The app with tokenCount allowed up to the largest GraphQL Int."""
    app = create_app(test_settings(max_token_count=CAP), connector=RollbackConnector(conn))
    async with graphql_client(app) as client:
        yield client


@pytest_asyncio.fixture
async def roomy_reference(conn: AsyncConnection) -> AsyncIterator[GraphQLClient]:
    """`roomy` without plans: graphql-core answers everything."""
    settings = test_settings(max_token_count=CAP, plans=False)
    app = create_app(settings, connector=RollbackConnector(conn))
    async with graphql_client(app) as client:
        yield client


def over_the_cap(error: dict[str, Any]) -> bool:
    return error["extensions"]["code"] == "BAD_USER_INPUT" and "2,147,483,647" in error["message"]


async def counters(client: GraphQLClient, context_id: str) -> tuple[int, int, int]:
    ctx = await get_context(client, context_id)
    return ctx["latestVersion"], ctx["messageCount"], ctx["totalTokens"]


def test_the_cap_is_graphqls_int() -> None:
    assert MAX_TOTAL_TOKENS == CAP == 2**31 - 1


async def test_issue_20_reproduction_is_refused_and_the_context_keeps_working(
    client: GraphQLClient,
) -> None:
    ctx = await create_context(client, "repro")
    error = await client.error(APPEND, {"id": ctx["id"], "m": [user("a", tokenCount=CAP)]})
    # the default bound (CTXGRAPH_MAX_TOKEN_COUNT) refuses it, naming the setting
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert "CTXGRAPH_MAX_TOKEN_COUNT" in error["message"]
    assert await counters(client, ctx["id"]) == (0, 0, 0)
    # and the context takes messages with tokens as before
    await append(client, ctx["id"], [user("b", tokenCount=12)])
    assert await counters(client, ctx["id"]) == (1, 1, 12)


async def test_token_count_bound(client: GraphQLClient) -> None:
    bound = test_settings().max_token_count
    ctx = await create_context(client, "bound")
    await append(client, ctx["id"], [user("at the bound", tokenCount=bound)])
    error = await client.error(APPEND, {"id": ctx["id"], "m": [user("x", tokenCount=bound + 1)]})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert f"`messages[0].tokenCount` is {bound + 1}" in error["message"]
    error = await client.error(CREATE, {"m": [user("x"), user("y", tokenCount=bound + 1)]})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "messages[1].tokenCount" in error["message"]
    assert await counters(client, ctx["id"]) == (1, 1, bound)


async def test_the_total_never_passes_the_largest_int(roomy: GraphQLClient) -> None:
    ctx = await create_context(roomy, "full")
    await append(roomy, ctx["id"], [user("big", tokenCount=CAP)])
    # this was INTERNAL_SERVER_ERROR (integer out of range), for good
    for extra in ([user("one more", tokenCount=1)], [user("x"), user("y", tokenCount=5)]):
        error = await roomy.error(APPEND, {"id": ctx["id"], "m": extra})
        assert over_the_cap(error), error
        assert await counters(roomy, ctx["id"]) == (1, 1, CAP)  # nothing written
    # messages without tokens still go
    await append(roomy, ctx["id"], [user("free"), user("zero", tokenCount=0)])
    assert await counters(roomy, ctx["id"]) == (3, 3, CAP)
    # with client ids (a transaction) the same
    error = await roomy.error(
        APPEND, {"id": ctx["id"], "m": [user("z", id=str(uuid.uuid4()), tokenCount=1)]}
    )
    assert over_the_cap(error), error
    # deleting the big message makes room again
    read = "query($id: ID!) { context(id: $id) { message(version: 1) { id } } }"
    big = (await roomy.data(read, {"id": ctx["id"]}))["context"]["message"]
    await roomy.data("mutation($id: ID!) { deleteMessage(id: $id) { id } }", {"id": big["id"]})
    await append(roomy, ctx["id"], [user("room", tokenCount=CAP - 3), user("more", tokenCount=3)])
    assert await counters(roomy, ctx["id"]) == (5, 4, CAP)


async def test_a_batch_over_the_cap_is_refused_whole(roomy: GraphQLClient) -> None:
    ctx = await create_context(roomy, "batch", [user("a", tokenCount=10)])
    batch = [user("b", tokenCount=CAP - 20), user("c", tokenCount=11)]
    assert over_the_cap(await roomy.error(APPEND, {"id": ctx["id"], "m": batch}))
    batch = [user("b", tokenCount=CAP), user("c", tokenCount=CAP)]  # a sum past any int
    assert over_the_cap(await roomy.error(APPEND, {"id": ctx["id"], "m": batch}))
    assert await counters(roomy, ctx["id"]) == (1, 1, 10)
    batch = [user("b", tokenCount=CAP - 20), user("c", tokenCount=10)]
    [*_, last] = await append(roomy, ctx["id"], batch)
    assert last["version"] == 3
    assert await counters(roomy, ctx["id"]) == (3, 3, CAP)


async def test_create_context_over_the_cap_creates_nothing(roomy: GraphQLClient) -> None:
    listed = '{ contexts(filter: {nameContains: "tokens"}) { totalCount } }'
    before = (await roomy.data(listed))["contexts"]["totalCount"]
    error = await roomy.error(CREATE, {"m": [user("a", tokenCount=CAP), user("b", tokenCount=1)]})
    assert over_the_cap(error), error
    assert (await roomy.data(listed))["contexts"]["totalCount"] == before
    full = await roomy.data(CREATE, {"m": [user("a", tokenCount=CAP - 1), user("b", tokenCount=1)]})
    assert full["createContext"]["totalTokens"] == CAP


async def test_forks_count_their_own_history_up_to_the_cap(roomy: GraphQLClient) -> None:
    parent = await create_context(
        roomy, "parent", [user("a", tokenCount=2_000_000_000), user("b", tokenCount=100_000_000)]
    )
    latest = await fork(roomy, parent["id"])
    older = await fork(roomy, parent["id"], 1)
    assert latest["totalTokens"] == 2_100_000_000
    assert older["totalTokens"] == 2_000_000_000
    # each history fills up to the cap on its own
    await append(roomy, older["id"], [user("c", tokenCount=CAP - 2_000_000_000)])
    assert await counters(roomy, older["id"]) == (2, 2, CAP)
    assert over_the_cap(
        await roomy.error(APPEND, {"id": older["id"], "m": [user("d", tokenCount=1)]})
    )
    await append(roomy, latest["id"], [user("c", tokenCount=CAP - 2_100_000_000)])
    assert over_the_cap(
        await roomy.error(APPEND, {"id": latest["id"], "m": [user("d", tokenCount=1)]})
    )
    assert await counters(roomy, parent["id"]) == (2, 2, 2_100_000_000)
    await append(roomy, parent["id"], [user("c", tokenCount=47_483_647)])
    assert await counters(roomy, parent["id"]) == (3, 3, CAP)
    # a fork of a full context is full too, with the right counts
    full = await fork(roomy, latest["id"])
    assert (full["messageCount"], full["totalTokens"]) == (3, CAP)
    assert over_the_cap(
        await roomy.error(APPEND, {"id": full["id"], "m": [user("e", tokenCount=1)]})
    )


async def test_the_planned_append_obeys_the_same_rules(
    roomy: GraphQLClient, roomy_reference: GraphQLClient, plan_runs: list[bool]
) -> None:
    a = await create_context(roomy, "a", [user("big", tokenCount=CAP - 1)])
    b = await create_context(roomy, "b", [user("big", tokenCount=CAP - 1)])
    for m in ([user("x", tokenCount=2)], [user("x", tokenCount=CAP)]):
        plan_runs.clear()
        expected = await roomy_reference.execute(planned(PLANNABLE_APPEND), {"id": a["id"], "m": m})
        answer = await roomy.execute(planned(PLANNABLE_APPEND), {"id": b["id"], "m": m})
        # the store refused the plan's write (the plan reports it), or the services
        # refused the batch before the plan ran (graphql-core reports it)
        assert plan_runs in ([True], [False])
        [error] = answer["errors"]
        assert over_the_cap(error), error
        assert answer == expected
    plan_runs.clear()
    answer = await roomy.execute(
        planned(PLANNABLE_APPEND), {"id": b["id"], "m": [user("x", tokenCount=1)]}
    )
    assert plan_runs == [True]
    assert "errors" not in answer, answer
    assert await counters(roomy, b["id"]) == (2, 2, CAP)
    assert await counters(roomy, a["id"]) == (1, 1, CAP - 1)


async def test_the_group_commit_refuses_only_the_append_over_the_cap(
    live_client: GraphQLClient,
    engine: AsyncEngine,
    tag: dict[str, str],
    statements: StatementLog,
) -> None:
    db = EngineConnector(engine)
    full, other, third = await contexts(live_client, tag, 3)
    await messages_store.append(db, full, said("almost", CAP - 10), None)
    statements.clear()
    answers = await asyncio.gather(
        messages_store.append(db, full, said("over", 11), None),
        messages_store.append(db, other, said("fine", 5), None),
        messages_store.append(db, third, said("fine too", CAP), None),
        return_exceptions=True,
    )
    over, fine, fine_too = answers
    assert isinstance(over, BadUserInput), over
    assert "2,147,483,647" in str(over)
    assert isinstance(fine, list)
    assert [m.version for m in fine] == [1]
    assert isinstance(fine_too, list)
    assert [m.version for m in fine_too] == [1]
    # tried in the batch (which left it out), then alone (which refused it)
    assert len(appends_of(statements)) == 2, statements.statements
    s = await state(live_client, str(full))
    assert (s["latestVersion"], s["totalTokens"]) == (1, CAP - 10)
    assert (await state(live_client, str(third)))["totalTokens"] == CAP
    # exactly to the cap is fine
    [last] = await messages_store.append(db, full, said("exactly", 10), None)
    assert last.version == 2
    assert (await state(live_client, str(full)))["totalTokens"] == CAP


@pytest.mark.parametrize("tokens", [CAP + 1, 2**63])
async def test_a_token_count_beyond_graphqls_int_is_refused_by_graphql(
    roomy: GraphQLClient, tokens: int
) -> None:
    ctx = await create_context(roomy, "int")
    body = await roomy.execute(APPEND, {"id": ctx["id"], "m": [user("x", tokenCount=tokens)]})
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
