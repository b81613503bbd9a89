"""Reading ahead: a root `context` field that knows what its selection will ask for.

A chat page (`context(id) { ... messages(last: 50) { ... } }`) or a branch
switcher (`context(id) { parent { forks { ... } } }`) would take two statements:
the context, then the page its field asks for. Query.context looks at its
selection first, collected as the planner collects it (api/graphql/shapes.py),
and for one page request loads the context with that page in one statement; the
page goes into the loader cache where the field's own resolver finds it.

Only one request is read ahead: exactly one response name selecting the field
with page arguments only. Anything else, or arguments the page refuses, gives None
here: the field then reads (or reports) its page itself, so reading ahead changes
how many statements run, never what the answer is.
"""

from __future__ import annotations

from typing import Any

from graphql import FieldNode, GraphQLError, GraphQLObjectType, get_named_type
from graphql.execution.values import VariableValues, get_argument_values

from api.errors import BadUserInput
from api.graphql.context import Info
from api.graphql.shapes import Unsupported, subfields
from api.graphql.strawberry_adapter import resolve_info
from api.graphql.types import history_page_request, tree_page_request
from api.store.history import HistoryFilter, HistoryPageRequest
from api.store.tree import TreePageRequest, TreeQuery

_PAGE_ARGUMENTS = frozenset({"first", "after", "last", "before"})
_FORKS_ARGUMENTS = frozenset({"first", "after", "includeDeleted"})


def _one(
    info: Info, name: str, allowed: frozenset[str], through: str | None = None
) -> dict[str, Any] | None:
    """The arguments of the one `name` field selected on the context this field
    returns (with `through`: on the object its `through` field returns)."""
    raw = resolve_info(info)
    context_type = get_named_type(raw.return_type)
    if not isinstance(context_type, GraphQLObjectType):
        return None
    variables: Any = raw.variable_values  # the coerced values, as Strawberry hands them over
    try:
        fields = subfields(raw.schema, context_type, raw.field_nodes, raw.fragments, variables)
        if through is not None:
            groups = [g for g in fields.values() if g[0].name.value == through]
            if len(groups) != 1 or groups[0][0].arguments:
                return None
            fields = subfields(raw.schema, context_type, groups[0], raw.fragments, variables)
    except Unsupported:
        return None
    groups = [g for g in fields.values() if g[0].name.value == name]
    if len(groups) != 1:
        return None
    node: FieldNode = groups[0][0]
    if not {a.name.value for a in node.arguments or ()} <= allowed:
        return None
    try:
        coerced = VariableValues({}, dict(variables))
        return get_argument_values(context_type.fields[name], node, coerced)
    except GraphQLError:
        return None


def selected_history_page(info: Info) -> HistoryPageRequest | None:
    """The page of the `messages` field selected on the context this field returns."""
    arguments = _one(info, "messages", _PAGE_ARGUMENTS)
    if arguments is None:
        return None
    try:
        return history_page_request(
            info.context.limits,
            HistoryFilter(),
            first=arguments.get("first"),
            after=arguments.get("after"),
            last=arguments.get("last"),
            before=arguments.get("before"),
        )
    except BadUserInput:
        return None


def selected_sibling_forks(info: Info) -> TreePageRequest | None:
    """The page of `parent { forks }` selected on the context this field returns."""
    arguments = _one(info, "forks", _FORKS_ARGUMENTS, through="parent")
    if arguments is None:
        return None
    q = TreeQuery(descendants=False, include_deleted=bool(arguments.get("includeDeleted")))
    try:
        return tree_page_request(
            info.context.limits, q, arguments.get("first"), arguments.get("after")
        )
    except BadUserInput:
        return None
