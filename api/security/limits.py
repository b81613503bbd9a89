"""Bounded queries: tokens, depth, aliases and cost, checked before any resolver runs.

- Tokens: graphql-core's parser stops after `max_query_tokens` tokens (comments
  included), so a huge document costs no more than that to reject.
- Depth, aliases and cost: computed on the validated document of the operation
  being run, with its variables, in `on_execute` before execution starts: a
  refused operation runs no resolver and no SQL.

Cost counts the objects an operation may ask for. A connection field
(`contexts`, `messages`, `forks`, `descendants`) costs its page size
(first/last, else the default page size) times the multiplier of where it
sits, and multiplies what is under its edges/nodes by that page size (the rows
themselves are not counted twice); a
list field multiplies by its `first` argument if it has one, else by
LIST_SIZE_GUESS; a single object costs the multiplier. Scalars are free. So
`contexts(first: 500) { nodes { messages(last: 500) { nodes { id } } } }`
costs 500 + 500 x 500 = 250,500.

Fragments are memoized per name, so a document cannot make the walk itself
exponential. Every refusal is QUERY_TOO_COMPLEX with a message naming the
limit and its setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    VariableNode,
)
from graphql.type import get_named_type

from api.errors import Forbidden, QueryTooComplex
from api.settings import Settings

LIST_SIZE_GUESS = 10
"""Assumed length of a list without a size argument (ancestors, Message.forks, introspection)."""


@dataclass(frozen=True)
class QueryLimits:
    max_depth: int = 20
    max_aliases: int = 30
    max_tokens: int = 2_000
    max_cost: int = 50_000
    default_page_size: int = 50
    max_page_size: int = 500

    @classmethod
    def from_settings(cls, settings: Settings) -> QueryLimits:
        return cls(
            max_depth=settings.max_query_depth,
            max_aliases=settings.max_query_aliases,
            max_tokens=settings.max_query_tokens,
            max_cost=settings.max_query_cost,
            default_page_size=settings.default_page_size,
            max_page_size=settings.max_page_size,
        )


def too_complex(message: str) -> GraphQLError:
    """A GraphQL error coded QUERY_TOO_COMPLEX on any path (HTTP and WebSocket)."""
    return GraphQLError(
        message, extensions={"code": QueryTooComplex.code}, original_error=QueryTooComplex(message)
    )


class _Analysis:
    """Depth, aliases and cost of one operation of a validated document."""

    def __init__(
        self,
        schema: GraphQLSchema,
        operation: OperationDefinitionNode,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
        limits: QueryLimits,
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.limits = limits
        self.variables = dict(variables)
        for definition in operation.variable_definitions or ():
            name = definition.variable.name.value
            if name not in self.variables and isinstance(definition.default_value, IntValueNode):
                self.variables[name] = int(definition.default_value.value)
        self._depth_memo: dict[tuple[str, int], int] = {}
        self._alias_memo: dict[str, int] = {}
        self._cost_memo: dict[tuple[str, int], int] = {}
        self._visiting: set[str] = set()

    # --- depth ------------------------------------------------------------------

    def depth(self, selection_set: SelectionSetNode | None, level: int = 0) -> int:
        """The deepest field level under `selection_set`, cut off past the limit."""
        if selection_set is None:
            return level
        deepest = level
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                if level + 1 > self.limits.max_depth:
                    return level + 1
                d = self.depth(sel.selection_set, level + 1)
            elif isinstance(sel, InlineFragmentNode):
                d = self.depth(sel.selection_set, level)
            elif isinstance(sel, FragmentSpreadNode):
                d = self._fragment_depth(sel.name.value, level)
            else:  # pragma: no cover - no other selection kinds exist
                continue
            deepest = max(deepest, d)
            if deepest > self.limits.max_depth:
                break
        return deepest

    def _fragment_depth(self, name: str, level: int) -> int:
        key = (name, level)
        if key not in self._depth_memo:
            fragment = self.fragments.get(name)
            if fragment is None or name in self._visiting:
                return level
            self._visiting.add(name)
            try:
                self._depth_memo[key] = self.depth(fragment.selection_set, level)
            finally:
                self._visiting.discard(name)
        return self._depth_memo[key]

    # --- aliases ------------------------------------------------------------------

    def aliases(self, selection_set: SelectionSetNode | None) -> int:
        if selection_set is None:
            return 0
        count = 0
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                count += (sel.alias is not None) + self.aliases(sel.selection_set)
            elif isinstance(sel, InlineFragmentNode):
                count += self.aliases(sel.selection_set)
            elif isinstance(sel, FragmentSpreadNode):
                name = sel.name.value
                if name not in self._alias_memo:
                    fragment = self.fragments.get(name)
                    if fragment is None or name in self._visiting:
                        continue
                    self._visiting.add(name)
                    try:
                        self._alias_memo[name] = self.aliases(fragment.selection_set)
                    finally:
                        self._visiting.discard(name)
                count += self._alias_memo[name]
        return count

    # --- cost ---------------------------------------------------------------------

    def cost(
        self,
        selection_set: SelectionSetNode | None,
        parent: GraphQLNamedType | None,
        page: int = 1,
    ) -> int:
        """Objects asked for under `selection_set` per one `parent` object; `page` is the
        page size when `parent` is a connection (its edges/nodes repeat that often)."""
        if selection_set is None:
            return 0
        total = 0
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                total += self._field_cost(sel, parent, page)
            elif isinstance(sel, InlineFragmentNode):
                cond = sel.type_condition
                inner = self.schema.get_type(cond.name.value) if cond is not None else parent
                total += self.cost(sel.selection_set, inner or parent, page)
            elif isinstance(sel, FragmentSpreadNode):
                total += self._fragment_cost(sel.name.value, page)
        return total

    def _fragment_cost(self, name: str, page: int) -> int:
        key = (name, page)
        if key not in self._cost_memo:
            fragment = self.fragments.get(name)
            if fragment is None or name in self._visiting:
                return 0
            self._visiting.add(name)
            try:
                inner = self.schema.get_type(fragment.type_condition.name.value)
                self._cost_memo[key] = self.cost(fragment.selection_set, inner, page)
            finally:
                self._visiting.discard(name)
        return self._cost_memo[key]

    def _field_cost(self, node: FieldNode, parent: GraphQLNamedType | None, page: int) -> int:
        name = node.name.value
        if name == "__typename":
            return 0
        if name == "__schema":
            field_type: Any = self.schema.get_type("__Schema")
            args: Mapping[str, Any] = {}
        elif name == "__type":
            field_type = self.schema.get_type("__Type")
            args = {}
        elif isinstance(parent, (GraphQLObjectType, GraphQLInterfaceType)):
            definition = parent.fields.get(name)
            if definition is None:
                return 0
            field_type = definition.type
            args = definition.args
        else:
            return 0
        named = get_named_type(field_type)
        if not isinstance(named, (GraphQLObjectType, GraphQLInterfaceType, GraphQLUnionType)):
            return 0  # scalars and enums are free
        if isinstance(parent, GraphQLObjectType):
            if _is_connection(parent) and name in ("edges", "nodes"):
                # The rows were counted at the connection; what is under them repeats per row.
                return page * self.cost(node.selection_set, named)
            if parent.name.endswith("Edge") and name == "node":
                return self.cost(node.selection_set, named)
        if isinstance(named, GraphQLObjectType) and _is_connection(named):
            size = self._size(node, args, self.limits.default_page_size)
            return size + self.cost(node.selection_set, named, size)
        if _is_list(field_type):
            size = self._size(node, args, LIST_SIZE_GUESS) if "first" in args else LIST_SIZE_GUESS
            return size * (1 + self.cost(node.selection_set, named))
        return 1 + self.cost(node.selection_set, named)

    def _size(self, node: FieldNode, args: Mapping[str, Any], default: int) -> int:
        """The page size a field asks for: first/last (literal or variable), else the
        argument's default, else `default`; clamped to 1..max_page_size."""
        sizes = []
        for arg in node.arguments or ():
            if arg.name.value not in ("first", "last"):
                continue
            value: Any = None
            if isinstance(arg.value, IntValueNode):
                value = int(arg.value.value)
            elif isinstance(arg.value, VariableNode):
                value = self.variables.get(arg.value.name.value)
            if isinstance(value, int) and not isinstance(value, bool):
                sizes.append(value)
        if not sizes:
            declared = args.get("first")
            default_value = getattr(declared, "default_value", None)
            if isinstance(default_value, int) and not isinstance(default_value, bool):
                sizes.append(default_value)
            else:
                sizes.append(default)
        return max(1, min(max(sizes), self.limits.max_page_size))


def _is_list(field_type: Any) -> bool:
    while isinstance(field_type, GraphQLNonNull):
        field_type = field_type.of_type
    return isinstance(field_type, GraphQLList)


def _is_connection(t: GraphQLObjectType) -> bool:
    return t.name.endswith("Connection") and "pageInfo" in t.fields


def select_operation(
    document: Any, operation_name: str | None
) -> tuple[OperationDefinitionNode | None, dict[str, FragmentDefinitionNode]]:
    operations: list[OperationDefinitionNode] = []
    fragments: dict[str, FragmentDefinitionNode] = {}
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            operations.append(definition)
        elif isinstance(definition, FragmentDefinitionNode):
            fragments[definition.name.value] = definition
    if operation_name is None:
        return (operations[0] if len(operations) == 1 else None), fragments
    for op in operations:
        if op.name is not None and op.name.value == operation_name:
            return op, fragments
    return None, fragments


def check_operation(
    schema: GraphQLSchema,
    document: Any,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    limits: QueryLimits,
) -> None:
    """Raise a QUERY_TOO_COMPLEX GraphQLError if the operation is over a limit."""
    operation, fragments = select_operation(document, operation_name)
    if operation is None:
        return  # execution reports the missing/ambiguous operation itself
    analysis = _Analysis(schema, operation, fragments, variables or {}, limits)
    depth = analysis.depth(operation.selection_set)
    if depth > limits.max_depth:
        raise too_complex(
            f"The query is nested more than {limits.max_depth} levels deep "
            f"(limit CTXGRAPH_MAX_QUERY_DEPTH={limits.max_depth}). Flatten it or split it into "
            "several requests."
        )
    aliases = analysis.aliases(operation.selection_set)
    if aliases > limits.max_aliases:
        raise too_complex(
            f"The query uses {aliases} aliases; at most {limits.max_aliases} are allowed "
            f"(CTXGRAPH_MAX_QUERY_ALIASES). Split it into several requests."
        )
    root = schema.get_root_type(operation.operation)
    cost = analysis.cost(operation.selection_set, root)
    if cost > limits.max_cost:
        raise too_complex(
            f"The query could return up to {cost:,} objects; the limit is {limits.max_cost:,} "
            "(CTXGRAPH_MAX_QUERY_COST). Ask for smaller pages (first/last) in nested "
            "connections, or split the query."
        )


SUBSCRIPTION_OVER_HTTP = (
    "Subscriptions run over WebSocket: connect to /graphql with the graphql-transport-ws protocol."
)


INTROSPECTION_DISABLED = (
    "Introspection is disabled on this server (CTXGRAPH_INTROSPECTION=false); the schema is "
    "published as schema.graphql."
)


class NoIntrospection(ValidationRule):
    """Refuse __schema and __type (FORBIDDEN); __typename stays allowed."""

    def enter_field(self, node: FieldNode, *_args: Any) -> None:
        if node.name.value in ("__schema", "__type"):
            self.report_error(
                GraphQLError(
                    INTROSPECTION_DISABLED,
                    node,
                    extensions={"code": Forbidden.code},
                    original_error=Forbidden(INTROSPECTION_DISABLED),
                )
            )
