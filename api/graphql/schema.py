"""The GraphQL schema, composed from the root types."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import partial
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import AddValidationRules, ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from api.graphql.errors import ErrorCodes
from api.graphql.execution import execution_context_class
from api.graphql.mutations import Mutation
from api.graphql.parts import one_of_checked_by_resolvers
from api.graphql.plans import PlannedReads, Plans
from api.graphql.queries import Query
from api.graphql.subscriptions import Subscription
from api.security.http import OperationRecorder
from api.security.limits import NoIntrospection, QueryLimits, QueryLimitsExtension
from api.settings import Settings


class _ParserCache(ParserCache):
    """ParserCache that leaves invalid documents to Strawberry's own parse.

    ParserCache parses while its hook is being entered, outside Strawberry's
    try block, so a syntax error would leave the operation early, skipping the
    operation hooks and with them ErrorCodes (no extensions.code). Strawberry's
    own parse runs inside the operation and reports the same error there.
    """

    def on_parse(self) -> Iterator[None]:
        ctx = self.execution_context
        with contextlib.suppress(GraphQLError):
            ctx.graphql_document = self.cached_parse_document(ctx.query, **ctx.parse_options)
        yield


class CtxgraphSchema(strawberry.Schema):
    plans: Plans | None = None
    """Its planned reads (api/graphql/plans.py); the HTTP endpoint asks them first."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Errors are logged (unexpected ones only) by ErrorCodes; don't log client errors."""


def _security_extensions(
    settings: Settings | None, limits: QueryLimits | None
) -> tuple[list[Any], list[Any]]:
    """(outermost, after ErrorCodes): the operation recorder for logs and metrics, and the
    query limits (api/security/limits.py) and introspection switch."""
    if settings is None or limits is None:
        return [], []
    inner: list[Any] = [partial(QueryLimitsExtension, limits)]
    if not settings.introspection:
        inner.append(partial(AddValidationRules, [NoIntrospection]))
    return [OperationRecorder], inner


def _batching(settings: Settings | None) -> dict[str, Any]:
    if settings is None or settings.max_batch_operations <= 1:
        return {}
    return {"batching_config": {"max_operations": settings.max_batch_operations}}


def build_schema(settings: Settings | None = None, **extra: Any) -> CtxgraphSchema:
    """The schema; with `settings`, the query limits and introspection switch apply."""
    limits = None if settings is None else QueryLimits.from_settings(settings)
    outer, inner = _security_extensions(settings, limits)
    plans = Plans(limits)
    # plain column fields skip graphql-core's per-field machinery (api/graphql/execution.py)
    extra.setdefault("execution_context_class", execution_context_class())
    schema = CtxgraphSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        # Factories: the LRU caches are module-level and shared across requests.
        extensions=[
            *outer,
            ErrorCodes,
            *inner,
            lambda: _ParserCache(maxsize=1024),
            lambda: ValidationCache(maxsize=1024),
            # last: the limits and every other hook see a planned read like any other
            partial(PlannedReads, plans),
        ],
        config=StrawberryConfig(**_batching(settings)),
        **extra,
    )
    schema.plans = plans
    one_of_checked_by_resolvers(schema._schema)
    return schema
