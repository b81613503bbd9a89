"""forkContext and the snapshot rule through the GraphQL API, at several fork depths."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.conftest import GraphQLClient
from tests.helpers import append, assistant, create_context, fork, get_context, user

FORK = (
    "mutation($id: ID!, $v: Int, $name: String, $metadata: JSON) {"
    " forkContext(id: $id, atVersion: $v, name: $name, metadata: $metadata) {"
    " id name metadata messageCount totalTokens latestVersion forkVersion"
    " createdAt updatedAt parent { id } } }"
)

DELETE_MESSAGE = "mutation($id: ID!) { deleteMessage(id: $id) { id deletedAt } }"

HISTORY = (
    "query($id: ID!) { context(id: $id) { messageCount totalTokens latestVersion"
    " all: messages(first: 500) { totalCount nodes { id version content tokenCount"
    " deletedAt context { id } } }"
    " counted: messages(first: 0, fromVersion: 0) { totalCount } } }"
)


async def message_rows(conn: AsyncConnection) -> int:
    return int((await conn.execute(sa.text("SELECT count(*) FROM messages"))).scalar_one())


async def visible(client: GraphQLClient, context_id: str) -> list[tuple[int, str]]:
    """(version, content) of the visible history, checking the counters agree with it."""
    data = await client.data(HISTORY, {"id": context_id})
    ctx = data["context"]
    nodes = ctx["all"]["nodes"]
    # Own messages are visible only while not deleted; an inherited one may have been
    # deleted in its owner after the fork (then it stays visible here, with deletedAt).
    assert all(n["deletedAt"] is None for n in nodes if n["context"]["id"] == context_id)
    versions = [n["version"] for n in nodes]
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)
    assert ctx["messageCount"] == len(nodes), ctx
    assert ctx["totalTokens"] == sum(n["tokenCount"] or 0 for n in nodes), ctx
    # totalCount of the whole history, and the same count computed by SQL (a filter
    # that matches everything bypasses the stored counter).
    assert ctx["all"]["totalCount"] == len(nodes)
    assert ctx["counted"]["totalCount"] == len(nodes)
    return [(n["version"], n["content"]) for n in nodes]


async def delete_message(client: GraphQLClient, message_id: str) -> None:
    await client.data(DELETE_MESSAGE, {"id": message_id})


def numbered(prefix: str, n: int, tokens: int = 1) -> list[dict[str, Any]]:
    return [
        (user if i % 2 else assistant)(f"{prefix}{i}", tokenCount=tokens * i)
        for i in range(1, n + 1)
    ]


# --- O(1) forks and their counters -----------------------------------------------------------


async def test_fork_copies_no_message_rows(client: GraphQLClient, conn: AsyncConnection) -> None:
    root = await create_context(client, messages=numbered("m", 200))
    rows = await message_rows(conn)
    contexts = (await conn.execute(sa.text("SELECT count(*) FROM contexts"))).scalar_one()
    latest = await fork(client, root["id"])
    middle = await fork(client, root["id"], 100)
    deep = await fork(client, latest["id"], 150)
    assert await message_rows(conn) == rows
    assert (
        await conn.execute(sa.text("SELECT count(*) FROM contexts"))
    ).scalar_one() == contexts + 3
    assert (latest["latestVersion"], latest["messageCount"]) == (200, 200)
    assert (middle["latestVersion"], middle["messageCount"]) == (100, 100)
    assert (deep["latestVersion"], deep["messageCount"]) == (150, 150)
    assert deep["totalTokens"] == sum(range(1, 151))
    # No message row is owned by a fork until it appends.
    owned = (
        await conn.execute(
            sa.text("SELECT count(*) FROM messages WHERE context_id = ANY(:ids)"),
            {"ids": [uuid.UUID(c["id"]) for c in (latest, middle, deep)]},
        )
    ).scalar_one()
    assert owned == 0
    assert len(await visible(client, deep["id"])) == 150


async def test_fork_counters_at_default_and_lower_versions(client: GraphQLClient) -> None:
    root = await create_context(client, messages=numbered("m", 10))  # tokens 1..10
    ids = [
        n["id"]
        for n in (
            await client.data(
                "query($id: ID!) { context(id: $id) { messages { nodes { id } } } }",
                {"id": root["id"]},
            )
        )["context"]["messages"]["nodes"]
    ]
    await delete_message(client, ids[2])  # v3, 3 tokens
    await delete_message(client, ids[7])  # v8, 8 tokens
    await append(client, root["id"], [user("untokened")])  # v11, no token count

    at_latest = await fork(client, root["id"])
    assert at_latest["forkVersion"] == 11
    assert at_latest["latestVersion"] == 11
    assert at_latest["messageCount"] == 9
    assert at_latest["totalTokens"] == 55 - 3 - 8

    at_nine = await fork(client, root["id"], 9)
    assert (at_nine["latestVersion"], at_nine["messageCount"], at_nine["totalTokens"]) == (
        9,
        7,
        45 - 3 - 8,
    )
    at_eight = await fork(client, root["id"], 8)  # the deleted message is the fork point
    assert (at_eight["messageCount"], at_eight["totalTokens"]) == (6, 36 - 3 - 8)
    at_zero = await fork(client, root["id"], 0)
    assert (at_zero["latestVersion"], at_zero["messageCount"], at_zero["totalTokens"]) == (
        0,
        0,
        0,
    )
    assert await visible(client, at_zero["id"]) == []
    for child in (at_latest, at_nine, at_eight):
        history = await visible(client, child["id"])
        assert [v for v, _ in history] == [
            v for v in range(1, child["latestVersion"] + 1) if v not in (3, 8)
        ]

    # A fork of a fork at a lower version subtracts the inherited tail too.
    grandchild = await fork(client, at_latest["id"], 5)
    assert (grandchild["messageCount"], grandchild["totalTokens"]) == (4, 15 - 3)
    await visible(client, grandchild["id"])


async def test_fork_counters_at_every_version_follow_the_snapshot_rule(
    client: GraphQLClient, conn: AsyncConnection
) -> None:
    """Counters of a fork at any version equal its served history, through a chain
    whose ancestors lose messages before and after each fork (still visible below
    the fork) and whose own messages are deleted too; token counts may be null."""
    rng = random.Random(8)

    def batch(prefix: str, n: int) -> list[dict[str, Any]]:
        return [
            user(f"{prefix}{i}", tokenCount=rng.choice([None, 0, rng.randint(1, 900)]))
            for i in range(n)
        ]

    async def delete_some(context_id: str, k: int) -> None:
        rows = (
            await conn.execute(
                sa.text(
                    "SELECT id FROM messages WHERE context_id = :c AND deleted_at IS NULL"
                    " ORDER BY version"
                ),
                {"c": uuid.UUID(context_id)},
            )
        ).scalars()
        for message_id in rng.sample(list(rows), k):
            await delete_message(client, str(message_id))

    root = await create_context(client, messages=batch("r", 24))
    await append(client, root["id"], batch("r", 6))  # continues the created batch's sums
    await delete_some(root["id"], 3)
    child = await fork(client, root["id"], 20)
    await append(client, child["id"], batch("c", 6))
    await append(client, child["id"], batch("c", 6))
    await delete_some(root["id"], 4)  # after the fork: still visible in child
    await delete_some(child["id"], 2)
    grandchild = await fork(client, child["id"], 27)
    await append(client, grandchild["id"], batch("g", 8))
    await delete_some(child["id"], 2)
    await delete_some(root["id"], 2)
    await delete_some(grandchild["id"], 1)

    for context in (root, child, grandchild):
        latest = (await get_context(client, context["id"]))["latestVersion"]
        for version in range(latest + 1):
            forked = await fork(client, context["id"], version)
            assert forked["latestVersion"] == version
            await visible(client, forked["id"])  # counters == the history served


@pytest.mark.parametrize("at_version", [4, 100, -1])
async def test_at_version_out_of_range_is_bad_input(
    client: GraphQLClient, conn: AsyncConnection, at_version: int
) -> None:
    root = await create_context(client, messages=numbered("m", 3))
    contexts = (await conn.execute(sa.text("SELECT count(*) FROM contexts"))).scalar_one()
    error = await client.error(FORK, {"id": root["id"], "v": at_version})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "atVersion" in error["message"]
    if at_version > 3:
        assert "3" in error["message"]  # says what the valid range is
    assert (await conn.execute(sa.text("SELECT count(*) FROM contexts"))).scalar_one() == contexts


async def test_at_version_range_on_a_fork_is_its_own_latest_version(
    client: GraphQLClient,
) -> None:
    root = await create_context(client, messages=numbered("m", 6))
    child = await fork(client, root["id"], 2)
    error = await client.error(FORK, {"id": child["id"], "v": 3})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    await append(client, child["id"], [user("x")])
    grandchild = await fork(client, child["id"], 3)
    assert await visible(client, grandchild["id"]) == [(1, "m1"), (2, "m2"), (3, "x")]


async def test_fork_of_deleted_missing_or_malformed_context(client: GraphQLClient) -> None:
    root = await create_context(client, messages=numbered("m", 2))
    child = await fork(client, root["id"])
    await client.data("mutation($id: ID!) { deleteContext(id: $id) { id } }", {"id": root["id"]})
    for v in (None, 1, 99):
        error = await client.error(FORK, {"id": root["id"], "v": v})
        assert error["extensions"]["code"] == "CONTEXT_DELETED"
        assert "restoreContext" in error["message"]
    # Forks of a deleted context keep their history and can be forked themselves.
    grandchild = await fork(client, child["id"], 1)
    assert await visible(client, grandchild["id"]) == [(1, "m1")]
    assert await visible(client, child["id"]) == [(1, "m1"), (2, "m2")]

    missing = str(uuid.uuid4())
    error = await client.error(FORK, {"id": missing})
    assert error["extensions"]["code"] == "NOT_FOUND"
    error = await client.error(FORK, {"id": "12345"})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "`id`" in error["message"]


async def test_fork_metadata_and_name(client: GraphQLClient) -> None:
    meta = {"user": "u1", "tags": ["a", "b"], "nested": {"x": 1}}
    root = await create_context(client, name="root", messages=numbered("m", 1), metadata=meta)
    inherited = (await client.data(FORK, {"id": root["id"]}))["forkContext"]
    assert inherited["metadata"] == meta
    assert inherited["name"] is None
    assert inherited["parent"] == {"id": root["id"]}
    own = (
        await client.data(FORK, {"id": root["id"], "name": "branch", "metadata": {"user": "u2"}})
    )["forkContext"]
    assert own["metadata"] == {"user": "u2"}
    assert own["name"] == "branch"
    empty = (await client.data(FORK, {"id": root["id"], "metadata": {}}))["forkContext"]
    assert empty["metadata"] == {}
    # A fork of a fork inherits from its own parent.
    grandchild = (await client.data(FORK, {"id": own["id"]}))["forkContext"]
    assert grandchild["metadata"] == {"user": "u2"}
    # The parent's metadata is unchanged.
    assert (await get_context(client, root["id"]))["metadata"] == meta

    error = await client.error(FORK, {"id": root["id"], "metadata": [1, 2]})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "metadata" in error["message"]


async def test_forking_does_not_touch_the_parent(live_client: GraphQLClient) -> None:
    """Real commits: in one rolled-back transaction now() never moves, so the
    parent's updatedAt could not show a change."""
    tag = str(uuid.uuid4())
    root = await create_context(live_client, name=tag, messages=numbered("m", 3))
    query = (
        "query($id: ID!) { context(id: $id) { updatedAt messageCount totalTokens latestVersion"
        " metadata } }"
    )
    before = (await live_client.data(query, {"id": root["id"]}))["context"]
    child = (await live_client.data(FORK, {"id": root["id"], "v": 2}))["forkContext"]
    (await live_client.data(FORK, {"id": root["id"], "metadata": {"x": 1}}))["forkContext"]
    assert child["createdAt"] > before["updatedAt"]
    assert (await live_client.data(query, {"id": root["id"]}))["context"] == before
    # Appending to the fork does not touch the parent either; appending to the parent does.
    await append(live_client, child["id"], [user("x")])
    assert (await live_client.data(query, {"id": root["id"]}))["context"] == before
    await append(live_client, root["id"], [user("y")])
    after = (await live_client.data(query, {"id": root["id"]}))["context"]
    assert after["updatedAt"] > before["updatedAt"]


# --- the snapshot rule at depth -------------------------------------------------------------


class Tree:
    """root (r1..r6) -> a (at 5, own a6 a7) -> b (at 6, own b7) -> c (at 7, own c8)."""

    def __init__(self, client: GraphQLClient) -> None:
        self.client = client
        self.ids: dict[str, str] = {}
        self.msg: dict[str, str] = {}

    async def build(self) -> Tree:
        c = self.client
        root = await create_context(c, messages=numbered("r", 6))
        self.ids["root"] = root["id"]
        await self._remember(root["id"])
        a = await fork(c, root["id"], 5)
        self.ids["a"] = a["id"]
        await self._remember_appended(await append(c, a["id"], [user("a6", tokenCount=60)]))
        await self._remember_appended(await append(c, a["id"], [user("a7", tokenCount=70)]))
        b = await fork(c, a["id"], 6)
        self.ids["b"] = b["id"]
        await self._remember_appended(await append(c, b["id"], [user("b7", tokenCount=700)]))
        cc = await fork(c, b["id"], 7)
        self.ids["c"] = cc["id"]
        await self._remember_appended(await append(c, cc["id"], [user("c8", tokenCount=8000)]))
        return self

    async def _remember(self, context_id: str) -> None:
        data = await self.client.data(
            "query($id: ID!) { context(id: $id) { messages(first: 500) {"
            " nodes { id content } } } }",
            {"id": context_id},
        )
        for n in data["context"]["messages"]["nodes"]:
            self.msg[n["content"]] = n["id"]

    async def _remember_appended(self, messages: list[dict[str, Any]]) -> None:
        for m in messages:
            self.msg[m["content"]] = m["id"]

    async def history(self, name: str) -> list[str]:
        return [content for _, content in await visible(self.client, self.ids[name])]


EXPECTED = {
    "root": ["r1", "r2", "r3", "r4", "r5", "r6"],
    "a": ["r1", "r2", "r3", "r4", "r5", "a6", "a7"],
    "b": ["r1", "r2", "r3", "r4", "r5", "a6", "b7"],
    "c": ["r1", "r2", "r3", "r4", "r5", "a6", "b7", "c8"],
}


async def test_histories_at_depth(client: GraphQLClient) -> None:
    tree = await Tree(client).build()
    for name, expected in EXPECTED.items():
        assert await tree.history(name) == expected, name
    versions = [v for v, _ in await visible(client, tree.ids["c"])]
    assert versions == list(range(1, 9))
    data = await client.data(
        "query($id: ID!) { context(id: $id) { messages { nodes { content context { id } } } } }",
        {"id": tree.ids["c"]},
    )
    owners = {n["content"]: n["context"]["id"] for n in data["context"]["messages"]["nodes"]}
    assert owners["r3"] == tree.ids["root"]
    assert owners["a6"] == tree.ids["a"]
    assert owners["b7"] == tree.ids["b"]
    assert owners["c8"] == tree.ids["c"]


async def test_deleting_an_ancestor_message_after_forking_changes_no_fork(
    client: GraphQLClient,
) -> None:
    tree = await Tree(client).build()
    await delete_message(client, tree.msg["r2"])
    await delete_message(client, tree.msg["r6"])  # above every fork point
    await delete_message(client, tree.msg["a6"])
    assert await tree.history("root") == ["r1", "r3", "r4", "r5"]
    assert await tree.history("a") == ["r1", "r2", "r3", "r4", "r5", "a7"]
    for name in ("b", "c"):
        assert await tree.history(name) == EXPECTED[name], name


async def test_deleting_before_forking_hides_the_message(client: GraphQLClient) -> None:
    root = await create_context(client, messages=numbered("r", 5))
    ids = {c: i for i, c in await _ids(client, root["id"])}
    await delete_message(client, ids["r2"])
    a = await fork(client, root["id"])
    assert a["messageCount"] == 4
    assert [c for _, c in await visible(client, a["id"])] == ["r1", "r3", "r4", "r5"]
    own = await append(client, a["id"], [user("a6", tokenCount=6)])
    await delete_message(client, own[0]["id"])
    await delete_message(client, ids["r4"])  # after a was forked: a keeps r4
    b = await fork(client, a["id"])
    assert [c for _, c in await visible(client, b["id"])] == ["r1", "r3", "r4", "r5"]
    assert b["latestVersion"] == 6
    c = await fork(client, b["id"], 6)
    assert [c for _, c in await visible(client, c["id"])] == ["r1", "r3", "r4", "r5"]
    assert [c for _, c in await visible(client, root["id"])] == ["r1", "r3", "r5"]


async def test_deleting_between_two_forks_of_a_chain(client: GraphQLClient) -> None:
    """r3 is deleted after `a` was forked from root but before `b` was forked from `a`:
    `b` copies `a`'s history as it is, and `a` still has r3."""
    root = await create_context(client, messages=numbered("r", 4))
    ids = {c: i for i, c in await _ids(client, root["id"])}
    a = await fork(client, root["id"])
    await delete_message(client, ids["r3"])
    b = await fork(client, a["id"])
    assert b["messageCount"] == 4
    assert [c for _, c in await visible(client, b["id"])] == ["r1", "r2", "r3", "r4"]
    c = await fork(client, b["id"], 3)
    assert [c for _, c in await visible(client, c["id"])] == ["r1", "r2", "r3"]


async def test_deleting_in_a_fork_never_changes_its_ancestors(client: GraphQLClient) -> None:
    tree = await Tree(client).build()
    await delete_message(client, tree.msg["b7"])
    await delete_message(client, tree.msg["c8"])
    assert await tree.history("b") == ["r1", "r2", "r3", "r4", "r5", "a6"]
    assert await tree.history("c") == ["r1", "r2", "r3", "r4", "r5", "a6", "b7"]
    for name in ("root", "a"):
        assert await tree.history(name) == EXPECTED[name], name
    # Deleting an inherited message is a delete on its owner, never on the fork.
    await delete_message(client, tree.msg["a7"])
    assert await tree.history("a") == ["r1", "r2", "r3", "r4", "r5", "a6"]
    assert await tree.history("root") == EXPECTED["root"]


async def test_include_deleted_and_include_inherited(client: GraphQLClient) -> None:
    root = await create_context(client, messages=numbered("r", 4))
    ids = {c: i for i, c in await _ids(client, root["id"])}
    await delete_message(client, ids["r2"])  # before the fork
    a = await fork(client, root["id"])
    await delete_message(client, ids["r3"])  # after the fork: a still sees it
    own = await append(client, a["id"], [user("a5"), user("a6")])
    await delete_message(client, own[0]["id"])
    b = await fork(client, a["id"])
    await append(client, b["id"], [user("b7")])

    query = (
        "query($id: ID!, $inh: Boolean, $del: Boolean) { context(id: $id) {"
        " messages(includeInherited: $inh, includeDeleted: $del) { totalCount"
        " nodes { content deletedAt } } } }"
    )

    async def page(context_id: str, inh: bool, deleted: bool) -> list[tuple[str, bool]]:
        data = await client.data(query, {"id": context_id, "inh": inh, "del": deleted})
        conn = data["context"]["messages"]
        assert conn["totalCount"] == len(conn["nodes"])
        return [(n["content"], n["deletedAt"] is not None) for n in conn["nodes"]]

    assert await page(a["id"], True, False) == [
        ("r1", False),
        ("r3", True),  # deleted in its owner after the fork: visible, with deletedAt
        ("r4", False),
        ("a6", False),
    ]
    assert await page(a["id"], True, True) == [
        ("r1", False),
        ("r2", True),
        ("r3", True),
        ("r4", False),
        ("a5", True),
        ("a6", False),
    ]
    assert await page(a["id"], False, False) == [("a6", False)]
    assert await page(a["id"], False, True) == [("a5", True), ("a6", False)]
    assert await page(b["id"], False, False) == [("b7", False)]
    assert await page(b["id"], True, False) == [
        ("r1", False),
        ("r3", True),
        ("r4", False),
        ("a6", False),
        ("b7", False),
    ]
    assert await page(root["id"], True, False) == [("r1", False), ("r4", False)]
    assert await page(root["id"], False, True) == [
        ("r1", False),
        ("r2", True),
        ("r3", True),
        ("r4", False),
    ]


async def test_context_message_by_version(client: GraphQLClient) -> None:
    tree = await Tree(client).build()
    await delete_message(client, tree.msg["r2"])  # after every fork
    await delete_message(client, tree.msg["b7"])  # own message of b, inherited by c
    query = (
        "query($id: ID!, $v: Int!) { context(id: $id) { message(version: $v) {"
        " id version content context { id } } } }"
    )

    async def at(name: str, version: int) -> str | None:
        data = await client.data(query, {"id": tree.ids[name], "v": version})
        m = data["context"]["message"]
        if m is None:
            return None
        assert m["version"] == version
        assert m["id"] == tree.msg[m["content"]]
        content: str = m["content"]
        return content

    assert await at("c", 8) == "c8"  # own
    assert await at("c", 7) == "b7"  # inherited from b before b deleted it
    assert await at("c", 6) == "a6"  # inherited through two forks
    assert await at("c", 2) == "r2"  # deleted in root after the forks
    assert await at("root", 2) is None  # deleted
    assert await at("b", 7) is None  # deleted own message
    assert await at("a", 6) == "a6"
    assert await at("a", 7) == "a7"
    assert await at("b", 6) == "a6"
    assert await at("root", 6) == "r6"
    assert await at("a", 6) != await at("root", 6)  # same version, different owner
    for name, beyond in (("root", 7), ("a", 8), ("b", 8), ("c", 9)):
        assert await at(name, beyond) is None
    assert await at("c", 0) is None
    assert await at("c", -1) is None
    assert await at("c", 2_000_000_000) is None


async def test_counters_stay_equal_to_the_visible_history(client: GraphQLClient) -> None:
    tree = await Tree(client).build()
    steps: list[tuple[str, str]] = [
        ("delete", "r1"),
        ("delete", "a7"),
        ("fork", "a"),
        ("delete", "a6"),
        ("delete", "c8"),
        ("fork", "c"),
        ("delete", "r5"),
        ("delete", "r5"),  # repeated: no change
        ("fork", "b"),
    ]
    extra: list[str] = []
    for kind, target in steps:
        if kind == "delete":
            await delete_message(client, tree.msg[target])
        else:
            child = await fork(client, tree.ids[target])
            extra.append(child["id"])
            appended = await append(client, child["id"], [user("x", tokenCount=3)])
            tree.msg[f"x-{child['id']}"] = appended[0]["id"]
        for context_id in [*tree.ids.values(), *extra]:
            await visible(client, context_id)  # asserts counters == history


async def _ids(client: GraphQLClient, context_id: str) -> list[tuple[str, str]]:
    data = await client.data(
        "query($id: ID!) { context(id: $id) { messages(first: 500) { nodes { id content } } } }",
        {"id": context_id},
    )
    return [(n["id"], n["content"]) for n in data["context"]["messages"]["nodes"]]
