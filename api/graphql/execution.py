"""A shorter path through graphql-core for plain column fields.

A chat page is 50 messages x 6 columns: 300 leaf fields, each of which
graphql-core resolves through build_resolve_info, Strawberry's basic-field
resolver, an awaitable check and three levels of complete_value. For a field
that Strawberry itself resolves as "getattr(source, python_name)" (no resolver,
no arguments, no field extensions) and whose type is a scalar or an enum, this
execution context reads the attribute and serializes it directly: the same
value through the same serializer, without the per-field machinery (measured:
bench/README.md, "Optimizations").

Anything else — a null value (the non-null check and its error), an exception,
field middleware from a schema extension — takes graphql-core's own path, so
results and errors are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import (
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    is_leaf_type,
)
from graphql.pyutils import Path, Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.field import StrawberryField

Plain = tuple[str, Callable[[Any], Any]]
"""(attribute name on the source, serializer of the leaf type)."""

_UNRESOLVED: Any = object()


def plain_field(field: GraphQLField) -> Plain | None:
    """How to read a field directly, or None when it needs graphql-core's full path."""
    definition = (field.extensions or {}).get("strawberry-definition")
    if not isinstance(definition, StrawberryField) or not definition.is_basic_field:
        return None
    if field.args or not getattr(field.resolve, "_is_default", False):
        return None
    leaf = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
    if not is_leaf_type(leaf):
        return None
    return definition.python_name, leaf.coerce_output_value


class PlainFieldExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context with the plain-field shortcut."""

    # (type name, field name) -> Plain or None; the schema is fixed once built
    _plain: dict[tuple[str, str], Plain | None] = {}  # replaced per schema

    def _lookup(self, parent_type: GraphQLObjectType, field_name: str) -> Plain | None:
        key = (parent_type.name, field_name)
        plain = self._plain.get(key, _UNRESOLVED)
        if plain is _UNRESOLVED:
            field = parent_type.fields.get(field_name)
            plain = plain_field(field) if field is not None else None
            self._plain[key] = plain
        return plain  # type: ignore[no-any-return]

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Path,
        position_context: Any,
    ) -> Any:
        manager = self.middleware_manager
        if manager is None or not manager.middlewares:
            plain = self._lookup(parent_type, field_details_list[0].node.name.value)
            if plain is not None:
                attribute, serialize = plain
                try:
                    value = getattr(source, attribute)
                    if value is not None:
                        serialized = serialize(value)
                        if serialized is not None and serialized is not Undefined:
                            return serialized
                except Exception:
                    pass  # the full path below raises it again, with its path and location
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )


def execution_context_class() -> type[PlainFieldExecutionContext]:
    """A fresh subclass per schema, so the field cache never mixes two schemas."""
    return type("CtxgraphExecutionContext", (PlainFieldExecutionContext,), {"_plain": {}})
