"""Messages as typed parts (design.md "Parts (v2)"): what is stored and read back, where
parts may go, the tool-call rules across a history and its forks, limits, replays, and
bad input (each a BAD_USER_INPUT that says where, with nothing written)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import GraphQLClient
from tests.helpers import create_context, fork, get_context, user
from tests.test_plans import planned

PARTS = (
    "parts { __typename"
    " ... on TextPart { text }"
    " ... on ImagePart { url mediaType detail }"
    " ... on FilePart { url mediaType filename }"
    " ... on ToolCallPart { callId name arguments }"
    " ... on ToolResultPart { callId output isError }"
    " ... on ReasoningPart { text encrypted provider }"
    " ... on DataPart { name data } }"
)
MESSAGE = f"id version role content status toolCallId {PARTS}"
APPEND = (
    "mutation($id: ID!, $m: [MessageInput!]!, $v: Int) {"
    " appendMessages(contextId: $id, messages: $m, expectedVersion: $v) {"
    f" messages {{ {MESSAGE} usage {{ inputTokens outputTokens cachedInputTokens"
    " reasoningTokens } } } }"
)
HISTORY = (
    "query($id: ID!) { context(id: $id) { latestVersion messageCount"
    f" messages(first: 500) {{ nodes {{ {MESSAGE} }} }} }} }}"
)


def call(call_id: str, name: str = "get_weather", arguments: Any = None) -> dict[str, Any]:
    args = {"city": "Paris"} if arguments is None else arguments
    return {"toolCall": {"callId": call_id, "name": name, "arguments": args}}


def result(call_id: str, output: Any = "18C", is_error: bool | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"callId": call_id, "output": output}
    if is_error is not None:
        r["isError"] = is_error
    return {"toolResult": r}


def assistant_calls(*call_ids: str, **extra: Any) -> dict[str, Any]:
    return {"role": "ASSISTANT", "parts": [call(c) for c in call_ids], **extra}


def tool_results(*call_ids: str) -> dict[str, Any]:
    return {"role": "TOOL", "parts": [result(c) for c in call_ids]}


async def append(
    client: GraphQLClient, context_id: str, messages: list[dict[str, Any]], v: int | None = None
) -> list[dict[str, Any]]:
    data = await client.data(APPEND, {"id": context_id, "m": messages, "v": v})
    rows: list[dict[str, Any]] = data["appendMessages"]["messages"]
    return rows


async def refused(
    client: GraphQLClient, context_id: str, messages: list[dict[str, Any]], *expected: str
) -> str:
    """The append fails with BAD_USER_INPUT whose message holds `expected`; nothing is
    written."""
    before = await get_context(client, context_id)
    error = await client.error(APPEND, {"id": context_id, "m": messages})
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    for text in expected:
        assert text in error["message"], error["message"]
    after = await get_context(client, context_id)
    assert after["latestVersion"] == before["latestVersion"]
    assert after["messageCount"] == before["messageCount"]
    message: str = error["message"]
    return message


async def history(client: GraphQLClient, context_id: str) -> list[dict[str, Any]]:
    data = await client.data(HISTORY, {"id": context_id})
    nodes: list[dict[str, Any]] = data["context"]["messages"]["nodes"]
    return nodes


# --- what is stored and read -------------------------------------------------------------


async def test_a_tool_call_exchange_is_stored_and_read_back_as_parts(
    client: GraphQLClient,
) -> None:
    ctx = await create_context(client, "agent", [user("Weather in Paris and Rome?")])
    turn: list[dict[str, Any]] = [
        {
            "role": "ASSISTANT",
            "model": "m-1",
            "usage": {"inputTokens": 120, "outputTokens": 40, "reasoningTokens": 12},
            "parts": [
                {
                    "reasoning": {
                        "text": "Two cities: two calls.",
                        "encrypted": "b64",
                        "provider": "openai",
                    }
                },
                {"text": "Checking both."},
                call("c1", arguments={"city": "Paris", "units": ["C"], "n": 1.5}),
                call("c2", arguments='{"city": "Rome"}'),  # JSON text, as OpenAI sends it
            ],
        },
        {"role": "TOOL", "parts": [result("c1", {"temp": 18}), result("c2", "oops", True)]},
        {"role": "ASSISTANT", "parts": [{"text": "Paris 18C."}, {"text": "Rome: no data."}]},
    ]
    written = await append(client, ctx["id"], turn)
    assert [m["version"] for m in written] == [2, 3, 4]
    assert written[0]["usage"] == {
        "inputTokens": 120,
        "outputTokens": 40,
        "cachedInputTokens": None,
        "reasoningTokens": 12,
    }
    assert written[1]["usage"] is None
    nodes = await history(client, ctx["id"])
    assert [n["status"] for n in nodes] == ["COMPLETED"] * 4
    assert nodes[0]["parts"] == [{"__typename": "TextPart", "text": "Weather in Paris and Rome?"}]
    assert nodes[1]["parts"] == [
        {
            "__typename": "ReasoningPart",
            "text": "Two cities: two calls.",
            "encrypted": "b64",
            "provider": "openai",
        },
        {"__typename": "TextPart", "text": "Checking both."},
        {
            "__typename": "ToolCallPart",
            "callId": "c1",
            "name": "get_weather",
            "arguments": {"city": "Paris", "units": ["C"], "n": 1.5},
        },
        {
            "__typename": "ToolCallPart",
            "callId": "c2",
            "name": "get_weather",
            "arguments": {"city": "Rome"},
        },
    ]
    assert nodes[2]["parts"] == [
        {"__typename": "ToolResultPart", "callId": "c1", "output": {"temp": 18}, "isError": False},
        {"__typename": "ToolResultPart", "callId": "c2", "output": "oops", "isError": True},
    ]
    # content stays the text of the text parts, joined by a blank line ('' when none)
    assert [n["content"] for n in nodes] == [
        "Weather in Paris and Rome?",
        "Checking both.",
        "",
        "Paris 18C.\n\nRome: no data.",
    ]


async def test_content_alone_is_one_text_part_and_old_rows_read_alike(
    client: GraphQLClient,
) -> None:
    ctx = await create_context(client, "old", [user("hello"), user("")])
    # a row as every row written before parts existed: parts, status and usage NULL
    nodes = await history(client, ctx["id"])
    assert [n["parts"] for n in nodes] == [
        [{"__typename": "TextPart", "text": "hello"}],
        [{"__typename": "TextPart", "text": ""}],
    ]
    assert [n["status"] for n in nodes] == ["COMPLETED", "COMPLETED"]
    # all kinds of part a USER message may hold
    parts = [
        {"text": "look"},
        {"image": {"url": "https://example.com/a.png", "mediaType": "image/png", "detail": "low"}},
        {"file": {"url": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
        {"data": {"name": "ui-state", "data": {"open": True, "n": [1, 2]}}},
    ]
    [m] = await append(client, ctx["id"], [{"role": "USER", "parts": parts}])
    assert m["parts"] == [
        {"__typename": "TextPart", "text": "look"},
        {
            "__typename": "ImagePart",
            "url": "https://example.com/a.png",
            "mediaType": "image/png",
            "detail": "low",
        },
        {
            "__typename": "FilePart",
            "url": "data:application/pdf;base64,JVBERi0=",
            "mediaType": None,
            "filename": "a.pdf",
        },
        {"__typename": "DataPart", "name": "ui-state", "data": {"open": True, "n": [1, 2]}},
    ]
    assert m["content"] == "look"


async def test_status_incomplete_is_kept_and_in_progress_refused(client: GraphQLClient) -> None:
    ctx = await create_context(client, "s", [user("q")])
    [m] = await append(
        client, ctx["id"], [{"role": "ASSISTANT", "content": "cut sh", "status": "INCOMPLETE"}]
    )
    assert m["status"] == "INCOMPLETE"
    [m] = await append(
        client, ctx["id"], [{"role": "ASSISTANT", "content": "x", "status": "COMPLETED"}]
    )
    assert m["status"] == "COMPLETED"
    await refused(
        client,
        ctx["id"],
        [{"role": "ASSISTANT", "content": "x", "status": "IN_PROGRESS"}],
        "messages[0].status",
        "IN_PROGRESS",
    )


# --- content or parts ----------------------------------------------------------------


async def test_content_or_parts_never_both_nor_neither(client: GraphQLClient) -> None:
    ctx = await create_context(client, "c", [user("q")])
    await refused(
        client,
        ctx["id"],
        [user("ok"), {"role": "USER", "content": "", "parts": [{"text": "a"}]}],
        "`messages[1]` has both content and parts",
    )
    await refused(client, ctx["id"], [{"role": "USER"}], "`messages[0]` needs content or parts")
    await refused(
        client, ctx["id"], [{"role": "USER", "parts": []}], "`messages[0].parts` is empty"
    )


# --- where parts may go ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "part", "kind"),
    [
        ("USER", call("c9"), "toolCall"),
        ("SYSTEM", call("c9"), "toolCall"),
        ("TOOL", call("c9"), "toolCall"),
        ("USER", {"reasoning": {"text": "hm"}}, "reasoning"),
        ("TOOL", {"reasoning": {"text": "hm"}}, "reasoning"),
        ("ASSISTANT", result("c9"), "toolResult"),
        ("USER", result("c9"), "toolResult"),
        ("SYSTEM", {"image": {"url": "https://x/y.png"}}, "image"),
        ("SYSTEM", {"file": {"url": "https://x/y.pdf"}}, "file"),
    ],
)
async def test_parts_go_only_where_design_md_says(
    client: GraphQLClient, role: str, part: dict[str, Any], kind: str
) -> None:
    ctx = await create_context(client, "p", [user("q")])
    message = await refused(
        client,
        ctx["id"],
        [user("fine"), {"role": role, "parts": [{"text": "fine"}, part]}],
        "`messages[1].parts[1]`",
        f"is a {kind} part",
        f"a {role} message cannot hold",
    )
    assert "ASSISTANT" in message


async def test_the_legacy_tool_message_is_accepted_as_it_is(client: GraphQLClient) -> None:
    ctx = await create_context(client, "legacy", [user("q")])
    [m] = await append(
        client, ctx["id"], [{"role": "TOOL", "content": "{}", "toolCallId": "never-called"}]
    )
    assert m["toolCallId"] == "never-called"
    assert m["parts"] == [{"__typename": "TextPart", "text": "{}"}]


# --- tool calls across a history ---------------------------------------------------------


async def test_results_answer_open_calls_of_the_history_once(client: GraphQLClient) -> None:
    ctx = await create_context(client, "t", [user("q")])
    cid = ctx["id"]
    await refused(
        client, cid, [tool_results("nope")], "`messages[0].parts[0]`", "'nope'", "no tool call"
    )
    await append(client, cid, [assistant_calls("a", "b")])
    await append(client, cid, [tool_results("a")])  # a later append answers an earlier call
    await refused(client, cid, [tool_results("a")], "'a' already has a result")
    # b is still open; a batch that answers it twice is refused as a whole
    await refused(
        client,
        cid,
        [tool_results("b"), tool_results("b")],
        "`messages[1].parts[0]`",
        "earlier in this batch",
    )
    await append(client, cid, [tool_results("b")])
    # callIds are unique within a history
    await refused(client, cid, [assistant_calls("a")], "callId 'a' is already used")
    await refused(
        client,
        cid,
        [assistant_calls("x"), assistant_calls("y", "x")],
        "`messages[1].parts[1]`",
        "'x'",
    )
    # a call and its result in one batch; a result before its call in the batch is not one
    await append(client, cid, [assistant_calls("z"), tool_results("z")])
    await refused(
        client,
        cid,
        [tool_results("w"), assistant_calls("w")],
        "`messages[0].parts[0]`",
        "no tool call 'w'",
    )
    assert (await get_context(client, cid))["latestVersion"] == 6


async def test_a_fork_inherits_calls_up_to_its_version_and_answers_them_on_its_own(
    client: GraphQLClient,
) -> None:
    root = await create_context(client, "root", [user("q")])
    await append(client, root["id"], [assistant_calls("c1", "c2")])  # v2
    branch = await fork(client, root["id"])  # at v2: both calls open
    await append(client, root["id"], [tool_results("c1")])  # the parent answers c1 after
    # the fork's history does not hold the parent's later result: c1 is open there
    await append(client, branch["id"], [tool_results("c1", "c2")])
    await refused(client, branch["id"], [tool_results("c2")], "'c2' already has a result")
    # call ids of the inherited history are taken in the fork too
    await refused(client, branch["id"], [assistant_calls("c2")], "callId 'c2' is already used")
    # ... and the fork's own answers never reach the parent, where c2 is still open
    await append(client, root["id"], [tool_results("c2")])
    # a fork below the calls does not see them at all
    early = await fork(client, root["id"], 1)
    await refused(client, early["id"], [tool_results("c1")], "no tool call 'c1'")
    await append(client, early["id"], [assistant_calls("c1")])
    # depth 2: the grandparent's call, answered in the middle fork, is answered below it
    deeper = await fork(client, branch["id"])
    await refused(client, deeper["id"], [tool_results("c1")], "'c1' already has a result")


async def test_create_context_applies_the_same_rules(client: GraphQLClient) -> None:
    query = "mutation($m: [MessageInput!]) { createContext(messages: $m) { id latestVersion } }"
    data = await client.data(query, {"m": [user("q"), assistant_calls("k1"), tool_results("k1")]})
    ctx = data["createContext"]
    assert ctx["latestVersion"] == 3
    await refused(client, ctx["id"], [tool_results("k1")], "'k1' already has a result")
    error = await client.error(query, {"m": [user("q"), tool_results("k2")]})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "`messages[1].parts[0]`" in error["message"]
    assert "no tool call 'k2'" in error["message"]


# --- bad input (issue 22, item 5) -----------------------------------------------------


async def test_unknown_part_kinds_and_two_fields_in_one_part_are_refused(
    client: GraphQLClient,
) -> None:
    ctx = await create_context(client, "b", [user("q")])
    error = await client.error(
        APPEND, {"id": ctx["id"], "m": [{"role": "USER", "parts": [{"audio": {"url": "x"}}]}]}
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "audio" in error["message"]
    assert "MessagePartInput" in error["message"]
    error = await client.error(
        APPEND,
        {
            "id": ctx["id"],
            "m": [{"role": "USER", "parts": [{"text": "a", "data": {"name": "n", "data": 1}}]}],
        },
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "`messages[0].parts[0]` must set exactly one field" in error["message"]
    assert "(got text, data)" in error["message"]
    for part in ({}, {"image": None}):
        error = await client.error(
            APPEND,
            {"id": ctx["id"], "m": [user("a"), {"role": "USER", "parts": [{"text": "b"}, part]}]},
        )
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "`messages[1].parts[1]` must set exactly one field" in error["message"]
    # in the document itself: Strawberry's validation, with the location
    error = await client.error(
        "mutation($id: ID!) { appendMessages(contextId: $id, messages: [{role: USER,"
        ' parts: [{text: "a", data: {name: "n", data: 1}}]}]) { messages { id } } }',
        {"id": ctx["id"]},
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "exactly one key" in error["message"]
    assert error["locations"]
    assert (await get_context(client, ctx["id"]))["latestVersion"] == 1


async def test_tool_arguments_that_are_not_json_are_refused(client: GraphQLClient) -> None:
    ctx = await create_context(client, "j", [user("q")])
    await refused(
        client,
        ctx["id"],
        [
            user("ok"),
            {"role": "ASSISTANT", "parts": [{"text": "t"}, call("c1", arguments="{city: Paris")]},
        ],
        "`messages[1].parts[1].toolCall.arguments`",
        "not JSON",
    )


async def test_a_data_url_over_the_content_limit_is_refused(client: GraphQLClient) -> None:
    ctx = await create_context(client, "big", [user("q")])
    url = "data:image/png;base64," + "A" * 2_000_000
    await refused(
        client,
        ctx["id"],
        [{"role": "USER", "parts": [{"text": "see"}, {"image": {"url": url}}]}],
        "`messages[0].parts`",
        "CTXGRAPH_MAX_CONTENT_LENGTH",
    )
    # just under the limit, serialized, is fine
    fits = "data:image/png;base64," + "A" * 999_900
    await append(client, ctx["id"], [{"role": "USER", "parts": [{"image": {"url": fits}}]}])


@pytest.mark.parametrize(
    ("part", "expected"),
    [
        ({"image": {"url": "not a url"}}, "must be an absolute URL"),
        ({"image": {"url": "data:image/png;base64"}}, "data: URL without data"),
        ({"text": "nul \u0000"}, "NUL"),
        ({"data": {"name": "", "data": 1}}, "must not be empty"),
        ({"data": {"name": "deep", "data": [[[[[[]]]]]] * 1}}, None),
    ],
)
async def test_malformed_parts_are_refused(
    client: GraphQLClient, part: dict[str, Any], expected: str | None
) -> None:
    ctx = await create_context(client, "m", [user("q")])
    if expected is None:  # shallow nesting is fine
        await append(client, ctx["id"], [{"role": "USER", "parts": [part]}])
        return
    await refused(
        client, ctx["id"], [{"role": "USER", "parts": [part]}], "messages[0].parts", expected
    )


async def test_deeply_nested_json_and_bad_usage_are_refused(client: GraphQLClient) -> None:
    ctx = await create_context(client, "d", [user("q")])
    deep: Any = 1
    for _ in range(150):
        deep = [deep]
    await refused(
        client,
        ctx["id"],
        [{"role": "USER", "parts": [{"data": {"name": "x", "data": deep}}]}],
        "levels deep",
    )
    await refused(
        client,
        ctx["id"],
        [{"role": "ASSISTANT", "content": "a", "usage": {"inputTokens": -1}}],
        "`messages[0].usage.input_tokens`",
    )


# --- idempotent replays --------------------------------------------------------------


async def test_a_replay_compares_parts_status_and_usage(client: GraphQLClient) -> None:
    ctx = await create_context(client, "r", [user("q")])
    mid = str(uuid.uuid4())
    batch = [
        {
            "id": mid,
            "role": "ASSISTANT",
            "parts": [{"text": "a"}, call("r1")],
            "usage": {"outputTokens": 3},
            "status": "INCOMPLETE",
        }
    ]
    first = await append(client, ctx["id"], batch)
    assert await append(client, ctx["id"], batch) == first  # the retry: stored rows
    assert (await get_context(client, ctx["id"]))["latestVersion"] == 2
    changes: list[dict[str, Any]] = [
        {"parts": [{"text": "a"}, call("r1", arguments={"city": "Rome"})]},
        {"usage": {"outputTokens": 4}},
        {"usage": None},
        {"status": "COMPLETED"},
    ]
    for change in changes:
        await refused(
            client, ctx["id"], [{**batch[0], **change}], "already exists with different content"
        )
    # content alone and one text part are the same message
    tid = str(uuid.uuid4())
    await append(client, ctx["id"], [{"id": tid, "role": "USER", "content": "same"}])
    again = await append(
        client, ctx["id"], [{"id": tid, "role": "USER", "parts": [{"text": "same"}]}]
    )
    assert again[0]["version"] == 3


async def test_parts_through_the_planned_append_follow_the_same_rules(
    client: GraphQLClient, reference: GraphQLClient, plan_runs: list[bool]
) -> None:
    """The planned append converts and checks its input with the resolver's functions."""
    mutation = (
        "mutation($id: ID!, $m: [MessageInput!]!) { appendMessages(contextId: $id, messages: $m)"
        " @D { messages { version role content status } } }"
    )
    ctx = await create_context(client, "plan", [user("q")])
    answer = await client.execute(
        planned(mutation), {"id": ctx["id"], "m": [assistant_calls("p1"), tool_results("p1")]}
    )
    assert plan_runs == [True]
    assert answer["data"]["appendMessages"]["messages"] == [
        {"version": 2, "role": "ASSISTANT", "content": "", "status": "COMPLETED"},
        {"version": 3, "role": "TOOL", "content": "", "status": "COMPLETED"},
    ]
    bad = {"id": ctx["id"], "m": [tool_results("p1")]}
    planned_error = await client.execute(planned(mutation), bad)
    expected = await reference.execute(planned(mutation), bad)
    assert planned_error == expected
    assert "'p1' already has a result" in expected["errors"][0]["message"]
    assert (await get_context(client, ctx["id"]))["latestVersion"] == 3


async def test_tool_arguments_nested_too_deeply_are_refused(client: GraphQLClient) -> None:
    """JSON text nested 100,000 deep exhausts the parser's recursion: BAD_USER_INPUT, not
    an internal error, from appendMessages and appendFormatted alike."""
    ctx = await create_context(client, "deep", [user("q")])
    deep = "[" * 100_000
    await refused(
        client,
        ctx["id"],
        [{"role": "ASSISTANT", "parts": [call("d1", arguments=deep)]}],
        "`messages[0].parts[0].toolCall.arguments`",
        "too deeply",
    )
    chat = [
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "d2", "type": "function", "function": {"name": "f", "arguments": deep}}
            ],
        }
    ]
    error = await client.error(
        "mutation($id: ID!, $m: JSON!) { appendFormatted(contextId: $id, format: OPENAI_CHAT,"
        " messages: $m) { messages { id } } }",
        {"id": ctx["id"], "m": chat},
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert (
        "`messages[0].tool_calls[0].function.arguments` nests JSON too deeply" in error["message"]
    )
