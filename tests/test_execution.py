"""Performance shortcuts change speed, never results: the plain-field path
(api/graphql/execution.py) and orjson responses (api/graphql/http.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from graphql import GraphQLEnumType, GraphQLScalarType, coerce_input_value
from sqlalchemy.ext.asyncio import AsyncConnection
from strawberry import UNSET
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.arguments import convert_argument
from strawberry.types.base import StrawberryList, get_object_definition

from api.graphql.context import RequestContext
from api.graphql.enums import ContextOrderField, MessageRole, OrderDirection
from api.graphql.execution import PlainFieldExecutionContext, serializer
from api.graphql.inputs import ContextFilter, ContextOrder, MessageInput
from api.graphql.parts import (
    DataPartInput,
    FilePartInput,
    ImagePartInput,
    MessagePartInput,
    ReasoningPartInput,
    TokenUsageInput,
    ToolCallPartInput,
    ToolResultPartInput,
)
from api.graphql.schema import build_schema
from api.store.inputs import Limits
from tests.conftest import GraphQLClient, RollbackConnector
from tests.helpers import assistant, create_context, fork, user

# every kind of leaf: ID, String (set and null), Int (set and null), DateTime (set and
# null), JSON, Boolean, an enum; plus fields with resolvers around them
QUERY = """
query($id: ID!) {
  context(id: $id) {
    id name metadata createdAt updatedAt deletedAt messageCount totalTokens
    latestVersion forkVersion depth
    parent { id name forkVersion }
    messages(last: 10) {
      totalCount
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      edges { cursor node { id version } }
      nodes {
        __typename id version role content tokenCount model toolName toolCallId createdAt deletedAt
        hasEmbedding context { id }
      }
    }
  }
  missing: context(id: "00000000-0000-0000-0000-000000000000") { id name }
}
"""

# lists whose items select plain fields only: completed in one loop (nulls included)
PLAIN_LISTS = """
query($id: ID!) {
  context(id: $id) {
    messages(last: 10) {
      nodes {
        __typename id version role content tokenCount model toolName toolCallId createdAt
        deletedAt hasEmbedding alias: content
      }
    }
  }
  contexts(first: 5) { nodes { __typename id name messageCount updatedAt deletedAt metadata } }
}
"""


async def _run(
    conn: AsyncConnection, execution_context: type[Any], cid: str, query: str = QUERY
) -> Any:
    schema = build_schema(execution_context_class=execution_context)
    result = await schema.execute(
        query,
        variable_values={"id": cid},
        context_value=RequestContext(RollbackConnector(conn), Limits()),
    )
    return result.data, result.errors


async def test_plain_fields_give_the_same_results_as_graphql_core(
    client: GraphQLClient, conn: AsyncConnection
) -> None:
    root = await create_context(
        client,
        name=None,
        metadata={"owner": "u1", "tags": ["a"]},
        messages=[user("hello", tokenCount=2), assistant("hi", model="m1")],
    )
    child = await fork(client, root["id"], 1, name="branch")

    class Fast(PlainFieldExecutionContext):
        _plain = {}

    for cid in (root["id"], child["id"]):
        fast = await _run(conn, Fast, cid)
        slow = await _run(conn, StrawberryGraphQLCoreExecutionContext, cid)
        assert fast == slow
        assert fast[1] is None
        assert fast[0]["context"]["messages"]["nodes"]

    # the shortcut was taken for column fields and only for them
    assert Fast._plain[("Message", "content")] is not None
    assert Fast._plain[("Message", "role")] is not None
    assert Fast._plain[("Context", "metadata")] is not None
    assert Fast._plain[("Context", "depth")] is None  # a resolver
    assert Fast._plain[("MessageConnection", "totalCount")] is None
    assert ("Context", "parent") not in Fast._plain or Fast._plain[("Context", "parent")] is None


async def test_lists_of_plain_objects_give_the_same_results_as_graphql_core(
    client: GraphQLClient, conn: AsyncConnection
) -> None:
    root = await create_context(
        client,
        name=None,
        metadata={"owner": "u1"},
        messages=[user("hello", tokenCount=2), assistant("hi", model="m1"), user("again")],
    )
    completed: list[int] = []

    class Fast(PlainFieldExecutionContext):
        _plain = {}

        def _complete_plain_objects(self, *args: Any) -> Any:
            result = super()._complete_plain_objects(*args)
            if result is not None:
                completed.append(len(result))
            return result

    fast = await _run(conn, Fast, root["id"], PLAIN_LISTS)
    slow = await _run(conn, StrawberryGraphQLCoreExecutionContext, root["id"], PLAIN_LISTS)
    assert fast == slow
    assert fast[1] is None
    assert [m["model"] for m in fast[0]["context"]["messages"]["nodes"]] == [None, "m1", None]
    # both lists took the one-loop path: the 3 messages and the contexts page
    assert sorted(completed) == sorted([3, len(fast[0]["contexts"]["nodes"])])


def test_leaf_serializers_agree_with_the_types_own() -> None:
    schema = build_schema()._schema
    samples: list[Any] = [
        "text", "", 0, 7, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, True, False, 1.0, 1.5,
        uuid.UUID(int=1), asyncpg_uuid(), datetime.now(UTC), None, [1], {"a": 1},
    ]  # fmt: skip
    for name in ("String", "Int", "Boolean", "ID", "Float", "DateTime", "MessageRole"):
        leaf = schema.type_map[name]
        assert isinstance(leaf, GraphQLScalarType | GraphQLEnumType)
        fast = serializer(leaf)
        for value in [*samples, *(m.value for m in MessageRole)]:
            expected = _outcome(leaf.coerce_output_value, value)
            assert _outcome(fast, value) == expected, (name, value)


def test_input_objects_build_as_strawberry_builds_them(monkeypatch: Any) -> None:
    """The input types' own from_input gives what Strawberry's generic conversion gives:
    every field set, none set, explicit nulls, the default orderBy; lists copied."""
    schema = build_schema()
    mutation: Any = schema._schema.mutation_type
    query: Any = schema._schema.query_type
    messages = mutation.fields["appendMessages"].args["messages"]
    contexts = query.fields["contexts"].args
    embedding = [0.5] * 1536
    sent = [
        {
            "id": str(uuid.uuid4()),
            "role": "TOOL",
            "content": "é",
            "toolCallId": "c1",
            "toolName": "t",
            "tokenCount": 3,
            "model": "m",
            "embedding": embedding,
        },
        {"role": "USER", "content": ""},
        {"role": "ASSISTANT", "content": "x", "id": None, "embedding": None},
        {
            "role": "ASSISTANT",
            "parts": [
                {"text": "t"},
                {"toolCall": {"callId": "c", "name": "n", "arguments": {"a": [1]}}},
                {"reasoning": {"text": None, "encrypted": "e"}},
                {"image": {"url": "https://x/y.png"}},
            ],
            "status": "INCOMPLETE",
            "usage": {"inputTokens": 1, "reasoningTokens": None},
        },
        {"role": "TOOL", "parts": [{"toolResult": {"callId": "c", "output": "o"}}], "usage": None},
    ]
    full_filter = {
        "nameContains": "a",
        "rootsOnly": True,
        "parentId": str(uuid.uuid4()),
        "metadataContains": {"k": [1, {"x": None}]},
        "includeDeleted": True,
    }
    # (coerced value, as graphql-core hands it to Strawberry; the Strawberry type)
    cases: list[tuple[Any, Any]] = [
        (coerce_input_value(sent, messages.type), StrawberryList(MessageInput)),
        (coerce_input_value(full_filter, contexts["filter"].type), ContextFilter),
        (coerce_input_value({}, contexts["filter"].type), ContextFilter),
        (coerce_input_value({"field": "NAME", "direction": "ASC"}, contexts["orderBy"].type),
         ContextOrder),
        (contexts["orderBy"].default_value, ContextOrder),
    ]  # fmt: skip
    registry = schema.schema_converter.scalar_registry

    def convert() -> list[Any]:
        return [convert_argument(v, t, registry, schema.config) for v, t in cases]

    ours = convert()
    for cls in (MessageInput, ContextFilter, ContextOrder, *PART_INPUTS):
        monkeypatch.setattr(get_object_definition(cls, strict=True), "from_input", None)
    assert ours == convert()
    assert [type(m) for m in ours[0]] == [MessageInput] * 5
    assert [type(p) for p in ours[0][3].parts] == [MessagePartInput] * 4
    assert type(ours[0][3].parts[1].tool_call) is ToolCallPartInput
    assert ours[0][3].parts[0].image is UNSET
    assert type(ours[0][3].usage) is TokenUsageInput
    assert ours[0][0].embedding == embedding
    assert ours[0][0].embedding is not cases[0][0][0]["embedding"]
    assert ours[4] == ContextOrder(
        field=ContextOrderField.UPDATED_AT, direction=OrderDirection.DESC
    )


PART_INPUTS = (
    MessagePartInput,
    TokenUsageInput,
    ImagePartInput,
    FilePartInput,
    ToolCallPartInput,
    ToolResultPartInput,
    ReasoningPartInput,
    DataPartInput,
)


def _outcome(serialize: Any, value: Any) -> Any:
    try:
        result = serialize(value)
    except Exception as exc:  # the same failure either way
        return type(exc)
    return (type(result), result)


def asyncpg_uuid() -> uuid.UUID:
    """The UUID subclass asyncpg returns for uuid columns."""
    from asyncpg.pgproto.pgproto import UUID

    value: uuid.UUID = UUID(str(uuid.uuid4()))
    return value


async def test_responses_keep_integers_orjson_cannot_encode(client: GraphQLClient) -> None:
    # JSONB keeps any number; orjson stops at 64 bits, the json module takes over
    ctx = await create_context(client, metadata={"big": 10**30, "text": "é\u2028"})
    data = await client.data("query($id: ID!) { context(id: $id) { metadata } }", {"id": ctx["id"]})
    assert data["context"]["metadata"] == {"big": 10**30, "text": "é\u2028"}


async def test_float_list_variables_skip_per_item_coercion(
    conn: AsyncConnection, monkeypatch: Any
) -> None:
    """An embedding variable is coerced by finite_floats, not item by item."""
    import graphql.execution.values as values
    from graphql.utilities.coerce_input_value import coerce_input_value as own

    coerced: list[Any] = []

    def spy(value: Any, type_: Any, *args: Any, **kwargs: Any) -> Any:
        coerced.append(value)
        return own(value, type_, *args, **kwargs)

    monkeypatch.setattr(values, "coerce_input_value", spy)
    schema = build_schema()
    query = (
        "query($e: [Float!], $n: Int) { similarMessages(embedding: $e, first: $n) { distance } }"
    )
    for vector, per_item in (([0.25] * 1536, False), ([0.25] * 1535 + [True], True)):
        coerced.clear()
        result = await schema.execute(
            query,
            variable_values={"e": vector, "n": 3},
            context_value=RequestContext(RollbackConnector(conn), Limits()),
        )
        assert (result.errors is not None) == per_item  # True is not a Float
        assert (vector in coerced) == per_item
        assert 3 in coerced  # other variables: graphql-core as always


async def test_a_request_leaves_no_reference_cycles(
    client: GraphQLClient, conn: AsyncConnection
) -> None:
    """Nothing of a request waits for the cyclic garbage collector (weak_helpers):
    its context, loaders and rows are freed as soon as the result is out."""
    import gc

    from api.graphql.loaders import Loaders

    root = await create_context(client, messages=[user("hello"), assistant("hi")])
    await _run(conn, PlainFieldExecutionContext, root["id"])  # warm caches first
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        data, errors = await _run(conn, PlainFieldExecutionContext, root["id"])
        gc.collect()
        kinds = {type(o).__name__ for o in gc.garbage}
        held = [o for o in gc.garbage if isinstance(o, RequestContext | Loaders)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert errors is None
    assert data["context"]["messages"]["nodes"]
    assert held == [], kinds
    assert not kinds & {"Row", "DataLoader", "CtxgraphExecutionContext"}, kinds
