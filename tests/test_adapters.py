"""What the adapter modules rely on in other libraries' internals, checked against the
installed versions: each test fails when an upstream release moves it (pyproject.toml
bounds these libraries; raise a bound only with these tests passing).

- graphql-core's Executor: api/graphql/execution.py overrides its methods.
- Strawberry: api/graphql/strawberry_adapter.py subclasses its graphql-transport-ws
  handler and reads the resolve info behind its Info; the operation entry validates
  with the rules Strawberry adds to graphql-core's.
- SQLAlchemy: api/store/records.py reads a Row's private key-to-index map.
(uvicorn's HTTP protocol: tests/test_http_protocol.py.)
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import strawberry.schema.schema as strawberry_schema
from graphql import GraphQLResolveInfo, parse
from graphql.execution.executor import Executor
from graphql.type.definition import GraphQLResolveInfoHelpers
from sqlalchemy.ext.asyncio import AsyncConnection
from strawberry.asgi import GraphQL
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.types.info import Info

from api.graphql.execution import PlainFieldExecutionContext
from api.graphql.operation import Operations
from api.graphql.schema import build_schema
from api.graphql.strawberry_adapter import TransportWSHandler, resolve_info
from api.persisted_queries import DocumentCache, PersistedQueries
from api.security.auth import ApiKeys, Authenticator
from api.security.limits import QueryLimits
from api.store.records import row_index, statement


def parameters(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("execute_fields", "parent_type source_value path grouped_field_set position_context"),
        ("execute_field", "parent_type source field_details_list path position_context"),
        (
            "complete_iterable_value",
            "item_type field_details_list info path items position_context",
        ),
        ("collect_subfields", "return_type field_details_list"),
        ("get_stream_usage", "field_details_list path"),
    ],
)
def test_graphql_core_executor_methods_the_shortcut_overrides(method: str, expected: str) -> None:
    assert parameters(getattr(Executor, method)) == ["self", *expected.split()]
    # ours overrides graphql-core's through Strawberry's subclass
    assert issubclass(PlainFieldExecutionContext, StrawberryGraphQLCoreExecutionContext)
    assert issubclass(StrawberryGraphQLCoreExecutionContext, Executor)


def test_graphql_core_build_and_helpers() -> None:
    assert parameters(Executor.build)[:7] == [
        "schema",
        "document",
        "root_value",
        "context_value",
        "raw_variable_values",
        "operation_name",
        "field_resolver",
    ]
    assert GraphQLResolveInfoHelpers._fields == ("gather", "track")
    executor = PlainFieldExecutionContext.build(
        build_schema()._schema, parse("{ __typename }"), context_value=None
    )
    assert isinstance(executor, PlainFieldExecutionContext)
    for attribute in ("async_helpers", "middleware_manager", "is_awaitable", "variable_values"):
        assert hasattr(executor, attribute), attribute


def test_strawberry_transport_ws_handler_methods_the_adapter_uses() -> None:
    for name in (
        "handle",
        "handle_message",
        "handle_connection_init",
        "handle_subscribe",
        "run_operation",
        "handle_invalid_message",
        "handle_task_exception",
        "send_message",
        "forget_id",
    ):
        assert callable(getattr(BaseGraphQLTransportWSHandler, name)), name
    assert issubclass(TransportWSHandler, BaseGraphQLTransportWSHandler)
    assert parameters(Operation.__init__) == [
        "self",
        "handler",
        "id",
        "query",
        "variables",
        "operation_name",
    ]
    for name in ("send_next", "send_initial_errors", "send_operation_message"):
        assert callable(getattr(Operation, name)), name
    assert "graphql_transport_ws_handler_class" in vars(GraphQL) or hasattr(
        GraphQL, "graphql_transport_ws_handler_class"
    )


def test_strawberry_info_wraps_a_resolve_info() -> None:
    assert "_raw_info" in Info.__annotations__
    raw = GraphQLResolveInfo(*([None] * len(GraphQLResolveInfo._fields)))  # type: ignore[arg-type]
    assert resolve_info(Info(_raw_info=raw, _field=None)) is raw  # type: ignore[arg-type]


def test_the_entry_validates_with_strawberrys_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """Strawberry's own execute validated with graphql-core's rules plus its own; the
    entry must use every rule Strawberry adds."""
    captured: list[Any] = []

    def spy(schema: Any, document: Any, rules: Any) -> list[Any]:
        captured.extend(rules)
        return []

    monkeypatch.setattr(strawberry_schema, "validate", spy)
    schema = build_schema()._schema
    strawberry_schema.validate_document(schema, parse("{ __typename }"), ())
    entry = Operations(
        schema,
        authenticator=Authenticator(ApiKeys()),
        persisted=PersistedQueries(DocumentCache(0, 0), None),
        limits=QueryLimits(),
    )
    assert captured, "Strawberry's validate_document no longer validates"
    assert set(captured) <= set(entry.rules)


async def test_sqlalchemy_rows_share_a_key_to_index_map(conn: AsyncConnection) -> None:
    result = await conn.execute(statement("SELECT 1 AS a, 'x' AS b UNION ALL SELECT 2, 'y'"))
    rows = result.all()
    index = row_index(rows[0])
    assert index == {"a": 0, "b": 1}
    assert row_index(rows[1]) is index  # one map per result, shared by its rows
    assert row_index(("not", "a", "row")) is None
