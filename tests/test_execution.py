"""Performance shortcuts change speed, never results: the plain-field path
(api/graphql/execution.py) and orjson responses (api/graphiql/router.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from api.graphql.context import RequestContext
from api.graphql.execution import PlainFieldExecutionContext
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


async def _run(conn: AsyncConnection, execution_context: type[Any], cid: str) -> Any:
    schema = build_schema(execution_context_class=execution_context)
    result = await schema.execute(
        QUERY,
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


async def test_responses_keep_integers_orjson_cannot_encode(client: GraphQLClient) -> None:
    # JSONB keeps any number; orjson stops at 64 bits, the json module takes over
    ctx = await create_context(client, metadata={"big": 10**30, "text": "é\u2028"})
    data = await client.data("query($id: ID!) { context(id: $id) { metadata } }", {"id": ctx["id"]})
    assert data["context"]["metadata"] == {"big": 10**30, "text": "é\u2028"}
