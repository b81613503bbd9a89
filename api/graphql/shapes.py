"""What an operation selects, as graphql-core's CollectFields sees it: the one shape
model the planner (api/graphql/plans.py) and the look-ahead
(api/graphql/lookahead.py) share.

`collect` groups a selection set's fields by response name through aliases,
fragment spreads and inline fragments (each fragment visited once, its type
condition applied to the concrete object type, unions and interfaces included)
and `@include`/`@skip` decided by literals or by the request's variables. So a
shape depends on the document and on the values of the variables its
directives name (`condition_variables`): the planner makes one plan per such
combination, decided when a request's variables are bound.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from graphql import (
    BooleanValueNode,
    DirectiveNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLAbstractType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    is_abstract_type,
)

Fields = dict[str, list[FieldNode]]
"""Response name -> the field nodes merged under it (same field, same arguments:
validation has made sure), in the order graphql-core executes them."""

CONDITIONS = frozenset({"include", "skip"})


class Unsupported(Exception):
    """A directive other than @include/@skip (or one whose `if` is not a Boolean
    literal or variable): the planner leaves such an operation to graphql-core."""


def _included(directives: Iterable[DirectiveNode], variables: Mapping[str, Any]) -> bool:
    for directive in directives:
        name = directive.name.value
        if name not in CONDITIONS:
            raise Unsupported(f"@{name}")
        (argument,) = directive.arguments or (None,)  # validation: exactly `if`
        if argument is None:
            raise Unsupported(f"@{name} without if")
        value = argument.value
        condition: Any
        if isinstance(value, BooleanValueNode):
            condition = value.value
        elif isinstance(value, VariableNode):
            condition = variables.get(value.name.value)
            if not isinstance(condition, bool):
                raise Unsupported(f"@{name}(if: ${value.name.value}) without a Boolean value")
        else:
            raise Unsupported(f"@{name} with {value.kind}")
        if condition is (name == "skip"):
            return False
    return True


def _applies(schema: GraphQLSchema, condition: str | None, object_type: GraphQLObjectType) -> bool:
    if condition is None or condition == object_type.name:
        return True
    named = schema.get_type(condition)
    return (
        isinstance(named, GraphQLAbstractType)
        and is_abstract_type(named)
        and (schema.is_sub_type(named, object_type))
    )


def collect(
    schema: GraphQLSchema,
    object_type: GraphQLObjectType,
    selection_sets: Iterable[SelectionSetNode | None],
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
) -> Fields:
    """The fields the selection sets (of one field's nodes) select on `object_type`.
    Raises Unsupported for a directive other than @include/@skip."""
    fields: Fields = {}
    visited: set[str] = set()

    def visit(selection_set: SelectionSetNode) -> None:
        for selection in selection_set.selections:
            if not _included(selection.directives or (), variables):
                continue
            if isinstance(selection, FieldNode):
                name = selection.alias.value if selection.alias else selection.name.value
                fields.setdefault(name, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                on = condition.name.value if condition is not None else None
                if _applies(schema, on, object_type):
                    visit(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if name in visited or fragment is None:
                    continue
                visited.add(name)
                if fragment.directives:
                    raise Unsupported("a directive on a fragment definition")
                if _applies(schema, fragment.type_condition.name.value, object_type):
                    visit(fragment.selection_set)

    for selection_set in selection_sets:
        if selection_set is not None:
            visit(selection_set)
    return fields


def subfields(
    schema: GraphQLSchema,
    object_type: GraphQLObjectType,
    nodes: list[FieldNode],
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
) -> Fields:
    """The fields selected under a field's merged nodes, on `object_type`."""
    return collect(schema, object_type, (n.selection_set for n in nodes), fragments, variables)


def condition_variables(
    operation: OperationDefinitionNode, fragments: Mapping[str, FragmentDefinitionNode]
) -> tuple[str, ...]:
    """The variables an operation's @include/@skip directives read (its fragments'
    too), in a stable order: a request's values of them pick its plan."""
    found: list[str] = []
    seen: set[str] = set()

    def visit(selection_set: SelectionSetNode | None) -> None:
        if selection_set is None:
            return
        for selection in selection_set.selections:
            for directive in selection.directives or ():
                for argument in directive.arguments or ():
                    if isinstance(argument.value, VariableNode):
                        name = argument.value.name.value
                        if name not in found:
                            found.append(name)
            if isinstance(selection, FieldNode | InlineFragmentNode):
                visit(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name not in seen and name in fragments:
                    seen.add(name)
                    visit(fragments[name].selection_set)

    visit(operation.selection_set)
    return tuple(found)
