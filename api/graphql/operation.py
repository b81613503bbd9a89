"""The one entry every GraphQL operation goes through: HTTP GET and POST, each
operation of a batch, and every operation on a WebSocket.

    authenticate -> persisted document -> parse -> validate -> pick the operation
    -> transport rule -> query limits -> its plan, or graphql-core -> error codes
    -> metrics and the access log

Each concern runs here once, so no way in can skip one (tests/test_entry.py
sends every way in without a key). Everything decided by the document alone
(its parse, validation, the chosen operation, whether it has a plan, whether
its variables can matter to the limits) is decided once per text and kept in
bounded LRU caches; per request only the credentials, the variables and the
execution remain.
"""

from __future__ import annotations

import enum
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
    OperationDefinitionNode,
    OperationType,
    execute,
    parse,
    specified_rules,
    subscribe,
    validate,
)
from graphql.validation import ASTValidationRule
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from api.errors import BadUserInput, CtxgraphError, QueryTooComplex, Unauthenticated
from api.graphql.context import RequestContext
from api.graphql.errors import coded
from api.graphql.execution import is_awaitable
from api.graphql.plans import Fallback, OperationPlans
from api.persisted_queries import PersistedQueries, Refusal
from api.security.auth import Authenticator
from api.security.http import record_operation, record_plan
from api.security.limits import (
    SUBSCRIPTION_OVER_HTTP,
    NoIntrospection,
    QueryLimits,
    check_operation,
)


class Transport(enum.Enum):
    """How the operation arrived: GET may only read, WebSocket may subscribe."""

    GET = "GET"
    POST = "POST"
    WEBSOCKET = "WS"


@dataclass(frozen=True, slots=True)
class OperationRequest:
    """One GraphQL request as the transport decoded it (GraphQL over HTTP's
    parameters; a graphql-transport-ws `subscribe` payload has the same)."""

    query: str | None = None
    operation_name: str | None = None
    variables: dict[str, Any] | None = None
    extensions: dict[str, Any] | None = None
    document_id: str | None = None


@dataclass(slots=True)
class Outcome:
    """An operation's result, and what the transport needs to answer it.

    `executed` is False for a request error (nothing ran; no `data` entry);
    `status` is set when the refusal has an HTTP status of its own (401, 403,
    405, a persisted-query refusal), else the transport chooses by media type.
    """

    result: ExecutionResult
    executed: bool = True
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    operation_type: OperationType | None = None

    @property
    def codes(self) -> list[str]:
        return [str((e.extensions or {}).get("code")) for e in self.result.errors or ()]


class RequestError(Exception):
    """A request the entry refuses before executing anything."""

    def __init__(
        self,
        errors: Sequence[GraphQLError],
        status: int | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        operation_type: OperationType | None = None,
    ) -> None:
        super().__init__(errors[0].message if errors else "request error")
        self.errors = list(errors)
        self.status = status
        self.headers = headers
        self.operation_type = operation_type


def _error(exc: CtxgraphError) -> GraphQLError:
    return GraphQLError(exc.message, extensions={"code": exc.code}, original_error=exc)


@dataclass(slots=True)
class Prepared:
    """What a document's text decides once: its parse and validation outcome, and per
    operation name the operation, its plan and whether its limits depend on variables."""

    size: int
    document: DocumentNode | None
    errors: list[GraphQLError] | None
    operations: dict[str | None, PreparedOperation | list[GraphQLError]] = field(
        default_factory=dict
    )


@dataclass(slots=True)
class PreparedOperation:
    operation: OperationDefinitionNode
    name: str | None
    type: OperationType
    limited: bool
    """Some variables could put it over the query limits: check them per request."""
    planned: bool = False
    plans: OperationPlans | None = None
    """Made the first time the operation passes the limits (a document over them, e.g.
    fragments that expand exponentially, is never walked by the planner); None when
    no request of it can have a plan."""


@dataclass(slots=True)
class Admission:
    """One operation on its way through the steps before execution."""

    request: OperationRequest
    ctx: RequestContext
    transport: Transport
    text: str | None = None
    prepared: Prepared | None = None
    chosen: PreparedOperation | None = None


class Operations:
    """The entry. One per schema (one per process)."""

    def __init__(
        self,
        schema: GraphQLSchema,
        *,
        authenticator: Authenticator,
        persisted: PersistedQueries,
        limits: QueryLimits,
        introspection: bool = True,
        executor_class: type[Any] | None = None,
        cache_bytes: int = 16 * 1024 * 1024,
        plans: bool = True,
    ) -> None:
        self.schema = schema
        self.authenticator = authenticator
        self.persisted = persisted
        self.limits = limits
        self.executor_class = executor_class
        self.plans = plans
        self._steps = [getattr(self, f"_step_{step}") for step in self.STEPS]
        # graphql-core's rules and the two Strawberry adds to them (its Schema.execute
        # validates with the same list)
        self.rules: tuple[type[ASTValidationRule], ...] = (
            *specified_rules,
            MaybeNullValidationRule,
            OneOfInputValidationRule,
        )
        if not introspection:
            self.rules += (NoIntrospection,)
        # by text, bounded by an estimate of the bytes held: a parsed document takes
        # roughly ten times its text
        self._prepared: LRUCache[str, Prepared] = LRUCache(
            maxsize=cache_bytes, getsizeof=lambda prepared: prepared.size
        )

    # --- what a text decides once ----------------------------------------------------------

    def prepare(self, text: str) -> Prepared:
        """The text's parse and validation, cached by text."""
        cached: Prepared | None = self._prepared.get(text)
        if cached is not None:
            return cached
        size = 10 * len(text) + 512
        try:
            document = parse(text, max_tokens=self.limits.max_tokens)
        except GraphQLSyntaxError as exc:
            prepared = Prepared(size, None, [self._syntax_error(exc)])
        else:
            errors = validate(self.schema, document, self.rules)
            prepared = Prepared(size, document, errors or None)
        if size <= self._prepared.maxsize:
            self._prepared[text] = prepared
        return prepared

    def _syntax_error(self, exc: GraphQLSyntaxError) -> GraphQLError:
        if "tokens. Parsing aborted" in exc.message or "comments. Parsing aborted" in exc.message:
            limit = self.limits.max_tokens
            return _error(
                QueryTooComplex(
                    f"The query has more than {limit} tokens (limit "
                    f"CTXGRAPH_MAX_QUERY_TOKENS={limit}). Send a smaller document."
                )
            )
        return exc

    def operation(self, prepared: Prepared, name: str | None) -> PreparedOperation:
        """The operation a request names, decided once per (text, name); raises
        RequestError as the GraphQL spec's GetOperation does."""
        found = prepared.operations.get(name)
        if found is None:
            found = self._select(prepared, name)
            prepared.operations[name] = found
        if isinstance(found, list):
            raise RequestError(found)
        return found

    def _select(
        self, prepared: Prepared, name: str | None
    ) -> PreparedOperation | list[GraphQLError]:
        document = prepared.document
        assert document is not None
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if name is None:
            if len(operations) != 1:
                return [
                    GraphQLError(
                        "This document holds several operations: name the one to run in "
                        "operationName."
                    )
                ]
            operation = operations[0]
        else:
            named = [o for o in operations if o.name is not None and o.name.value == name]
            if not named:
                return [GraphQLError(f"Unknown operation named '{name}'.")]
            operation = named[0]
        op_name = operation.name.value if operation.name is not None else None
        limited = self._limited(document, operation, op_name)
        return PreparedOperation(operation, op_name, operation.operation, limited)

    def _limited(
        self, document: DocumentNode, operation: OperationDefinitionNode, name: str | None
    ) -> bool:
        """Whether some variables could put the operation over the query limits.

        Variables reach the limits only as page sizes (first/last), clamped to
        max_page_size: an operation within the limits with every variable at that
        size is within them for any variables. One over them even so is checked per
        request (and refused with the variables it came with)."""
        worst = {
            d.variable.name.value: self.limits.max_page_size
            for d in operation.variable_definitions or ()
        }
        try:
            check_operation(self.schema, document, name, worst, self.limits)
        except GraphQLError:
            return True
        return False

    # --- per request ------------------------------------------------------------------------

    STEPS = (
        "authenticate",
        "persisted_document",
        "parse_and_validate",
        "select_operation",
        "transport_rule",
        "query_limits",
        "plan",
    )
    """What every operation passes before it runs, in order: `_admit` runs each
    `_step_<name>` (tests/test_entry.py checks that every path and transport runs
    every one of them, so a step added here applies everywhere)."""

    async def _admit(
        self, request: OperationRequest, ctx: RequestContext, transport: Transport
    ) -> tuple[Prepared, PreparedOperation]:
        """Everything before execution; raises RequestError."""
        admission = Admission(request, ctx, transport)
        for step in self._steps:
            await step(admission)
        assert admission.prepared is not None
        assert admission.chosen is not None
        return admission.prepared, admission.chosen

    async def _step_authenticate(self, a: Admission) -> None:
        await self._authenticate(a.ctx)

    async def _step_persisted_document(self, a: Admission) -> None:
        request = a.request
        resolved = self.persisted.resolve(request.query, request.extensions, request.document_id)
        if isinstance(resolved, Refusal):
            error = GraphQLError(resolved.message, extensions={"code": resolved.code})
            raise RequestError([error], resolved.status, resolved.headers)
        a.text = resolved.query if resolved.query is not None else request.query
        if not a.text:
            raise RequestError(
                [
                    _error(
                        BadUserInput(
                            'No GraphQL query found in the request: send {"query": "..."} '
                            "(or a persisted query's hash)."
                        )
                    )
                ],
                400,
            )

    async def _step_parse_and_validate(self, a: Admission) -> None:
        assert a.text is not None
        a.prepared = self.prepare(a.text)
        if a.prepared.errors is not None:
            raise RequestError(a.prepared.errors)

    async def _step_select_operation(self, a: Admission) -> None:
        assert a.prepared is not None
        a.chosen = self.operation(a.prepared, a.request.operation_name)

    async def _step_transport_rule(self, a: Admission) -> None:
        assert a.chosen is not None
        kind = a.chosen.type
        if a.transport is Transport.GET and kind is not OperationType.QUERY:
            raise RequestError(
                [
                    _error(
                        BadUserInput(
                            f"A {kind.value} cannot be sent with GET (it is not safe to "
                            "repeat or cache): send it with POST."
                        )
                    )
                ],
                405,
                (("allow", "POST"),),
                kind,
            )
        if a.transport is not Transport.WEBSOCKET and kind is OperationType.SUBSCRIPTION:
            raise RequestError([_error(BadUserInput(SUBSCRIPTION_OVER_HTTP))], None, (), kind)

    async def _step_query_limits(self, a: Admission) -> None:
        assert a.prepared is not None
        assert a.prepared.document is not None
        assert a.chosen is not None
        if a.chosen.limited:
            try:
                check_operation(
                    self.schema,
                    a.prepared.document,
                    a.chosen.name,
                    a.request.variables,
                    self.limits,
                )
            except GraphQLError as exc:
                raise RequestError([exc], None, (), a.chosen.type) from None

    async def _step_plan(self, a: Admission) -> None:
        assert a.prepared is not None
        assert a.prepared.document is not None
        assert a.chosen is not None
        chosen = a.chosen
        if not chosen.planned and self.plans and chosen.type is not OperationType.SUBSCRIPTION:
            chosen.plans = OperationPlans.make(self.schema, a.prepared.document, chosen.operation)
        chosen.planned = True

    async def reject(
        self,
        ctx: RequestContext,
        error: CtxgraphError,
        status: int,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> Outcome:
        """The answer to a request the transport could not decode: still authenticated
        first, so a client without credentials learns nothing but that it needs them."""
        started = time.perf_counter()
        try:
            await self._authenticate(ctx)
            raise RequestError([_error(error)], status, headers)
        except RequestError as refused:
            return self._refused(refused, ctx, started)

    async def _authenticate(self, ctx: RequestContext) -> None:
        try:
            await self.authenticator.authenticate(ctx)
        except Unauthenticated as exc:
            raise RequestError(
                [_error(exc)], 401, (("www-authenticate", 'Bearer realm="ctxgraph"'),)
            ) from None

    async def execute(
        self, request: OperationRequest, ctx: RequestContext, transport: Transport
    ) -> Outcome:
        """Run one query or mutation (over HTTP; a batch calls it per operation)."""
        started = time.perf_counter()
        try:
            prepared, chosen = await self._admit(request, ctx, transport)
        except RequestError as refused:
            return self._refused(refused, ctx, started)
        return await self._run(prepared, chosen, request, ctx, started)

    async def _run(
        self,
        prepared: Prepared,
        chosen: PreparedOperation,
        request: OperationRequest,
        ctx: RequestContext,
        started: float,
    ) -> Outcome:
        """An admitted query or mutation, by its plan or by graphql-core; reported."""
        assert prepared.document is not None
        result: ExecutionResult | Fallback | None = None
        if chosen.plans is not None:
            result = await chosen.plans.run(ctx, request.variables)
            record_plan(ctx.request, result.reason if isinstance(result, Fallback) else None)
        if not isinstance(result, ExecutionResult):
            result = await self._graphql_core(prepared.document, chosen, ctx, request.variables)
        executed = not (result.data is None and all(e.path is None for e in result.errors or ()))
        outcome = Outcome(self._coded(result, ctx), executed, None, (), chosen.type)
        self._record(ctx, chosen.type, chosen.name, outcome.codes, started)
        return outcome

    async def _graphql_core(
        self,
        document: DocumentNode,
        chosen: PreparedOperation,
        ctx: RequestContext,
        variables: dict[str, Any] | None,
    ) -> ExecutionResult:
        result = execute(
            self.schema,
            document,
            context_value=ctx,
            variable_values=variables,
            operation_name=chosen.name,
            executor_class=self.executor_class,
            is_awaitable=is_awaitable,
        )
        if not isinstance(result, ExecutionResult):
            result = await result
        return result

    async def stream(
        self, request: OperationRequest, ctx: RequestContext
    ) -> AsyncIterator[Outcome]:
        """A WebSocket operation: the results of a subscription as they come, or the one
        result of a query or mutation."""
        started = time.perf_counter()
        try:
            prepared, chosen = await self._admit(request, ctx, Transport.WEBSOCKET)
        except RequestError as refused:
            yield self._refused(refused, ctx, started)
            return
        if chosen.type is not OperationType.SUBSCRIPTION:
            yield await self._run(prepared, chosen, request, ctx, started)
            return
        assert prepared.document is not None
        source = await _maybe_await(
            subscribe(
                self.schema,
                prepared.document,
                context_value=ctx,
                variable_values=request.variables,
                operation_name=chosen.name,
                executor_class=self.executor_class,
            )
        )
        if isinstance(source, ExecutionResult):
            outcome = Outcome(self._coded(source, ctx), False, None, (), chosen.type)
            self._record(ctx, chosen.type, chosen.name, outcome.codes, started)
            yield outcome
            return
        self._record(ctx, chosen.type, chosen.name, [], started)
        try:
            async for result in source:
                yield Outcome(self._coded(result, ctx), True, None, (), chosen.type)
        except Exception as exc:  # graphql-core lets the event stream's errors through
            error = (
                exc if isinstance(exc, GraphQLError) else GraphQLError(str(exc), original_error=exc)
            )
            failed = ExecutionResult(data=None, errors=[error])
            yield Outcome(self._coded(failed, ctx), True, None, (), chosen.type)
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()

    # --- reporting -----------------------------------------------------------------------

    def _coded(self, result: ExecutionResult, ctx: RequestContext) -> ExecutionResult:
        if result.errors:
            result.errors = [
                e if (e.extensions or {}).get("code") else coded(e, ctx.request_id)
                for e in result.errors
            ]
        return result

    def _refused(self, refused: RequestError, ctx: RequestContext, started: float) -> Outcome:
        errors = [
            e if (e.extensions or {}).get("code") else coded(e, ctx.request_id)
            for e in refused.errors
        ]
        outcome = Outcome(
            ExecutionResult(data=None, errors=errors),
            False,
            refused.status,
            refused.headers,
            refused.operation_type,
        )
        self._record(ctx, refused.operation_type, None, outcome.codes, started)
        return outcome

    @staticmethod
    def _record(
        ctx: RequestContext,
        operation_type: OperationType | None,
        name: str | None,
        codes: list[str],
        started: float,
    ) -> None:
        kind = operation_type.value if operation_type is not None else None
        record_operation(ctx.request, kind, name, codes, time.perf_counter() - started)


async def _maybe_await(value: Any) -> Any:
    if is_awaitable(value):
        return await value
    return value
