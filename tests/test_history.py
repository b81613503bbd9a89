"""Reading histories: Relay pagination both ways, filters, totalCount, one statement per
page at any fork depth, and soft deletion of messages."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from api.app import create_app
from tests.conftest import (
    GraphQLClient,
    RollbackConnector,
    StatementLog,
    graphql_client,
    test_settings,
)
from tests.helpers import (
    append,
    assistant,
    create_context,
    fork,
    get_context,
    read_ahead_and_apart,
    user,
)

PAGE = (
    "query($id: ID!, $first: Int, $after: String, $last: Int, $before: String,"
    " $from: Int, $to: Int, $roles: [MessageRole!], $inh: Boolean, $del: Boolean) {"
    " context(id: $id) { messages(first: $first, after: $after, last: $last, before: $before,"
    " fromVersion: $from, toVersion: $to, roles: $roles, includeInherited: $inh,"
    " includeDeleted: $del) {"
    " totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }"
    " edges { cursor node { id version content role } } nodes { version } } } }"
)


class Page:
    def __init__(self, conn: dict[str, Any]) -> None:
        self.raw = conn
        self.versions = [e["node"]["version"] for e in conn["edges"]]
        assert [n["version"] for n in conn["nodes"]] == self.versions
        self.cursors = [e["cursor"] for e in conn["edges"]]
        info = conn["pageInfo"]
        self.has_next: bool = info["hasNextPage"]
        self.has_previous: bool = info["hasPreviousPage"]
        self.start: str | None = info["startCursor"]
        self.end: str | None = info["endCursor"]
        self.total: int = conn["totalCount"]
        assert self.start == (self.cursors[0] if self.cursors else None)
        assert self.end == (self.cursors[-1] if self.cursors else None)

    @property
    def flags(self) -> tuple[bool, bool]:
        """(hasPreviousPage, hasNextPage)."""
        return self.has_previous, self.has_next


async def page(client: GraphQLClient, context_id: str, **args: Any) -> Page:
    names = {"from_version": "from", "to_version": "to"}
    variables = {"id": context_id, **{names.get(k, k): v for k, v in args.items()}}
    data = await client.data(PAGE, variables)
    return Page(data["context"]["messages"])


async def page_error(client: GraphQLClient, context_id: str, **args: Any) -> dict[str, Any]:
    variables = {"id": context_id, **args}
    return await client.error(PAGE, variables)


def conversation(n: int) -> list[dict[str, Any]]:
    """v odd: USER, v even: ASSISTANT, every 5th: SYSTEM; tokenCount = version."""
    out = []
    for v in range(1, n + 1):
        role = "SYSTEM" if v % 5 == 0 else "USER" if v % 2 else "ASSISTANT"
        out.append({"role": role, "content": f"m{v}", "tokenCount": v})
    return out


# --- pagination on one context -------------------------------------------------------------


async def test_chat_opens_with_last_50_then_pages_back(client: GraphQLClient) -> None:
    ctx = await create_context(client, messages=conversation(120))
    p = await page(client, ctx["id"], last=50)
    assert p.versions == list(range(71, 121))
    assert p.flags == (True, False)
    assert p.total == 120
    p = await page(client, ctx["id"], last=50, before=p.start)
    assert p.versions == list(range(21, 71))
    assert p.flags == (True, True)
    assert p.total == 120
    p = await page(client, ctx["id"], last=50, before=p.start)
    assert p.versions == list(range(1, 21))
    assert p.flags == (False, True)
    p = await page(client, ctx["id"], last=50, before=p.start)
    assert p.versions == []
    assert p.flags == (False, True)
    assert (p.start, p.end) == (None, None)


async def test_first_after_pages_forward(client: GraphQLClient) -> None:
    ctx = await create_context(client, messages=conversation(120))
    p = await page(client, ctx["id"], first=50)
    assert p.versions == list(range(1, 51))
    assert p.flags == (False, True)
    p = await page(client, ctx["id"], first=50, after=p.end)
    assert p.versions == list(range(51, 101))
    assert p.flags == (True, True)
    p = await page(client, ctx["id"], first=50, after=p.end)
    assert p.versions == list(range(101, 121))
    assert p.flags == (True, False)
    p = await page(client, ctx["id"], first=50, after=p.end)
    assert p.versions == []
    assert p.flags == (True, False)
    assert p.total == 120


async def test_pages_ending_exactly_at_the_end(client: GraphQLClient) -> None:
    ctx = await create_context(client, messages=conversation(100))
    p = await page(client, ctx["id"], first=50)
    assert p.flags == (False, True)
    p = await page(client, ctx["id"], first=50, after=p.end)
    assert p.versions == list(range(51, 101))
    assert p.flags == (True, False)
    p = await page(client, ctx["id"], last=50)
    assert p.flags == (True, False)
    p = await page(client, ctx["id"], last=50, before=p.start)
    assert p.versions == list(range(1, 51))
    assert p.flags == (False, True)

    exact = await create_context(client, messages=conversation(50))
    assert (await page(client, exact["id"], last=50)).flags == (False, False)
    assert (await page(client, exact["id"], first=50)).flags == (False, False)
    assert (await page(client, exact["id"], last=49)).flags == (True, False)
    assert (await page(client, exact["id"], first=49)).flags == (False, True)

    empty = await create_context(client)
    for args in ({"last": 50}, {"first": 50}, {}):
        p = await page(client, empty["id"], **args)
        assert (p.versions, p.flags, p.total) == ([], (False, False), 0)


async def test_cursor_on_the_first_and_last_item(client: GraphQLClient) -> None:
    ctx = await create_context(client, messages=conversation(10))
    whole = await page(client, ctx["id"], first=10)
    first_cursor, last_cursor = whole.cursors[0], whole.cursors[-1]
    p = await page(client, ctx["id"], first=3, after=first_cursor)
    assert (p.versions, p.flags) == ([2, 3, 4], (True, True))
    p = await page(client, ctx["id"], last=3, before=last_cursor)
    assert (p.versions, p.flags) == ([7, 8, 9], (True, True))
    p = await page(client, ctx["id"], first=3, before=first_cursor)
    assert (p.versions, p.flags) == ([], (False, True))
    p = await page(client, ctx["id"], last=3, after=last_cursor)
    assert (p.versions, p.flags) == ([], (True, False))


async def test_after_and_before_together(client: GraphQLClient) -> None:
    ctx = await create_context(client, messages=conversation(40))
    whole = await page(client, ctx["id"], first=40)
    c10, c30 = whole.cursors[9], whole.cursors[29]
    p = await page(client, ctx["id"], first=5, after=c10, before=c30)
    assert (p.versions, p.flags) == ([11, 12, 13, 14, 15], (True, True))
    p = await page(client, ctx["id"], last=5, after=c10, before=c30)
    assert (p.versions, p.flags) == ([25, 26, 27, 28, 29], (True, True))
    # The whole window between the cursors: the items outside it still exist.
    p = await page(client, ctx["id"], first=50, after=c10, before=c30)
    assert p.versions == list(range(11, 30))
    assert p.flags == (True, True)
    p = await page(client, ctx["id"], last=50, after=c10, before=c30)
    assert p.versions == list(range(11, 30))
    assert p.flags == (True, True)
    assert p.total == 40
    # A window reaching the ends of the list.
    p = await page(client, ctx["id"], first=50, before=c30)
    assert (p.versions, p.flags) == (list(range(1, 30)), (False, True))
    p = await page(client, ctx["id"], last=50, after=c10)
    assert (p.versions, p.flags) == (list(range(11, 41)), (True, False))


async def test_cursors_are_opaque_and_stable(client: GraphQLClient) -> None:
    ctx = await create_context(client, messages=conversation(5))
    forward = await page(client, ctx["id"], first=5)
    backward = await page(client, ctx["id"], last=5)
    assert forward.cursors == backward.cursors
    assert len(set(forward.cursors)) == 5
    for version, cursor in zip(forward.versions, forward.cursors, strict=True):
        assert isinstance(cursor, str)
        assert cursor.strip()
        assert cursor != str(version)
        assert not cursor.isdigit()
    # A fork's cursor for an inherited message pages the fork the same way.
    child = await fork(client, ctx["id"], 3)
    await append(client, child["id"], [user("c4"), user("c5")])
    p = await page(client, child["id"], first=10, after=forward.cursors[1])
    assert [e["node"]["content"] for e in p.raw["edges"]] == ["m3", "c4", "c5"]


async def test_default_page_size_is_50(client: GraphQLClient) -> None:
    ctx = await create_context(client, messages=conversation(60))
    p = await page(client, ctx["id"])
    assert p.versions == list(range(1, 51))
    assert p.flags == (False, True)
    p = await page(client, ctx["id"], after=p.end)
    assert p.versions == list(range(51, 61))
    # `before` alone pages backward from it with the default size.
    whole = await page(client, ctx["id"], first=60)
    p = await page(client, ctx["id"], before=whole.cursors[55])
    assert p.versions == list(range(6, 56))
    assert p.flags == (True, True)


async def test_max_page_size_500(client: GraphQLClient) -> None:
    ctx = await create_context(client, messages=conversation(3))
    assert (await page(client, ctx["id"], first=500)).versions == [1, 2, 3]
    assert (await page(client, ctx["id"], last=500)).versions == [1, 2, 3]
    for arg in ("first", "last"):
        error = await page_error(client, ctx["id"], **{arg: 501})
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert f"`{arg}`" in error["message"]
        assert "500" in error["message"]


@pytest_asyncio.fixture
async def small_pages(conn: AsyncConnection) -> AsyncIterator[GraphQLClient]:
    app = create_app(test_settings(default_page_size=3, max_page_size=7), RollbackConnector(conn))
    async with graphql_client(app) as c:
        yield c


async def test_page_sizes_come_from_settings(small_pages: GraphQLClient) -> None:
    ctx = await create_context(small_pages, messages=conversation(10))
    assert (await page(small_pages, ctx["id"])).versions == [1, 2, 3]
    assert (await page(small_pages, ctx["id"], last=7)).versions == [4, 5, 6, 7, 8, 9, 10]
    error = await page_error(small_pages, ctx["id"], first=8)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "CTXGRAPH_MAX_PAGE_SIZE" in error["message"]


async def test_first_zero_says_whether_anything_follows(client: GraphQLClient) -> None:
    ctx = await create_context(client, messages=conversation(3))
    p = await page(client, ctx["id"], first=0)
    assert (p.versions, p.flags, p.total) == ([], (False, True), 3)
    p = await page(client, ctx["id"], last=0)
    assert (p.versions, p.flags, p.total) == ([], (True, False), 3)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ({"first": 1, "last": 1}, ["`first`", "`last`"]),
        ({"first": -1}, ["`first`"]),
        ({"last": -5}, ["`last`"]),
        ({"after": "not a cursor"}, ["`after`"]),
        ({"before": "not a cursor"}, ["`before`"]),
        ({"after": ""}, ["`after`"]),
        ({"before": "!!!"}, ["`before`"]),
        ({"after": base64.urlsafe_b64encode(b"[1, 2]").decode()}, ["`after`"]),
        ({"after": base64.urlsafe_b64encode(b'["m", "7"]').decode()}, ["`after`"]),
        ({"after": base64.urlsafe_b64encode(b'["m"]').decode()}, ["`after`"]),
        ({"before": base64.urlsafe_b64encode(b'{"m": 1}').decode()}, ["`before`"]),
        ({"before": base64.urlsafe_b64encode(b"\xff\xfe").decode()}, ["`before`"]),
        ({"after": "\u00e9\u00e9\u00e9\u00e9"}, ["`after`"]),
        ({"after": base64.urlsafe_b64encode(b'["m", true]').decode()}, ["`after`"]),
        ({"after": base64.urlsafe_b64encode(b'["m", 1.5]').decode()}, ["`after`"]),
        (
            {"before": base64.urlsafe_b64encode(b'["m", 99999999999999999999999]').decode()},
            ["`before`"],
        ),
        (
            {"after": base64.urlsafe_b64encode(b'["m", -99999999999999999999999]').decode()},
            ["`after`"],
        ),
        ({"after": base64.urlsafe_b64encode(b'["m", null]').decode()}, ["`after`"]),
    ],
)
async def test_invalid_page_arguments(
    client: GraphQLClient, args: dict[str, Any], named: list[str]
) -> None:
    ctx = await create_context(client, messages=conversation(3))
    error = await page_error(client, ctx["id"], **args)
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    for name in named:
        assert name in error["message"], error["message"]


async def test_cursor_of_another_list_is_refused(client: GraphQLClient) -> None:
    ctx = await create_context(client, messages=conversation(3))
    await fork(client, ctx["id"])
    data = await client.data(
        "query($id: ID!) { contexts(first: 1) { edges { cursor } }"
        " context(id: $id) { forks { edges { cursor } } } }",
        {"id": ctx["id"]},
    )
    for cursor in (
        data["contexts"]["edges"][0]["cursor"],
        data["context"]["forks"]["edges"][0]["cursor"],
    ):
        error = await page_error(client, ctx["id"], after=cursor)
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "`after`" in error["message"]
    # And a message cursor is refused by the contexts listing.
    msg_cursor = (await page(client, ctx["id"], first=1)).end
    error = await client.error(
        "query($c: String) { contexts(after: $c) { totalCount } }", {"c": msg_cursor}
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


# --- filters and totalCount ----------------------------------------------------------------


async def test_version_range_filters(client: GraphQLClient) -> None:
    ctx = await create_context(client, messages=conversation(30))
    p = await page(client, ctx["id"], first=5, from_version=10, to_version=20)
    assert (p.versions, p.flags, p.total) == ([10, 11, 12, 13, 14], (False, True), 11)
    p = await page(client, ctx["id"], first=5, after=p.end, from_version=10, to_version=20)
    assert (p.versions, p.flags) == ([15, 16, 17, 18, 19], (True, True))
    p = await page(client, ctx["id"], first=5, after=p.end, from_version=10, to_version=20)
    assert (p.versions, p.flags) == ([20], (True, False))
    p = await page(client, ctx["id"], last=5, from_version=10, to_version=20)
    assert (p.versions, p.flags, p.total) == ([16, 17, 18, 19, 20], (True, False), 11)
    p = await page(client, ctx["id"], last=50, from_version=10, to_version=20)
    assert (p.versions, p.flags) == (list(range(10, 21)), (False, False))
    p = await page(client, ctx["id"], first=50, from_version=25)
    assert (p.versions, p.total) == ([25, 26, 27, 28, 29, 30], 6)
    p = await page(client, ctx["id"], last=3, to_version=4)
    assert (p.versions, p.flags, p.total) == ([2, 3, 4], (True, False), 4)
    p = await page(client, ctx["id"], first=50, from_version=20, to_version=10)
    assert (p.versions, p.flags, p.total) == ([], (False, False), 0)


async def test_roles_filter(client: GraphQLClient) -> None:
    ctx = await create_context(client, messages=conversation(30))
    users = [v for v in range(1, 31) if v % 5 and v % 2]
    systems = [5, 10, 15, 20, 25, 30]
    p = await page(client, ctx["id"], first=50, roles=["USER"])
    assert (p.versions, p.total) == (users, len(users))
    assert {e["node"]["role"] for e in p.raw["edges"]} == {"USER"}
    p = await page(client, ctx["id"], first=50, roles=["SYSTEM", "USER"])
    assert p.versions == sorted(users + systems)
    p = await page(client, ctx["id"], first=50, roles=["TOOL"])
    assert (p.versions, p.total, p.flags) == ([], 0, (False, False))
    p = await page(client, ctx["id"], first=50, roles=[])
    assert (p.versions, p.total) == ([], 0)
    # Paging through a filtered list: page info counts only matching items.
    p = await page(client, ctx["id"], first=3, roles=["SYSTEM"])
    assert (p.versions, p.flags, p.total) == ([5, 10, 15], (False, True), 6)
    p = await page(client, ctx["id"], first=3, after=p.end, roles=["SYSTEM"])
    assert (p.versions, p.flags) == ([20, 25, 30], (True, False))
    p = await page(client, ctx["id"], last=2, before=p.start, roles=["SYSTEM"])
    assert (p.versions, p.flags) == ([10, 15], (True, True))
    p = await page(client, ctx["id"], first=2, roles=["SYSTEM"], from_version=11, to_version=26)
    assert (p.versions, p.flags, p.total) == ([15, 20], (False, True), 3)
    error = await page_error(client, ctx["id"], roles=["NOBODY"])
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


async def test_total_count_ignores_paging_and_respects_filters(client: GraphQLClient) -> None:
    root = await create_context(client, messages=conversation(20))
    ids = [e["node"]["id"] for e in (await page(client, root["id"], first=20)).raw["edges"]]
    await client.data("mutation($id: ID!) { deleteMessage(id: $id) { id } }", {"id": ids[3]})
    child = await fork(client, root["id"], 15)
    await append(client, child["id"], [user("c16"), assistant("c17")])
    cid = child["id"]
    whole = await page(client, cid, first=1)
    assert whole.total == 16
    for args in (
        {"first": 5},
        {"last": 5},
        {"first": 2, "after": whole.end},
        {"last": 2, "before": whole.end},
    ):
        assert (await page(client, cid, **args)).total == 16
    assert (await page(client, cid, first=1, inh=False)).total == 2
    assert (await page(client, cid, first=1, **{"del": True})).total == 17
    assert (await page(client, cid, first=1, from_version=10)).total == 8
    assert (await page(client, cid, first=1, to_version=9)).total == 8
    assert (await page(client, cid, first=1, roles=["ASSISTANT"])).total == len(
        [v for v in range(1, 16) if v % 2 == 0 and v % 5 and v != 4]
    ) + 1
    assert (await page(client, cid, first=1, roles=["USER"], inh=False)).total == 1


async def test_pages_across_a_deep_fork_chain(client: GraphQLClient) -> None:
    """Paging forward and backward by 7 across eight segments returns every visible
    message exactly once, in order, with exact page info."""
    ctx = await create_context(client, messages=[user(f"0.{i}") for i in range(5)])
    contents: list[str] = [f"0.{i}" for i in range(5)]
    ids = {m["content"]: m["id"] for m in (await _all(client, ctx["id"]))}
    for depth in range(1, 8):
        if depth % 3 == 0:
            # Delete something in the current leaf before forking: hidden from then on.
            victim = contents.pop()
            await client.data(
                "mutation($id: ID!) { deleteMessage(id: $id) { id } }", {"id": ids[victim]}
            )
        ctx = await fork(client, ctx["id"])
        new = [user(f"{depth}.{i}") for i in range(depth % 4 + 1)]
        for m in await append(client, ctx["id"], new):
            ids[m["content"]] = m["id"]
        contents += [m["content"] for m in new]
    cid = ctx["id"]

    seen: list[str] = []
    after = None
    while True:
        p = await page(client, cid, first=7, after=after)
        seen += [e["node"]["content"] for e in p.raw["edges"]]
        assert p.has_previous == (after is not None)
        assert p.total == len(contents)
        if not p.has_next:
            break
        after = p.end
    assert seen == contents

    seen = []
    before = None
    while True:
        p = await page(client, cid, last=7, before=before)
        seen = [e["node"]["content"] for e in p.raw["edges"]] + seen
        assert p.has_next == (before is not None)
        if not p.has_previous:
            break
        before = p.start
    assert seen == contents


async def _all(client: GraphQLClient, context_id: str) -> list[dict[str, Any]]:
    return [e["node"] for e in (await page(client, context_id, first=500)).raw["edges"]]


async def test_pages_of_many_contexts_in_one_request(
    client: GraphQLClient, statements: StatementLog
) -> None:
    """One batched statement serves the pages of a whole fork tree, each context's
    page and page info computed on its own history."""
    root = await create_context(client, messages=conversation(6))
    a = await fork(client, root["id"], 4)
    await append(client, a["id"], [user("a5"), user("a6"), user("a7")])
    b = await fork(client, a["id"], 5)
    await append(client, b["id"], [user("b6")])
    c = await fork(client, root["id"], 0)
    ids = [root["id"], a["id"], b["id"], c["id"]]
    fields = " ".join(
        f'x{i}: context(id: "{cid}") {{ messages(last: 2, before: $cur) {{ totalCount'
        " pageInfo { hasPreviousPage hasNextPage } nodes { content } }"
        " message(version: 5) { content } }"
        for i, cid in enumerate(ids)
    )
    # Version 6's cursor, taken from root: it pages every history the same way.
    cursor = (await page(client, root["id"], first=6)).cursors[5]
    for cur, expected in (
        (
            None,
            [
                (["m5", "m6"], True, False, 6),
                (["a6", "a7"], True, False, 7),
                (["a5", "b6"], True, False, 6),
                ([], False, False, 0),
            ],
        ),
        (
            cursor,
            [
                (["m4", "m5"], True, True, 6),
                (["m4", "a5"], True, True, 7),
                (["m4", "a5"], True, True, 6),
                ([], False, False, 0),
            ],
        ),
    ):
        statements.clear()
        data = await client.data(f"query($cur: String) {{ {fields} }}", {"cur": cur})
        # contexts with their pages (one statement: the page is known when `context`
        # resolves) + message(version): batched whatever the number of contexts.
        assert len(statements) == 2
        got = [
            (
                [n["content"] for n in data[f"x{i}"]["messages"]["nodes"]],
                data[f"x{i}"]["messages"]["pageInfo"]["hasPreviousPage"],
                data[f"x{i}"]["messages"]["pageInfo"]["hasNextPage"],
                data[f"x{i}"]["messages"]["totalCount"],
            )
            for i in range(len(ids))
        ]
        assert got == expected
        assert [data[f"x{i}"]["message"] for i in range(len(ids))] == [
            {"content": "m5"},
            {"content": "a5"},
            {"content": "a5"},
            None,
        ]


# --- one statement per page at any depth -----------------------------------------------------


async def chain(client: GraphQLClient, depth: int) -> str:
    """A fork chain `depth` forks deep; every context adds 3 messages."""
    ctx = await create_context(client, messages=[user("root.0"), user("root.1"), user("root.2")])
    for d in range(depth):
        ctx = await fork(client, ctx["id"])
        await append(client, ctx["id"], [user(f"{d}.0"), assistant(f"{d}.1"), user(f"{d}.2")])
    return str(ctx["id"])


HISTORY_PAGE = (
    "query($id: ID!, $before: String) { context(id: $id) { id messages(last: 50, before: $before)"
    " { totalCount pageInfo { hasPreviousPage hasNextPage startCursor endCursor }"
    " nodes { id version content role createdAt deletedAt } } } }"
)


async def test_one_statement_per_history_page_at_any_depth(
    client: GraphQLClient, statements: StatementLog
) -> None:
    shallow = await chain(client, 1)
    deep = await chain(client, 20)
    counts: dict[str, list[int]] = {}
    for name, cid in (("shallow", shallow), ("deep", deep)):
        statements.clear()
        data = await client.data(HISTORY_PAGE, {"id": cid, "before": None})
        first_page = len(statements)
        conn = data["context"]["messages"]
        assert len(conn["nodes"]) == (6 if name == "shallow" else 50)
        statements.clear()
        await client.data(HISTORY_PAGE, {"id": cid, "before": conn["pageInfo"]["startCursor"]})
        counts[name] = [first_page, len(statements)]
    # The context and its history page (totalCount from the counter, exact page info)
    # are one statement, whatever the depth.
    assert counts == {"shallow": [1, 1], "deep": [1, 1]}

    data = await client.data(HISTORY_PAGE, {"id": deep, "before": None})
    versions = [n["version"] for n in data["context"]["messages"]["nodes"]]
    assert versions == list(range(14, 64))
    assert data["context"]["messages"]["totalCount"] == 63


async def test_newest_pages_across_segments_with_deletions(client: GraphQLClient) -> None:
    """`last: n` over a chain whose segments have deletions visible and invisible
    below them: for every n it is the tail of the whole history read forward (an
    oracle for any reading of the newest page that skips segments)."""
    delete = "mutation($id: ID!) { deleteMessage(id: $id) { id } }"
    root = await create_context(client, messages=conversation(6))
    root_ids = [e["node"]["id"] for e in (await page(client, root["id"], first=10)).raw["edges"]]
    await client.data(delete, {"id": root_ids[2]})  # before the fork: invisible below
    a = await fork(client, root["id"], 5)
    await append(client, a["id"], [user(f"a{i}") for i in range(4)])
    a_ids = [e["node"]["id"] for e in (await page(client, a["id"], first=20)).raw["edges"]]
    await client.data(delete, {"id": a_ids[-2]})  # a's own: invisible in a and below
    b = await fork(client, a["id"])
    await client.data(delete, {"id": root_ids[0]})  # after both forks: still visible
    await client.data(delete, {"id": a_ids[-1]})  # after b's fork: visible in b only
    await append(client, b["id"], [user("b0"), user("b1")])
    for leaf in (root["id"], a["id"], b["id"]):
        whole = (await page(client, leaf, first=50)).versions
        for n in range(len(whole) + 2):
            got = (await page(client, leaf, last=n)).versions
            assert got == whole[max(len(whole) - n, 0) :] if n else got == [], (leaf, n, got)
    assert (await page(client, b["id"], first=50)).versions == [1, 2, 4, 5, 6, 7, 9, 10, 11]


# --- a context and its page in one statement ----------------------------------------------------


def context_with_page(args: str) -> str:
    """A context with one page of its history (Query.context reads it ahead)."""
    cursor = ", $c: String" if "$c" in args else ""
    return (
        f"query($id: ID!{cursor}) {{ context(id: $id) {{"
        " id name messageCount totalTokens latestVersion parent { id name }"
        f" messages{f'({args})' if args else ''} {{ totalCount"
        " pageInfo { hasPreviousPage hasNextPage startCursor endCursor }"
        " nodes { id version content deletedAt context { id } } } } }"
    )


async def test_context_with_its_page_reads_what_separate_reads_give(
    reference: GraphQLClient, statements: StatementLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`context(id) { messages(...) }` reads the context and that page in one statement
    (Query.context sees which page its `messages` field will ask for). The same field
    read without the look-ahead reads them separately: both must answer the same for every kind
    of page, context and missing id."""
    client = reference  # graphql-core, where Query.context reads ahead (no plan)
    root = await create_context(client, messages=[user(f"r{i}") for i in range(8)])
    child = await fork(client, root["id"], 5)
    await append(client, child["id"], [assistant(f"c{i}") for i in range(4)])
    ids = [e["node"]["id"] for e in (await page(client, child["id"], first=20)).raw["edges"]]
    # deleted after the fork: still in the child's history; deleted in the child: gone
    for victim in (ids[1], ids[6]):
        await client.data("mutation($id: ID!) { deleteMessage(id: $id) { id } }", {"id": victim})
    cursor = (await page(client, child["id"], first=4)).cursors[-1]
    pages = ["", "last: 3", "first: 2", "first: 0", "first: 2, after: $c", "last: 2, before: $c"]
    for cid in (root["id"], child["id"], str(uuid.uuid4())):
        for args in pages:
            together, n_together, separate, n_separate = await read_ahead_and_apart(
                client, statements, context_with_page, args, cid, cursor, monkeypatch
            )
            assert together == separate, (cid, args)
            assert n_together == 1, (cid, args)  # parent and owners come along
            assert n_separate == (1 if together["context"] is None else 2), (cid, args)
    last = await client.data(context_with_page("last: 4"), {"id": child["id"]})
    assert [n["content"] for n in last["context"]["messages"]["nodes"]] == ["r4", "c0", "c2", "c3"]
    assert last["context"]["messages"]["totalCount"] == 8


async def test_context_page_read_ahead_through_fragments_and_its_limits(
    client: GraphQLClient, statements: StatementLog
) -> None:
    ctx = await create_context(client, messages=[user(f"m{i}") for i in range(6)])
    variables = {"id": ctx["id"]}

    statements.clear()
    data = await client.data(
        "query($id: ID!) { context(id: $id) { ...Chat } }"
        " fragment Chat on Context { id ... on Context {"
        " messages(last: 2) { nodes { content } } } }",
        variables,
    )
    assert data["context"]["messages"]["nodes"] == [{"content": "m4"}, {"content": "m5"}]
    assert len(statements) == 1

    # two different pages: each is read as usual (the context, then both pages)
    data = await client.data(
        "query($id: ID!) { context(id: $id) { a: messages(first: 1) { nodes { content } }"
        " b: messages(last: 1) { nodes { content } } } }",
        variables,
    )
    assert data["context"] == {
        "a": {"nodes": [{"content": "m0"}]},
        "b": {"nodes": [{"content": "m5"}]},
    }

    # filters: read as usual, same answer
    data = await client.data(
        "query($id: ID!) { context(id: $id) { messages(last: 2, roles: [USER]) {"
        " nodes { content } } } }",
        variables,
    )
    assert data["context"]["messages"]["nodes"] == [{"content": "m4"}, {"content": "m5"}]

    # arguments the page refuses: the same error as always, from `messages`
    for args, needle in (("first: 1, last: 1", "not both"), ('before: "nope"', "cursor")):
        body = await client.execute(
            "query($id: ID!) { context(id: $id) { id messages(ARGS) { nodes { id } } } }".replace(
                "ARGS", args
            ),
            variables,
        )
        [error] = body["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
        assert needle in error["message"], error
        assert error["path"] == ["context", "messages"]


async def test_filtered_count_and_message_by_version_are_one_statement_each(
    client: GraphQLClient, statements: StatementLog
) -> None:
    results = []
    for depth in (1, 20):
        cid = await chain(client, depth)
        statements.clear()
        data = await client.data(
            "query($id: ID!) { context(id: $id) { messages(last: 5, roles: [ASSISTANT]) {"
            " totalCount nodes { version } } message(version: 2) { content } } }",
            {"id": cid},
        )
        results.append(len(statements))
        assert data["context"]["messages"]["totalCount"] == depth
        assert data["context"]["message"] == {"content": "root.1"}
    # context + page + filtered count + message(version): the same at both depths.
    assert results == [4, 4]


# --- deleteMessage -----------------------------------------------------------------------------

DELETE = (
    "mutation($id: ID!) { deleteMessage(id: $id) { id version content deletedAt"
    " context { id messageCount totalTokens latestVersion } } }"
)


async def test_delete_message_is_soft_and_adjusts_only_its_owner(client: GraphQLClient) -> None:
    root = await create_context(client, messages=conversation(5))  # tokens 1..5
    nodes = await _all(client, root["id"])
    child = await fork(client, root["id"])
    data = await client.data(DELETE, {"id": nodes[1]["id"]})
    deleted = data["deleteMessage"]
    assert deleted["deletedAt"] is not None
    assert (deleted["id"], deleted["version"], deleted["content"]) == (nodes[1]["id"], 2, "m2")
    assert deleted["context"] == {
        "id": root["id"],
        "messageCount": 4,
        "totalTokens": 13,
        "latestVersion": 5,
    }
    # Still readable by id, with deletedAt; hidden from the history unless includeDeleted.
    data = await client.data(
        "query($id: ID!) { message(id: $id) { deletedAt content } }", {"id": nodes[1]["id"]}
    )
    assert data["message"] == {"deletedAt": deleted["deletedAt"], "content": "m2"}
    assert (await page(client, root["id"], first=10)).versions == [1, 3, 4, 5]
    assert (await page(client, root["id"], first=10, **{"del": True})).versions == [1, 2, 3, 4, 5]
    # The fork is a snapshot: untouched.
    assert (await page(client, child["id"], first=10)).versions == [1, 2, 3, 4, 5]
    after = await get_context(client, child["id"])
    assert (after["messageCount"], after["totalTokens"]) == (5, 15)


async def test_delete_message_is_idempotent(client: GraphQLClient) -> None:
    root = await create_context(client, messages=conversation(3))
    mid = (await _all(client, root["id"]))[2]["id"]
    first = (await client.data(DELETE, {"id": mid}))["deleteMessage"]
    second = (await client.data(DELETE, {"id": mid}))["deleteMessage"]
    assert second["deletedAt"] == first["deletedAt"]
    assert second["context"] == first["context"]
    assert (first["context"]["messageCount"], first["context"]["totalTokens"]) == (2, 3)
    # The version is not reused.
    assert first["context"]["latestVersion"] == 3
    assert [m["version"] for m in await append(client, root["id"], [user("next")])] == [4]
    assert (await page(client, root["id"], first=10)).versions == [1, 2, 4]


async def test_delete_message_errors(client: GraphQLClient) -> None:
    missing = str(uuid.uuid4())
    error = await client.error(DELETE, {"id": missing})
    assert error["extensions"]["code"] == "NOT_FOUND"
    assert missing in error["message"]
    for bad in ("nope", "", "123", "0" * 40):
        error = await client.error(DELETE, {"id": bad})
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "UUID" in error["message"]

    root = await create_context(client, messages=conversation(2))
    child = await fork(client, root["id"])
    mid = (await _all(client, root["id"]))[0]["id"]
    await client.data("mutation($id: ID!) { deleteContext(id: $id) { id } }", {"id": root["id"]})
    error = await client.error(DELETE, {"id": mid})
    assert error["extensions"]["code"] == "CONTEXT_DELETED"
    # Nothing changed: the message is still there for the owner once restored, and the fork.
    data = await client.data("query($id: ID!) { message(id: $id) { deletedAt } }", {"id": mid})
    assert data["message"] == {"deletedAt": None}
    assert (await page(client, child["id"], first=10)).versions == [1, 2]
    await client.data("mutation($id: ID!) { restoreContext(id: $id) { id } }", {"id": root["id"]})
    assert (await get_context(client, root["id"]))["messageCount"] == 2
    assert (await client.data(DELETE, {"id": mid}))["deleteMessage"]["context"]["messageCount"] == 1


async def test_delete_message_moves_updated_at(live_client: GraphQLClient) -> None:
    """Real commits: inside one rolled-back transaction now() would never move."""
    root = await create_context(live_client, name=str(uuid.uuid4()), messages=conversation(3))
    child = await fork(live_client, root["id"])
    query = "query($id: ID!) { context(id: $id) { updatedAt } }"
    root_before = (await live_client.data(query, {"id": root["id"]}))["context"]["updatedAt"]
    child_before = (await live_client.data(query, {"id": child["id"]}))["context"]["updatedAt"]
    mid = (await _all(live_client, root["id"]))[0]["id"]
    await live_client.data(DELETE, {"id": mid})
    root_after = (await live_client.data(query, {"id": root["id"]}))["context"]["updatedAt"]
    assert root_after > root_before
    assert (await live_client.data(query, {"id": child["id"]}))["context"][
        "updatedAt"
    ] == child_before
    # A repeated delete changes nothing.
    await live_client.data(DELETE, {"id": mid})
    assert (await live_client.data(query, {"id": root["id"]}))["context"]["updatedAt"] == root_after


async def test_deleted_rows_stay_in_the_table(client: GraphQLClient, conn: AsyncConnection) -> None:
    root = await create_context(client, messages=conversation(2))
    mid = (await _all(client, root["id"]))[0]["id"]
    await client.data(DELETE, {"id": mid})
    row = (
        await conn.execute(
            sa.text("SELECT deleted_at IS NOT NULL, content FROM messages WHERE id = :id"),
            {"id": uuid.UUID(mid)},
        )
    ).one()
    assert tuple(row) == (True, "m1")
