"""The GraphQL schema, composed from the root types.

Strawberry defines the types and resolvers; requests are run by the operation
entry (api/graphql/operation.py), which calls graphql-core on this schema, so
the schema carries no execution extensions.
"""

from __future__ import annotations

from typing import Any

import strawberry

from api.graphql.execution import execution_context_class
from api.graphql.mutations import Mutation
from api.graphql.parts import one_of_checked_by_resolvers
from api.graphql.queries import Query
from api.graphql.subscriptions import Subscription


def build_schema(**extra: Any) -> strawberry.Schema:
    """The schema, with the plain-field executor (api/graphql/execution.py)."""
    extra.setdefault("execution_context_class", execution_context_class())
    schema = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription, **extra)
    one_of_checked_by_resolvers(schema._schema)
    return schema
