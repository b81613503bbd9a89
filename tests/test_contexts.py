"""Contexts through the GraphQL API: create, rename, metadata, soft delete/restore,
updatedAt, and the `contexts` listing (filters, orders, keyset pages, totalCount).

Tests on the rolled-back `client` see committed rows of other tests too, so every
listing is filtered by a metadata tag unique to the test.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any

import pytest

from tests.conftest import GraphQLClient
from tests.helpers import (
    append,
    assistant,
    create_context,
    fork,
    get_context,
    history,
    user,
)

FULL = "id name metadata createdAt updatedAt deletedAt messageCount totalTokens latestVersion"


def new_tag() -> dict[str, str]:
    return {"tag": uuid.uuid4().hex}


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def full_context(client: GraphQLClient, context_id: str) -> dict[str, Any]:
    data = await client.data(
        f"query($id: ID!) {{ context(id: $id) {{ {FULL} parent {{ id }} forkVersion }} }}",
        {"id": context_id},
    )
    result: dict[str, Any] = data["context"]
    return result


async def mutate(client: GraphQLClient, call: str, variables: dict[str, Any]) -> dict[str, Any]:
    """Run a mutation selecting the full context; return the one root field."""
    data = await client.data(f"mutation {call} {{ {FULL} }} }}", variables)
    (result,) = data.values()
    assert isinstance(result, dict)
    return result


async def rename(client: GraphQLClient, context_id: str, name: str | None) -> dict[str, Any]:
    return await mutate(
        client,
        "($id: ID!, $name: String) { renameContext(id: $id, name: $name)",
        {"id": context_id, "name": name},
    )


async def set_metadata(client: GraphQLClient, context_id: str, meta: Any) -> dict[str, Any]:
    return await mutate(
        client,
        "($id: ID!, $m: JSON!) { setContextMetadata(id: $id, metadata: $m)",
        {"id": context_id, "m": meta},
    )


async def delete(client: GraphQLClient, context_id: str) -> dict[str, Any]:
    return await mutate(client, "($id: ID!) { deleteContext(id: $id)", {"id": context_id})


async def restore(client: GraphQLClient, context_id: str) -> dict[str, Any]:
    return await mutate(client, "($id: ID!) { restoreContext(id: $id)", {"id": context_id})


# --- create ----------------------------------------------------------------------------


async def test_create_without_messages(client: GraphQLClient) -> None:
    created = await mutate(client, "{ createContext", {})
    assert created["name"] is None
    assert created["metadata"] == {}
    assert created["messageCount"] == 0
    assert created["totalTokens"] == 0
    assert created["latestVersion"] == 0
    assert created["deletedAt"] is None
    assert created["createdAt"] == created["updatedAt"]
    assert ts(created["createdAt"]).tzinfo is not None
    stored = await full_context(client, created["id"])
    assert stored["parent"] is None
    assert stored["forkVersion"] is None
    assert {k: stored[k] for k in created} == created
    assert await history(client, created["id"]) == []


async def test_create_with_name_metadata_and_messages(client: GraphQLClient) -> None:
    meta = {"user": "u1", "tags": ["a", "b"], "settings": {"temperature": 0.5, "n": None}}
    created = await mutate(
        client,
        "($m: [MessageInput!], $meta: JSON) {"
        ' createContext(name: "chat", metadata: $meta, messages: $m)',
        {
            "meta": meta,
            "m": [
                user("hello", tokenCount=3),
                assistant("hi there", tokenCount=4, model="gpt"),
                {"role": "SYSTEM", "content": "be nice"},
            ],
        },
    )
    assert created["name"] == "chat"
    assert created["metadata"] == meta
    assert created["messageCount"] == 3
    assert created["totalTokens"] == 7
    assert created["latestVersion"] == 3
    data = await client.data(
        "query($id: ID!) { context(id: $id) { messages { nodes { version role content"
        " tokenCount model context { id } } } } }",
        {"id": created["id"]},
    )
    nodes = data["context"]["messages"]["nodes"]
    assert [(n["version"], n["role"], n["content"]) for n in nodes] == [
        (1, "USER", "hello"),
        (2, "ASSISTANT", "hi there"),
        (3, "SYSTEM", "be nice"),
    ]
    assert [n["tokenCount"] for n in nodes] == [3, 4, None]
    assert nodes[1]["model"] == "gpt"
    assert {n["context"]["id"] for n in nodes} == {created["id"]}


async def test_create_with_empty_message_list(client: GraphQLClient) -> None:
    created = await create_context(client, messages=[])
    assert created["latestVersion"] == 0
    assert created["messageCount"] == 0


@pytest.mark.parametrize("meta", [[1, 2], "text", 3, True])
async def test_create_metadata_must_be_object(client: GraphQLClient, meta: Any) -> None:
    error = await client.error(
        "mutation($m: JSON) { createContext(metadata: $m) { id } }", {"m": meta}
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "metadata" in error["message"]
    assert "JSON object" in error["message"]


async def test_create_invalid_message_writes_nothing(client: GraphQLClient) -> None:
    tag = new_tag()
    error = await client.error(
        "mutation($m: [MessageInput!], $meta: JSON) { createContext(metadata: $meta, messages: $m)"
        " { id } }",
        {"meta": tag, "m": [user("ok"), user("bad", tokenCount=-1)]},
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "messages[1].tokenCount" in error["message"]
    assert (await list_page(client, {"metadataContains": tag}))["totalCount"] == 0


# --- rename / metadata -------------------------------------------------------------------


async def test_rename_and_clear_name(client: GraphQLClient) -> None:
    ctx = await create_context(client, name="before")
    renamed = await rename(client, ctx["id"], "after")
    assert renamed["name"] == "after"
    assert (await get_context(client, ctx["id"]))["name"] == "after"
    cleared = await rename(client, ctx["id"], None)
    assert cleared["name"] is None
    assert (await get_context(client, ctx["id"]))["name"] is None
    # Omitting the argument also clears it (the contract's `name: String` defaults to null).
    await rename(client, ctx["id"], "again")
    omitted = await mutate(client, "($id: ID!) { renameContext(id: $id)", {"id": ctx["id"]})
    assert omitted["name"] is None


async def test_rename_keeps_everything_else(client: GraphQLClient) -> None:
    ctx = await create_context(client, messages=[user("a", tokenCount=2)], metadata={"k": 1})
    renamed = await rename(client, ctx["id"], "x")
    assert renamed["metadata"] == {"k": 1}
    assert renamed["messageCount"] == 1
    assert renamed["totalTokens"] == 2
    assert renamed["latestVersion"] == 1


async def test_set_metadata_replaces(client: GraphQLClient) -> None:
    ctx = await create_context(client, metadata={"a": 1, "b": {"c": 2}})
    replaced = await set_metadata(client, ctx["id"], {"b": {"d": 3}})
    assert replaced["metadata"] == {"b": {"d": 3}}  # replaced, not merged
    assert (await get_context(client, ctx["id"]))["metadata"] == {"b": {"d": 3}}
    emptied = await set_metadata(client, ctx["id"], {})
    assert emptied["metadata"] == {}
    assert emptied["name"] == "test"


@pytest.mark.parametrize("meta", [None, [], "x", 1.5])
async def test_set_metadata_must_be_object(client: GraphQLClient, meta: Any) -> None:
    ctx = await create_context(client, metadata={"keep": True})
    error = await client.error(
        "mutation($id: ID!, $m: JSON!) { setContextMetadata(id: $id, metadata: $m) { id } }",
        {"id": ctx["id"], "m": meta},
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert (await get_context(client, ctx["id"]))["metadata"] == {"keep": True}


async def test_metadata_over_limit(client: GraphQLClient) -> None:
    ctx = await create_context(client, metadata={"keep": True})
    error = await client.error(
        "mutation($id: ID!, $m: JSON!) { setContextMetadata(id: $id, metadata: $m) { id } }",
        {"id": ctx["id"], "m": {"big": "x" * 17_000}},
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "CTXGRAPH_MAX_METADATA_BYTES" in error["message"]
    assert (await get_context(client, ctx["id"]))["metadata"] == {"keep": True}


@pytest.mark.parametrize(
    ("mutation", "extra"),
    [
        ('renameContext(id: $id, name: "x")', {}),
        ("setContextMetadata(id: $id, metadata: {})", {}),
        ("deleteContext(id: $id)", {}),
        ("restoreContext(id: $id)", {}),
        ("forkContext(id: $id)", {}),
    ],
)
async def test_unknown_context_is_not_found(
    client: GraphQLClient, mutation: str, extra: dict[str, Any]
) -> None:
    missing = str(uuid.uuid4())
    error = await client.error(f"mutation($id: ID!) {{ {mutation} {{ id }} }}", {"id": missing})
    assert error["extensions"]["code"] == "NOT_FOUND"
    assert missing in error["message"]


async def test_unknown_context_reads_null(client: GraphQLClient) -> None:
    data = await client.data(
        "query($id: ID!) { context(id: $id) { id } }", {"id": str(uuid.uuid4())}
    )
    assert data == {"context": None}


# --- soft delete / restore ----------------------------------------------------------------


async def test_delete_and_restore(client: GraphQLClient) -> None:
    tag = new_tag()
    ctx = await create_context(client, messages=[user("a")], metadata=tag)
    deleted = await delete(client, ctx["id"])
    assert deleted["deletedAt"] is not None
    assert deleted["messageCount"] == 1
    # Still readable by id, with its history.
    stored = await full_context(client, ctx["id"])
    assert stored["deletedAt"] == deleted["deletedAt"]
    assert await history(client, ctx["id"]) == ["a"]
    # Hidden from the listing unless includeDeleted.
    assert await listed_ids(client, {"metadataContains": tag}) == []
    assert await listed_ids(client, {"metadataContains": tag, "includeDeleted": True}) == [
        ctx["id"]
    ]
    # Idempotent.
    again = await delete(client, ctx["id"])
    assert again["deletedAt"] == deleted["deletedAt"]
    restored = await restore(client, ctx["id"])
    assert restored["deletedAt"] is None
    assert await listed_ids(client, {"metadataContains": tag}) == [ctx["id"]]
    assert (await restore(client, ctx["id"]))["deletedAt"] is None
    # Writable again.
    assert [m["version"] for m in await append(client, ctx["id"], [user("b")])] == [2]


async def test_restore_of_live_context_is_a_no_op(client: GraphQLClient) -> None:
    ctx = await create_context(client, name="n")
    restored = await restore(client, ctx["id"])
    assert restored["deletedAt"] is None
    assert restored["name"] == "n"


@pytest.mark.parametrize(
    ("name", "mutation"),
    [
        (
            "append",
            'appendMessages(contextId: $id, messages: [{role: USER, content: "x"}])'
            " { messages { id } }",
        ),
        (
            "append-expected",
            "appendMessages(contextId: $id, expectedVersion: 0,"
            ' messages: [{role: USER, content: "x"}]) { messages { id } }',
        ),
        ("fork", "forkContext(id: $id) { id }"),
        ("fork-at", "forkContext(id: $id, atVersion: 1) { id }"),
        ("rename", 'renameContext(id: $id, name: "x") { id }'),
        ("rename-null", "renameContext(id: $id, name: null) { id }"),
        ("metadata", "setContextMetadata(id: $id, metadata: {a: 1}) { id }"),
    ],
)
async def test_writes_to_deleted_context_refused(
    client: GraphQLClient, name: str, mutation: str
) -> None:
    ctx = await create_context(client, name="keep", messages=[user("a")], metadata={"k": 1})
    deleted = await delete(client, ctx["id"])
    error = await client.error(f"mutation($id: ID!) {{ {mutation} }}", {"id": ctx["id"]})
    assert error["extensions"]["code"] == "CONTEXT_DELETED", name
    assert ctx["id"] in error["message"]
    assert "restoreContext" in error["message"]
    after = await full_context(client, ctx["id"])
    assert {k: after[k] for k in deleted} == deleted  # nothing changed
    assert await history(client, ctx["id"]) == ["a"]
    data = await client.data(
        "query($f: ContextFilter) { contexts(filter: $f) { totalCount } }",
        {"f": {"parentId": ctx["id"], "includeDeleted": True}},
    )
    assert data["contexts"]["totalCount"] == 0  # no fork was made


async def test_message_writes_in_deleted_context_refused(client: GraphQLClient) -> None:
    ctx = await create_context(client, messages=[user("a"), user("b")])
    msg = await client.data(
        "query($id: ID!) { context(id: $id) { message(version: 1) { id } } }", {"id": ctx["id"]}
    )
    mid = msg["context"]["message"]["id"]
    await delete(client, ctx["id"])
    error = await client.error("mutation($id: ID!) { deleteMessage(id: $id) { id } }", {"id": mid})
    assert error["extensions"]["code"] == "CONTEXT_DELETED"
    error = await client.error(
        "mutation($id: ID!, $e: [Float!]!) { setMessageEmbedding(id: $id, embedding: $e) { id } }",
        {"id": mid, "e": [0.5] * 1536},
    )
    assert error["extensions"]["code"] == "CONTEXT_DELETED"
    data = await client.data(
        "query($id: ID!) { message(id: $id) { deletedAt hasEmbedding } }", {"id": mid}
    )
    assert data["message"] == {"deletedAt": None, "hasEmbedding": False}
    assert (await get_context(client, ctx["id"]))["messageCount"] == 2


async def test_forks_of_deleted_context_keep_history_and_work(client: GraphQLClient) -> None:
    root = await create_context(client, messages=[user("r1"), user("r2")])
    mid = await fork(client, root["id"])
    await append(client, mid["id"], [user("m3")])
    leaf = await fork(client, mid["id"], 2)
    await append(client, leaf["id"], [user("l3")])
    await delete(client, root["id"])
    await delete(client, mid["id"])
    assert await history(client, mid["id"]) == ["r1", "r2", "m3"]
    assert await history(client, leaf["id"]) == ["r1", "r2", "l3"]
    # The leaf is live: it can be written, renamed and forked.
    await append(client, leaf["id"], [user("l4")])
    assert await history(client, leaf["id"]) == ["r1", "r2", "l3", "l4"]
    await rename(client, leaf["id"], "still here")
    sub = await fork(client, leaf["id"], 3)
    assert sub["messageCount"] == 3
    assert await history(client, sub["id"]) == ["r1", "r2", "l3"]
    stored = await get_context(client, leaf["id"])
    assert stored["messageCount"] == 4
    assert stored["latestVersion"] == 4
    # Inherited messages still name their (deleted) owner.
    data = await client.data(
        "query($id: ID!) { context(id: $id) { message(version: 1) {"
        " content context { id deletedAt } } } }",
        {"id": leaf["id"]},
    )
    owner = data["context"]["message"]["context"]
    assert owner["id"] == root["id"]
    assert owner["deletedAt"] is not None


# --- updatedAt (real commits: now() is per transaction) -------------------------------


async def test_updated_at_moves_on_the_listed_operations(live_client: GraphQLClient) -> None:
    c = live_client
    tag = new_tag()
    ctx = await create_context(c, messages=[user("a"), user("b")], metadata=tag)
    assert ctx["id"]
    last = ts((await full_context(c, ctx["id"]))["updatedAt"])

    async def moved() -> datetime:
        nonlocal last
        now = ts((await full_context(c, ctx["id"]))["updatedAt"])
        assert now > last
        last = now
        return now

    async def unchanged() -> None:
        assert ts((await full_context(c, ctx["id"]))["updatedAt"]) == last

    await append(c, ctx["id"], [user("c")])
    await moved()
    await rename(c, ctx["id"], "renamed")
    await moved()
    await rename(c, ctx["id"], None)
    await moved()
    await set_metadata(c, ctx["id"], {**tag, "x": 1})
    await moved()
    data = await c.data(
        "query($id: ID!) { context(id: $id) { message(version: 2) { id } } }", {"id": ctx["id"]}
    )
    await c.data(
        "mutation($id: ID!) { deleteMessage(id: $id) { id } }",
        {"id": data["context"]["message"]["id"]},
    )
    await moved()

    # Forking does not touch the parent, nor does anything done to the fork.
    child = await fork(c, ctx["id"], 1)
    await unchanged()
    await append(c, child["id"], [user("child")])
    await rename(c, child["id"], "child")
    await delete(c, child["id"])
    await unchanged()
    # Failed writes change nothing.
    error = await c.error(
        "mutation($id: ID!) { appendMessages(contextId: $id, expectedVersion: 1,"
        ' messages: [{role: USER, content: "x"}]) { messages { id } } }',
        {"id": ctx["id"]},
    )
    assert error["extensions"]["code"] == "VERSION_CONFLICT"
    await unchanged()
    # Reads change nothing.
    await history(c, ctx["id"])
    await unchanged()

    deleted = await delete(c, ctx["id"])
    assert ts(deleted["updatedAt"]) == await moved()
    await delete(c, ctx["id"])  # already deleted: a no-op
    await unchanged()
    restored = await restore(c, ctx["id"])
    assert ts(restored["updatedAt"]) == await moved()
    await restore(c, ctx["id"])
    await unchanged()


async def test_fork_timestamps(live_client: GraphQLClient) -> None:
    tag = new_tag()
    parent = await create_context(live_client, messages=[user("a")], metadata=tag)
    before = await full_context(live_client, parent["id"])
    child = await fork(live_client, parent["id"])
    child_full = await full_context(live_client, child["id"])
    assert child_full["createdAt"] == child_full["updatedAt"]
    assert ts(child_full["createdAt"]) > ts(before["updatedAt"])
    assert child_full["metadata"] == tag  # inherited
    assert await full_context(live_client, parent["id"]) == before


# --- listing -----------------------------------------------------------------------------

LIST = (
    "query($first: Int, $after: String, $last: Int, $before: String, $filter: ContextFilter,"
    " $order: ContextOrder) { contexts(first: $first, after: $after, last: $last,"
    " before: $before, filter: $filter, orderBy: $order) {"
    " edges { cursor node { id } } nodes { id name createdAt updatedAt deletedAt }"
    " pageInfo { hasNextPage hasPreviousPage startCursor endCursor } totalCount } }"
)


async def list_page(
    client: GraphQLClient,
    filter: dict[str, Any] | None = None,
    order: tuple[str, str] | None = None,
    **paging: Any,
) -> dict[str, Any]:
    variables: dict[str, Any] = {"filter": filter, **paging}
    if order is not None:
        variables["order"] = {"field": order[0], "direction": order[1]}
    data = await client.data(LIST, variables)
    page: dict[str, Any] = data["contexts"]
    assert [e["node"]["id"] for e in page["edges"]] == [n["id"] for n in page["nodes"]]
    info = page["pageInfo"]
    if page["edges"]:
        assert info["startCursor"] == page["edges"][0]["cursor"]
        assert info["endCursor"] == page["edges"][-1]["cursor"]
    else:
        assert info["startCursor"] is None
        assert info["endCursor"] is None
    return page


async def listed_ids(
    client: GraphQLClient, filter: dict[str, Any], order: tuple[str, str] | None = None
) -> list[str]:
    page = await list_page(client, filter, order, first=500)
    assert page["totalCount"] == len(page["nodes"])
    return [n["id"] for n in page["nodes"]]


def sort_key(field: str) -> Any:
    def key(node: dict[str, Any]) -> tuple[Any, str]:
        if field == "NAME":
            return (node["name"] or "", node["id"])
        value = node["createdAt" if field == "CREATED_AT" else "updatedAt"]
        return (ts(value), node["id"])

    return key


def expected_order(nodes: list[dict[str, Any]], field: str, direction: str) -> list[str]:
    ordered = sorted(nodes, key=sort_key(field), reverse=direction == "DESC")
    return [n["id"] for n in ordered]


async def test_filter_name_contains(client: GraphQLClient) -> None:
    tag = new_tag()
    names = [
        "Alpha chat",
        "ALPHABET",
        "beta",
        "100% sure",
        "100 percent",
        "snake_case",
        "snakeXcase",
        "back\\slash",
        "backslash",
        None,
    ]
    ids = {}
    for name in names:
        ids[name] = (await create_context(client, name=name, metadata=tag))["id"]

    async def matching(needle: str) -> set[str | None]:
        found = await listed_ids(client, {"metadataContains": tag, "nameContains": needle})
        by_id = {v: k for k, v in ids.items()}
        return {by_id[i] for i in found}

    assert await matching("alpha") == {"Alpha chat", "ALPHABET"}
    assert await matching("PHA C") == {"Alpha chat"}
    assert await matching("%") == {"100% sure"}
    assert await matching("0%") == {"100% sure"}
    assert await matching("_") == {"snake_case"}
    assert await matching("e_c") == {"snake_case"}
    assert await matching("\\") == {"back\\slash"}
    assert await matching("k\\s") == {"back\\slash"}
    assert await matching("nothing") == set()
    # An empty needle filters nothing (every name contains "").
    assert len(await matching("")) == len(names)


async def test_filter_roots_parent_and_deleted(client: GraphQLClient) -> None:
    tag = new_tag()
    root = await create_context(client, messages=[user("a")], metadata=tag)
    other = await create_context(client, metadata=tag)
    f1 = await fork(client, root["id"])
    f2 = await fork(client, root["id"], 0)
    f11 = await fork(client, f1["id"])
    gone = await fork(client, root["id"])
    await delete(client, gone["id"])
    await delete(client, other["id"])
    base = {"metadataContains": tag}

    def ids_of(*ctxs: dict[str, Any]) -> set[str]:
        return {c["id"] for c in ctxs}

    assert set(await listed_ids(client, base)) == ids_of(root, f1, f2, f11)
    assert set(await listed_ids(client, {**base, "includeDeleted": True})) == ids_of(
        root, other, f1, f2, f11, gone
    )
    assert set(await listed_ids(client, {**base, "rootsOnly": True})) == ids_of(root)
    assert set(
        await listed_ids(client, {**base, "rootsOnly": True, "includeDeleted": True})
    ) == ids_of(root, other)
    assert set(await listed_ids(client, {**base, "rootsOnly": False})) == ids_of(root, f1, f2, f11)
    assert set(await listed_ids(client, {**base, "parentId": root["id"]})) == ids_of(f1, f2)
    assert set(
        await listed_ids(client, {**base, "parentId": root["id"], "includeDeleted": True})
    ) == ids_of(f1, f2, gone)
    assert set(await listed_ids(client, {**base, "parentId": f1["id"]})) == ids_of(f11)
    assert await listed_ids(client, {**base, "parentId": str(uuid.uuid4())}) == []
    # parentId without metadata: forks of a fresh root are only these.
    assert set(await listed_ids(client, {"parentId": root["id"]})) == ids_of(f1, f2)
    # Contradictory filters: forks of root that are roots.
    assert await listed_ids(client, {"parentId": root["id"], "rootsOnly": True}) == []


async def test_filter_metadata_contains(client: GraphQLClient) -> None:
    tag = new_tag()
    a = await create_context(
        client, metadata={**tag, "user": "u1", "tags": ["x", "y"], "s": {"lang": "en", "n": 1}}
    )
    b = await create_context(client, metadata={**tag, "user": "u2", "tags": ["y"]})
    c = await create_context(client, metadata={**tag, "user": "u1", "s": {"lang": "fr"}})

    async def matching(extra: dict[str, Any]) -> set[str]:
        return set(await listed_ids(client, {"metadataContains": {**tag, **extra}}))

    assert await matching({}) == {a["id"], b["id"], c["id"]}
    assert await matching({"user": "u1"}) == {a["id"], c["id"]}
    assert await matching({"tags": ["y"]}) == {a["id"], b["id"]}
    assert await matching({"tags": ["x", "y"]}) == {a["id"]}
    assert await matching({"s": {"lang": "en"}}) == {a["id"]}
    assert await matching({"s": {"n": 1}}) == {a["id"]}
    assert await matching({"user": "u3"}) == set()
    assert await matching({"user": "u1", "tags": ["y"]}) == {a["id"]}
    # Containment, not equality of values: {"s": {}} matches any object under "s".
    assert await matching({"s": {}}) == {a["id"], c["id"]}
    # A fork inherits its parent's metadata, so it is found by it.
    child = await fork(client, b["id"])
    assert await matching({"user": "u2"}) == {b["id"], child["id"]}
    own = await fork(client, b["id"], metadata={**tag, "user": "u9"})
    assert await matching({"user": "u9"}) == {own["id"]}


@pytest.mark.parametrize("value", [[1], "user", 1, True, [{"a": 1}]])
async def test_metadata_contains_must_be_object(client: GraphQLClient, value: Any) -> None:
    error = await client.error(LIST, {"filter": {"metadataContains": value}})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "filter.metadataContains" in error["message"]


async def test_filter_parent_id_malformed(client: GraphQLClient) -> None:
    error = await client.error(LIST, {"filter": {"parentId": "nope"}})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "filter.parentId" in error["message"]


async def test_filter_name_contains_nul(client: GraphQLClient) -> None:
    error = await client.error(LIST, {"filter": {"nameContains": "a\x00b"}})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "filter.nameContains" in error["message"]


async def make_ordered_set(client: GraphQLClient, tag: dict[str, str]) -> list[dict[str, Any]]:
    """Contexts with duplicate names, a null name, and tied timestamps.

    Inside the rolled-back test transaction now() is one value, so every
    createContext shares createdAt and updatedAt (ties broken by id); forks
    take clock_timestamp() and appends now(), so a few values differ.
    """
    names = [
        "delta",
        "alpha",
        None,
        "charlie",
        "alpha",
        "bravo",
        "",
        "delta",
        "alpha",
        "echo",
        None,
        "bravo",
    ]
    made = [await create_context(client, name=n, metadata=tag) for n in names]
    for parent in made[:3]:
        made.append(await fork(client, parent["id"], name="fork"))
    await append(client, made[1]["id"], [user("x")])
    page = await list_page(client, {"metadataContains": tag}, first=500)
    assert page["totalCount"] == len(made) == 15
    nodes: list[dict[str, Any]] = page["nodes"]
    return nodes


FIELDS = ["CREATED_AT", "UPDATED_AT", "NAME"]
DIRECTIONS = ["ASC", "DESC"]


async def test_default_order_is_updated_at_desc(live_client: GraphQLClient) -> None:
    tag = new_tag()
    a = await create_context(live_client, name="a", metadata=tag)
    b = await create_context(live_client, name="b", metadata=tag)
    c = await create_context(live_client, name="c", metadata=tag)
    await append(live_client, a["id"], [user("bump")])  # a is now the most recent
    expected = [a["id"], c["id"], b["id"]]
    assert await listed_ids(live_client, {"metadataContains": tag}) == expected
    explicit = await listed_ids(live_client, {"metadataContains": tag}, ("UPDATED_AT", "DESC"))
    assert explicit == expected
    data = await live_client.data(
        "query($f: ContextFilter) { contexts(filter: $f, orderBy: null) { nodes { id } } }",
        {"f": {"metadataContains": tag}},
    )
    assert [n["id"] for n in data["contexts"]["nodes"]] == expected
    by_created = await listed_ids(live_client, {"metadataContains": tag}, ("CREATED_AT", "ASC"))
    assert by_created == [a["id"], b["id"], c["id"]]


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_order_and_keyset_paging(client: GraphQLClient, field: str, direction: str) -> None:
    tag = new_tag()
    nodes = await make_ordered_set(client, tag)
    expected = expected_order(nodes, field, direction)
    base = {"metadataContains": tag}
    order = (field, direction)
    # One page.
    assert await listed_ids(client, base, order) == expected
    # Forward, 4 at a time: no duplicates, no gaps, exact page info.
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = await list_page(client, base, order, first=4, after=after)
        pages += 1
        assert page["totalCount"] == 15
        seen += [n["id"] for n in page["nodes"]]
        assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
        assert page["pageInfo"]["hasNextPage"] is (len(seen) < 15)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert pages == 4
    assert seen == expected
    # Backward from the end, 4 at a time.
    seen = []
    before = None
    while True:
        page = await list_page(client, base, order, last=4, before=before)
        assert page["totalCount"] == 15
        seen = [n["id"] for n in page["nodes"]] + seen
        assert page["pageInfo"]["hasNextPage"] is (before is not None)
        assert page["pageInfo"]["hasPreviousPage"] is (len(seen) < 15)
        if not page["pageInfo"]["hasPreviousPage"]:
            break
        before = page["pageInfo"]["startCursor"]
    assert seen == expected
    # Every edge cursor starts the next page right after that edge, both ways.
    full = await list_page(client, base, order, first=15)
    cursors = [e["cursor"] for e in full["edges"]]
    for i, cursor in enumerate(cursors):
        forward = await list_page(client, base, order, first=3, after=cursor)
        assert [n["id"] for n in forward["nodes"]] == expected[i + 1 : i + 4]
        assert forward["pageInfo"]["hasPreviousPage"] is True
        assert forward["pageInfo"]["hasNextPage"] is (i + 4 < 15)
        backward = await list_page(client, base, order, last=3, before=cursor)
        assert [n["id"] for n in backward["nodes"]] == expected[max(0, i - 3) : i]
        assert backward["pageInfo"]["hasNextPage"] is True
        assert backward["pageInfo"]["hasPreviousPage"] is (i > 3)


async def test_tied_timestamps_page_by_id(client: GraphQLClient) -> None:
    """Contexts made in one transaction share createdAt: the id alone orders them."""
    tag = new_tag()
    made = [await create_context(client, metadata=tag) for _ in range(23)]
    nodes = (await list_page(client, {"metadataContains": tag}, first=500))["nodes"]
    assert len({n["createdAt"] for n in nodes}) == 1
    assert len({n["updatedAt"] for n in nodes}) == 1
    for direction in DIRECTIONS:
        expected = sorted((c["id"] for c in made), reverse=direction == "DESC")
        for field in ("CREATED_AT", "UPDATED_AT"):
            seen: list[str] = []
            after = None
            for _ in range(5):
                page = await list_page(
                    client, {"metadataContains": tag}, (field, direction), first=5, after=after
                )
                seen += [n["id"] for n in page["nodes"]]
                after = page["pageInfo"]["endCursor"]
            assert seen == expected
            assert page["pageInfo"]["hasNextPage"] is False
            seen = []
            before = None
            for _ in range(5):
                page = await list_page(
                    client, {"metadataContains": tag}, (field, direction), last=5, before=before
                )
                seen = [n["id"] for n in page["nodes"]] + seen
                before = page["pageInfo"]["startCursor"]
            assert seen == expected
            assert page["pageInfo"]["hasPreviousPage"] is False


async def test_cursors_in_the_earlier_encoding_still_page(client: GraphQLClient) -> None:
    """Cursors were written by json.dumps (non-ASCII escaped) before orjson (UTF-8):
    one a client kept from then pages exactly as today's does."""
    tag = new_tag()
    for name in ("été", "ça", "zoë", "Ölfeld", "ärger"):
        await create_context(client, name=name, metadata=tag)
    order = ("NAME", "ASC")
    only = {"metadataContains": tag}
    first = await list_page(client, only, order, first=2)
    cursor = first["pageInfo"]["endCursor"]
    values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert not values[2].isascii()  # the name is part of the cursor
    earlier = json.dumps(values, separators=(",", ":"))  # ensure_ascii: \u escapes
    assert earlier.isascii()
    old = base64.urlsafe_b64encode(earlier.encode()).decode().rstrip("=")
    assert old != cursor
    assert await list_page(client, only, order, first=2, after=old) == await list_page(
        client, only, order, first=2, after=cursor
    )


async def test_page_between_two_cursors(client: GraphQLClient) -> None:
    tag = new_tag()
    nodes = await make_ordered_set(client, tag)
    order = ("NAME", "ASC")
    expected = expected_order(nodes, *order)
    full = await list_page(client, {"metadataContains": tag}, order, first=15)
    cursors = [e["cursor"] for e in full["edges"]]
    window = await list_page(
        client, {"metadataContains": tag}, order, after=cursors[2], before=cursors[10]
    )
    assert [n["id"] for n in window["nodes"]] == expected[3:10]
    assert window["pageInfo"]["hasPreviousPage"] is True
    assert window["pageInfo"]["hasNextPage"] is True  # cursors[10] and on follow the window
    assert window["totalCount"] == 15
    first = await list_page(
        client, {"metadataContains": tag}, order, first=3, after=cursors[2], before=cursors[10]
    )
    assert [n["id"] for n in first["nodes"]] == expected[3:6]
    assert first["pageInfo"]["hasNextPage"] is True
    last = await list_page(
        client, {"metadataContains": tag}, order, last=3, after=cursors[2], before=cursors[10]
    )
    assert [n["id"] for n in last["nodes"]] == expected[7:10]
    assert last["pageInfo"]["hasPreviousPage"] is True
    assert last["pageInfo"]["hasNextPage"] is True


async def test_page_edges(client: GraphQLClient) -> None:
    tag = new_tag()
    made = [await create_context(client, metadata=tag) for _ in range(3)]
    base = {"metadataContains": tag}
    empty = await list_page(client, {"metadataContains": new_tag()})
    assert empty["nodes"] == []
    assert empty["totalCount"] == 0
    assert empty["pageInfo"]["hasNextPage"] is False
    assert empty["pageInfo"]["hasPreviousPage"] is False
    zero = await list_page(client, base, first=0)
    assert zero["nodes"] == []
    assert zero["totalCount"] == 3
    assert zero["pageInfo"]["hasNextPage"] is True
    exact = await list_page(client, base, first=3)
    assert len(exact["nodes"]) == 3
    assert exact["pageInfo"]["hasNextPage"] is False
    exact_back = await list_page(client, base, last=3)
    assert len(exact_back["nodes"]) == 3
    assert exact_back["pageInfo"]["hasPreviousPage"] is False
    # Past the end: the cursor of the last item.
    end = exact["pageInfo"]["endCursor"]
    past = await list_page(client, base, first=3, after=end)
    assert past["nodes"] == []
    assert past["pageInfo"]["hasPreviousPage"] is True
    assert past["pageInfo"]["hasNextPage"] is False
    # A cursor stays valid after its context is deleted.
    await delete(client, made[0]["id"])
    still = await list_page(client, base, first=3, after=exact["edges"][0]["cursor"])
    assert [n["id"] for n in still["nodes"]] == [
        n["id"] for n in exact["nodes"][1:] if n["id"] != made[0]["id"]
    ]
    assert still["pageInfo"]["hasPreviousPage"] is (exact["nodes"][0]["id"] != made[0]["id"])


async def test_default_page_size_is_50(client: GraphQLClient) -> None:
    tag = new_tag()
    for _ in range(51):
        await create_context(client, metadata=tag)
    page = await list_page(client, {"metadataContains": tag})
    assert len(page["nodes"]) == 50
    assert page["pageInfo"]["hasNextPage"] is True
    assert page["totalCount"] == 51
    back = await list_page(client, {"metadataContains": tag}, before=page["pageInfo"]["endCursor"])
    assert len(back["nodes"]) == 49
    assert back["pageInfo"]["hasNextPage"] is True
    assert back["pageInfo"]["hasPreviousPage"] is False


@pytest.mark.parametrize(
    ("paging", "argument"),
    [
        ({"first": 1, "last": 1}, "first"),
        ({"first": -1}, "first"),
        ({"last": -2}, "last"),
        ({"first": 501}, "first"),
        ({"last": 501}, "last"),
        ({"after": "not a cursor"}, "after"),
        ({"before": "bm9wZQ"}, "before"),
        ({"after": ""}, "after"),
    ],
)
async def test_bad_paging_arguments(
    client: GraphQLClient, paging: dict[str, Any], argument: str
) -> None:
    error = await client.error(LIST, paging)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert f"`{argument}`" in error["message"]


@pytest.mark.parametrize(
    ("made_by", "used_with"),
    [("NAME", "CREATED_AT"), ("CREATED_AT", "UPDATED_AT"), ("UPDATED_AT", "NAME")],
)
async def test_cursor_from_another_order(
    client: GraphQLClient, made_by: str, used_with: str
) -> None:
    tag = new_tag()
    for _ in range(3):
        await create_context(client, name="n", metadata=tag)
    page = await list_page(client, {"metadataContains": tag}, (made_by, "ASC"), first=1)
    cursor = page["pageInfo"]["endCursor"]
    for paging in ({"after": cursor}, {"before": cursor}):
        error = await client.error(
            LIST,
            {
                "filter": {"metadataContains": tag},
                "order": {"field": used_with, "direction": "ASC"},
                **paging,
            },
        )
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "orderBy" in error["message"]
    # The same field in the other direction is a valid position.
    flipped = await list_page(client, {"metadataContains": tag}, (made_by, "DESC"), after=cursor)
    assert flipped["pageInfo"]["hasPreviousPage"] is True


async def test_cursor_from_another_list(client: GraphQLClient) -> None:
    ctx = await create_context(client, messages=[user("a"), user("b")])
    await fork(client, ctx["id"])
    data = await client.data(
        "query($id: ID!) { context(id: $id) { messages(first: 1) { pageInfo { endCursor } }"
        " forks(first: 1) { pageInfo { endCursor } } } }",
        {"id": ctx["id"]},
    )
    for cursor in (
        data["context"]["messages"]["pageInfo"]["endCursor"],
        data["context"]["forks"]["pageInfo"]["endCursor"],
    ):
        error = await client.error(LIST, {"after": cursor})
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "`after`" in error["message"]


async def test_total_count_ignores_paging(client: GraphQLClient) -> None:
    tag = new_tag()
    for i in range(7):
        await create_context(client, name=f"n{i}", metadata=tag)
    base = {"metadataContains": tag}
    first = await list_page(client, base, first=2)
    assert first["totalCount"] == 7
    after = await list_page(client, base, first=2, after=first["pageInfo"]["endCursor"])
    assert after["totalCount"] == 7
    last = await list_page(client, base, last=1)
    assert last["totalCount"] == 7
    named = await list_page(client, {**base, "nameContains": "n1"}, first=0)
    assert named["totalCount"] == 1


async def test_page_info_exact_for_every_window(client: GraphQLClient) -> None:
    """Every (after, before, first|last) combination over 6 contexts: the page is the
    window's slice, and page info says whether anything lies before/after the page."""
    tag = new_tag()
    base = {"metadataContains": tag}
    order = ("CREATED_AT", "ASC")
    for i in range(6):
        await create_context(client, name=f"c{i}", metadata=tag)
    full = await list_page(client, base, order, first=6)
    ids = [n["id"] for n in full["nodes"]]
    cursors = [e["cursor"] for e in full["edges"]]
    positions: list[int | None] = [None, *range(6)]
    for a in positions:
        for b in positions:
            if a is not None and b is not None and a >= b:
                continue
            lo = 0 if a is None else a + 1
            hi = 6 if b is None else b
            window = ids[lo:hi]
            paging: dict[str, Any] = {}
            if a is not None:
                paging["after"] = cursors[a]
            if b is not None:
                paging["before"] = cursors[b]
            for k in (0, 1, 2, 10):
                fwd = await list_page(client, base, order, first=k, **paging)
                where = (a, b, k)
                assert [n["id"] for n in fwd["nodes"]] == window[:k], where
                assert fwd["pageInfo"]["hasPreviousPage"] is (lo > 0), where
                assert fwd["pageInfo"]["hasNextPage"] is (lo + min(k, len(window)) < 6), where
                back = await list_page(client, base, order, last=k, **paging)
                page = window[len(window) - min(k, len(window)) :]
                assert [n["id"] for n in back["nodes"]] == page, where
                assert back["pageInfo"]["hasNextPage"] is (hi < 6), where
                assert back["pageInfo"]["hasPreviousPage"] is (hi - len(page) > 0), where


async def test_page_info_when_cursor_rows_are_gone(client: GraphQLClient) -> None:
    """A cursor of a context that no longer matches still marks a position; page info
    only counts contexts that still match beyond it."""
    tag = new_tag()
    base = {"metadataContains": tag}
    order = ("CREATED_AT", "ASC")
    made = [await create_context(client, name=f"c{i}", metadata=tag) for i in range(4)]
    full = await list_page(client, base, order, first=4)
    ids = [n["id"] for n in full["nodes"]]
    cursors = [e["cursor"] for e in full["edges"]]
    first_id, last_id = ids[0], ids[-1]
    await delete(client, first_id)
    await delete(client, last_id)
    assert {c["id"] for c in made} == set(ids)
    fwd = await list_page(client, base, order, first=10, before=cursors[3])
    assert [n["id"] for n in fwd["nodes"]] == ids[1:3]
    assert fwd["pageInfo"]["hasNextPage"] is False  # only the deleted one was at/after
    assert fwd["pageInfo"]["hasPreviousPage"] is False
    back = await list_page(client, base, order, last=10, after=cursors[0])
    assert [n["id"] for n in back["nodes"]] == ids[1:3]
    assert back["pageInfo"]["hasPreviousPage"] is False  # only the deleted one was at/before
    assert back["pageInfo"]["hasNextPage"] is False
    both = await list_page(client, base, order, after=cursors[0], before=cursors[3])
    assert [n["id"] for n in both["nodes"]] == ids[1:3]
    assert both["pageInfo"]["hasPreviousPage"] is False
    assert both["pageInfo"]["hasNextPage"] is False
    every = await list_page(
        client, {**base, "includeDeleted": True}, order, after=cursors[0], before=cursors[3]
    )
    assert every["pageInfo"]["hasPreviousPage"] is True
    assert every["pageInfo"]["hasNextPage"] is True


CURSOR_VALUES: list[Any] = [
    ["c"],
    ["c", "name"],
    ["c", "name", "x"],
    ["c", "name", "x", "not-a-uuid"],
    ["c", "name", "x", 5],
    ["c", "name", 5, "123e4567-e89b-12d3-a456-426614174000"],
    ["c", "name", None, "123e4567-e89b-12d3-a456-426614174000"],
    ["c", "name", "nul\u0000", "123e4567-e89b-12d3-a456-426614174000"],
    ["c", "name", "\ud800", "123e4567-e89b-12d3-a456-426614174000"],
    ["c", "name", "x", "123e4567-e89b-12d3-a456-426614174000", "extra"],
    ["c", "bogus", "x", "123e4567-e89b-12d3-a456-426614174000"],
    ["c", "created_at", "garbage", "123e4567-e89b-12d3-a456-426614174000"],
    ["c", "created_at", None, "123e4567-e89b-12d3-a456-426614174000"],
    ["c", "created_at", 1700000000, "123e4567-e89b-12d3-a456-426614174000"],
    ["c", "created_at", "2026-01-01T00:00:00", "123e4567-e89b-12d3-a456-426614174000"],
    ["c", "created_at", "99999-01-01T00:00:00+00:00", "123e4567-e89b-12d3-a456-426614174000"],
    ["m", 3],
    {"c": 1},
    "c",
    None,
]


def raw_cursor(value: Any) -> str:
    """A cursor-shaped string (URL-safe base64 of JSON, as the server makes them)."""
    text = json.dumps(value)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("value", CURSOR_VALUES)
@pytest.mark.parametrize("argument", ["after", "before"])
async def test_forged_cursors_are_bad_user_input(
    live_client: GraphQLClient, value: Any, argument: str
) -> None:
    """Cursors are opaque but untrusted: a forged one is BAD_USER_INPUT, never a 500.
    (live_client: a database error would not poison a shared rolled-back transaction.)"""
    field = value[1] if isinstance(value, list) and len(value) > 2 else "name"
    field = field.upper() if field in ("name", "created_at") else "NAME"
    error = await live_client.error(
        LIST,
        {
            argument: raw_cursor(value),
            "filter": {"metadataContains": new_tag()},
            "order": {"field": field, "direction": "ASC"},
        },
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert f"`{argument}`" in error["message"]


async def test_later_mutations_in_one_request_see_earlier_writes(client: GraphQLClient) -> None:
    """Mutation fields run in order; per-request loader caches must not serve a later
    field what an earlier one read before its write."""
    ctx = await create_context(client, name="before", messages=[user("a")])
    body = await client.data(
        "mutation($id: ID!) {"
        ' a: appendMessages(contextId: $id, messages: [{role: USER, content: "b"}]) {'
        " context { latestVersion messageCount messages { totalCount nodes { content } } } }"
        ' b: appendMessages(contextId: $id, messages: [{role: USER, content: "c"}]) {'
        " context { latestVersion messageCount messages { totalCount nodes { content } } } }"
        " f1: forkContext(id: $id) { parent { forks { totalCount } } }"
        " f2: forkContext(id: $id) { parent { forks { totalCount } } }"
        ' r: renameContext(id: $id, name: "after") { name }'
        " f3: forkContext(id: $id) { parent { name forks { totalCount } } }"
        " d: deleteContext(id: $id) { deletedAt }"
        "}",
        {"id": ctx["id"]},
    )
    assert body["a"]["context"]["latestVersion"] == 2
    assert body["b"]["context"]["latestVersion"] == 3
    assert body["b"]["context"]["messageCount"] == 3
    assert body["b"]["context"]["messages"]["totalCount"] == 3
    assert [n["content"] for n in body["b"]["context"]["messages"]["nodes"]] == ["a", "b", "c"]
    assert body["f1"]["parent"]["forks"]["totalCount"] == 1
    assert body["f2"]["parent"]["forks"]["totalCount"] == 2
    assert body["f3"]["parent"] == {"name": "after", "forks": {"totalCount": 3}}
    assert body["d"]["deletedAt"] is not None
