"""appendFormatted and the provider format converters (api/formats, docs/formats.md).

Inputs are built with the providers' own published types (the `openai` and `anthropic`
packages' pydantic models and TypedDicts; no network), appended through the API, read
back through the converters, validated against those types again and compared with
what was sent, up to the normalizations docs/formats.md lists. The AI SDK's UIMessage
is validated by the `ai` package itself in the TypeScript client's tests
(clients/typescript/test/ui-messages.test.ts), on the fixture this file keeps current.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from anthropic.types import Message as AnthropicMessage
from anthropic.types import MessageParam, TextBlockParam
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from openai.types.responses import Response, ResponseInputItemParam
from sqlalchemy.ext.asyncio import AsyncConnection

from api import formats
from api.store.history import HistoryFilter, HistoryPageRequest, history_pages
from tests.conftest import GraphQLClient
from tests.helpers import create_context, get_context
from tests.provider_types import assert_conforms
from tests.test_parts import MESSAGE

REPO = Path(__file__).resolve().parent.parent
UI_FIXTURE = REPO / "clients/typescript/test/fixtures/ui-messages.json"

APPEND_FORMATTED = (
    "mutation($id: ID!, $f: MessageFormat!, $m: JSON!, $v: Int, $k: ID) {"
    " appendFormatted(contextId: $id, format: $f, messages: $m, expectedVersion: $v,"
    f" idempotencyKey: $k) {{ messages {{ {MESSAGE} model"
    " usage { inputTokens outputTokens cachedInputTokens } } context { latestVersion } } }"
)


async def append_formatted(
    client: GraphQLClient, context_id: str, fmt: str, messages: Any, **extra: Any
) -> list[dict[str, Any]]:
    data = await client.data(APPEND_FORMATTED, {"id": context_id, "f": fmt, "m": messages, **extra})
    rows: list[dict[str, Any]] = data["appendFormatted"]["messages"]
    return rows


async def stored(conn: AsyncConnection, context_id: str) -> list[Any]:
    """The history's records, as ContextWindow.formatted will hand them to the converters."""
    cid = uuid.UUID(context_id)
    req = HistoryPageRequest(filter=HistoryFilter(), size=500, backward=False)
    return (await history_pages(conn, [cid], req))[cid].rows


async def read_back(conn: AsyncConnection, context_id: str, fmt: str) -> Any:
    return formats.from_messages(fmt.lower(), await stored(conn, context_id))


# --- OPENAI_CHAT ---------------------------------------------------------------------------


def chat_completion() -> ChatCompletion:
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "gpt-4o",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "logprobs": None,
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "refusal": None,
                        "tool_calls": [
                            {
                                "id": "call_a",
                                "type": "function",
                                "function": {
                                    "name": "get_weather",
                                    "arguments": '{"city":"Paris"}',
                                },
                            },
                            {
                                "id": "call_b",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                            },
                        ],
                    },
                }
            ],
        }
    )


async def test_openai_chat_parallel_tool_calls_round_trip(
    client: GraphQLClient, conn: AsyncConnection
) -> None:
    ctx = await create_context(client, "chat")
    completion = chat_completion()
    sent: list[Any] = [
        {"role": "system", "content": "You are terse."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather in these two?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.com/map.png", "detail": "low"},
                },
            ],
        },
        completion.choices[0].message.model_dump(),  # as a client holds the answer
        {"role": "tool", "tool_call_id": "call_a", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_b", "content": "21C"},
        {"role": "assistant", "content": "Paris 18C, Rome 21C."},
    ]
    rows = await append_formatted(client, ctx["id"], "OPENAI_CHAT", sent)
    assert [r["role"] for r in rows] == ["SYSTEM", "USER", "ASSISTANT", "TOOL", "TOOL", "ASSISTANT"]
    assert [p["callId"] for p in rows[2]["parts"]] == ["call_a", "call_b"]
    assert rows[2]["parts"][0]["arguments"] == {"city": "Paris"}
    assert rows[3]["parts"] == [
        {"__typename": "ToolResultPart", "callId": "call_a", "output": "18C", "isError": False}
    ]
    back = await read_back(conn, ctx["id"], "OPENAI_CHAT")
    assert_conforms(list[ChatCompletionMessageParam], back)
    expected = [
        sent[0],
        sent[1],
        # normalized: a null content and null fields are left out
        {
            "role": "assistant",
            "tool_calls": [
                tc.model_dump(exclude_none=True)
                for tc in completion.choices[0].message.tool_calls or []
            ],
        },
        sent[3],
        sent[4],
        sent[5],
    ]
    assert back == expected


async def test_openai_chat_normalizations(client: GraphQLClient, conn: AsyncConnection) -> None:
    ctx = await create_context(client, "chat-n")
    sent = [
        {"role": "developer", "content": [{"type": "text", "text": "Rules."}]},
        {"role": "user", "content": [{"type": "text", "text": "hi"}], "name": "ann"},
        {
            "role": "assistant",
            "content": [{"type": "refusal", "refusal": "I can't."}],
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "f", "arguments": '{ "a" : 1 }'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "ok"}]},
    ]
    await append_formatted(client, ctx["id"], "OPENAI_CHAT", sent)
    back = await read_back(conn, ctx["id"], "OPENAI_CHAT")
    assert_conforms(list[ChatCompletionMessageParam], back)
    assert back == [
        {"role": "system", "content": "Rules."},  # developer -> system; one text -> a string
        {"role": "user", "content": "hi"},  # name dropped
        {
            "role": "assistant",
            "refusal": "I can't.",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]


# --- ANTHROPIC -----------------------------------------------------------------------------


def anthropic_answer() -> AnthropicMessage:
    return AnthropicMessage.model_validate(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet",
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "content": [
                {"type": "thinking", "thinking": "Two lookups.", "signature": "c2lnMQ=="},
                {"type": "redacted_thinking", "data": "cmVkYWN0ZWQ="},
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                },
            ],
            "usage": {"input_tokens": 120, "output_tokens": 45, "cache_read_input_tokens": 100},
        }
    )


async def test_anthropic_thinking_and_tool_use_round_trip(
    client: GraphQLClient, conn: AsyncConnection
) -> None:
    ctx = await create_context(client, "claude")
    answer = anthropic_answer()
    pdf = "JVBERi0xLjQK"
    sent = {
        "system": "You are terse.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather for the trip in this plan?"},
                    {
                        "type": "document",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": pdf},
                        "title": "plan.pdf",
                    },
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/png",
                            "data": "iVBORw0KGgo=",
                        },
                    },
                ],
            },
            answer.model_dump(),  # the whole Message the API returned
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": [{"type": "text", "text": "n/a"}],
                        "is_error": True,
                    },
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
    }
    rows = await append_formatted(client, ctx["id"], "ANTHROPIC", sent)
    assert [r["role"] for r in rows] == ["SYSTEM", "USER", "ASSISTANT", "TOOL", "USER"]
    assistant = rows[2]
    assert assistant["model"] == "claude-sonnet"
    assert assistant["usage"] == {"inputTokens": 120, "outputTokens": 45, "cachedInputTokens": 100}
    assert [p["__typename"] for p in assistant["parts"]] == [
        "ReasoningPart",
        "ReasoningPart",
        "TextPart",
        "ToolCallPart",
        "ToolCallPart",
    ]
    assert assistant["parts"][0] == {
        "__typename": "ReasoningPart",
        "text": "Two lookups.",
        "encrypted": "c2lnMQ==",
        "provider": "anthropic",
    }
    assert rows[1]["parts"][1]["mediaType"] == "application/pdf"
    assert rows[3]["parts"][1]["isError"] is True
    back = await read_back(conn, ctx["id"], "ANTHROPIC")
    assert_conforms(list[MessageParam], back["messages"])
    assert_conforms(str | list[TextBlockParam], back["system"])
    # the request form of what was sent: the Message's own blocks, without its nulls
    said = [b.model_dump(exclude_none=True) for b in answer.content]
    assert back == {
        "system": "You are terse.",
        "messages": [
            sent["messages"][0],
            {"role": "assistant", "content": said},
            sent["messages"][2],
        ],
    }


async def test_anthropic_system_blocks_and_merged_turns(
    client: GraphQLClient, conn: AsyncConnection
) -> None:
    ctx = await create_context(client, "claude-n")
    sent = {
        "system": [{"type": "text", "text": "A."}, {"type": "text", "text": "B."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "one"}]},
            {"role": "user", "content": "two"},
            {"role": "assistant", "content": "ok", "stop_reason": "max_tokens"},
        ],
    }
    rows = await append_formatted(client, ctx["id"], "ANTHROPIC", sent)
    assert rows[-1]["status"] == "INCOMPLETE"
    back = await read_back(conn, ctx["id"], "ANTHROPIC")
    assert_conforms(list[MessageParam], back["messages"])
    # consecutive turns of one role are one (the API merges them too)
    assert back == {
        "system": sent["system"],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
            },
            {"role": "assistant", "content": "ok"},
        ],
    }


# --- OPENAI_RESPONSES ----------------------------------------------------------------------


def responses(*outputs: list[dict[str, Any]]) -> list[Response]:
    return [
        Response.model_validate(
            {
                "id": f"resp_{i}",
                "object": "response",
                "created_at": 1_700_000_000,
                "model": "o4-mini",
                "status": "completed",
                "parallel_tool_calls": True,
                "tool_choice": "auto",
                "tools": [],
                "output": output,
            }
        )
        for i, output in enumerate(outputs)
    ]


async def test_openai_responses_reasoning_and_function_calls_round_trip(
    client: GraphQLClient, conn: AsyncConnection
) -> None:
    ctx = await create_context(client, "responses")
    first, second = responses(
        [
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "Need the weather."}],
                "encrypted_content": "ZW5jMQ==",
            },
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
                "status": "completed",
            },
            {
                "type": "function_call",
                "id": "fc_2",
                "call_id": "call_2",
                "name": "get_weather",
                "arguments": '{"city":"Rome"}',
                "status": "completed",
            },
        ],
        [
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [
                    {"type": "output_text", "text": "Paris 18C, Rome 21C.", "annotations": []}
                ],
            }
        ],
    )
    turn1 = [o.model_dump(exclude_none=True) for o in first.output]
    turn2 = [o.model_dump(exclude_none=True) for o in second.output]
    sent: list[dict[str, Any]] = [
        {"role": "developer", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Weather?"},
                {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "high"},
            ],
        },
        *turn1,
        {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
        {"type": "function_call_output", "call_id": "call_2", "output": "21C"},
        *turn2,
    ]
    rows = await append_formatted(client, ctx["id"], "OPENAI_RESPONSES", sent)
    # one turn is one ASSISTANT message; consecutive outputs are one TOOL message
    assert [r["role"] for r in rows] == ["SYSTEM", "USER", "ASSISTANT", "TOOL", "ASSISTANT"]
    assert [p["__typename"] for p in rows[2]["parts"]] == [
        "ReasoningPart",
        "ToolCallPart",
        "ToolCallPart",
    ]
    assert rows[2]["parts"][0]["provider"] == "openai"
    back = await read_back(conn, ctx["id"], "OPENAI_RESPONSES")
    assert_conforms(list[ResponseInputItemParam], back)
    outputs = [item for item in sent if item.get("type") == "function_call_output"]
    assert back == [
        {"type": "message", "role": "system", "content": "Be brief."},  # developer -> system
        {"type": "message", **sent[1]},  # type: message written out
        *[{k: v for k, v in item.items() if k != "status"} for item in turn1],  # status dropped
        *outputs,
        *turn2,
    ]


# --- AI_SDK_UI -----------------------------------------------------------------------------

UI_MESSAGES: list[dict[str, Any]] = [
    {
        "id": "u1",
        "role": "user",
        "parts": [
            {"type": "text", "text": "Weather in Paris? Here is my plan."},
            {
                "type": "file",
                "mediaType": "application/pdf",
                "filename": "plan.pdf",
                "url": "data:application/pdf;base64,JVBERi0xLjQK",
            },
        ],
    },
    {
        "id": "a1",
        "role": "assistant",
        "parts": [
            {"type": "step-start"},
            {
                "type": "reasoning",
                "text": "Look it up.",
                "providerMetadata": {"anthropic": {"signature": "c2ln"}},
            },
            {"type": "text", "text": "Checking."},
            {
                "type": "tool-getWeather",
                "toolCallId": "t1",
                "state": "output-available",
                "input": {"city": "Paris"},
                "output": {"tempC": 18},
            },
            {
                "type": "tool-getWeather",
                "toolCallId": "t2",
                "state": "output-error",
                "input": {"city": "Atlantis"},
                "errorText": "unknown city",
            },
            {"type": "step-start"},
            {
                "type": "dynamic-tool",
                "toolName": "lookup",
                "toolCallId": "t3",
                "state": "output-available",
                "input": {"q": "umbrella"},
                "output": "yes",
            },
            {"type": "step-start"},
            {"type": "text", "text": "18C in Paris; take an umbrella."},
            {
                "type": "source-url",
                "sourceId": "s1",
                "url": "https://weather.example/paris",
                "title": "Paris",
            },
            {"type": "data-weather", "id": "w1", "data": {"city": "Paris", "tempC": 18}},
        ],
    },
    {"id": "u2", "role": "user", "parts": [{"type": "text", "text": "Thanks"}]},
    {
        "id": "a2",
        "role": "assistant",
        "parts": [
            {"type": "step-start"},
            {
                "type": "tool-getWeather",
                "toolCallId": "t4",
                "state": "input-available",
                "input": {"city": "Rome"},
            },
        ],
    },
]


def without_ids(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in m.items() if k != "id"} for m in messages]


async def test_ai_sdk_ui_messages_with_tool_parts_round_trip(
    client: GraphQLClient, conn: AsyncConnection
) -> None:
    ctx = await create_context(client, "ui")
    rows = await append_formatted(client, ctx["id"], "AI_SDK_UI", UI_MESSAGES)
    # each step an ASSISTANT message, its tools' results a TOOL message after it
    assert [r["role"] for r in rows] == [
        "USER",
        "ASSISTANT",
        "TOOL",
        "ASSISTANT",
        "TOOL",
        "ASSISTANT",
        "USER",
        "ASSISTANT",
    ]
    assert rows[2]["parts"] == [
        {"__typename": "ToolResultPart", "callId": "t1", "output": {"tempC": 18}, "isError": False},
        {"__typename": "ToolResultPart", "callId": "t2", "output": "unknown city", "isError": True},
    ]
    assert rows[1]["parts"][0]["provider"] == "anthropic"
    back = await read_back(conn, ctx["id"], "AI_SDK_UI")
    assert without_ids(back) == without_ids(UI_MESSAGES)
    # ids: each UIMessage takes the id of its first ctxgraph message
    assert [m["id"] for m in back] == [rows[i]["id"] for i in (0, 1, 6, 7)]
    # the fixture the TypeScript client validates with the ai package's validateUIMessages
    fixture = json.dumps(back, indent=2, sort_keys=True) + "\n"
    written = without_ids(json.loads(UI_FIXTURE.read_text())) if UI_FIXTURE.exists() else None
    if written != without_ids(json.loads(fixture)):
        UI_FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        UI_FIXTURE.write_text(fixture)
        pytest.fail(f"{UI_FIXTURE.relative_to(REPO)} was stale and has been rewritten: commit it")


# --- every format read in every other: never invalid ------------------------------------------


async def test_any_history_reads_back_valid_in_every_format(
    client: GraphQLClient, conn: AsyncConnection
) -> None:
    """Parts a format cannot carry are dropped, never written invalid: a history appended
    in each format (and with appendMessages: a foreign reasoning blob, a data part, a
    legacy tool message) validates against each provider's types."""
    ctx = await create_context(client, "mixed")
    await append_formatted(client, ctx["id"], "AI_SDK_UI", UI_MESSAGES[:3])
    await append_formatted(
        client, ctx["id"], "ANTHROPIC", {"messages": [anthropic_answer().model_dump()]}
    )
    await append_formatted(
        client,
        ctx["id"],
        "OPENAI_CHAT",
        [
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "21C"},
        ],
    )
    await append_formatted(
        client,
        ctx["id"],
        "OPENAI_RESPONSES",
        [
            o.model_dump(exclude_none=True)
            for o in responses(
                [
                    {"type": "reasoning", "id": "rs_9", "summary": [], "encrypted_content": "ZQ=="},
                    {
                        "type": "message",
                        "id": "msg_9",
                        "role": "assistant",
                        "status": "completed",
                        "content": [{"type": "output_text", "text": "Done.", "annotations": []}],
                    },
                ]
            )[0].output
        ],
    )
    await client.data(
        "mutation($id: ID!, $m: [MessageInput!]!) {"
        " appendMessages(contextId: $id, messages: $m) { messages { id } } }",
        {
            "id": ctx["id"],
            "m": [
                {
                    "role": "USER",
                    "parts": [
                        {"data": {"name": "ui", "data": {"x": 1}}},
                        {"text": "again"},
                        {"image": {"url": "data:image/svg+xml;base64,PHN2Zz4="}},
                    ],
                },
                {
                    "role": "ASSISTANT",
                    "parts": [
                        {"reasoning": {"text": "", "encrypted": "b", "provider": "other"}},
                        {"toolCall": {"callId": "x1", "name": "f", "arguments": [1, 2]}},
                    ],
                },
                {"role": "TOOL", "content": "legacy", "toolCallId": "x1"},
            ],
        },
    )
    assert_conforms(
        list[ChatCompletionMessageParam], await read_back(conn, ctx["id"], "OPENAI_CHAT")
    )
    assert_conforms(
        list[ResponseInputItemParam], await read_back(conn, ctx["id"], "OPENAI_RESPONSES")
    )
    anthropic = await read_back(conn, ctx["id"], "ANTHROPIC")
    assert_conforms(list[MessageParam], anthropic["messages"])
    assert all(m["content"] for m in anthropic["messages"])
    ui = await read_back(conn, ctx["id"], "AI_SDK_UI")
    assert [m["role"] for m in ui] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
    ]


# --- idempotency, rules and bad input ------------------------------------------------------


async def test_an_idempotency_key_makes_a_retry_return_the_stored_messages(
    client: GraphQLClient,
) -> None:
    ctx = await create_context(client, "retry")
    key = str(uuid.uuid4())
    sent = [{"role": "user", "content": "hi"}, chat_completion().choices[0].message.model_dump()]
    first = await append_formatted(client, ctx["id"], "OPENAI_CHAT", sent, k=key, v=0)
    again = await append_formatted(client, ctx["id"], "OPENAI_CHAT", sent, k=key, v=0)
    assert again == first
    assert [m["id"] for m in first] == [
        str(formats.message_id(uuid.UUID(key), i)) for i in range(2)
    ]
    assert (await get_context(client, ctx["id"]))["latestVersion"] == 2
    changed = [{"role": "user", "content": "hello"}, sent[1]]
    error = await client.error(
        APPEND_FORMATTED, {"id": ctx["id"], "f": "OPENAI_CHAT", "m": changed, "k": key}
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "different content" in error["message"]
    # without a key the same input is appended again (its calls' ids are then taken)
    error = await client.error(APPEND_FORMATTED, {"id": ctx["id"], "f": "OPENAI_CHAT", "m": sent})
    assert "callId 'call_a' is already used" in error["message"]
    assert "`messages[1].parts[0]`" in error["message"]


@pytest.mark.parametrize(
    ("fmt", "messages", "where", "what"),
    [
        ("OPENAI_CHAT", [{"role": "user"}], "`messages[0]`", "needs `content`"),
        (
            "OPENAI_CHAT",
            [{"role": "robot", "content": "x"}],
            "`messages[0].role`",
            "must be one of",
        ),
        (
            "OPENAI_CHAT",
            [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{not json"},
                        }
                    ],
                }
            ],
            "`messages[0].tool_calls[0].function.arguments`",
            "is not JSON",
        ),
        (
            "OPENAI_CHAT",
            [{"role": "tool", "content": "x"}],
            "`messages[0]`",
            "needs `tool_call_id`",
        ),
        ("OPENAI_CHAT", {"role": "user", "content": "x"}, "`messages`", "must be an array"),
        (
            "OPENAI_RESPONSES",
            [{"type": "function_call", "name": "f", "arguments": "{}"}],
            "`messages[0]`",
            "needs `call_id`",
        ),
        (
            "OPENAI_RESPONSES",
            [{"type": "web_search_call", "id": "w"}],
            "`messages[0].type`",
            "does not take",
        ),
        (
            "OPENAI_RESPONSES",
            [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}],
            "`messages[0].content[0].file_id`",
            "uploaded file",
        ),
        (
            "ANTHROPIC",
            {
                "messages": [
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f"}]}
                ]
            },
            "`messages[0].content[0]`",
            "needs `input`",
        ),
        (
            "ANTHROPIC",
            {"messages": [{"role": "user", "content": [{"type": "server_tool_use"}]}]},
            "`messages[0].content[0].type`",
            "does not take",
        ),
        ("ANTHROPIC", {"system": "s"}, "`messages`", "needs `messages`"),
        (
            "AI_SDK_UI",
            [
                {
                    "id": "a",
                    "role": "assistant",
                    "parts": [{"type": "tool-f", "toolCallId": "t", "state": "input-streaming"}],
                }
            ],
            "`messages[0].parts[0].state`",
            "not complete",
        ),
        ("AI_SDK_UI", [{"id": "a", "role": "user"}], "`messages[0]`", "needs `parts`"),
    ],
)
async def test_malformed_provider_input_is_refused_naming_the_item(
    client: GraphQLClient, fmt: str, messages: Any, where: str, what: str
) -> None:
    ctx = await create_context(client, "bad")
    error = await client.error(APPEND_FORMATTED, {"id": ctx["id"], "f": fmt, "m": messages})
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert where in error["message"], error["message"]
    assert what in error["message"], error["message"]
    assert (await get_context(client, ctx["id"]))["latestVersion"] == 0


async def test_appended_formats_follow_the_rules_of_parts(client: GraphQLClient) -> None:
    ctx = await create_context(client, "rules")
    # a result for a call the history does not have, named by the item it came from
    error = await client.error(
        APPEND_FORMATTED,
        {
            "id": ctx["id"],
            "f": "OPENAI_RESPONSES",
            "m": [
                {"role": "user", "content": "x"},
                {"type": "function_call_output", "call_id": "nope", "output": "1"},
            ],
        },
    )
    assert "`messages[1].parts[0]`" in error["message"]
    assert "no tool call 'nope'" in error["message"]
    # a 2 MB image over the content limit
    big = {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 2_000_000}}
        ],
    }
    error = await client.error(APPEND_FORMATTED, {"id": ctx["id"], "f": "OPENAI_CHAT", "m": [big]})
    assert "CTXGRAPH_MAX_CONTENT_LENGTH" in error["message"]
    assert (await get_context(client, ctx["id"]))["latestVersion"] == 0


def test_the_provider_type_check_refuses_what_the_types_refuse() -> None:
    """tests/provider_types.py is what the round trips rely on: it must see a missing
    key, an undeclared key, a wrong literal and a wrong item deep in a list."""
    from tests.provider_types import problems

    ok_chat = {
        "role": "assistant",
        "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    assert problems(ok_chat, ChatCompletionMessageParam) == []
    no_function = {"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]}
    assert problems(no_function, ChatCompletionMessageParam)
    assert problems({"role": "user", "content": "x", "extra": 1}, ChatCompletionMessageParam)
    assert problems({"role": "robot", "content": "x"}, ChatCompletionMessageParam)
    thinking_unsigned = {"role": "assistant", "content": [{"type": "thinking", "thinking": "t"}]}
    assert problems(thinking_unsigned, MessageParam)
    svg = {
        "role": "user",
        "content": [
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/svg+xml", "data": "x"},
            }
        ],
    }
    assert problems(svg, MessageParam)
    no_id = {"type": "reasoning", "summary": []}
    assert problems(no_id, ResponseInputItemParam)
    image_without_detail = {"role": "user", "content": [{"type": "input_image", "image_url": "u"}]}
    assert problems(image_without_detail, ResponseInputItemParam)
