"""Fork-tree fields through the GraphQL API: parent, root, ancestors, depth, forks,
descendants, Message.forks, Message.context, and node(id)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import GraphQLClient, StatementLog
from tests.helpers import append, create_context, fork, read_ahead_and_apart, user

TREE = "id parent { id } root { id } ancestors { id } depth forkVersion"


async def context(client: GraphQLClient, context_id: str, fields: str) -> dict[str, Any]:
    data = await client.data(
        f"query($id: ID!) {{ context(id: $id) {{ {fields} }} }}", {"id": context_id}
    )
    result: dict[str, Any] = data["context"]
    return result


async def delete(client: GraphQLClient, context_id: str) -> None:
    await client.data("mutation($id: ID!) { deleteContext(id: $id) { id } }", {"id": context_id})


async def message_id(client: GraphQLClient, context_id: str, version: int) -> str:
    data = await context(client, context_id, f"message(version: {version}) {{ id }}")
    mid: str = data["message"]["id"]
    return mid


# --- parent / root / ancestors / depth -----------------------------------------------------


async def test_chain_fields(client: GraphQLClient) -> None:
    root = await create_context(client, messages=[user("a"), user("b")])
    chain = [root]
    for depth in range(1, 6):
        child = await fork(client, chain[-1]["id"], depth % 2)
        await append(client, child["id"], [user(f"d{depth}")])
        chain.append(child)
    for depth, ctx in enumerate(chain):
        got = await context(client, ctx["id"], TREE)
        assert got["depth"] == depth
        assert got["root"] == {"id": root["id"]}
        assert [a["id"] for a in got["ancestors"]] == [c["id"] for c in chain[:depth]]
        if depth == 0:
            assert got["parent"] is None
            assert got["forkVersion"] is None
        else:
            assert got["parent"] == {"id": chain[depth - 1]["id"]}
            assert got["forkVersion"] == depth % 2


async def test_tree_fields_nest(client: GraphQLClient) -> None:
    root = await create_context(client, name="r", messages=[user("a")])
    mid = await fork(client, root["id"], name="m")
    leaf = await fork(client, mid["id"], name="l")
    got = await context(
        client,
        leaf["id"],
        "parent { name depth parent { name parent { name } depth } }"
        " root { name root { name } ancestors { id } depth }"
        " ancestors { name depth root { name } }",
    )
    assert got["parent"] == {
        "name": "m",
        "depth": 1,
        "parent": {"name": "r", "parent": None, "depth": 0},
    }
    assert got["root"] == {"name": "r", "root": {"name": "r"}, "ancestors": [], "depth": 0}
    assert got["ancestors"] == [
        {"name": "r", "depth": 0, "root": {"name": "r"}},
        {"name": "m", "depth": 1, "root": {"name": "r"}},
    ]


async def test_deleted_ancestors_still_listed(client: GraphQLClient) -> None:
    root = await create_context(client, messages=[user("a")])
    mid = await fork(client, root["id"])
    leaf = await fork(client, mid["id"])
    await delete(client, root["id"])
    await delete(client, mid["id"])
    got = await context(
        client, leaf["id"], "parent { id deletedAt } root { id deletedAt } ancestors { id } depth"
    )
    assert got["parent"]["id"] == mid["id"]
    assert got["parent"]["deletedAt"] is not None
    assert got["root"]["id"] == root["id"]
    assert got["root"]["deletedAt"] is not None
    assert [a["id"] for a in got["ancestors"]] == [root["id"], mid["id"]]
    assert got["depth"] == 2


# --- forks -------------------------------------------------------------------------------------

FORKS = (
    "query($id: ID!, $first: Int, $after: String, $del: Boolean) { context(id: $id) {"
    " forks(first: $first, after: $after, includeDeleted: $del) {"
    " edges { cursor node { id } } nodes { id forkVersion parent { id } }"
    " pageInfo { hasNextPage hasPreviousPage startCursor endCursor } totalCount } } }"
)


async def forks_page(client: GraphQLClient, context_id: str, **args: Any) -> dict[str, Any]:
    data = await client.data(FORKS, {"id": context_id, **args})
    page: dict[str, Any] = data["context"]["forks"]
    assert [e["node"]["id"] for e in page["edges"]] == [n["id"] for n in page["nodes"]]
    if page["edges"]:
        assert page["pageInfo"]["startCursor"] == page["edges"][0]["cursor"]
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
    return page


async def test_forks_oldest_first_with_paging(client: GraphQLClient) -> None:
    root = await create_context(client, messages=[user("a"), user("b"), user("c")])
    other = await create_context(client, messages=[user("x")])
    made = []
    for i in range(7):
        made.append(await fork(client, root["id"], i % 4))
        if i == 3:
            await fork(client, made[0]["id"])  # a grandchild is not a direct fork
            await fork(client, other["id"])
    ids = [c["id"] for c in made]
    page = await forks_page(client, root["id"])
    assert [n["id"] for n in page["nodes"]] == ids
    assert [n["forkVersion"] for n in page["nodes"]] == [i % 4 for i in range(7)]
    assert {n["parent"]["id"] for n in page["nodes"]} == {root["id"]}
    assert page["totalCount"] == 7
    assert page["pageInfo"]["hasNextPage"] is False
    assert page["pageInfo"]["hasPreviousPage"] is False

    seen: list[str] = []
    after = None
    for expected_next in (True, True, True, False):
        page = await forks_page(client, root["id"], first=2, after=after)
        assert page["totalCount"] == 7
        assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
        assert page["pageInfo"]["hasNextPage"] is expected_next
        seen += [n["id"] for n in page["nodes"]]
        after = page["pageInfo"]["endCursor"]
    assert seen == ids
    empty = await forks_page(client, root["id"], first=2, after=after)
    assert empty["nodes"] == []
    assert empty["pageInfo"]["hasPreviousPage"] is True
    assert empty["pageInfo"]["hasNextPage"] is False
    zero = await forks_page(client, root["id"], first=0)
    assert zero["nodes"] == []
    assert zero["pageInfo"]["hasNextPage"] is True
    assert zero["totalCount"] == 7


async def test_forks_include_deleted(client: GraphQLClient) -> None:
    root = await create_context(client, messages=[user("a")])
    a = await fork(client, root["id"])
    b = await fork(client, root["id"])
    c = await fork(client, root["id"])
    await delete(client, b["id"])
    live = await forks_page(client, root["id"])
    assert [n["id"] for n in live["nodes"]] == [a["id"], c["id"]]
    assert live["totalCount"] == 2
    every = await forks_page(client, root["id"], **{"del": True})
    assert [n["id"] for n in every["nodes"]] == [a["id"], b["id"], c["id"]]
    assert every["totalCount"] == 3
    # Paging through deleted ones too.
    page = await forks_page(client, root["id"], first=1, after=every["edges"][0]["cursor"])
    assert [n["id"] for n in page["nodes"]] == [c["id"]]  # b is skipped
    page = await forks_page(
        client, root["id"], first=1, after=every["edges"][0]["cursor"], **{"del": True}
    )
    assert [n["id"] for n in page["nodes"]] == [b["id"]]
    assert page["pageInfo"]["hasNextPage"] is True


async def test_forks_of_deleted_context_are_listed(client: GraphQLClient) -> None:
    root = await create_context(client, messages=[user("a")])
    a = await fork(client, root["id"])
    await delete(client, root["id"])
    page = await forks_page(client, root["id"])
    assert [n["id"] for n in page["nodes"]] == [a["id"]]


async def test_forks_empty(client: GraphQLClient) -> None:
    root = await create_context(client)
    page = await forks_page(client, root["id"])
    assert page["nodes"] == []
    assert page["totalCount"] == 0
    assert page["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": False,
        "startCursor": None,
        "endCursor": None,
    }


@pytest.mark.parametrize(
    ("args", "argument"),
    [({"first": -1}, "first"), ({"first": 501}, "first"), ({"after": "junk"}, "after")],
)
async def test_forks_bad_arguments(
    client: GraphQLClient, args: dict[str, Any], argument: str
) -> None:
    root = await create_context(client)
    error = await client.error(FORKS, {"id": root["id"], **args})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert f"`{argument}`" in error["message"]


async def test_forks_cursor_from_descendants_refused(client: GraphQLClient) -> None:
    root = await create_context(client, messages=[user("a")])
    await fork(client, root["id"])
    await fork(client, root["id"])
    cursor = (await descendants_page(client, root["id"], first=1))["pageInfo"]["endCursor"]
    error = await client.error(FORKS, {"id": root["id"], "after": cursor})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


# --- descendants --------------------------------------------------------------------------------

DESCENDANTS = (
    "query($id: ID!, $first: Int, $after: String, $max: Int, $del: Boolean) { context(id: $id) {"
    " descendants(first: $first, after: $after, maxDepth: $max, includeDeleted: $del) {"
    " edges { cursor node { id } } nodes { id name depth createdAt }"
    " pageInfo { hasNextPage hasPreviousPage startCursor endCursor } totalCount } } }"
)


async def descendants_page(client: GraphQLClient, context_id: str, **args: Any) -> dict[str, Any]:
    data = await client.data(DESCENDANTS, {"id": context_id, **args})
    page: dict[str, Any] = data["context"]["descendants"]
    assert [e["node"]["id"] for e in page["edges"]] == [n["id"] for n in page["nodes"]]
    return page


async def make_tree(client: GraphQLClient) -> dict[str, dict[str, Any]]:
    """R -> (A -> (A1, A2 -> A2x), B -> B1 -> B1x, C), created interleaved so that
    creation order differs from depth order."""
    made: dict[str, dict[str, Any]] = {}
    made["R"] = await create_context(client, name="R", messages=[user("1"), user("2")])

    async def add(name: str, parent: str) -> None:
        made[name] = await fork(client, made[parent]["id"], name=name)

    await add("A", "R")
    await add("A1", "A")
    await add("B", "R")
    await add("B1", "B")
    await add("B1x", "B1")
    await add("A2", "A")
    await add("C", "R")
    await add("A2x", "A2")
    return made


async def names_of(page: dict[str, Any]) -> list[str]:
    return [n["name"] for n in page["nodes"]]


async def test_descendants_by_depth_then_created(client: GraphQLClient) -> None:
    t = await make_tree(client)
    page = await descendants_page(client, t["R"]["id"])
    assert await names_of(page) == ["A", "B", "C", "A1", "B1", "A2", "B1x", "A2x"]
    assert [n["depth"] for n in page["nodes"]] == [1, 1, 1, 2, 2, 2, 3, 3]
    assert page["totalCount"] == 8
    assert page["pageInfo"]["hasNextPage"] is False
    assert page["pageInfo"]["hasPreviousPage"] is False
    # Relative to the context asked for.
    a = await descendants_page(client, t["A"]["id"])
    assert await names_of(a) == ["A1", "A2", "A2x"]
    assert a["totalCount"] == 3
    leaf = await descendants_page(client, t["A2x"]["id"])
    assert leaf["nodes"] == []
    assert leaf["totalCount"] == 0


async def test_descendants_max_depth(client: GraphQLClient) -> None:
    t = await make_tree(client)
    one = await descendants_page(client, t["R"]["id"], max=1)
    assert await names_of(one) == ["A", "B", "C"]
    assert one["totalCount"] == 3
    two = await descendants_page(client, t["R"]["id"], max=2)
    assert await names_of(two) == ["A", "B", "C", "A1", "B1", "A2"]
    assert two["totalCount"] == 6
    deep = await descendants_page(client, t["R"]["id"], max=100)
    assert deep["totalCount"] == 8
    # maxDepth is relative to the context asked for.
    rel = await descendants_page(client, t["B"]["id"], max=1)
    assert await names_of(rel) == ["B1"]
    paged = await descendants_page(client, t["R"]["id"], max=2, first=4)
    assert await names_of(paged) == ["A", "B", "C", "A1"]
    assert paged["pageInfo"]["hasNextPage"] is True
    rest = await descendants_page(
        client, t["R"]["id"], max=2, first=4, after=paged["pageInfo"]["endCursor"]
    )
    assert await names_of(rest) == ["B1", "A2"]
    assert rest["pageInfo"]["hasNextPage"] is False
    assert rest["pageInfo"]["hasPreviousPage"] is True


@pytest.mark.parametrize("max_depth", [0, -1])
async def test_descendants_max_depth_below_one(client: GraphQLClient, max_depth: int) -> None:
    root = await create_context(client)
    error = await client.error(DESCENDANTS, {"id": root["id"], "max": max_depth})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "maxDepth" in error["message"]


async def test_descendants_paging(client: GraphQLClient) -> None:
    t = await make_tree(client)
    expected = ["A", "B", "C", "A1", "B1", "A2", "B1x", "A2x"]
    for size in (1, 3, 5):
        seen: list[str] = []
        after = None
        while True:
            page = await descendants_page(client, t["R"]["id"], first=size, after=after)
            assert page["totalCount"] == 8
            assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
            seen += await names_of(page)
            assert page["pageInfo"]["hasNextPage"] is (len(seen) < 8)
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        assert seen == expected


async def test_descendants_hide_deleted_but_list_their_forks(client: GraphQLClient) -> None:
    t = await make_tree(client)
    await delete(client, t["A"]["id"])
    await delete(client, t["B1x"]["id"])
    page = await descendants_page(client, t["R"]["id"])
    assert await names_of(page) == ["B", "C", "A1", "B1", "A2", "A2x"]
    assert page["totalCount"] == 6
    every = await descendants_page(client, t["R"]["id"], **{"del": True})
    assert await names_of(every) == ["A", "B", "C", "A1", "B1", "A2", "B1x", "A2x"]
    assert every["totalCount"] == 8
    limited = await descendants_page(client, t["R"]["id"], max=2)
    assert await names_of(limited) == ["B", "C", "A1", "B1", "A2"]
    # Paging across a hidden context.
    first = await descendants_page(client, t["R"]["id"], first=3)
    assert await names_of(first) == ["B", "C", "A1"]
    rest = await descendants_page(
        client, t["R"]["id"], first=3, after=first["pageInfo"]["endCursor"]
    )
    assert await names_of(rest) == ["B1", "A2", "A2x"]
    assert rest["pageInfo"]["hasNextPage"] is False
    # A deleted context still lists its own descendants.
    of_deleted = await descendants_page(client, t["A"]["id"])
    assert await names_of(of_deleted) == ["A1", "A2", "A2x"]


async def test_descendants_bad_cursor(client: GraphQLClient) -> None:
    root = await create_context(client, messages=[user("a")])
    await fork(client, root["id"])
    await fork(client, root["id"])
    forks_cursor = (await forks_page(client, root["id"], first=1))["pageInfo"]["endCursor"]
    for cursor in (forks_cursor, "junk"):
        error = await client.error(DESCENDANTS, {"id": root["id"], "after": cursor})
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "`after`" in error["message"]


async def test_forks_and_descendants_in_one_query_of_many_contexts(
    client: GraphQLClient,
) -> None:
    """Batched loaders must not mix up pages of different contexts or arguments."""
    t = await make_tree(client)
    query = "query(" + ", ".join(f"${k}: ID!" for k in t) + ") {"
    for k in t:
        query += (
            f" {k}: context(id: ${k}) {{ forks(first: 2) {{ nodes {{ name }} totalCount }}"
            " all: forks { nodes { name } }"
            " descendants(maxDepth: 1) { nodes { name } totalCount }"
            " deep: descendants { nodes { name } totalCount } }"
        )
    query += " }"
    data = await client.data(query, {k: v["id"] for k, v in t.items()})
    children = {
        "R": ["A", "B", "C"],
        "A": ["A1", "A2"],
        "A1": [],
        "A2": ["A2x"],
        "A2x": [],
        "B": ["B1"],
        "B1": ["B1x"],
        "B1x": [],
        "C": [],
    }
    deep = {
        "R": ["A", "B", "C", "A1", "B1", "A2", "B1x", "A2x"],
        "A": ["A1", "A2", "A2x"],
        "B": ["B1", "B1x"],
        "B1": ["B1x"],
        "A2": ["A2x"],
    }
    for k, kids in children.items():
        got = data[k]
        assert [n["name"] for n in got["forks"]["nodes"]] == kids[:2], k
        assert got["forks"]["totalCount"] == len(kids), k
        assert [n["name"] for n in got["all"]["nodes"]] == kids, k
        assert [n["name"] for n in got["descendants"]["nodes"]] == kids, k
        assert got["descendants"]["totalCount"] == len(kids), k
        assert [n["name"] for n in got["deep"]["nodes"]] == deep.get(k, []), k
        assert got["deep"]["totalCount"] == len(deep.get(k, [])), k


def with_siblings(args: str) -> str:
    """A context with its parent's forks, its siblings (Query.context reads them ahead)."""
    cursor = ", $c: String" if "$c" in args else ""
    return (
        f"query($id: ID!{cursor}) {{ context(id: $id) {{ id name forkVersion"
        f" parent {{ id name latestVersion forks{f'({args})' if args else ''} {{"
        " pageInfo { hasNextPage hasPreviousPage endCursor }"
        " nodes { id name forkVersion deletedAt } } } } }"
    )


async def test_context_with_its_siblings_reads_what_separate_reads_give(
    reference: GraphQLClient, statements: StatementLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`context(id) { parent { forks } }` (a branch switcher, the bench's tree workload)
    reads the context, its parent and the parent's forks in one statement; with a
    look-ahead turned off they are read separately. Both answer the same."""
    client = reference  # graphql-core, where Query.context reads ahead (no plan)
    root = await create_context(client, name="R", messages=[user("a"), user("b")])
    a = await fork(client, root["id"], 1, name="A")
    b = await fork(client, root["id"], name="B")
    c = await fork(client, root["id"], name="C")
    a1 = await fork(client, a["id"], name="A1")
    await delete(client, c["id"])
    first = await client.data(with_siblings("first: 1"), {"id": a["id"]})
    cursor = first["context"]["parent"]["forks"]["pageInfo"]["endCursor"]
    pages = ["", "first: 1", "first: 1, after: $c", "includeDeleted: true", "first: 0"]
    for cid in (a["id"], b["id"], a1["id"], root["id"], str(uuid.uuid4())):
        for args in pages:
            together, n_together, separate, n_separate = await read_ahead_and_apart(
                client, statements, with_siblings, args, cid, cursor, monkeypatch
            )
            assert together == separate, (cid, args)
            assert n_together == 1, (cid, args)
            has_parent = together["context"] is not None and together["context"]["parent"]
            assert n_separate == (2 if has_parent else 1), (cid, args)
    data = await client.data(with_siblings("includeDeleted: true"), {"id": b["id"]})
    assert [n["name"] for n in data["context"]["parent"]["forks"]["nodes"]] == ["A", "B", "C"]
    data = await client.data(with_siblings(""), {"id": b["id"]})
    assert [n["name"] for n in data["context"]["parent"]["forks"]["nodes"]] == ["A", "B"]

    counted = await client.data(
        "query($id: ID!) { context(id: $id) { parent { forks(first: 1) { totalCount } } } }",
        {"id": b["id"]},
    )
    assert counted["context"]["parent"]["forks"]["totalCount"] == 2  # a statement of its own
    error = await client.error(
        "query($id: ID!) { context(id: $id) { parent { forks(first: -1) { totalCount } } } }",
        {"id": a["id"]},
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["path"] == ["context", "parent", "forks"]


# --- Message.forks / Message.context ---------------------------------------------------------


async def test_message_forks(client: GraphQLClient) -> None:
    root = await create_context(client, messages=[user("1"), user("2"), user("3")])
    at2a = await fork(client, root["id"], 2, name="at2a")
    await fork(client, root["id"], 3, name="at3")
    at2b = await fork(client, root["id"], 2, name="at2b")
    at2gone = await fork(client, root["id"], 2, name="at2gone")
    await delete(client, at2gone["id"])
    await fork(client, at2a["id"], 2, name="grandchild-at2")  # fork of a fork, same version
    await fork(client, root["id"], 0, name="at0")
    data = await context(
        client,
        root["id"],
        "messages { nodes { version forks { id name forkVersion parent { id } } } }",
    )
    by_version = {n["version"]: n["forks"] for n in data["messages"]["nodes"]}
    assert [f["name"] for f in by_version[1]] == []
    assert [f["name"] for f in by_version[2]] == ["at2a", "at2b"]
    assert [f["id"] for f in by_version[2]] == [at2a["id"], at2b["id"]]
    assert [f["name"] for f in by_version[3]] == ["at3"]
    for f in by_version[2]:
        assert f["forkVersion"] == 2
        assert f["parent"]["id"] == root["id"]


async def test_message_forks_of_inherited_message(client: GraphQLClient) -> None:
    """Message.forks is about the owning context: an inherited message read through a
    fork lists the forks of its owner at its version."""
    root = await create_context(client, messages=[user("1"), user("2")])
    child = await fork(client, root["id"], 2, name="child")
    await append(client, child["id"], [user("c3")])
    await fork(client, root["id"], 1, name="sibling")
    await fork(client, child["id"], 3, name="grand")
    data = await context(
        client,
        child["id"],
        "messages { nodes { version content context { id name } forks { name } } }",
    )
    nodes = data["messages"]["nodes"]
    assert [(n["version"], n["content"]) for n in nodes] == [(1, "1"), (2, "2"), (3, "c3")]
    assert [n["context"]["id"] for n in nodes] == [root["id"], root["id"], child["id"]]
    assert [[f["name"] for f in n["forks"]] for n in nodes] == [["sibling"], ["child"], ["grand"]]


async def test_message_context_is_owner(client: GraphQLClient) -> None:
    root = await create_context(client, name="root", messages=[user("r")])
    mid = await fork(client, root["id"], name="mid")
    await append(client, mid["id"], [user("m")])
    leaf = await fork(client, mid["id"], name="leaf")
    await append(client, leaf["id"], [user("l")])
    data = await context(
        client,
        leaf["id"],
        "messages { nodes { content context { name depth } } }"
        " v1: message(version: 1) { context { id } }"
        " v2: message(version: 2) { context { id } }"
        " v3: message(version: 3) { context { id } }",
    )
    assert [
        (n["content"], n["context"]["name"], n["context"]["depth"])
        for n in data["messages"]["nodes"]
    ] == [
        ("r", "root", 0),
        ("m", "mid", 1),
        ("l", "leaf", 2),
    ]
    assert data["v1"]["context"]["id"] == root["id"]
    assert data["v2"]["context"]["id"] == mid["id"]
    assert data["v3"]["context"]["id"] == leaf["id"]


# --- node(id) -------------------------------------------------------------------------------

NODE = (
    "query($id: ID!) { node(id: $id) { __typename id"
    " ... on Context { name latestVersion }"
    " ... on Message { content version context { id } } } }"
)


async def test_node_resolves_both_types(client: GraphQLClient) -> None:
    ctx = await create_context(client, name="n", messages=[user("hello")])
    mid = await message_id(client, ctx["id"], 1)
    data = await client.data(NODE, {"id": ctx["id"]})
    assert data["node"] == {
        "__typename": "Context",
        "id": ctx["id"],
        "name": "n",
        "latestVersion": 1,
    }
    data = await client.data(NODE, {"id": mid})
    assert data["node"] == {
        "__typename": "Message",
        "id": mid,
        "content": "hello",
        "version": 1,
        "context": {"id": ctx["id"]},
    }
    # Uppercase UUID text is the same id.
    data = await client.data(NODE, {"id": ctx["id"].upper()})
    assert data["node"]["id"] == ctx["id"]


async def test_node_deleted_objects(client: GraphQLClient) -> None:
    ctx = await create_context(client, messages=[user("a")])
    mid = await message_id(client, ctx["id"], 1)
    await client.data("mutation($id: ID!) { deleteMessage(id: $id) { id } }", {"id": mid})
    await delete(client, ctx["id"])
    query = (
        "query($id: ID!) { node(id: $id) { __typename"
        " ... on Context { deletedAt } ... on Message { deletedAt } } }"
    )
    assert (await client.data(query, {"id": ctx["id"]}))["node"]["deletedAt"] is not None
    got = (await client.data(query, {"id": mid}))["node"]
    assert got["__typename"] == "Message"
    assert got["deletedAt"] is not None


async def test_node_many_at_once(client: GraphQLClient) -> None:
    ctx = await create_context(client, messages=[user("a"), user("b")])
    m1 = await message_id(client, ctx["id"], 1)
    m2 = await message_id(client, ctx["id"], 2)
    missing = str(uuid.uuid4())
    data = await client.data(
        "query($a: ID!, $b: ID!, $c: ID!, $d: ID!) {"
        " a: node(id: $a) { __typename id } b: node(id: $b) { __typename id }"
        " c: node(id: $c) { __typename id } d: node(id: $d) { __typename id } }",
        {"a": ctx["id"], "b": m1, "c": missing, "d": m2},
    )
    assert data == {
        "a": {"__typename": "Context", "id": ctx["id"]},
        "b": {"__typename": "Message", "id": m1},
        "c": None,
        "d": {"__typename": "Message", "id": m2},
    }


async def test_node_unknown_is_null(client: GraphQLClient) -> None:
    data = await client.data(NODE, {"id": str(uuid.uuid4())})
    assert data == {"node": None}


@pytest.mark.parametrize("bad", ["nope", "", "123", "g" * 32, "' OR 1=1 --"])
async def test_node_malformed_id(client: GraphQLClient, bad: str) -> None:
    error = await client.error(NODE, {"id": bad})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "`id`" in error["message"]
    assert "UUID" in error["message"]
