"""A shorter path through graphql-core for plain column fields.

A chat page is 50 messages x 6 columns: 300 leaf fields, each of which
graphql-core resolves through build_resolve_info, Strawberry's basic-field
resolver, an awaitable check and three levels of complete_value. For a field
that Strawberry itself resolves as "getattr(source, python_name)" (no resolver,
no arguments, no field extensions) and whose type is a scalar or an enum, this
execution context reads the attribute and serializes it directly: the same
value through the same serializer, without the per-field machinery (measured:
bench/README.md, "Optimizations").

A list of objects whose selected fields are all plain (the messages of a page)
is completed in one loop over the rows, without a Path, a resolve info or the
four levels of complete_value per item: 30% of a chat page's in-process time
before (bench/README.md, "Optimizations").

A variable of type [Float!] (an embedding: 1,536 numbers) is coerced in a few
C-level passes instead of graphql-core's per-item coerce_input_value, which took
~28% of a similarity search request; values that need a closer look (a non-finite
number, a bool, an int a float cannot hold exactly) go through graphql-core.

Anything else — a null value (the non-null check and its error), an exception,
field middleware from a schema extension, @stream/@defer — takes graphql-core's
own path, so results and errors are unchanged.
"""

from __future__ import annotations

import math
import uuid
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeGuard

from graphql import (
    DocumentNode,
    GraphQLBoolean,
    GraphQLField,
    GraphQLID,
    GraphQLInt,
    GraphQLLeafType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLSchema,
    GraphQLString,
    ListTypeNode,
    NamedTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    TypeNode,
    is_leaf_type,
)
from graphql.pyutils import Path, Undefined
from graphql.type.definition import GraphQLResolveInfoHelpers
from sqlalchemy.engine import Row
from strawberry.execution import optimized_is_awaitable
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.field import StrawberryField

from api.store.records import row_index

Plain = tuple[str, Callable[[Any], Any], bool]
"""(attribute name on the source, serializer of the leaf type, nullable)."""

_UNRESOLVED: Any = object()
FULL_PATH: Any = object()
"""read_plain's answer for a value graphql-core must produce (or report)."""


def plain_field(field: GraphQLField) -> Plain | None:
    """How to read a field directly, or None when it needs graphql-core's full path."""
    definition = (field.extensions or {}).get("strawberry-definition")
    if not isinstance(definition, StrawberryField) or not definition.is_basic_field:
        return None
    if field.args or not getattr(field.resolve, "_is_default", False):
        return None
    nullable = not isinstance(field.type, GraphQLNonNull)
    leaf = field.type if nullable else field.type.of_type  # type: ignore[union-attr]
    if not is_leaf_type(leaf):
        return None
    return definition.python_name, serializer(leaf), nullable


_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


def serializer(leaf: GraphQLLeafType) -> Callable[[Any], Any]:
    """The leaf type's serializer, answering the common Python types first.

    Each shortcut returns what the type's own coerce_output_value returns for that
    value (graphql-core's serialize_id, serialize_int... checked by
    tests/test_execution.py); anything else goes through it. Raises where
    graphql-core would report an error (no value: None or Undefined), so callers
    leave such values to graphql-core's path.
    """
    own = leaf.coerce_output_value

    def coerce(value: Any) -> Any:
        serialized = own(value)
        if serialized is None or serialized is Undefined:
            raise ValueError(f"{leaf.name} cannot represent {value!r}")  # the full path says
        return serialized

    if leaf is GraphQLString:
        return lambda v: v if type(v) is str else coerce(v)
    if leaf is GraphQLInt:
        return lambda v: v if type(v) is int and _INT_MIN <= v <= _INT_MAX else coerce(v)
    if leaf is GraphQLBoolean:
        return lambda v: v if type(v) is bool else coerce(v)
    if leaf is GraphQLID:
        # serialize_id: str as is, other non-builtin objects (a UUID) through str()
        return lambda v: v if type(v) is str else str(v) if isinstance(v, uuid.UUID) else coerce(v)
    return coerce


def read_plain(plain: Plain, source: Any) -> Any:
    """The serialized value, or FULL_PATH when graphql-core must produce it (or its error)."""
    attribute, serialize, nullable = plain
    try:
        value = getattr(source, attribute)
        if value is None:
            return None if nullable else FULL_PATH
        return serialize(value)
    except Exception:
        return FULL_PATH  # the full path raises it again, with its path and location


_EXACT_INT = 2**53  # larger ints may not survive conversion to float (graphql-core checks)


def finite_floats(value: Any) -> list[float] | None:
    """What graphql-core's Float coercion makes of a list of numbers, when it is that simple.

    None when any item needs graphql-core's own look (and perhaps its error).
    """
    if type(value) is not list:
        return None
    kinds = set(map(type, value))
    if not kinds <= {float, int}:  # bool, str, None, nested lists...
        return None
    if int in kinds and not all(-_EXACT_INT <= v <= _EXACT_INT for v in value if type(v) is int):
        return None
    floats: list[float] = list(map(float, value))  # a new list, as coercion makes
    # a NaN or an infinity anywhere makes the sum NaN or infinite (so does an overflow
    # of huge finite values: those too take the long way)
    if not math.isfinite(sum(floats)):
        return None
    return floats


def _is_float_list(node: TypeNode) -> bool:
    """[Float!] or [Float!]!"""
    if isinstance(node, NonNullTypeNode):
        node = node.type
    return (
        isinstance(node, ListTypeNode)
        and isinstance(node.type, NonNullTypeNode)
        and isinstance(node.type.type, NamedTypeNode)
        and node.type.type.name.value == "Float"
    )


def float_list_variables(
    document: DocumentNode, operation_name: str | None, variables: Mapping[str, Any]
) -> dict[str, tuple[Any, list[float]]]:
    """Variables of type [Float!] that finite_floats coerces: name -> (raw, coerced)."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if len(operations) != 1:
        return {}  # graphql-core reports the missing or ambiguous operation
    found = {}
    for definition in operations[0].variable_definitions or ():
        name = definition.variable.name.value
        if name in variables and _is_float_list(definition.type):
            coerced = finite_floats(variables[name])
            if coerced is not None:
                found[name] = (variables[name], coerced)
    return found


def weak_helpers(executor: Any) -> GraphQLResolveInfoHelpers:
    """graphql-core's resolver helpers, without the reference cycle.

    graphql-core keeps bound methods of the executor in `executor.async_helpers`: a
    cycle (executor -> helpers -> method -> executor) that holds the request's
    context, its DataLoaders and every row they loaded until the cyclic garbage
    collector finds it: ~460 objects per chat page, which made the collector's
    young-generation runs most of its cost. Through weak references nothing of a
    request outlives it. The helpers are only called during execution, while the
    executor is alive.
    """
    gather = weakref.WeakMethod(executor.gather_async_work)
    track = weakref.WeakMethod(executor.track_async_work)

    def alive(method: weakref.WeakMethod[Any]) -> Any:
        bound = method()
        if bound is None:  # pragma: no cover - only after execution has ended
            raise RuntimeError("the execution this helper belongs to has ended")
        return bound

    return GraphQLResolveInfoHelpers(
        gather=lambda *a, **k: alive(gather)(*a, **k),
        track=lambda *a, **k: alive(track)(*a, **k),
    )


Selection = list[tuple[str, Plain | None]]
"""(response name, how to read it; None for __typename) per selected field."""


def plain_object(selection: Selection, type_name: str, source: Any) -> dict[str, Any] | None:
    """An object whose selected fields are all plain; None when a value needs
    graphql-core's path."""
    results = {}
    for response_name, plain in selection:
        value = type_name if plain is None else read_plain(plain, source)
        if value is FULL_PATH:
            return None
        results[response_name] = value
    return results


def plain_objects(selection: Selection, type_name: str, items: list[Any]) -> list[Any] | None:
    """Objects whose selected fields are all plain, written column by column; None when
    a value needs graphql-core's path (a null in a non-null field, a serializer error).
    """
    if not items:
        return []
    if not selection:  # every field skipped by a directive: an empty object per item
        return [{} for _ in items]
    # rows of one result: read by position (0.05 us instead of 0.5 us per value)
    shared = row_index(items[0])
    if shared is not None and not (
        all(plain is None or plain[0] in shared for _, plain in selection)
        and all(row_index(item) is shared for item in items)
    ):
        shared = None
    # column by column: each step is one C-level loop over the items, with a Python
    # call per value only where a serializer has work to do
    columns: list[list[Any]] = []
    for _, plain in selection:
        if plain is None:  # __typename
            columns.append([type_name] * len(items))
            continue
        attribute, serialize, nullable = plain
        try:
            if shared is not None:
                position = shared[attribute]
                values = [item[position] for item in items]
            else:
                values = [getattr(item, attribute) for item in items]
            if None not in values:
                columns.append(list(map(serialize, values)))
            elif nullable:
                columns.append([None if v is None else serialize(v) for v in values])
            else:
                return None  # graphql-core raises the non-null error
        except Exception:
            return None  # not a record, or a value graphql-core must report
    names = [response_name for response_name, _ in selection]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def is_awaitable(value: Any) -> TypeGuard[Awaitable[Any]]:
    """Strawberry's check, answering at once for the store's records.

    graphql-core asks it about every object and list item. For a Row the generic
    check ends in `hasattr(row, "__await__")`, which SQLAlchemy answers by raising
    and catching a KeyError and an AttributeError: 50 times per chat page.
    """
    if type(value) is Row:
        return False
    return optimized_is_awaitable(value)


class PlainFieldExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context with the plain-field shortcut."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.async_helpers = weak_helpers(self)
        self.is_awaitable = is_awaitable
        # field middleware (a schema extension with a resolve hook) must see every field
        manager = self.middleware_manager
        self._shortcuts = manager is None or not manager.middlewares

    @classmethod
    def build(
        cls,
        schema: GraphQLSchema,
        document: DocumentNode,
        root_value: Any = None,
        context_value: Any = None,
        raw_variable_values: dict[str, Any] | None = None,
        operation_name: str | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """graphql-core's build, with [Float!] variables coerced by finite_floats.

        graphql-core sees an empty list in their place (valid for the type, so its
        checks and errors for every other variable are unchanged); the coerced
        values and their sources are put back afterwards.
        """
        floats = {}
        if raw_variable_values:
            floats = float_list_variables(document, operation_name, raw_variable_values)
            raw_variable_values = {**raw_variable_values, **dict.fromkeys(floats, [])}
        built = super().build(
            schema,
            document,
            root_value,
            context_value,
            raw_variable_values,
            operation_name,
            *args,
            **kwargs,
        )
        if floats and not isinstance(built, list):
            values = built.variable_values
            for name, (raw, coerced) in floats.items():
                values.coerced[name] = coerced
                values.sources[name] = values.sources[name]._replace(value=raw)
        return built

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

    def _plain_selection(
        self, parent_type: GraphQLObjectType, grouped_field_set: Any
    ) -> Selection | None:
        """How to read each selected field, or None when the shortcuts are off or a
        field needs graphql-core's path."""
        if not self._shortcuts:
            return None
        selection: Selection = []
        for response_name, field_details_list in grouped_field_set.items():
            name = field_details_list[0].node.name.value
            plain = None if name == "__typename" else self._lookup(parent_type, name)
            if plain is None and name != "__typename":
                return None
            selection.append((response_name, plain))
        return selection

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: Any,
        position_context: Any,
    ) -> Any:
        # An object whose selected fields are all plain (a message of a chat page): one
        # loop, no Path or resolve info per field; anything else: field by field below.
        selection = self._plain_selection(parent_type, grouped_field_set)
        if selection is not None:
            results = plain_object(selection, parent_type.name, source_value)
            if results is not None:
                return results
        return super().execute_fields(
            parent_type, source_value, path, grouped_field_set, position_context
        )

    def complete_iterable_value(
        self,
        item_type: GraphQLOutputType,
        field_details_list: Any,
        info: GraphQLResolveInfo[Any],
        path: Path,
        items: Any,
        position_context: Any,
    ) -> Any:
        if self._shortcuts and type(items) is list:
            completed = self._complete_plain_objects(
                item_type, field_details_list, info, path, items
            )
            if completed is not None:
                return completed
        return super().complete_iterable_value(
            item_type, field_details_list, info, path, items, position_context
        )

    def _complete_plain_objects(
        self,
        item_type: GraphQLOutputType,
        field_details_list: Any,
        info: GraphQLResolveInfo[Any],
        path: Path,
        items: list[Any],
    ) -> list[Any] | None:
        """The completed list when every item is an object read by plain fields only.

        None (nothing was changed, graphql-core completes the list) for anything
        else: a null item, a field that is not plain, a value needing the full path.
        """
        object_type = item_type.of_type if isinstance(item_type, GraphQLNonNull) else item_type
        if not isinstance(object_type, GraphQLObjectType) or not items:
            return None
        if self.get_stream_usage(field_details_list, path):
            return None
        grouped_field_set, new_defer_usages, _ = self.collect_subfields(
            object_type, field_details_list
        )
        if new_defer_usages:
            return None
        selection = self._plain_selection(object_type, grouped_field_set)
        if selection is None:
            return None
        # is_type_of may answer False or an awaitable: graphql-core handles both
        is_type_of = object_type.is_type_of
        if is_type_of is not None and not all(is_type_of(item, info) is True for item in items):
            return None
        return plain_objects(selection, object_type.name, items)

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Path,
        position_context: Any,
    ) -> Any:
        if self._shortcuts:
            plain = self._lookup(parent_type, field_details_list[0].node.name.value)
            if plain is not None:
                value = read_plain(plain, source)
                if value is not FULL_PATH:
                    return value
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )


def execution_context_class() -> type[PlainFieldExecutionContext]:
    """A fresh subclass per schema, so the field cache never mixes two schemas."""
    return type("CtxgraphExecutionContext", (PlainFieldExecutionContext,), {"_plain": {}})
