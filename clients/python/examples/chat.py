"""What an LLM application does with ctxgraph, through the generated client.

    python clients/python/examples/chat.py --url http://127.0.0.1:8000/graphql [--json]

1. Start a conversation for a user (a system prompt, metadata naming the user).
2. The user asks; the model answers: one atomic append of the exchange, with
   client-chosen message ids (a retry after a lost response is a no-op) and
   expectedVersion (a concurrent writer makes it fail instead of interleaving).
3. The user asks for another answer: fork just before the answer ("regenerate")
   and append the new answer to the fork. The original branch is unchanged.
4. Page the fork's history the way a chat view does: the newest page first
   (`last`), then older pages with `before`; inherited messages are included.
5. Search the conversation tree by embedding for the message nearest a query.
6. List the user's conversations (metadata containment).

The "model" and the "embedding model" are deterministic stand-ins so the
example runs offline; swap in real calls where marked.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ctxgraph_client import (
    ContextFilter,
    ContextOrder,
    ContextOrderField,
    CtxgraphClient,
    GraphQLClientGraphQLMultiError,
    MessageInput,
    MessageRole,
    OrderDirection,
    SearchScope,
)

SYSTEM_PROMPT = "You are a concise assistant."


def embed(text: str) -> list[float]:
    """Stand-in for an embedding model: a unit vector of 1536 floats seeded by the text."""
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    vector = [rng.gauss(0.0, 1.0) for _ in range(1536)]
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector]


def complete(history: list[tuple[str, str]], temperature: float) -> str:
    """Stand-in for a chat model: replace with your LLM call."""
    question = history[-1][1]
    style = "briefly" if temperature < 0.5 else "with an example"
    return f"Answering {style}: {question.rstrip('?')} is covered in the docs."


@dataclass
class Report:
    """What the example did, and how long each step took (ms)."""

    user: str = ""
    context_id: str = ""
    fork_id: str = ""
    original_answer: str = ""
    retried_answer: str = ""
    fork_history: list[tuple[int, str, str]] = field(default_factory=list)
    history_pages: int = 0
    nearest: tuple[str, int, float] | None = None
    search: str = "ok"
    conversations: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)


async def timed(report: Report, step: str, call: Callable[[], Awaitable[Any]]) -> Any:
    started = time.perf_counter()
    try:
        return await call()
    finally:
        report.timings_ms[step] = round((time.perf_counter() - started) * 1000, 1)


async def chat_session(client: CtxgraphClient, user: str, page_size: int = 2) -> Report:
    report = Report(user=user)

    # 1. A new conversation.
    created = await timed(
        report,
        "createContext",
        lambda: client.create_context(
            name="Trip planning",
            metadata={"user": user, "app": "example"},
            messages=[MessageInput(role=MessageRole.SYSTEM, content=SYSTEM_PROMPT)],
        ),
    )
    context = created.create_context
    report.context_id = context.id

    # 2. One user/assistant exchange, appended atomically.
    question = "What is the best season to visit Lisbon?"
    answer = complete([("system", SYSTEM_PROMPT), ("user", question)], temperature=0.2)
    exchange = [
        MessageInput(
            id=str(uuid.uuid4()),
            role=MessageRole.USER,
            content=question,
            token_count=9,
            embedding=embed(question),
        ),
        MessageInput(
            id=str(uuid.uuid4()),
            role=MessageRole.ASSISTANT,
            content=answer,
            token_count=12,
            model="stand-in-model",
            embedding=embed(answer),
        ),
    ]
    appended = await timed(
        report,
        "appendMessages",
        lambda: client.append_messages(
            context.id, exchange, expected_version=context.latest_version
        ),
    )
    # A retry with the same ids (say the response was lost) appends nothing.
    replayed = await timed(
        report,
        "appendMessages (retry)",
        lambda: client.append_messages(
            context.id, exchange, expected_version=context.latest_version
        ),
    )
    assert [m.version for m in replayed.append_messages.messages] == [
        m.version for m in appended.append_messages.messages
    ]
    user_version, answer_version = (m.version for m in appended.append_messages.messages)
    report.original_answer = answer

    # 3. "Regenerate": fork before the answer, answer again on the fork.
    forked = await timed(
        report,
        "forkContext",
        lambda: client.fork_context(context.id, at_version=user_version, name="retry"),
    )
    fork = forked.fork_context
    report.fork_id = fork.id
    retry = complete([("system", SYSTEM_PROMPT), ("user", question)], temperature=0.9)
    await timed(
        report,
        "appendMessages (fork)",
        lambda: client.append_messages(
            fork.id,
            [MessageInput(role=MessageRole.ASSISTANT, content=retry, model="stand-in-model")],
            expected_version=fork.latest_version,
        ),
    )
    report.retried_answer = retry

    # 4. The fork's history, newest page first, then older pages.
    before: str | None = None
    history: list[tuple[int, str, str]] = []
    started = time.perf_counter()
    while True:
        page = await client.chat_history(fork.id, last=page_size, before=before)
        assert page.context is not None
        messages = page.context.messages
        history[:0] = [(m.version, m.role.value, m.content) for m in messages.nodes]
        report.history_pages += 1
        if not messages.page_info.has_previous_page:
            break
        before = messages.page_info.start_cursor
    report.timings_ms["chatHistory (all pages)"] = round((time.perf_counter() - started) * 1000, 1)
    report.fork_history = history

    # 5. Semantic search over the conversation tree.
    try:
        found = await timed(
            report,
            "similarMessages",
            lambda: client.similar_messages(
                embedding=embed(question), first=3, scope=SearchScope.TREE, context_id=context.id
            ),
        )
        if found.similar_messages:
            top = found.similar_messages[0]
            report.nearest = (top.message.content, top.message.version, top.distance)
    except GraphQLClientGraphQLMultiError as exc:
        # A server without search (an older version) answers NOT_IMPLEMENTED.
        if not any((e.extensions or {}).get("code") == "NOT_IMPLEMENTED" for e in exc.errors):
            raise
        report.search = "NOT_IMPLEMENTED"

    # 6. The user's conversations, newest first.
    listed = await timed(
        report,
        "contexts",
        lambda: client.contexts(
            first=20,
            filter_=ContextFilter(metadata_contains={"user": user}),
            order_by=ContextOrder(
                field=ContextOrderField.UPDATED_AT, direction=OrderDirection.DESC
            ),
        ),
    )
    report.conversations = listed.contexts.total_count
    assert answer_version == user_version + 1
    return report


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default="http://127.0.0.1:8000/graphql")
    parser.add_argument("--user", default=f"user-{uuid.uuid4().hex[:8]}")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    async with CtxgraphClient(url=args.url) as client:
        report = await chat_session(client, args.user)
    if args.json:
        print(json.dumps(asdict(report)))
        return
    print(f"conversation {report.context_id}, retried on fork {report.fork_id}")
    for version, role, content in report.fork_history:
        print(f"  v{version} {role:<9} {content}")
    print(f"nearest to the question: {report.nearest} (search: {report.search})")
    print(f"{report.user} has {report.conversations} conversation(s)")
    for step, ms in report.timings_ms.items():
        print(f"  {step:<24} {ms:8.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
