"""The generated Python client (clients/python, ariadne-codegen) end to end.

Its example program runs against a real `ctxgraph serve`, as a user would run
it; the client's operations, errors and the messageAppended subscription
(graphql-transport-ws over a real WebSocket) are driven from the tests, with
real commits.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import cast

import httpx
import pytest
import pytest_asyncio
from ctxgraph_client import (
    ContextFilter,
    CtxgraphClient,
    GraphQLClientGraphQLMultiError,
    MessageFieldsPartsReasoningPart,
    MessageFieldsPartsTextPart,
    MessageFieldsPartsToolCallPart,
    MessageFieldsPartsToolResultPart,
    MessageFormat,
    MessageInput,
    MessagePartInput,
    MessageRole,
    MessageStatus,
    ReasoningPartInput,
    TokenUsageInput,
    ToolCallPartInput,
    ToolResultPartInput,
)
from ctxgraph_client.async_base_client import HttpClient
from ctxgraph_client.message_appended import MessageAppended
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from api.db import EngineConnector
from tests.conftest import test_settings
from tests.dbutil import REPO, running_server

EXAMPLE = REPO / "clients" / "python" / "examples" / "chat.py"


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[str]:
    with running_server({"DATABASE_URL": database_url}) as base:
        yield f"{base}/graphql"


@pytest_asyncio.fixture
async def client(engine: AsyncEngine) -> AsyncIterator[CtxgraphClient]:
    """The generated client on the ASGI app, over the pooled engine (real commits)."""
    app = create_app(test_settings(), connector=EngineConnector(engine))
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    # cast: the generated HttpClient protocol declares post()'s `data` positional,
    # httpx.AsyncClient.post takes it by keyword only (which is how the client calls it).
    async with CtxgraphClient(url="http://test/graphql", http_client=cast("HttpClient", http)) as c:
        yield c


def user(content: str, **fields: object) -> MessageInput:
    return MessageInput.model_validate({"role": MessageRole.USER, "content": content, **fields})


@pytest.mark.slow
def test_example_program(server: str) -> None:
    tag = f"user-{uuid.uuid4().hex}"
    # The client package is used from its source tree (see pytest's pythonpath).
    env = {**os.environ, "PYTHONPATH": str(REPO / "clients" / "python" / "src")}
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--url", server, "--user", tag, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    question = "What is the best season to visit Lisbon?"
    # The fork holds the inherited system prompt and question, then the new answer.
    assert report["fork_history"] == [
        [1, "SYSTEM", "You are a concise assistant."],
        [2, "USER", question],
        [3, "ASSISTANT", report["retried_answer"]],
    ]
    assert report["retried_answer"] != report["original_answer"]
    assert report["history_pages"] == 2  # pages of 2: [2, 3] then [1]
    content, version, distance = report["nearest"]
    assert (content, version) == (question, 2)
    assert distance == pytest.approx(0.0, abs=1e-6)
    assert report["search"] == "ok"
    assert report["conversations"] == 2
    # The original conversation kept its first answer, and the replayed append
    # (same message ids) did not add anything.
    body = httpx.post(
        server,
        json={
            "query": "query($id: ID!) { context(id: $id) { latestVersion "
            "messages(last: 1) { nodes { content } } } }",
            "variables": {"id": report["context_id"]},
        },
        timeout=10,
    ).json()
    original = body["data"]["context"]
    assert original["latestVersion"] == 3
    assert original["messages"]["nodes"] == [{"content": report["original_answer"]}]


async def test_history_pages_and_listing(client: CtxgraphClient) -> None:
    tag = uuid.uuid4().hex
    created = await client.create_context(name="paging", metadata={"tag": tag})
    context = created.create_context
    assert (context.latest_version, context.metadata) == (0, {"tag": tag})
    appended = await client.append_messages(
        context.id, [user(f"m{i}", token_count=1) for i in range(1, 121)], expected_version=0
    )
    assert appended.append_messages.context.latest_version == 120
    assert appended.append_messages.context.total_tokens == 120

    pages: list[list[int]] = []
    before: str | None = None
    while True:
        page = await client.chat_history(context.id, before=before)  # last: 50 by default
        assert page.context is not None
        pages.append([m.version for m in page.context.messages.nodes])
        assert page.context.messages.total_count == 120
        if not page.context.messages.page_info.has_previous_page:
            break
        before = page.context.messages.page_info.start_cursor
    assert pages == [list(range(71, 121)), list(range(21, 71)), list(range(1, 21))]

    fork = (await client.fork_context(context.id, at_version=60, name="branch")).fork_context
    assert fork.parent is not None
    assert fork.parent.id == context.id
    assert (fork.fork_version, fork.latest_version, fork.message_count) == (60, 60, 60)
    assert fork.metadata == {"tag": tag}  # inherited

    listed = await client.contexts(filter_=ContextFilter(metadata_contains={"tag": tag}))
    assert listed.contexts.total_count == 2
    assert {c.id for c in listed.contexts.nodes} == {context.id, fork.id}


async def test_a_tool_call_exchange_is_stored_and_read_as_parts(client: CtxgraphClient) -> None:
    """An agent's turn through the generated client: typed part inputs in, the
    MessagePart union out (a pydantic model per member, told apart by __typename), and
    the same exchange appended in a provider's format."""
    context = (await client.create_context(messages=[user("Weather in Paris?")])).create_context
    call_id = f"call-{uuid.uuid4().hex[:8]}"
    turn = [
        MessageInput(
            role=MessageRole.ASSISTANT,
            usage=TokenUsageInput(input_tokens=40, output_tokens=8),
            parts=[
                MessagePartInput(reasoning=ReasoningPartInput(text="Use the tool.")),
                MessagePartInput(
                    tool_call=ToolCallPartInput(
                        call_id=call_id, name="get_weather", arguments={"city": "Paris"}
                    )
                ),
            ],
        ),
        MessageInput(
            role=MessageRole.TOOL,
            parts=[
                MessagePartInput(
                    tool_result=ToolResultPartInput(call_id=call_id, output={"tempC": 18})
                )
            ],
        ),
        MessageInput(role=MessageRole.ASSISTANT, parts=[MessagePartInput(text="18°C.")]),
    ]
    await client.append_messages(context.id, turn, expected_version=1)
    page = await client.chat_history(context.id)
    assert page.context is not None
    _, called, answered, replied = page.context.messages.nodes
    reasoning, call = called.parts
    assert isinstance(reasoning, MessageFieldsPartsReasoningPart)
    assert isinstance(call, MessageFieldsPartsToolCallPart)
    assert (call.call_id, call.name, call.arguments) == (call_id, "get_weather", {"city": "Paris"})
    assert called.usage is not None
    assert (called.usage.input_tokens, called.status) == (40, MessageStatus.COMPLETED)
    (result,) = answered.parts
    assert isinstance(result, MessageFieldsPartsToolResultPart)
    assert (result.call_id, result.output, result.is_error) == (call_id, {"tempC": 18}, False)
    assert isinstance(replied.parts[0], MessageFieldsPartsTextPart)
    assert replied.content == "18°C."

    chat = [
        {"role": "user", "content": "And Rome?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call-rome",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call-rome", "content": "21C"},
    ]
    key = str(uuid.uuid4())
    formatted = await client.append_formatted(
        context.id, MessageFormat.OPENAI_CHAT, chat, idempotency_key=key
    )
    again = await client.append_formatted(
        context.id, MessageFormat.OPENAI_CHAT, chat, idempotency_key=key
    )
    versions = [m.version for m in formatted.append_formatted.messages]
    assert versions == [5, 6, 7] == [m.version for m in again.append_formatted.messages]
    rome = formatted.append_formatted.messages[1].parts[0]
    assert isinstance(rome, MessageFieldsPartsToolCallPart)
    assert rome.arguments == {"city": "Rome"}


async def test_errors_carry_their_code(client: CtxgraphClient) -> None:
    context = (await client.create_context(messages=[user("hello")])).create_context
    with pytest.raises(GraphQLClientGraphQLMultiError) as conflict:
        await client.append_messages(context.id, [user("late")], expected_version=0)
    (error,) = conflict.value.errors
    assert (error.extensions or {})["code"] == "VERSION_CONFLICT"
    with pytest.raises(GraphQLClientGraphQLMultiError) as missing:
        await client.fork_context(str(uuid.uuid4()))
    assert (missing.value.errors[0].extensions or {})["code"] == "NOT_FOUND"
    # Nothing was written by the failed append.
    page = await client.chat_history(context.id)
    assert page.context is not None
    assert [m.content for m in page.context.messages.nodes] == ["hello"]


@pytest.mark.slow
async def test_message_appended_subscription(server: str) -> None:
    ws_url = server.replace("http://", "ws://", 1)
    async with CtxgraphClient(url=server, ws_url=ws_url) as client:
        context = (await client.create_context(messages=[user("first")])).create_context
        received: list[MessageAppended] = []

        async def listen() -> None:
            # afterVersion=1 replays anything appended before the subscription is
            # live, so the appends below cannot be missed whenever they land.
            async for event in client.message_appended(context.id, after_version=1):
                received.append(event)
                if len(received) == 3:
                    return

        listener = asyncio.create_task(listen())
        await client.append_messages(context.id, [user("second"), user("third")])
        await client.append_messages(context.id, [user("fourth")])
        async with asyncio.timeout(30):
            await listener
    assert [(m.message_appended.version, m.message_appended.content) for m in received] == [
        (2, "second"),
        (3, "third"),
        (4, "fourth"),
    ]
