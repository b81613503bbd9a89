"""Reading ahead: a root `context` field that knows what its selection will ask for.

A chat page (`context(id) { ... messages(last: 50) { ... } }`) or a branch
switcher (`context(id) { parent { forks { ... } } }`) would take two statements:
the context, then the page its field asks for. Query.context looks at its
selection first (Strawberry's `selected_fields`) and, for these plain shapes,
loads the context with that page in one statement; the page goes into the
loader cache where the field's own resolver finds it.

Only the plain case is read ahead: exactly one page request among the fields
(aliases with equal arguments are one), no arguments but the page's own, no
directive on the way, fragments only on Context. Anything else, or arguments
the page refuses, gives None here: the field then reads (or reports) its page
itself, as it always does, so reading ahead changes how many statements run,
never what the answer is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from strawberry.types.nodes import SelectedField, Selection

from api.errors import BadUserInput
from api.graphql.context import Info
from api.graphql.types import history_page_request, tree_page_request
from api.store.history import HistoryFilter, HistoryPageRequest
from api.store.tree import TreePageRequest, TreeQuery

_PAGE_ARGUMENTS = frozenset({"first", "after", "last", "before"})
_FORKS_ARGUMENTS = frozenset({"first", "after", "includeDeleted"})


def selected_history_page(info: Info) -> HistoryPageRequest | None:
    """The page of the `messages` field selected on the context this field returns."""
    arguments = _one_request(_fields(_own_selections(info), "messages"), _PAGE_ARGUMENTS)
    if arguments is None:
        return None
    try:
        return history_page_request(
            info.context.limits,
            HistoryFilter(),
            first=_int(arguments.get("first")),
            after=arguments.get("after"),
            last=_int(arguments.get("last")),
            before=arguments.get("before"),
        )
    except BadUserInput:
        return None


def selected_sibling_forks(info: Info) -> TreePageRequest | None:
    """The page of `parent { forks }` selected on the context this field returns."""
    parents = _fields(_own_selections(info), "parent")
    if not parents or any(p.arguments for p in parents):
        return None
    forks: list[SelectedField] = []
    for parent in parents:
        found = _fields(parent.selections, "forks")
        if found is None:
            return None
        forks += found
    arguments = _one_request(forks, _FORKS_ARGUMENTS)
    if arguments is None:
        return None
    q = TreeQuery(descendants=False, include_deleted=bool(arguments.get("includeDeleted")))
    try:
        return tree_page_request(
            info.context.limits, q, _int(arguments.get("first")), arguments.get("after")
        )
    except BadUserInput:
        return None


def _own_selections(info: Info) -> list[Selection]:
    return [s for field in info.selected_fields for s in field.selections]


def _fields(selections: Iterable[Selection], name: str) -> list[SelectedField] | None:
    """The fields called `name` among `selections` (through fragments on Context), or
    None when a directive makes one of them, or a fragment, conditional."""
    found: list[SelectedField] = []
    stack = list(selections)
    while stack:
        selection = stack.pop()
        if isinstance(selection, SelectedField):
            if selection.name == name:
                if selection.directives:
                    return None
                found.append(selection)
        elif selection.directives:
            return None
        elif selection.type_condition in (None, "Context"):
            stack.extend(selection.selections)
    return found


def _one_request(
    fields: list[SelectedField] | None, allowed: frozenset[str]
) -> dict[str, Any] | None:
    """The arguments the fields share, when they are one request of allowed arguments."""
    if not fields or any(not f.arguments.keys() <= allowed for f in fields):
        return None
    requests = {tuple(sorted(f.arguments.items())) for f in fields}
    return dict(requests.pop()) if len(requests) == 1 else None


def _int(value: Any) -> int | None:
    # A literal reaches selected_fields as its source text ("50"), a variable as its
    # value; validation has already made sure it is an Int.
    return None if value is None else int(value)
