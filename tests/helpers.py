"""GraphQL snippets shared by tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import GraphQLClient, StatementLog

CONTEXT_FIELDS = "id name metadata messageCount totalTokens latestVersion forkVersion deletedAt"


async def create_context(
    client: GraphQLClient,
    name: str | None = "test",
    messages: list[dict[str, Any]] | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    data = await client.data(
        "mutation($name: String, $messages: [MessageInput!], $metadata: JSON) {"
        " createContext(name: $name, messages: $messages, metadata: $metadata)"
        f" {{ {CONTEXT_FIELDS} }} }}",
        {"name": name, "messages": messages, "metadata": metadata},
    )
    result: dict[str, Any] = data["createContext"]
    return result


def user(content: str, **extra: Any) -> dict[str, Any]:
    return {"role": "USER", "content": content, **extra}


def assistant(content: str, **extra: Any) -> dict[str, Any]:
    return {"role": "ASSISTANT", "content": content, **extra}


async def append(
    client: GraphQLClient,
    context_id: str,
    messages: list[dict[str, Any]],
    expected_version: int | None = None,
) -> list[dict[str, Any]]:
    data = await client.data(
        "mutation($id: ID!, $m: [MessageInput!]!, $v: Int) {"
        " appendMessages(contextId: $id, messages: $m, expectedVersion: $v) {"
        " messages { id version role content tokenCount } } }",
        {"id": context_id, "m": messages, "v": expected_version},
    )
    result: list[dict[str, Any]] = data["appendMessages"]["messages"]
    return result


async def fork(
    client: GraphQLClient, context_id: str, at_version: int | None = None, **extra: Any
) -> dict[str, Any]:
    data = await client.data(
        "mutation($id: ID!, $v: Int, $name: String, $metadata: JSON) {"
        " forkContext(id: $id, atVersion: $v, name: $name, metadata: $metadata)"
        f" {{ {CONTEXT_FIELDS} }} }}",
        {"id": context_id, "v": at_version, **extra},
    )
    result: dict[str, Any] = data["forkContext"]
    return result


async def history(client: GraphQLClient, context_id: str, args: str = "first: 500") -> list[str]:
    """The contents of a context's history page, in order."""
    data = await client.data(
        f"query($id: ID!) {{ context(id: $id) {{ messages({args}) {{ nodes {{ content }} }} }} }}",
        {"id": context_id},
    )
    return [n["content"] for n in data["context"]["messages"]["nodes"]]


async def get_context(client: GraphQLClient, context_id: str) -> dict[str, Any]:
    data = await client.data(
        f"query($id: ID!) {{ context(id: $id) {{ {CONTEXT_FIELDS} }} }}", {"id": context_id}
    )
    result: dict[str, Any] = data["context"]
    return result


async def read_ahead_and_apart(
    client: GraphQLClient,
    statements: StatementLog,
    build: Callable[[str], str],
    args: str,
    context_id: str,
    cursor: str,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[dict[str, Any], int, dict[str, Any], int]:
    """(answer, statements) of `build(args)` as Query.context reads it ahead
    (api/graphql/lookahead.py), then of the same operation with the look-ahead turned
    off, so the page field reads its page itself. `client` must run graphql-core (the
    `reference` app): a plan answers without Query.context. `$c` in `args` is the
    cursor."""
    variables = {"id": context_id, **({"c": cursor} if "$c" in args else {})}
    with monkeypatch.context() as off:
        off.setattr("api.graphql.queries.selected_history_page", lambda info: None)
        off.setattr("api.graphql.queries.selected_sibling_forks", lambda info: None)
        statements.clear()
        separate = await client.data(build(args), variables)
        n_separate = len(statements)
    statements.clear()
    together = await client.data(build(args), variables)
    return together, len(statements), separate, n_separate
