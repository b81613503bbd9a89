"""appendMessages through the GraphQL API: versions, atomic batches, expectedVersion,
idempotent retries with client ids, and validation of every message field."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from api.app import create_app
from tests.conftest import GraphQLClient, RollbackConnector, graphql_client, test_settings
from tests.helpers import append, assistant, create_context, fork, get_context, user

APPEND = (
    "mutation($id: ID!, $m: [MessageInput!]!, $v: Int) {"
    " appendMessages(contextId: $id, messages: $m, expectedVersion: $v) {"
    " context { id latestVersion messageCount totalTokens }"
    " messages { id version role content tokenCount model toolName toolCallId"
    " hasEmbedding context { id } } } }"
)


async def message_rows(conn: AsyncConnection) -> int:
    return int((await conn.execute(sa.text("SELECT count(*) FROM messages"))).scalar_one())


async def append_error(
    client: GraphQLClient, context_id: str, messages: list[dict[str, Any]], v: int | None = None
) -> dict[str, Any]:
    return await client.error(APPEND, {"id": context_id, "m": messages, "v": v})


async def versions(client: GraphQLClient, context_id: str) -> list[tuple[int, str]]:
    data = await client.data(
        "query($id: ID!) { context(id: $id) { messages(first: 500) {"
        " nodes { version content } } } }",
        {"id": context_id},
    )
    return [(n["version"], n["content"]) for n in data["context"]["messages"]["nodes"]]


async def raw_error(client: GraphQLClient, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """The single error of a request whose JSON body httpx would refuse to encode
    (NaN/Infinity, lone surrogates): Python's json module writes them as clients may."""
    body = json.dumps({"query": query, "variables": variables})
    response = await client.http.post(
        "/graphql", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code in (200, 400), response.text
    errors = response.json().get("errors")
    assert errors, response.text
    assert len(errors) == 1, errors
    error: dict[str, Any] = errors[0]
    return error


def counters(ctx: dict[str, Any]) -> tuple[int, int, int]:
    return ctx["latestVersion"], ctx["messageCount"], ctx["totalTokens"]


# --- versions and counters ------------------------------------------------------------------


async def test_versions_are_assigned_by_the_server_and_contiguous(client: GraphQLClient) -> None:
    ctx = await create_context(client, messages=[user("a"), assistant("b")])
    first = await append(client, ctx["id"], [user("c"), assistant("d"), user("e")])
    assert [m["version"] for m in first] == [3, 4, 5]
    second = await append(client, ctx["id"], [assistant("f")])
    assert [m["version"] for m in second] == [6]
    assert await versions(client, ctx["id"]) == [
        (1, "a"),
        (2, "b"),
        (3, "c"),
        (4, "d"),
        (5, "e"),
        (6, "f"),
    ]


async def test_client_cannot_choose_a_version(client: GraphQLClient) -> None:
    ctx = await create_context(client)
    error = await append_error(client, ctx["id"], [{**user("a"), "version": 7}])
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "version" in error["message"]
    assert (await get_context(client, ctx["id"]))["latestVersion"] == 0


async def test_append_payload_and_counters(client: GraphQLClient) -> None:
    ctx = await create_context(client, messages=[user("a", tokenCount=3)])
    data = await client.data(
        APPEND,
        {
            "id": ctx["id"],
            "m": [
                assistant("b", tokenCount=10, model="gpt-x"),
                {"role": "TOOL", "content": "42", "toolName": "calc", "toolCallId": "call-1"},
                {"role": "SYSTEM", "content": "be brief", "tokenCount": 0},
            ],
        },
    )
    payload = data["appendMessages"]
    assert counters(payload["context"]) == (4, 4, 13)
    msgs = payload["messages"]
    assert [(m["version"], m["role"]) for m in msgs] == [
        (2, "ASSISTANT"),
        (3, "TOOL"),
        (4, "SYSTEM"),
    ]
    assert msgs[0]["model"] == "gpt-x"
    assert msgs[0]["tokenCount"] == 10
    assert (msgs[1]["toolName"], msgs[1]["toolCallId"], msgs[1]["tokenCount"]) == (
        "calc",
        "call-1",
        None,
    )
    assert all(m["context"]["id"] == ctx["id"] for m in msgs)
    assert not any(m["hasEmbedding"] for m in msgs)
    assert counters(await get_context(client, ctx["id"])) == (4, 4, 13)


async def test_fork_versions_continue_after_the_fork_version(client: GraphQLClient) -> None:
    root = await create_context(client, messages=[user("a"), assistant("b"), user("c")])
    child = await fork(client, root["id"], 2)
    assert child["latestVersion"] == 2
    appended = await append(client, child["id"], [assistant("x"), user("y")])
    assert [m["version"] for m in appended] == [3, 4]
    assert await versions(client, child["id"]) == [(1, "a"), (2, "b"), (3, "x"), (4, "y")]
    # The parent's own version 3 is untouched.
    assert await versions(client, root["id"]) == [(1, "a"), (2, "b"), (3, "c")]


# --- atomic batches -----------------------------------------------------------------------

EMBEDDING_OK = [0.001] * 1536

INVALID_MESSAGES: list[tuple[str, dict[str, Any], str]] = [
    ("nul-content", user("bad\x00byte"), "messages[2].content"),
    ("nul-model", user("x", model="m\x00"), "messages[2].model"),
    ("nul-tool-name", user("x", toolName="t\x00"), "messages[2].toolName"),
    ("nul-tool-call-id", user("x", toolCallId="\x00"), "messages[2].toolCallId"),
    ("short-embedding", user("x", embedding=[0.0] * 1535), "messages[2].embedding"),
    ("long-embedding", user("x", embedding=[0.0] * 1537), "messages[2].embedding"),
    ("empty-embedding", user("x", embedding=[]), "messages[2].embedding"),
    ("negative-tokens", user("x", tokenCount=-1), "messages[2].tokenCount"),
    ("bad-id", user("x", id="not-a-uuid"), "messages[2].id"),
]


@pytest.mark.parametrize(
    ("bad", "argument"),
    [pytest.param(m, a, id=name) for name, m, a in INVALID_MESSAGES],
)
async def test_batch_with_one_invalid_message_writes_nothing(
    client: GraphQLClient, conn: AsyncConnection, bad: dict[str, Any], argument: str
) -> None:
    ctx = await create_context(client, messages=[user("a", tokenCount=2)])
    before_rows = await message_rows(conn)
    batch = [user("ok1", tokenCount=5), assistant("ok2", embedding=EMBEDDING_OK), bad, user("ok3")]
    error = await append_error(client, ctx["id"], batch)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert argument in error["message"], error["message"]
    assert await message_rows(conn) == before_rows
    assert counters(await get_context(client, ctx["id"])) == (1, 1, 2)
    assert await versions(client, ctx["id"]) == [(1, "a")]


async def test_create_context_with_an_invalid_message_creates_nothing(
    client: GraphQLClient, conn: AsyncConnection
) -> None:
    contexts_before = (await conn.execute(sa.text("SELECT count(*) FROM contexts"))).scalar_one()
    rows_before = await message_rows(conn)
    error = await client.error(
        'mutation($m: [MessageInput!]) { createContext(name: "x", messages: $m) { id } }',
        {"m": [user("fine"), user("bad", embedding=[1.0, 2.0])]},
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "messages[1].embedding" in error["message"]
    assert (
        await conn.execute(sa.text("SELECT count(*) FROM contexts"))
    ).scalar_one() == contexts_before
    assert await message_rows(conn) == rows_before


async def test_empty_batch_is_refused(client: GraphQLClient) -> None:
    ctx = await create_context(client)
    error = await append_error(client, ctx["id"], [])
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "`messages`" in error["message"]


async def test_unknown_role_is_refused(client: GraphQLClient) -> None:
    ctx = await create_context(client)
    error = await append_error(client, ctx["id"], [{"role": "ROBOT", "content": "x"}])
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert (await get_context(client, ctx["id"]))["latestVersion"] == 0


# --- expectedVersion ----------------------------------------------------------------------


async def test_expected_version_match_appends(client: GraphQLClient) -> None:
    ctx = await create_context(client, messages=[user("a")])
    appended = await append(client, ctx["id"], [assistant("b"), user("c")], expected_version=1)
    assert [m["version"] for m in appended] == [2, 3]
    appended = await append(client, ctx["id"], [assistant("d")], expected_version=3)
    assert [m["version"] for m in appended] == [4]
    empty = await create_context(client)
    appended = await append(client, empty["id"], [user("first")], expected_version=0)
    assert [m["version"] for m in appended] == [1]


@pytest.mark.parametrize("expected", [0, 1, 3, 100])
async def test_expected_version_mismatch_conflicts_and_writes_nothing(
    client: GraphQLClient, conn: AsyncConnection, expected: int
) -> None:
    ctx = await create_context(client, messages=[user("a", tokenCount=1), assistant("b")])
    rows = await message_rows(conn)
    error = await append_error(client, ctx["id"], [user("c", tokenCount=9)], expected)
    assert error["extensions"]["code"] == "VERSION_CONFLICT"
    # The message says where the context is, so the client can catch up.
    assert "2" in error["message"]
    assert str(expected) in error["message"]
    assert await message_rows(conn) == rows
    assert counters(await get_context(client, ctx["id"])) == (2, 2, 1)


async def test_expected_version_on_a_fork_is_its_latest_version(client: GraphQLClient) -> None:
    root = await create_context(client, messages=[user("a"), assistant("b"), user("c")])
    child = await fork(client, root["id"], 1)
    error = await append_error(client, child["id"], [user("x")], 3)
    assert error["extensions"]["code"] == "VERSION_CONFLICT"
    appended = await append(client, child["id"], [user("x")], expected_version=1)
    assert [m["version"] for m in appended] == [2]


async def test_negative_expected_version_is_bad_input(client: GraphQLClient) -> None:
    ctx = await create_context(client, messages=[user("a")])
    error = await append_error(client, ctx["id"], [user("b")], -1)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "expectedVersion" in error["message"]


async def test_append_to_missing_deleted_or_malformed_context(
    client: GraphQLClient, conn: AsyncConnection
) -> None:
    missing = str(uuid.uuid4())
    error = await append_error(client, missing, [user("x")])
    assert error["extensions"]["code"] == "NOT_FOUND"
    assert missing in error["message"]
    error = await append_error(client, missing, [user("x")], 0)
    assert error["extensions"]["code"] == "NOT_FOUND"

    error = await append_error(client, "nope", [user("x")])
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "contextId" in error["message"]

    ctx = await create_context(client, messages=[user("a")])
    await client.data("mutation($id: ID!) { deleteContext(id: $id) { id } }", {"id": ctx["id"]})
    rows = await message_rows(conn)
    for expected in (None, 1, 5):
        error = await append_error(client, ctx["id"], [user("x")], expected)
        assert error["extensions"]["code"] == "CONTEXT_DELETED"
    assert await message_rows(conn) == rows
    await client.data("mutation($id: ID!) { restoreContext(id: $id) { id } }", {"id": ctx["id"]})
    assert [m["version"] for m in await append(client, ctx["id"], [user("x")], 1)] == [2]


# --- idempotent retries with client ids ---------------------------------------------------


def with_ids(*messages: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**m, "id": str(uuid.uuid4())} for m in messages]


async def test_client_ids_are_kept(client: GraphQLClient) -> None:
    ctx = await create_context(client)
    batch = with_ids(user("a"), assistant("b"))
    appended = await append(client, ctx["id"], batch)
    assert [m["id"] for m in appended] == [m["id"] for m in batch]
    data = await client.data(
        "query($id: ID!) { message(id: $id) { id version content } }", {"id": batch[1]["id"]}
    )
    assert data["message"] == {"id": batch[1]["id"], "version": 2, "content": "b"}


async def test_exact_replay_returns_stored_messages_and_writes_nothing(
    client: GraphQLClient, conn: AsyncConnection
) -> None:
    ctx = await create_context(client, messages=[user("a")])
    batch = with_ids(
        user("q", tokenCount=4, model="m1"),
        {"role": "TOOL", "content": "r", "toolName": "t", "toolCallId": "c1", "tokenCount": 2},
    )
    stored = await append(client, ctx["id"], batch, expected_version=1)
    assert [m["version"] for m in stored] == [2, 3]
    await append(client, ctx["id"], [assistant("later", tokenCount=1)])
    rows = await message_rows(conn)
    before = await get_context(client, ctx["id"])

    # The retry's expectedVersion is stale (1, the context is at 4): a replay ignores it.
    for expected in (1, None, 4, 99):
        data = await client.data(APPEND, {"id": ctx["id"], "m": batch, "v": expected})
        replayed = data["appendMessages"]["messages"]
        assert [(m["id"], m["version"]) for m in replayed] == [
            (m["id"], m["version"]) for m in stored
        ]
        assert [m["content"] for m in replayed] == ["q", "r"]
        assert counters(data["appendMessages"]["context"]) == (4, 4, 7)
    assert await message_rows(conn) == rows
    assert await get_context(client, ctx["id"]) == before


async def test_replay_of_part_of_a_stored_batch_returns_those_messages(
    client: GraphQLClient, conn: AsyncConnection
) -> None:
    ctx = await create_context(client)
    batch = with_ids(user("a"), assistant("b"), user("c"))
    await append(client, ctx["id"], batch)
    rows = await message_rows(conn)
    replayed = await append(client, ctx["id"], [batch[1]], expected_version=0)
    assert [(m["id"], m["version"]) for m in replayed] == [(batch[1]["id"], 2)]
    assert await message_rows(conn) == rows


async def test_replay_of_create_context_messages(client: GraphQLClient) -> None:
    batch = with_ids(user("a"), assistant("b"))
    ctx = await create_context(client, messages=batch)
    replayed = await append(client, ctx["id"], batch, expected_version=0)
    assert [(m["id"], m["version"]) for m in replayed] == [(batch[0]["id"], 1), (batch[1]["id"], 2)]
    assert (await get_context(client, ctx["id"]))["messageCount"] == 2


async def test_partial_overlap_is_bad_input(client: GraphQLClient, conn: AsyncConnection) -> None:
    ctx = await create_context(client)
    batch = with_ids(user("a"), assistant("b"))
    await append(client, ctx["id"], batch)
    rows = await message_rows(conn)
    for attempt in (
        [batch[0], *with_ids(user("new"))],  # a stored id and a new id
        [batch[0], batch[1], user("no id")],  # stored ids and a message without id
        [*with_ids(user("new")), batch[1]],
    ):
        error = await append_error(client, ctx["id"], attempt)
        assert error["extensions"]["code"] == "BAD_USER_INPUT", attempt
        assert "id" in error["message"]
    assert await message_rows(conn) == rows
    assert counters(await get_context(client, ctx["id"])) == (2, 2, 0)


@pytest.mark.parametrize(
    "change",
    [
        {"content": "changed"},
        {"role": "ASSISTANT"},
        {"tokenCount": 5},
        {"tokenCount": None},
        {"model": "other"},
        {"model": None},
        {"toolName": "t2"},
        {"toolCallId": "c2"},
    ],
)
async def test_replay_with_changed_fields_is_bad_input(
    client: GraphQLClient, conn: AsyncConnection, change: dict[str, Any]
) -> None:
    ctx = await create_context(client)
    original = {"id": str(uuid.uuid4()), **user("q", tokenCount=4, model="m1")}
    original.update(toolName="t1", toolCallId="c1")
    await append(client, ctx["id"], [original])
    rows = await message_rows(conn)
    error = await append_error(client, ctx["id"], [{**original, **change}])
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert original["id"] in error["message"]
    assert "different" in error["message"]
    assert await message_rows(conn) == rows
    assert counters(await get_context(client, ctx["id"])) == (1, 1, 4)


async def test_id_used_in_another_context_is_bad_input(
    client: GraphQLClient, conn: AsyncConnection
) -> None:
    a = await create_context(client)
    b = await create_context(client)
    batch = with_ids(user("a"))
    await append(client, a["id"], batch)
    rows = await message_rows(conn)
    error = await append_error(client, b["id"], batch)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "another context" in error["message"]
    assert await message_rows(conn) == rows
    assert (await get_context(client, b["id"]))["latestVersion"] == 0

    # A fork shares the history but not the ownership: the id is still another context's.
    child = await fork(client, a["id"])
    error = await append_error(client, child["id"], batch)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


async def test_duplicate_ids_within_a_batch_are_bad_input(
    client: GraphQLClient, conn: AsyncConnection
) -> None:
    ctx = await create_context(client)
    mid = str(uuid.uuid4())
    rows = await message_rows(conn)
    error = await append_error(client, ctx["id"], [user("a", id=mid), user("a", id=mid)])
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "messages[1].id" in error["message"]
    # Same UUID spelled differently is still the same id.
    error = await append_error(client, ctx["id"], [user("a", id=mid), user("b", id=mid.upper())])
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert await message_rows(conn) == rows


# --- input validation ---------------------------------------------------------------------


@pytest_asyncio.fixture
async def small_client(conn: AsyncConnection) -> AsyncIterator[GraphQLClient]:
    """The app with tiny limits, on the test's rolled-back connection."""
    settings = test_settings(max_content_length=10, max_messages_per_append=3)
    app = create_app(settings, connector=RollbackConnector(conn))
    async with graphql_client(app) as c:
        yield c


async def test_content_over_the_limit_is_bad_input(
    small_client: GraphQLClient, conn: AsyncConnection
) -> None:
    ctx = await create_context(small_client)
    rows = await message_rows(conn)
    error = await append_error(small_client, ctx["id"], [user("x" * 10), user("y" * 11)])
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "messages[1].content" in error["message"]
    assert "CTXGRAPH_MAX_CONTENT_LENGTH" in error["message"]
    assert "10" in error["message"]
    assert await message_rows(conn) == rows
    # Exactly at the limit is fine.
    assert [m["version"] for m in await append(small_client, ctx["id"], [user("x" * 10)])] == [1]


async def test_too_many_messages_per_append(
    small_client: GraphQLClient, conn: AsyncConnection
) -> None:
    ctx = await create_context(small_client)
    rows = await message_rows(conn)
    error = await append_error(small_client, ctx["id"], [user(str(i)) for i in range(4)])
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "CTXGRAPH_MAX_MESSAGES_PER_APPEND" in error["message"]
    assert await message_rows(conn) == rows
    error = await small_client.error(
        "mutation($m: [MessageInput!]) { createContext(messages: $m) { id } }",
        {"m": [user(str(i)) for i in range(4)]},
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    appended = await append(small_client, ctx["id"], [user(str(i)) for i in range(3)])
    assert [m["version"] for m in appended] == [1, 2, 3]


async def test_default_limit_of_1000_messages_per_append(
    client: GraphQLClient, conn: AsyncConnection
) -> None:
    ctx = await create_context(client)
    rows = await message_rows(conn)
    error = await append_error(client, ctx["id"], [user("m")] * 1001)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "1000" in error["message"]
    assert await message_rows(conn) == rows
    appended = await append(client, ctx["id"], [user("m", tokenCount=1)] * 1000)
    assert [m["version"] for m in appended] == list(range(1, 1001))
    assert counters(await get_context(client, ctx["id"])) == (1000, 1000, 1000)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 1e309])
async def test_non_finite_embedding_is_bad_input(
    client: GraphQLClient, conn: AsyncConnection, value: float
) -> None:
    ctx = await create_context(client)
    rows = await message_rows(conn)
    embedding = [0.5] * 1536
    embedding[700] = value
    error = await raw_error(
        client, APPEND, {"id": ctx["id"], "m": [user("x", embedding=embedding)], "v": None}
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert await message_rows(conn) == rows


async def test_non_finite_embedding_literal_is_bad_input(client: GraphQLClient) -> None:
    ctx = await create_context(client)
    values = ", ".join(["0.5"] * 1535 + ["1e999"])
    error = await client.error(
        'mutation($id: ID!) { appendMessages(contextId: $id, messages: [{role: USER, content: "x",'
        f" embedding: [{values}]}}]) {{ messages {{ id }} }} }}",
        {"id": ctx["id"]},
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert (await get_context(client, ctx["id"]))["latestVersion"] == 0


async def test_valid_embedding_is_stored(client: GraphQLClient) -> None:
    ctx = await create_context(client)
    data = await client.data(APPEND, {"id": ctx["id"], "m": [user("x", embedding=EMBEDDING_OK)]})
    assert data["appendMessages"]["messages"][0]["hasEmbedding"] is True


@pytest.mark.parametrize(
    "text",
    ["nul\x00inside", "\x00", "lone surrogate \ud800 inside"],
    ids=["nul", "only-nul", "surrogate"],
)
async def test_unstorable_text_is_bad_input_not_500(client: GraphQLClient, text: str) -> None:
    ctx = await create_context(client)
    error = await raw_error(client, APPEND, {"id": ctx["id"], "m": [user(text)], "v": None})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "messages[0].content" in error["message"]
    error = await raw_error(
        client,
        "mutation($m: [MessageInput!]) { createContext(messages: $m) { id } }",
        {"m": [user(text)]},
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert (await get_context(client, ctx["id"]))["latestVersion"] == 0


async def test_unicode_content_round_trips(client: GraphQLClient) -> None:
    text = "héllo 👋 — 中文 \u200b\t\n"
    ctx = await create_context(client)
    await append(client, ctx["id"], [user(text)])
    assert await versions(client, ctx["id"]) == [(1, text)]


async def test_new_client_ids_with_a_stale_expected_version_conflict(
    client: GraphQLClient, conn: AsyncConnection
) -> None:
    ctx = await create_context(client, messages=[user("a")])
    rows = await message_rows(conn)
    error = await append_error(client, ctx["id"], with_ids(user("b")), 0)
    assert error["extensions"]["code"] == "VERSION_CONFLICT"
    assert await message_rows(conn) == rows
    missing = str(uuid.uuid4())
    error = await append_error(client, missing, with_ids(user("b")))
    assert error["extensions"]["code"] == "NOT_FOUND"
    await client.data("mutation($id: ID!) { deleteContext(id: $id) { id } }", {"id": ctx["id"]})
    error = await append_error(client, ctx["id"], with_ids(user("b")), 1)
    assert error["extensions"]["code"] == "CONTEXT_DELETED"
    assert await message_rows(conn) == rows


# --- setMessageEmbedding ------------------------------------------------------------------

SET_EMBEDDING = (
    "mutation($id: ID!, $e: [Float!]!) { setMessageEmbedding(id: $id, embedding: $e) {"
    " id hasEmbedding deletedAt } }"
)


async def test_set_message_embedding(client: GraphQLClient, conn: AsyncConnection) -> None:
    ctx = await create_context(client, messages=[user("a")])
    mid = (await append(client, ctx["id"], [user("b")]))[0]["id"]
    for bad in ([0.1] * 1535, [0.1] * 1537, []):
        error = await client.error(SET_EMBEDDING, {"id": mid, "e": bad})
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "1536" in error["message"]
    non_finite = [0.1] * 1536
    non_finite[3] = math.nan
    error = await raw_error(client, SET_EMBEDDING, {"id": mid, "e": non_finite})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert (
        await conn.execute(
            sa.text("SELECT embedding IS NULL FROM messages WHERE id = :id"), {"id": uuid.UUID(mid)}
        )
    ).scalar_one()

    data = await client.data(SET_EMBEDDING, {"id": mid, "e": EMBEDDING_OK})
    assert data["setMessageEmbedding"] == {"id": mid, "hasEmbedding": True, "deletedAt": None}

    error = await client.error(SET_EMBEDDING, {"id": str(uuid.uuid4()), "e": EMBEDDING_OK})
    assert error["extensions"]["code"] == "NOT_FOUND"
    error = await client.error(SET_EMBEDDING, {"id": "x", "e": EMBEDDING_OK})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    await client.data("mutation($id: ID!) { deleteContext(id: $id) { id } }", {"id": ctx["id"]})
    error = await client.error(SET_EMBEDDING, {"id": mid, "e": EMBEDDING_OK})
    assert error["extensions"]["code"] == "CONTEXT_DELETED"
