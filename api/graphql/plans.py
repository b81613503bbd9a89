"""Planned operations: the common read shapes, and the append, answered without graphql-core.

A chat page, a sidebar and a branch switcher are one statement each (the
look-ahead, api/graphql/lookahead.py), yet graphql-core still walked their
result field by field: resolve info, argument conversion, awaitables and
completion for every object, about a third of a chat page's CPU in process
(bench/README.md, "Optimizations"). For an operation made only of these shapes,
a plan is made once per parsed document and then, per request, binds the
variables, runs the one statement and writes the result:

    context(id) { <plain fields>, messages(first/after/last/before) { <page> } }
    context(id) { <plain fields>, parent { <plain fields>,
                                           forks(first/after/includeDeleted) { <page> } } }
    context(id) { <plain fields> }
    contexts(first/after/last/before) { <page> }
    mutation: appendMessages(contextId, messages, expectedVersion) { messages { <plain> } }

where <page> selects nodes, edges { cursor node }, pageInfo and (for messages)
totalCount, and the objects in it select plain fields only (columns read by
their serializer, api/graphql/execution.py) and __typename; fragments whose
type condition is the object's own type are fine. Anything else (another
field or argument, a directive, an abstract type condition, a response name
selected twice with different sub-selections) has no plan: graphql-core
executes it as always.

Same answer, by construction and by test (tests/test_plans.py): a plan reads
through the same store functions and page requests as the resolvers, coerces
arguments with graphql-core's own functions, and writes values with the
serializers graphql-core would use (but for the UTC datetimes the store returns, which
the JSON encoder writes as their isoformat, `_plain`). A read plan never writes an error: any
exception while running it (a malformed id, a page size over the limit, a lost
connection, a null where the schema promises a value) leaves the operation to
graphql-core, which reports it as it always does. Reading again is safe, but not
when the database failed (unavailable, or silent past CTXGRAPH_DATABASE_TIMEOUT:
api/security/failures.py): graphql-core would only wait on it again, once per
nested read, so the plan reports that error itself, as graphql-core would
(`Plan._failed`), and the request fails within one bound.

A write must not run twice. The append plan checks its arguments as the
resolver does (any refusal: graphql-core answers, nothing was written), then
writes once: a refusal by the store (not found, deleted, version conflict),
which it raises only when nothing was written, is still left to graphql-core;
any other failure from the write on (a lost connection after the statement
ran, a null in a written message) is reported by the plan itself, located and
coded as graphql-core's path would report it (`Plan._commit`).

Two ways in. The first time a text arrives, Strawberry parses and validates it
and the PlannedReads extension, after the query limits and every other hook,
answers it by its plan and remembers the text (`Plans.learn`). After that, a
plain JSON POST of the same text is answered by the GraphQL endpoint through
`Plans.answer` (api/graphiql/router.py) without Strawberry's view, parse,
validation or hooks: the query limits for its variables and the operation's
log line and metrics are applied there.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_named_type,
    located_error,
)
from graphql.execution.values import VariableValues, get_argument_values, get_variable_values
from strawberry.extensions import SchemaExtension
from strawberry.types.field import StrawberryField

from api.errors import CtxgraphError
from api.graphql.context import RequestContext
from api.graphql.errors import coded
from api.graphql.execution import (
    FULL_PATH,
    Plain,
    Selection,
    plain_field,
    plain_object,
    plain_objects,
    read_plain,
)
from api.graphql.inputs import MessageInput, from_coerced, to_new_messages
from api.graphql.queries import DEFAULT_ORDER, context_list
from api.graphql.types import (
    history_page_request,
    message_cursor,
    page_info,
    tree_cursor,
    tree_page_request,
)
from api.security.failures import classify as classify_failure
from api.security.http import record_operation
from api.security.limits import QueryLimits, check_operation, select_operation
from api.store import contexts as store
from api.store import messages as messages_store
from api.store.history import HistoryFilter
from api.store.inputs import check_version, parse_id
from api.store.tree import TreeQuery

Record = Any
Write = Callable[[Any, "Loaded"], Any]
"""Writes one value of the result from its source and what the plan loaded."""


class NoAnswer(Exception):
    """graphql-core answers this operation (and reports its error, if it has one)."""


@dataclass
class Page:
    """A loaded page, as the connection writers read it."""

    rows: list[Record]
    has_next: bool
    has_previous: bool
    cursor: Callable[[Record], str]
    total: int | None = None


Loaded = dict[int, Any]
"""What a plan loaded for a field that is not a column, by id() of its FieldNode."""


# --- making a plan ---------------------------------------------------------------------

_PAGE_ARGUMENTS = frozenset({"first", "after", "last", "before"})
_FORKS_ARGUMENTS = frozenset({"first", "after", "includeDeleted"})


def _collect(
    selection_set: SelectionSetNode,
    type_name: str,
    fragments: dict[str, FragmentDefinitionNode],
) -> list[tuple[str, FieldNode]] | None:
    """The fields selected on an object type, by response name in graphql-core's order;
    None where its collection could differ from this simple one (a directive, a fragment
    on another type) or a response name is selected twice other than as the same leaf."""
    fields: dict[str, FieldNode] = {}

    def visit(selections: SelectionSetNode) -> bool:
        for selection in selections.selections:
            if selection.directives:
                return False
            if isinstance(selection, FieldNode):
                name = selection.alias.value if selection.alias else selection.name.value
                seen = fields.setdefault(name, selection)
                if seen is not selection and not (
                    seen.name.value == selection.name.value
                    and not (seen.arguments or seen.selection_set)
                    and not (selection.arguments or selection.selection_set)
                ):
                    return False
                continue
            if isinstance(selection, InlineFragmentNode):
                condition, inner = selection.type_condition, selection.selection_set
            elif isinstance(selection, FragmentSpreadNode):
                fragment = fragments.get(selection.name.value)
                if fragment is None or fragment.directives or selection.arguments:
                    return False
                if fragment.variable_definitions:
                    return False
                condition, inner = fragment.type_condition, fragment.selection_set
            else:  # pragma: no cover - no other kind of selection exists
                return False
            if condition is not None and condition.name.value != type_name:
                return False
            if not visit(inner):
                return False
        return True

    return list(fields.items()) if visit(selection_set) else None


def _object_type(field: GraphQLField) -> GraphQLObjectType | None:
    """The object type of a field's values (or list items)."""
    named = field.type
    while isinstance(named, GraphQLNonNull | GraphQLList):
        named = named.of_type
    return named if isinstance(named, GraphQLObjectType) else None


def _argument_names(node: FieldNode) -> set[str]:
    return {a.name.value for a in node.arguments or ()}


def _plain(field: GraphQLField) -> Plain | None:
    """`plain_field`, but a DateTime field's UTC datetimes stay datetimes in the answer.

    A plan's answer is written by jsoncodec.dumps, whose orjson writes a UTC datetime
    exactly as the DateTime scalar's isoformat() (checked on 200,000 random ones,
    microseconds or not) in ~0.13 us instead of ~1.3 us (isoformat alone): 20 of them
    per sidebar, 50 per chat page. Any other value goes through the scalar.
    """
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


class _Planner:
    """Makes the plan of one operation; each method answers None for a shape it does
    not know."""

    def __init__(self, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self.fragments = fragments
        # the fields a plan loads, with their definition (arguments are bound per request)
        self.loads: dict[str, tuple[FieldNode, GraphQLField]] = {}
        # the record attributes the plan writes (the statements leave out what it does not)
        self.attributes: set[str] = set()

    def selection(
        self, selection_set: SelectionSetNode | None, type_: GraphQLObjectType
    ) -> list[tuple[str, FieldNode, GraphQLField | None]] | None:
        """(response name, field node, definition; None for __typename) per field."""
        if selection_set is None:
            return None
        collected = _collect(selection_set, type_.name, self.fragments)
        if collected is None:
            return None
        out: list[tuple[str, FieldNode, GraphQLField | None]] = []
        for response_name, field_node in collected:
            name = field_node.name.value
            if name == "__typename":
                out.append((response_name, field_node, None))
                continue
            field = type_.fields.get(name)
            if field is None:
                return None
            out.append((response_name, field_node, field))
        return out

    def fields_of(
        self, node: FieldNode, field: GraphQLField
    ) -> tuple[GraphQLObjectType, list[tuple[str, FieldNode, GraphQLField | None]]] | None:
        """The object type of a field's values and the fields selected on it."""
        type_ = _object_type(field)
        selection = self.selection(node.selection_set, type_) if type_ is not None else None
        return None if type_ is None or selection is None else (type_, selection)

    def plain(self, node: FieldNode, field: GraphQLField) -> tuple[Selection, str] | None:
        """An object (or list of objects) of which every selected field is a column or
        __typename: how to read them, and the type's name."""
        found = self.fields_of(node, field)
        if found is None:
            return None
        named, selection = found
        plains: Selection = []
        for response_name, field_node, sub in selection:
            plain = None if sub is None else _plain(sub)
            if sub is not None and (plain is None or field_node.arguments):
                return None
            if plain is not None:
                self.attributes.add(plain[0])
            plains.append((response_name, plain))
        return plains, named.name

    def connection(self, node: FieldNode, field: GraphQLField, with_total: bool) -> Write | None:
        """nodes, edges, pageInfo (and totalCount when the page knows it) of a page."""
        found = self.fields_of(node, field)
        if found is None:
            return None
        type_, selection = found
        writers: list[tuple[str, Write]] = []
        for response_name, field_node, sub in selection:
            write: Write | None = None
            if sub is None:
                write = _constant(type_.name)
            elif field_node.arguments:
                return None
            elif field_node.name.value == "nodes":
                items = self.plain(field_node, sub)
                write = items and _nodes(*items)
            elif field_node.name.value == "edges":
                write = self.edges(field_node, sub)
            elif field_node.name.value == "pageInfo":
                info = self.plain(field_node, sub)
                write = info and _page_info(*info)
            elif field_node.name.value == "totalCount" and with_total:
                write = _total
            if write is None:
                return None
            writers.append((response_name, write))
        return _object(writers)

    def edges(self, node: FieldNode, field: GraphQLField) -> Write | None:
        found = self.fields_of(node, field)
        if found is None:
            return None
        edge, selection = found
        parts: list[tuple[str, tuple[str, Any]]] = []  # (response name, (what, how))
        for response_name, field_node, sub in selection:
            if sub is None:
                parts.append((response_name, ("typename", edge.name)))
            elif field_node.arguments:
                return None
            elif field_node.name.value == "cursor":
                parts.append((response_name, ("cursor", None)))
            elif field_node.name.value == "node":
                item = self.plain(field_node, sub)
                if item is None:
                    return None
                parts.append((response_name, ("node", item)))
            else:
                return None
        return _edges(parts)

    def context(self, node: FieldNode, type_: GraphQLObjectType, top: bool) -> Write | None:
        """A Context: columns, and (for the root field's context) one page of its
        messages or its parent with a page of the parent's forks."""
        selection = self.selection(node.selection_set, type_)
        if selection is None:
            return None
        writers: list[tuple[str, Write]] = []
        for response_name, field_node, field in selection:
            write: Write | None = None
            name = field_node.name.value
            if field is None:
                write = _constant(type_.name)
            elif (plain := _plain(field)) is not None and not field_node.arguments:
                self.attributes.add(plain[0])
                write = _column(plain)
            elif _has_hooks(field):
                return None
            elif name == "messages" and top and "page" not in self.loads:
                if not _argument_names(field_node) <= _PAGE_ARGUMENTS:
                    return None
                self.loads["page"] = (field_node, field)
                write = self.connection(field_node, field, with_total=True)
                write = write and _loaded(field_node, write)
            elif name == "parent" and top and "parent" not in self.loads:
                if field_node.arguments:
                    return None
                self.loads["parent"] = (field_node, field)
                inner = self.context(field_node, type_, top=False)
                write = inner and _loaded(field_node, _nullable(inner))
            elif name == "forks" and not top and "forks" not in self.loads:
                if not _argument_names(field_node) <= _FORKS_ARGUMENTS:
                    return None
                self.loads["forks"] = (field_node, field)
                write = self.connection(field_node, field, with_total=False)
                write = write and _loaded(field_node, write)
            if write is None:
                return None
            writers.append((response_name, write))
        return _object(writers)


def make_plan(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None
) -> Plan | None:
    """The plan of a validated document's operation, or None when it has no plan."""
    operation, fragments = select_operation(document, operation_name)
    if operation is None:
        return None  # missing or ambiguous: graphql-core says so
    if operation.directives:
        return None
    planner = _Planner(fragments)
    if operation.operation is OperationType.MUTATION:
        return _append_plan(schema, planner, operation)
    if operation.operation is not OperationType.QUERY:
        return None
    query = schema.query_type
    root = planner.selection(operation.selection_set, query) if query is not None else None
    if root is None or len(root) != 1:
        return None
    ((response_name, node, field),) = root
    if field is None or _has_hooks(field):
        return None
    type_ = _object_type(field)
    if type_ is None:
        return None
    names = _argument_names(node)

    def read(write: Write, loads: dict[str, Bound], load: Callable[..., Any]) -> Plan:
        # the statements leave the contexts' metadata out unless the plan writes it
        meta = "meta" in planner.attributes
        return Plan(operation, response_name, (node, field), write, loads, load, meta=meta)

    if node.name.value == "context" and names == {"id"}:
        write = planner.context(node, type_, top=True)
        # one statement reads a context with a page of its messages or of its siblings
        if write is None or {"page", "parent"} <= planner.loads.keys():
            return None
        return read(write, planner.loads, _load_context)
    if node.name.value == "contexts" and names <= _PAGE_ARGUMENTS:
        write = planner.connection(node, field, with_total=False)
        if write is None:
            return None
        return read(write, {}, _load_context_list)
    return None


_APPEND_ARGUMENTS = frozenset({"contextId", "messages", "expectedVersion"})


def _append_plan(
    schema: GraphQLSchema, planner: _Planner, operation: OperationDefinitionNode
) -> Plan | None:
    """appendMessages(contextId, messages[, expectedVersion]) { messages { <plain> } }."""
    mutation = schema.mutation_type
    root = planner.selection(operation.selection_set, mutation) if mutation else None
    if root is None or len(root) != 1:
        return None
    ((response_name, node, field),) = root
    if (
        field is None
        or node.name.value != "appendMessages"
        or not _argument_names(node) <= _APPEND_ARGUMENTS
        or _has_hooks(field)
    ):
        return None
    found = planner.fields_of(node, field)
    if found is None:
        return None
    payload, selection = found
    writers: list[tuple[str, Write]] = []
    for name, field_node, sub in selection:
        write: Write | None = None
        if sub is None:
            write = _constant(payload.name)
        elif field_node.name.value == "messages" and not field_node.arguments:
            items = planner.plain(field_node, sub)
            write = items and _rows(*items)
        if write is None:
            return None
        writers.append((name, write))
    return Plan(operation, response_name, (node, field), _object(writers), {}, _append)


# --- writing -----------------------------------------------------------------------------


def _constant(value: Any) -> Write:
    return lambda source, loaded: value


def _column(plain: Plain) -> Write:
    def write(source: Any, loaded: Loaded) -> Any:
        value = read_plain(plain, source)
        if value is FULL_PATH:
            raise NoAnswer
        return value

    return write


def _object(writers: list[tuple[str, Write]]) -> Write:
    def write(source: Any, loaded: Loaded) -> dict[str, Any]:
        return {name: w(source, loaded) for name, w in writers}

    return write


def _loaded(node: FieldNode, inner: Write) -> Write:
    """A field whose value the plan loaded (a page, a parent), written by `inner`."""
    key = id(node)
    return lambda source, loaded: inner(loaded[key], loaded)


def _nullable(inner: Write) -> Write:
    return lambda source, loaded: None if source is None else inner(source, loaded)


def _rows(selection: Selection, type_name: str) -> Write:
    def write(rows: list[Record], loaded: Loaded) -> list[Any]:
        written = plain_objects(selection, type_name, rows)
        if written is None:
            raise NoAnswer
        return written

    return write


def _nodes(selection: Selection, type_name: str) -> Write:
    rows = _rows(selection, type_name)
    return lambda page, loaded: rows(page.rows, loaded)


def _page_info(selection: Selection, type_name: str) -> Write:
    def write(page: Page, loaded: Loaded) -> dict[str, Any]:
        info = page_info(page.rows, page.has_next, page.has_previous, page.cursor)
        written = plain_object(selection, type_name, info)
        if written is None:
            raise NoAnswer
        return written

    return write


def _total(page: Page, loaded: Loaded) -> int:
    if page.total is None:  # pragma: no cover - only planned where the page knows it
        raise NoAnswer
    return page.total


def _edges(parts: list[tuple[str, Any]]) -> Write:
    def write(page: Page, loaded: Loaded) -> list[dict[str, Any]]:
        rows = page.rows
        columns: list[list[Any]] = []
        for _, (kind, arg) in parts:
            if kind == "typename":
                columns.append([arg] * len(rows))
            elif kind == "cursor":
                columns.append([page.cursor(r) for r in rows])
            else:
                selection, type_name = arg
                nodes = plain_objects(selection, type_name, rows)
                if nodes is None:
                    raise NoAnswer
                columns.append(nodes)
        names = [name for name, _ in parts]
        return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]

    return write


# --- running -----------------------------------------------------------------------------

Bound = tuple[FieldNode, GraphQLField]


@dataclass
class Plan:
    """What to load for the operation's one root field, and how to write the result."""

    operation: OperationDefinitionNode
    response_name: str
    root: Bound
    write: Write
    loads: dict[str, Bound]
    load: Callable[[Plan, RequestContext, VariableValues], Any]
    # whether the contexts' metadata is written: if not, the statement leaves it out
    meta: bool = True

    @property
    def writes(self) -> bool:
        return self.operation.operation is OperationType.MUTATION

    async def run(
        self, schema: GraphQLSchema, ctx: RequestContext, variables: dict[str, Any] | None
    ) -> ExecutionResult | None:
        """The result, or None when graphql-core must answer (see the module's doc)."""
        try:
            values = get_variable_values(
                schema, self.operation.variable_definitions or (), variables or {}
            )
            if isinstance(values, list):
                return None  # graphql-core reports the variables' errors
            if not self.writes:
                source, loaded = await self.load(self, ctx, values)
                value = None if source is None else self.write(source, loaded)
                return ExecutionResult(data={self.response_name: value})
            commit = self.load(self, ctx, values)  # checks the arguments, writes nothing
        except Exception as exc:
            return self._failed(exc, ctx) if classify_failure(exc) is not None else None
        return await self._commit(commit, ctx)

    def _failed(self, exc: Exception, ctx: RequestContext) -> ExecutionResult:
        """The error of the root field as graphql-core reports it: located, coded, and
        its null bubbling up to `data` when the field is non-null."""
        error = coded(located_error(exc, [self.root[0]], [self.response_name]), ctx.request_id)
        if isinstance(self.root[1].type, GraphQLNonNull):
            return ExecutionResult(data=None, errors=[error])
        return ExecutionResult(data={self.response_name: None}, errors=[error])

    async def _commit(
        self, commit: Callable[[], Awaitable[Any]], ctx: RequestContext
    ) -> ExecutionResult | None:
        """Run a write whose inputs were checked, once: never handed to graphql-core
        again unless the store refused it, which it does before writing anything."""
        try:
            value = self.write(await commit(), {})
        except CtxgraphError:
            return None  # nothing was written; graphql-core runs it and reports the error
        except Exception as exc:  # it may have been written: report it here, never retry
            error = located_error(exc, [self.root[0]], [self.response_name])
            return ExecutionResult(data=None, errors=[coded(error, ctx.request_id)])
        return ExecutionResult(data={self.response_name: value})


def _arguments(bound: Bound, values: VariableValues) -> dict[str, Any]:
    node, field = bound
    return get_argument_values(field, node, values)


async def _load_context(
    plan: Plan, ctx: RequestContext, values: VariableValues
) -> tuple[Record | None, Loaded]:
    key = parse_id(_arguments(plan.root, values)["id"])
    loaded: Loaded = {}
    page, parent, forks = (plan.loads.get(k) for k in ("page", "parent", "forks"))
    async with ctx.db.direct() as conn:
        if page is not None:
            args = _arguments(page, values)
            req = history_page_request(
                ctx.limits,
                HistoryFilter(),
                first=args.get("first"),
                after=args.get("after"),
                last=args.get("last"),
                before=args.get("before"),
            )
            found, pages = await store.contexts_with_pages(conn, [key], req, meta=plan.meta)
            record = found.get(key)
            if record is not None:
                history = pages[key]
                loaded[id(page[0])] = Page(
                    history.rows,
                    history.has_next,
                    history.has_previous,
                    message_cursor,
                    record.message_count,
                )
            return record, loaded
        if forks is not None:
            args = _arguments(forks, values)
            q = TreeQuery(descendants=False, include_deleted=bool(args.get("includeDeleted")))
            tree_req = tree_page_request(ctx.limits, q, args.get("first"), args.get("after"))
            found, tree_pages = await store.contexts_with_sibling_forks(
                conn, [key], tree_req, meta=plan.meta
            )
        else:
            found = await store.contexts_with_parents(conn, [key], meta=plan.meta)
            tree_pages = {}
    record = found.get(key)
    if record is not None and parent is not None:
        up = None if record.parent_id is None else found.get(record.parent_id)
        loaded[id(parent[0])] = up
        if up is not None and forks is not None:
            siblings = tree_pages[up.id]
            loaded[id(forks[0])] = Page(
                siblings.rows, siblings.has_next, siblings.has_previous, _fork_cursor
            )
    return record, loaded


def _fork_cursor(row: Record) -> str:
    return tree_cursor(row, descendants=False)


async def _load_context_list(
    plan: Plan, ctx: RequestContext, values: VariableValues
) -> tuple[Page, Loaded]:
    args = _arguments(plan.root, values)
    connection = await context_list(
        ctx,
        args.get("first"),
        args.get("after"),
        args.get("last"),
        args.get("before"),
        None,
        DEFAULT_ORDER,
        meta=plan.meta,
    )
    return (
        Page(
            connection.nodes,
            connection._has_next,
            connection._has_previous,
            connection._cursor,
        ),
        {},
    )


def _append(
    plan: Plan, ctx: RequestContext, values: VariableValues
) -> Callable[[], Awaitable[list[Record]]]:
    """Checks the arguments as Mutation.append_messages does, and returns the write."""
    args = _arguments(plan.root, values)
    key = parse_id(args["contextId"], "contextId")
    inputs = [from_coerced(MessageInput, m) for m in args["messages"]]
    new = to_new_messages(inputs, ctx.limits)
    expected = check_version(args.get("expectedVersion"), "expectedVersion")

    async def commit() -> list[Record]:
        return await messages_store.append(ctx.db, key, new, expected)

    return commit


# --- the extension -----------------------------------------------------------------------


class Plans:
    """The plans of a schema: by parsed document (the parser cache hands out the same
    document for the same text), and by query text for the texts that have already been
    parsed, validated and answered by a plan, which `answer` serves without Strawberry's
    parse, validation and extension hooks."""

    def __init__(self, limits: QueryLimits | None = None, maxsize: int = 1024) -> None:
        self.limits = limits
        self.maxsize = maxsize
        self._plans: dict[tuple[int, str | None], tuple[DocumentNode, Plan | None]] = {}
        # (document, plan, whether the query limits must be checked per request)
        self._known: dict[tuple[str, str | None], tuple[DocumentNode, Plan, bool]] = {}

    def get(
        self, schema: GraphQLSchema, document: DocumentNode, operation_name: str | None
    ) -> Plan | None:
        key = (id(document), operation_name)
        entry = self._plans.get(key)
        if entry is None or entry[0] is not document:
            if len(self._plans) >= self.maxsize:
                self._plans.clear()
            entry = (document, make_plan(schema, document, operation_name))
            self._plans[key] = entry
        return entry[1]

    def learn(
        self,
        schema: GraphQLSchema,
        query: str,
        operation_name: str | None,
        document: DocumentNode,
        plan: Plan,
    ) -> None:
        """`query` parsed into `document`, passed validation, and `plan` answered it.

        Without an operation name Strawberry runs the document's first operation, so a
        plan of the first operation also answers the text sent without a name.
        """
        if len(self._known) >= self.maxsize:
            self._known.clear()
        known = (document, plan, self._limited(schema, document, plan))
        self._known[(query, operation_name)] = known
        first = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
        if first is plan.operation:
            self._known[(query, None)] = known

    def _limited(self, schema: GraphQLSchema, document: DocumentNode, plan: Plan) -> bool:
        """Whether some variables could put the operation over the query limits.

        Variables reach the limits only as page sizes (first/last), clamped to
        max_page_size: an operation within the limits with every variable at that
        size is within them for any variables, and is not checked again.
        """
        if self.limits is None:
            return False
        name = plan.operation.name.value if plan.operation.name else None
        worst = {
            d.variable.name.value: self.limits.max_page_size
            for d in plan.operation.variable_definitions or ()
        }
        try:
            check_operation(schema, document, name, worst, self.limits)
        except Exception:
            return True
        return False

    async def answer(
        self,
        schema: GraphQLSchema,
        query: str,
        operation_name: str | None,
        variables: dict[str, Any] | None,
        context: RequestContext,
    ) -> ExecutionResult | None:
        """The result of a query text already answered by its plan, after the query
        limits for these variables; None when the full path must answer (a text not
        seen, an operation over a limit, anything the plan gives way on)."""
        known = self._known.get((query, operation_name))
        if known is None:
            return None
        document, plan, limited = known
        if limited and self.limits is not None:
            try:
                check_operation(schema, document, operation_name, variables, self.limits)
            except Exception:
                return None  # the full path reports it
        started = time.perf_counter()
        result = await plan.run(schema, context, variables)
        if result is not None:
            name = plan.operation.name.value if plan.operation.name else None
            codes = [str((e.extensions or {}).get("code")) for e in result.errors or ()]
            kind = plan.operation.operation.value
            record_operation(context.request, kind, name, codes, time.perf_counter() - started)
        return result


class PlannedReads(SchemaExtension):
    """Answers an operation by its plan when it has one (module doc); listed after the
    query limits, so they apply first."""

    def __init__(self, plans: Plans) -> None:
        super().__init__()
        self.plans = plans

    async def on_execute(self) -> Any:
        ec = self.execution_context
        document = ec.graphql_document
        context = ec.context
        if document is not None and isinstance(context, RequestContext):
            schema = ec.schema._schema
            plan = self.plans.get(schema, document, ec.operation_name)
            if plan is not None:
                result = await plan.run(schema, context, ec.variables)
                if result is not None:
                    ec.result = result
                    if ec.query is not None:
                        self.plans.learn(schema, ec.query, ec.operation_name, document, plan)
        yield
