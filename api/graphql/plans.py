"""Plans: the common shapes answered without graphql-core's field walk.

graphql-core resolves a chat page field by field (resolve info, arguments,
awaitables, completion for every object): most of the page's CPU. A plan, made
once per operation and per value of the variables its @include/@skip read
(api/graphql/shapes.py), binds a request's arguments, runs one statement and
writes the answer. Planned root fields, with any aliases, fragments, __typename
and @include/@skip:

    context(id) { <columns>, messages(first/after/last/before) { <page> },
                  parent { <columns>, forks(first/after/includeDeleted) { <page> } },
                  root { <columns> }, ancestors { <columns> } }
    contexts(first/after/last/before/filter/orderBy) { <page> }
    appendMessages(contextId, messages, expectedVersion) { messages { <columns> } }

A <page> selects nodes, edges { cursor node }, pageInfo and (for messages)
totalCount; a message also its parts, usage and the forks made at it (a second
statement); parent.forks is not planned together with messages, root or
ancestors. Anything else has no plan and graphql-core executes it.

The answer is graphql-core's, byte for byte (tests/test_plan_equality.py generates
selections and compares): a plan reads through the same services and store
functions as the resolvers, coerces arguments with graphql-core's functions and
writes values with the serializers graphql-core uses. Failure is explicit:

- arguments the services refuse (a malformed id, a page over the limit): the plan
  does not run (`Fallback("arguments")`, counted in /metrics); graphql-core answers
  with its error. Nothing was read or written.
- a failure while loading or writing (a database that is down, a refused append):
  reported by the plan, located at the root field as graphql-core locates it.
  Nothing runs twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    ListValueNode,
    NameNode,
    ObjectValueNode,
    OperationDefinitionNode,
    OperationType,
    ValueNode,
    VariableNode,
    get_named_type,
    located_error,
)
from graphql.execution.values import VariableValues, get_argument_values, get_variable_values
from strawberry.types.field import StrawberryField

from api.errors import CtxgraphError
from api.graphql.context import RequestContext
from api.graphql.execution import (
    FULL_PATH,
    Plain,
    Selection,
    plain_field,
    plain_object,
    plain_objects,
    read_plain,
)
from api.graphql.inputs import ContextFilter, ContextOrder, MessageInput, from_coerced, new_messages
from api.graphql.parts import message_parts, token_usage
from api.graphql.queries import list_request
from api.graphql.shapes import Fields, Unsupported, collect, condition_variables
from api.graphql.types import (
    history_page_request,
    message_cursor,
    page_info,
    tree_cursor,
    tree_page_request,
)
from api.services import append as append_service
from api.services.contexts import list_contexts
from api.store import contexts as store
from api.store import tree as tree_store
from api.store.history import HistoryFilter
from api.store.inputs import parse_id
from api.store.tree import TreeQuery

Record = Any
Loaded = dict[str, Any]
"""What a plan loaded besides its root value: "contexts" (by id), "page", "forks"."""
Write = Callable[[Any, Loaded], Any]
"""Writes one value of the answer from its source and what the plan loaded."""


class NoAnswer(Exception):
    """A value only graphql-core's completion could report (a null where the schema
    promises one): the plan reports it as an internal error."""


@dataclass(frozen=True, slots=True)
class Fallback:
    """The plan does not answer this request; graphql-core does. `reason` labels the
    /metrics counter."""

    reason: str


@dataclass
class Page:
    """A loaded page, as the connection writers read it."""

    rows: list[Record]
    has_next: bool
    has_previous: bool
    cursor: Callable[[Record], str]
    total: int | None = None


# --- what a field is -----------------------------------------------------------------------

_PAGE_ARGUMENTS = frozenset({"first", "after", "last", "before"})
_FORKS_ARGUMENTS = frozenset({"first", "after", "includeDeleted"})
_LIST_ARGUMENTS = _PAGE_ARGUMENTS | {"filter", "orderBy"}
_APPEND_ARGUMENTS = frozenset({"contextId", "messages", "expectedVersion"})


def _object_type(field: GraphQLField) -> GraphQLObjectType | None:
    """The object type of a field's values (or list items)."""
    named = field.type
    while isinstance(named, GraphQLNonNull | GraphQLList):
        named = named.of_type
    return named if isinstance(named, GraphQLObjectType) else None


def _arguments(nodes: list[FieldNode]) -> set[str]:
    return {a.name.value for a in nodes[0].arguments or ()}


def _plain(field: GraphQLField) -> Plain | None:
    """`plain_field`, but a DateTime field's UTC datetimes stay datetimes: the answer's
    JSON encoder writes them exactly as the scalar's isoformat(), several times faster
    (bench/README.md, "Optimizations"). Any other value goes through the scalar."""
    plain = plain_field(field)
    if plain is None or get_named_type(field.type).name != "DateTime":
        return plain
    attribute, serialize, nullable = plain

    def as_json_writes_it(value: Any) -> Any:
        if type(value) is datetime and value.tzinfo is UTC:
            return value
        return serialize(value)

    return attribute, as_json_writes_it, nullable


def _has_hooks(field: GraphQLField) -> bool:
    """A Strawberry field with extensions or permissions runs code a plan would skip."""
    definition = (field.extensions or {}).get("strawberry-definition")
    return not isinstance(definition, StrawberryField) or bool(
        definition.extensions or definition.permission_classes
    )


# --- writing -----------------------------------------------------------------------------


def _constant(value: Any) -> Write:
    return lambda source, loaded: value


def _column(plain: Plain) -> Write:
    def write(source: Any, loaded: Loaded) -> Any:
        value = read_plain(plain, source)
        if value is FULL_PATH:
            raise NoAnswer(plain[0])
        return value

    return write


def _object(writers: list[tuple[str, Write]]) -> Write:
    def write(source: Any, loaded: Loaded) -> dict[str, Any]:
        return {name: w(source, loaded) for name, w in writers}

    return write


def _loaded(key: str, inner: Write) -> Write:
    """A field whose value the plan loaded (a page), written by `inner`."""
    return lambda source, loaded: inner(loaded[key], loaded)


Computed = Callable[[Record, "Loaded"], Any]
"""A field of a record's object that is not a column but computed by the resolver's own
function from its columns (a message's parts, its usage) or from what the plan loaded
(the forks made at a message)."""
Fields_ = list[tuple[str, Plain | None | Computed]]
"""(response name, how to read it: a column, None for __typename, or Computed)."""


def _objects(
    fields: Fields_, type_name: str, rows: list[Record], loaded: Loaded
) -> list[dict[str, Any]]:
    """The objects of records: columns column by column (`plain_objects`), computed
    fields beside them, keys in the selection's order."""
    plains: Selection = [(n, f) for n, f in fields if not callable(f)]
    written = plain_objects(plains, type_name, rows)
    if written is None:
        raise NoAnswer(type_name)
    computed = {n: [f(r, loaded) for r in rows] for n, f in fields if callable(f)}
    if not computed:
        return written
    return [
        {n: computed[n][i] if n in computed else row[n] for n, _ in fields}
        for i, row in enumerate(written)
    ]


def _rows(selection: Fields_, type_name: str) -> Write:
    return lambda rows, loaded: _objects(selection, type_name, rows, loaded)


def _nodes(selection: Fields_, type_name: str) -> Write:
    rows = _rows(selection, type_name)
    return lambda page, loaded: rows(page.rows, loaded)


def _page_info(selection: Selection, type_name: str) -> Write:
    def write(page: Page, loaded: Loaded) -> dict[str, Any]:
        info = page_info(page.rows, page.has_next, page.has_previous, page.cursor)
        written = plain_object(selection, type_name, info)
        if written is None:
            raise NoAnswer(type_name)
        return written

    return write


def _total(page: Page, loaded: Loaded) -> int:
    if page.total is None:  # pragma: no cover - only planned where the page knows it
        raise NoAnswer("totalCount")
    return page.total


def _edges(parts: list[tuple[str, Any]]) -> Write:
    def write(page: Page, loaded: Loaded) -> list[dict[str, Any]]:
        rows = page.rows
        if not parts:  # every field skipped by a directive
            return [{} for _ in rows]
        columns: list[list[Any]] = []
        for _, (kind, arg) in parts:
            if kind == "typename":
                columns.append([arg] * len(rows))
            elif kind == "cursor":
                columns.append([page.cursor(r) for r in rows])
            else:
                selection, type_name = arg
                columns.append(_objects(selection, type_name, rows, loaded))
        names = [name for name, _ in parts]
        return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]

    return write


def _object_or_fail(selection: Selection, type_name: str, source: Any) -> dict[str, Any]:
    written = plain_object(selection, type_name, source)
    if written is None:
        raise NoAnswer(type_name)
    return written


def _chain(source: Record, loaded: Loaded) -> list[Record]:
    """The ancestors of a context, root first, from the contexts the plan loaded."""
    contexts = loaded["contexts"]
    chain = []
    parent_id = source.parent_id
    while parent_id is not None:
        parent = contexts.get(parent_id)
        if parent is None:  # pragma: no cover - the chain statement loads every ancestor
            raise NoAnswer("ancestors")
        chain.append(parent)
        parent_id = parent.parent_id
    chain.reverse()
    return chain


def _parent(inner: Write) -> Write:
    def write(source: Record, loaded: Loaded) -> Any:
        if source.parent_id is None:
            return None
        parent = loaded["contexts"].get(source.parent_id)
        return None if parent is None else inner(parent, loaded)

    return write


def _root(inner: Write) -> Write:
    def write(source: Record, loaded: Loaded) -> Any:
        chain = _chain(source, loaded)
        return inner(chain[0] if chain else source, loaded)

    return write


def _ancestors(inner: Write) -> Write:
    return lambda source, loaded: [inner(a, loaded) for a in _chain(source, loaded)]


# --- making a plan ---------------------------------------------------------------------


Bound = tuple[list[FieldNode], GraphQLField]


class _Planner:
    """Makes one plan for concrete variable values of the directives; each method
    answers None for a shape it does not know."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        # the fields a plan loads, by role: their arguments are bound per request
        self.loads: dict[str, Bound] = {}
        self.chains = False
        # a page's messages select the forks made at them: a second statement
        self.message_forks = False
        # a message's parts or usage are written (else the statement leaves them out)
        self.parts = False
        # the record attributes the plan writes (the statements leave out what it does not)
        self.attributes: set[str] = set()

    def fields(
        self, type_: GraphQLObjectType, nodes: list[FieldNode]
    ) -> list[tuple[str, list[FieldNode], GraphQLField | None]] | None:
        """(response name, merged nodes, definition; None for __typename) per field."""
        collected: Fields = collect(
            self.schema, type_, (n.selection_set for n in nodes), self.fragments, self.variables
        )
        out: list[tuple[str, list[FieldNode], GraphQLField | None]] = []
        for response_name, group in collected.items():
            name = group[0].name.value
            if name == "__typename":
                out.append((response_name, group, None))
                continue
            definition = type_.fields.get(name)
            if definition is None or _has_hooks(definition):
                return None
            out.append((response_name, group, definition))
        return out

    def columns(self, nodes: list[FieldNode], field: GraphQLField) -> tuple[Selection, str] | None:
        """Objects whose every selected field is a column or __typename: how to read
        them, and the type's name."""
        found = self.objects(nodes, field, computed=False)
        if found is None:
            return None
        fields, type_name = found
        return [(n, f) for n, f in fields if not callable(f)], type_name

    def objects(
        self, nodes: list[FieldNode], field: GraphQLField, computed: bool = True
    ) -> tuple[Fields_, str] | None:
        """Objects whose every selected field is a column, __typename, or (`computed`) a
        message's parts or usage: how to read them, and the type's name."""
        type_ = _object_type(field)
        selection = self.fields(type_, nodes) if type_ is not None else None
        if type_ is None or selection is None:
            return None
        plains: Fields_ = []
        for response_name, group, sub in selection:
            read: Plain | Computed | None = None if sub is None else _plain(sub)
            if sub is not None and read is None and computed and not group[0].arguments:
                read = self.computed(type_, group, sub)
            if sub is not None and (read is None or group[0].arguments):
                return None
            if isinstance(read, tuple):
                self.attributes.add(read[0])
            plains.append((response_name, read))
        return plains, type_.name

    def computed(
        self, type_: GraphQLObjectType, nodes: list[FieldNode], field: GraphQLField
    ) -> Computed | None:
        """Message.parts (the MessagePart union) and Message.usage, written from the
        record by the functions their resolvers call."""
        name = nodes[0].name.value
        if type_.name != "Message" or name not in ("parts", "usage", "forks"):
            return None
        if name == "forks":
            forks = self.columns(nodes, field)
            if forks is None:
                return None
            forks_selection, context_type = forks
            self.message_forks = True

            def write_forks(row: Record, loaded: Loaded) -> list[dict[str, Any]]:
                found = loaded["message_forks"].get((row.context_id, row.version), [])
                return [_object_or_fail(forks_selection, context_type, f) for f in found]

            return write_forks
        self.parts = True
        if name == "usage":
            usage = self.columns(nodes, field)
            if usage is None:
                return None
            usage_selection, usage_type = usage

            def write_usage(row: Record, loaded: Loaded) -> Any:
                value = token_usage(row.usage)
                if value is None:
                    return None
                return _object_or_fail(usage_selection, usage_type, value)

            return write_usage
        union = get_named_type(field.type)
        if not isinstance(union, GraphQLUnionType):
            return None
        members: dict[type, tuple[str, Selection]] = {}
        for member in self.schema.get_possible_types(union):
            definition = (member.extensions or {}).get("strawberry-definition")
            fields = self.fields(member, nodes)
            if definition is None or fields is None:
                return None
            selection: Selection = []
            for response_name, group, sub in fields:
                plain = None if sub is None else _plain(sub)
                if sub is not None and (plain is None or group[0].arguments):
                    return None
                selection.append((response_name, plain))
            members[definition.origin] = (member.name, selection)

        def write_parts(row: Record, loaded: Loaded) -> list[dict[str, Any]]:
            written = []
            for part in message_parts(row.parts, row.content):
                type_name, selection = members[type(part)]
                written.append(_object_or_fail(selection, type_name, part))
            return written

        return write_parts

    def connection(self, nodes: list[FieldNode], field: GraphQLField, total: bool) -> Write | None:
        """nodes, edges, pageInfo (and totalCount where the page knows it) of a page."""
        type_ = _object_type(field)
        selection = self.fields(type_, nodes) if type_ is not None else None
        if type_ is None or selection is None:
            return None
        writers: list[tuple[str, Write]] = []
        for response_name, group, sub in selection:
            write: Write | None = None
            name = group[0].name.value
            if sub is None:
                write = _constant(type_.name)
            elif group[0].arguments:
                return None
            elif name == "nodes":
                items = self.objects(group, sub)
                write = items and _nodes(*items)
            elif name == "edges":
                write = self.edges(group, sub)
            elif name == "pageInfo":
                info = self.columns(group, sub)
                write = info and _page_info(*info)
            elif name == "totalCount" and total:
                write = _total
            if write is None:
                return None
            writers.append((response_name, write))
        return _object(writers)

    def edges(self, nodes: list[FieldNode], field: GraphQLField) -> Write | None:
        edge = _object_type(field)
        selection = self.fields(edge, nodes) if edge is not None else None
        if edge is None or selection is None:
            return None
        parts: list[tuple[str, tuple[str, Any]]] = []  # (response name, (what, how))
        for response_name, group, sub in selection:
            name = group[0].name.value
            if sub is None:
                parts.append((response_name, ("typename", edge.name)))
            elif group[0].arguments:
                return None
            elif name == "cursor":
                parts.append((response_name, ("cursor", None)))
            elif name == "node":
                item = self.objects(group, sub)
                if item is None:
                    return None
                parts.append((response_name, ("node", item)))
            else:
                return None
        return _edges(parts)

    def load(self, role: str, nodes: list[FieldNode], field: GraphQLField) -> bool:
        """Claim the one load of `role` for this field (two fields reading two pages,
        or a page and the siblings, are more than one statement: no plan)."""
        if role in self.loads:
            return False
        self.loads[role] = (nodes, field)
        return True

    def context(self, type_: GraphQLObjectType, nodes: list[FieldNode], role: str) -> Write | None:
        """A Context: columns and __typename; for the root field's context ("top") also
        a page of its messages, its parent (with a page of the parent's forks), its root
        and ancestors."""
        selection = self.fields(type_, nodes)
        if selection is None:
            return None
        writers: list[tuple[str, Write]] = []
        for response_name, group, field in selection:
            write: Write | None = None
            name = group[0].name.value
            arguments = _arguments(group)
            if field is None:
                write = _constant(type_.name)
            elif (plain := _plain(field)) is not None and not arguments:
                self.attributes.add(plain[0])
                write = _column(plain)
            elif role == "top" and name == "messages" and arguments <= _PAGE_ARGUMENTS:
                connection = (
                    self.connection(group, field, total=True)
                    if self.load("page", group, field)
                    else None
                )
                write = connection and _loaded("page", connection)
            elif role == "top" and name == "parent" and not arguments:
                inner = (
                    self.context(type_, group, "parent")
                    if self.load("parent", group, field)
                    else None
                )
                write = inner and _parent(inner)
            elif role == "top" and name in ("root", "ancestors") and not arguments:
                self.chains = True
                inner = self.context(type_, group, "related")
                write = inner and (_root(inner) if name == "root" else _ancestors(inner))
            elif role == "parent" and name == "forks" and arguments <= _FORKS_ARGUMENTS:
                connection = (
                    self.connection(group, field, total=False)
                    if self.load("forks", group, field)
                    else None
                )
                write = connection and _loaded("forks", connection)
            if write is None:
                return None
            writers.append((response_name, write))
        return _object(writers)


@dataclass
class Plan:
    """One operation's answer for concrete directive values: bind, load once, write."""

    response_name: str
    nodes: list[FieldNode]
    field: GraphQLField
    bind: Callable[[RequestContext, VariableValues], Any]
    """The request's arguments, checked by the services (raises CtxgraphError)."""
    load: Callable[[RequestContext, Any], Awaitable[tuple[Any, Loaded]]]
    write: Write

    async def run(self, ctx: RequestContext, values: VariableValues) -> ExecutionResult | Fallback:
        try:
            bound = self.bind(ctx, values)
        except (CtxgraphError, GraphQLError):
            return Fallback("arguments")  # graphql-core reports it; nothing ran
        try:
            source, loaded = await self.load(ctx, bound)
            value = None if source is None else self.write(source, loaded)
        except Exception as exc:  # reported here, as graphql-core locates it: never run again
            error = located_error(exc, self.nodes, [self.response_name])
            nullable = not isinstance(self.field.type, GraphQLNonNull)
            return ExecutionResult(
                data={self.response_name: None} if nullable else None, errors=[error]
            )
        return ExecutionResult(data={self.response_name: value})


_LITERAL_ARGUMENTS: dict[int, tuple[FieldNode, dict[str, Any]]] = {}
"""Coerced arguments of field nodes that name no variable, by id of the node: they are
the same for every request (the sidebar's `contexts(first: 20)`, a page's `last: 50`)."""


def _argument_values(bound: Bound, values: VariableValues) -> dict[str, Any]:
    nodes, field = bound
    node = nodes[0]
    cached = _LITERAL_ARGUMENTS.get(id(node))
    if cached is not None and cached[0] is node:
        return cached[1]
    arguments = get_argument_values(field, node, values)
    if not any(_has_variable(a.value) for a in node.arguments or ()):
        if len(_LITERAL_ARGUMENTS) > 4096:  # documents come and go with the text cache
            _LITERAL_ARGUMENTS.clear()
        _LITERAL_ARGUMENTS[id(node)] = (node, arguments)
    return arguments


def _has_variable(value: ValueNode) -> bool:
    if isinstance(value, VariableNode):
        return True
    if isinstance(value, ListValueNode):
        return any(_has_variable(v) for v in value.values)
    if isinstance(value, ObjectValueNode):
        return any(_has_variable(f.value) for f in value.fields)
    return False


def _context_plan(
    planner: _Planner, response_name: str, nodes: list[FieldNode], field: GraphQLField
) -> Plan | None:
    type_ = _object_type(field)
    write = planner.context(type_, nodes, "top") if type_ is not None else None
    loads = planner.loads
    if write is None or ("forks" in loads and ("page" in loads or planner.chains)):
        return None
    page, forks = loads.get("page"), loads.get("forks")
    root: Bound = (nodes, field)
    meta, chains, message_forks = (
        "meta" in planner.attributes,
        planner.chains,
        planner.message_forks,
    )
    parts = planner.parts

    def bind(ctx: RequestContext, values: VariableValues) -> Any:
        key = parse_id(_argument_values(root, values)["id"])
        history = tree = None
        if page is not None:
            args = _argument_values(page, values)
            history = history_page_request(
                ctx.limits,
                HistoryFilter(),
                first=args.get("first"),
                after=args.get("after"),
                last=args.get("last"),
                before=args.get("before"),
            )
        if forks is not None:
            args = _argument_values(forks, values)
            q = TreeQuery(descendants=False, include_deleted=bool(args.get("includeDeleted")))
            tree = tree_page_request(ctx.limits, q, args.get("first"), args.get("after"))
        return key, history, tree

    async def load(ctx: RequestContext, bound: Any) -> tuple[Record | None, Loaded]:
        key, history, tree = bound
        loaded: Loaded = {}
        async with ctx.db.direct() as conn:
            if history is not None:
                found, pages = await store.contexts_with_pages(
                    conn, [key], history, meta=meta, chains=chains, parts=parts
                )
            elif tree is not None:
                found, tree_pages = await store.contexts_with_sibling_forks(
                    conn, [key], tree, meta=meta
                )
            elif chains:
                found = await store.contexts_with_chains(conn, [key], meta=meta)
            else:
                found = await store.contexts_with_parents(conn, [key], meta=meta)
            record = found.get(key)
            if record is not None and history is not None and message_forks:
                at = [(r.context_id, r.version) for r in pages[key].rows]
                loaded["message_forks"] = await tree_store.forks_at(conn, at) if at else {}
        loaded["contexts"] = found
        if record is not None and history is not None:
            p = pages[key]
            loaded["page"] = Page(
                p.rows, p.has_next, p.has_previous, message_cursor, record.message_count
            )
        if record is not None and tree is not None and record.parent_id in tree_pages:
            siblings = tree_pages[record.parent_id]
            loaded["forks"] = Page(
                siblings.rows, siblings.has_next, siblings.has_previous, _fork_cursor
            )
        return record, loaded

    return Plan(response_name, nodes, field, bind, load, write)


def _fork_cursor(row: Record) -> str:
    return tree_cursor(row, descendants=False)


def _list_plan(
    planner: _Planner, response_name: str, nodes: list[FieldNode], field: GraphQLField
) -> Plan | None:
    write = planner.connection(nodes, field, total=False)
    if write is None or planner.message_forks:
        return None
    root: Bound = (nodes, field)
    meta = "meta" in planner.attributes

    def bind(ctx: RequestContext, values: VariableValues) -> Any:
        args = _argument_values(root, values)
        filter_, order = args.get("filter"), args.get("orderBy")
        return list_request(
            ctx.limits,
            args.get("first"),
            args.get("after"),
            args.get("last"),
            args.get("before"),
            None if filter_ is None else from_coerced(ContextFilter, filter_),
            None if order is None else from_coerced(ContextOrder, order),
        )

    async def load(ctx: RequestContext, request: Any) -> tuple[Page, Loaded]:
        page = await list_contexts(ctx.db, request, meta=meta)
        return Page(page.rows, page.has_next, page.has_previous, page.cursor), {}

    return Plan(response_name, nodes, field, bind, load, write)


def _append_plan(
    planner: _Planner, response_name: str, nodes: list[FieldNode], field: GraphQLField
) -> Plan | None:
    """appendMessages(contextId, messages[, expectedVersion]) { messages { <columns> } }."""
    payload = _object_type(field)
    selection = planner.fields(payload, nodes) if payload is not None else None
    if payload is None or selection is None:
        return None
    writers: list[tuple[str, Write]] = []
    for name, group, sub in selection:
        write: Write | None = None
        if sub is None:
            write = _constant(payload.name)
        elif group[0].name.value == "messages" and not group[0].arguments:
            items = planner.objects(group, sub)
            write = items and _rows(*items)
        if write is None:
            return None
        writers.append((name, write))
    if planner.message_forks:  # a message just appended: graphql-core asks for its forks
        return None
    root: Bound = (nodes, field)

    def bind(ctx: RequestContext, values: VariableValues) -> Any:
        args = _argument_values(root, values)
        inputs = [from_coerced(MessageInput, m) for m in args["messages"]]
        return append_service.append_request(
            ctx.limits, args["contextId"], new_messages(inputs), args.get("expectedVersion")
        )

    async def load(ctx: RequestContext, request: Any) -> tuple[list[Record], Loaded]:
        return await append_service.append(ctx.db, request), {}

    return Plan(response_name, nodes, field, bind, load, _object(writers))


def make_plan(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None = None,
) -> Plan | None:
    """The plan of a validated document's operation for these values of its directives'
    variables, or None when that shape has no plan."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if len(operations) != 1:
        return None  # missing or ambiguous: the entry reports it
    (operation,) = operations
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    planner = _Planner(schema, fragments, variables or {})
    root_type = schema.get_root_type(operation.operation)
    if (
        operation.directives
        or root_type is None
        or operation.operation is OperationType.SUBSCRIPTION
    ):
        return None
    try:
        root = planner.fields(root_type, [_operation_node(operation)])
        if root is None or len(root) != 1:
            return None
        ((response_name, nodes, field),) = root
        if field is None:
            return None
        name, arguments = nodes[0].name.value, _arguments(nodes)
        if operation.operation is OperationType.MUTATION:
            if name == "appendMessages" and arguments <= _APPEND_ARGUMENTS:
                return _append_plan(planner, response_name, nodes, field)
            return None
        if name == "context" and arguments == {"id"}:
            return _context_plan(planner, response_name, nodes, field)
        if name == "contexts" and arguments <= _LIST_ARGUMENTS:
            return _list_plan(planner, response_name, nodes, field)
    except Unsupported:
        return None
    return None


def _operation_node(operation: OperationDefinitionNode) -> FieldNode:
    """A field node holding the operation's selection set, for `collect`."""
    return FieldNode(name=NameNode(value=""), selection_set=operation.selection_set)


_MISSING: Any = object()


@dataclass
class OperationPlans:
    """The plans of one operation, by the values of the variables its @include/@skip
    read; made when a request first brings those values."""

    schema: GraphQLSchema
    document: DocumentNode
    operation: OperationDefinitionNode
    conditions: tuple[str, ...]
    variants: dict[tuple[Any, ...], Plan | None] = dataclass_field(default_factory=dict)

    @classmethod
    def make(
        cls, schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode
    ) -> OperationPlans | None:
        """None when no request of this operation can have a plan."""
        name = operation.name.value if operation.name is not None else None
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        conditions = condition_variables(operation, fragments)
        plans = cls(schema, document, operation, conditions)
        if not conditions:
            plan = make_plan(schema, document, name)
            if plan is None:
                return None
            plans.variants[()] = plan
        return plans

    async def run(
        self, ctx: RequestContext, variables: dict[str, Any] | None
    ) -> ExecutionResult | Fallback:
        """The answer, a request error (its variables), or a Fallback."""
        values = get_variable_values(
            self.schema, self.operation.variable_definitions or (), variables or {}, max_errors=50
        )
        if isinstance(values, list):
            return ExecutionResult(data=None, errors=values)
        key = tuple(values.coerced.get(n) for n in self.conditions)
        plan = self.variants.get(key, _MISSING)
        if plan is _MISSING:
            name = self.operation.name.value if self.operation.name is not None else None
            plan = self.variants[key] = make_plan(self.schema, self.document, name, values.coerced)
        if plan is None:
            return Fallback("shape")
        answer: ExecutionResult | Fallback = await plan.run(ctx, values)
        return answer
