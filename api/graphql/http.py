"""GraphQL over HTTP at /graphql: decode the request, hand each operation to the entry
(api/graphql/operation.py), write its answer.

What this layer decides, and only this:

- The IDE page: a GET that decodes to no GraphQL parameter at all (no query,
  operationName, variables, extensions or documentId) from a client that prefers
  text/html. Every other request is a GraphQL request, authenticated by the entry.
- Decoding: GET parameters (percent-decoded as UTF-8, `&`-separated, each at most
  once) and JSON POST bodies (an object, or an array of them when batching is on),
  each parameter of its GraphQL type. Anything else is a GraphQL error response
  with `extensions.code` (400; 405 for other methods; 415 for other bodies).
- The media type: application/graphql-response+json when the client prefers it
  (then request errors are 400 without `data`, as the GraphQL over HTTP spec
  says), else application/json (request errors 200, as legacy clients expect).
  Refusals with a status of their own keep it (401, 403, 405, 503).

WebSockets go to Strawberry's graphql-transport-ws handler, adapted in
api/graphql/strawberry_adapter.py so their operations reach the same entry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from graphql import ExecutionResult
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api import jsoncodec
from api.errors import BadUserInput, CtxgraphError, QueryTooComplex
from api.graphql.context import RequestContext
from api.graphql.operation import OperationRequest, Operations, Outcome, Transport
from api.security.http import MAX_JSON_DEPTH, json_too_deep

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
PARAMETERS = ("query", "operationName", "variables", "extensions", "documentId")

ContextGetter = Callable[[Request], Awaitable[RequestContext]]
IdePage = Callable[[Scope, Receive, Send], Awaitable[None]]


class BadRequest(Exception):
    """The request cannot be decoded into GraphQL requests."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        error: type[CtxgraphError] = BadUserInput,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.error = error(message)
        self.status = status
        self.headers = headers


# --- content negotiation ------------------------------------------------------------------


def _media_ranges(accept: str) -> list[tuple[str, float]]:
    ranges = []
    for item in accept.split(","):
        kind, *params = item.strip().split(";")
        kind = kind.strip().lower()
        if not kind:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        ranges.append((kind, q))
    return ranges


def _quality(ranges: list[tuple[str, float]], media_type: str, *, wildcards: bool = True) -> float:
    """The q a client gives `media_type`: its most specific matching range."""
    main = media_type.split("/")[0]
    best, specificity = 0.0, -1
    for kind, q in ranges:
        if kind == media_type:
            rank = 2
        elif wildcards and kind == f"{main}/*":
            rank = 1
        elif wildcards and kind == "*/*":
            rank = 0
        else:
            continue
        if rank > specificity:
            best, specificity = q, rank
    return best


def response_type(accept: str) -> str:
    """application/graphql-response+json when the client ranks it at least as high as
    application/json (and names it); application/json otherwise, also for an Accept
    that allows neither (answering beats a 406 for API clients)."""
    if GRAPHQL_RESPONSE not in accept:
        return JSON
    ranges = _media_ranges(accept)
    wanted = _quality(ranges, GRAPHQL_RESPONSE, wildcards=False)
    return GRAPHQL_RESPONSE if wanted > 0 and wanted >= _quality(ranges, JSON) else JSON


def prefers_html(accept: str) -> bool:
    """A browser's navigation: text/html named, ranked at least as high as JSON."""
    ranges = _media_ranges(accept)
    html = _quality(ranges, "text/html", wildcards=False)
    return html > 0 and html >= max(
        _quality(ranges, JSON, wildcards=False), _quality(ranges, GRAPHQL_RESPONSE, wildcards=False)
    )


# --- decoding -----------------------------------------------------------------------------


def _json_parameter(name: str, value: str) -> dict[str, Any] | None:
    if value == "":
        return None
    if json_too_deep(value.encode()):
        raise BadRequest(f"`{name}` is nested more than {MAX_JSON_DEPTH} levels deep.")
    try:
        decoded = jsoncodec.loads(value)
    except (RecursionError, ValueError):
        raise BadRequest(f"`{name}` must be a JSON object; it is not valid JSON.") from None
    if decoded is not None and type(decoded) is not dict:
        raise BadRequest(f"`{name}` must be a JSON object.")
    return decoded


def decode_get(query_string: bytes) -> dict[str, str]:
    """The GraphQL parameters of a query string: decoded strictly as UTF-8, each given
    at most once (a repeated one is ambiguous: refused, never guessed)."""
    try:
        pairs = parse_qsl(
            query_string.decode("utf-8"), keep_blank_values=True, errors="strict", separator="&"
        )
    except UnicodeDecodeError:
        raise BadRequest("The query string is not valid UTF-8 (percent-encoded).") from None
    found: dict[str, str] = {}
    for name, value in pairs:
        if name in PARAMETERS:
            if name in found:
                raise BadRequest(f"The parameter `{name}` is given more than once.")
            found[name] = value
    return found


def request_from_params(params: dict[str, str]) -> OperationRequest:
    return OperationRequest(
        query=params.get("query") or None,
        operation_name=params.get("operationName") or None,
        variables=_json_parameter("variables", params.get("variables", "")),
        extensions=_json_parameter("extensions", params.get("extensions", "")),
        document_id=params.get("documentId") or None,
    )


def _typed(item: dict[str, Any], name: str, kind: type) -> Any:
    value = item.get(name)
    if value is not None and type(value) is not kind:
        expected = "a string" if kind is str else "a JSON object"
        raise BadRequest(f"`{name}` must be {expected} or null.")
    return value


def request_from_json(item: Any) -> OperationRequest:
    if type(item) is not dict:
        raise BadRequest(
            'A GraphQL request must be a JSON object: {"query": "...", "variables": {...}}.'
        )
    return OperationRequest(
        query=_typed(item, "query", str),
        operation_name=_typed(item, "operationName", str),
        variables=_typed(item, "variables", dict),
        extensions=_typed(item, "extensions", dict),
        document_id=_typed(item, "documentId", str),
    )


def decode_post(
    content_type: str, body: bytes, max_batch: int
) -> tuple[list[OperationRequest], bool]:
    """The requests of a JSON body, and whether it was a batch (a JSON array)."""
    kind, _, params = content_type.partition(";")
    charset = next(
        (
            v.strip().strip('"').lower()
            for k, _, v in (p.strip().partition("=") for p in params.split(";"))
            if k.lower() == "charset"
        ),
        "utf-8",
    )
    if kind.strip().lower() != JSON or charset not in ("utf-8", "utf8"):
        raise BadRequest(
            "Send the GraphQL request as a JSON body with `Content-Type: application/json` "
            "(UTF-8).",
            status=415,
        )
    if not body.strip():
        raise BadRequest('The request body is empty: send {"query": "..."}.')
    if json_too_deep(body):
        raise BadRequest(f"The request's JSON is nested more than {MAX_JSON_DEPTH} levels deep.")
    try:
        data = jsoncodec.loads(body)
    except (RecursionError, ValueError):
        raise BadRequest("The request body is not valid JSON (UTF-8).") from None
    if type(data) is not list:
        return [request_from_json(data)], False
    if not data:
        raise BadRequest("The batch is empty: send at least one operation.")
    if len(data) > max_batch:
        raise BadRequest(
            f"This request holds {len(data)} operations; at most {max_batch} are allowed per "
            f"HTTP request (CTXGRAPH_MAX_BATCH_OPERATIONS={max_batch}). Send one operation "
            "per request.",
            error=QueryTooComplex,
        )
    if any(type(item) is not dict for item in data):
        raise BadRequest("Each operation of a batch must be a JSON object.")
    return [request_from_json(item) for item in data], True


# --- answering ----------------------------------------------------------------------------


def _body(result: ExecutionResult, executed: bool) -> dict[str, Any]:
    answer: dict[str, Any] = {}
    if executed:
        answer["data"] = result.data
    if result.errors:
        answer["errors"] = [e.formatted for e in result.errors]
    if result.extensions:
        answer["extensions"] = result.extensions
    return answer


def _status(outcome: Outcome, media_type: str) -> int:
    if outcome.status is not None:
        return outcome.status
    if not outcome.executed:
        return 400 if media_type == GRAPHQL_RESPONSE else 200
    return 503 if "SERVICE_UNAVAILABLE" in outcome.codes else 200


async def respond(
    send: Send,
    status: int,
    body: Any,
    media_type: str = JSON,
    headers: tuple[tuple[str, str], ...] = (),
) -> None:
    payload = jsoncodec.dumps(body)
    raw_headers = [
        (b"content-type", media_type.encode()),
        (b"content-length", str(len(payload)).encode()),
        *((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


async def read_body(receive: Receive) -> bytes | None:
    """The whole body (the body-limit middleware has bounded it); None if the client left."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


class GraphQLHTTP:
    """The ASGI app of /graphql: HTTP here, WebSockets to `websocket`."""

    def __init__(
        self,
        operations: Operations,
        context_getter: ContextGetter,
        *,
        websocket: ASGIApp,
        ide: IdePage | None = None,
        max_batch_operations: int = 1,
        retry_after: int = 1,
    ) -> None:
        self.operations = operations
        self.context_getter = context_getter
        self.websocket = websocket
        self.ide = ide
        self.max_batch = max_batch_operations
        self.retry_after = retry_after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self.websocket(scope, receive, send)
            return
        media_type = response_type(_header(scope, b"accept"))
        try:
            transport, requests, batched = await self._decode(scope, receive)
        except BadRequest as bad:
            context = await self.context_getter(Request(scope, receive))
            outcome = await self.operations.reject(context, bad.error, bad.status, bad.headers)
            await respond(
                send,
                _status(outcome, media_type),
                _body(outcome.result, False),
                media_type,
                outcome.headers,
            )
            return
        if transport is None:
            assert self.ide is not None
            await self.ide(scope, receive, send)
            return
        if requests is None:  # the client left before its body arrived
            return
        context = await self.context_getter(Request(scope, receive))
        outcomes = [await self.operations.execute(r, context, transport) for r in requests]
        unauthenticated = next((o for o in outcomes if o.status == 401), None)
        if not batched or unauthenticated is not None:
            # a batch without valid credentials is one refusal, not an array of them
            outcome = unauthenticated or outcomes[0]
            status = _status(outcome, media_type)
            headers = outcome.headers
            if status == 503:
                headers = (*headers, ("retry-after", str(self.retry_after)))
            await respond(
                send, status, _body(outcome.result, outcome.executed), media_type, headers
            )
            return
        await respond(send, 200, [_body(o.result, o.executed) for o in outcomes], media_type)

    async def _decode(
        self, scope: Scope, receive: Receive
    ) -> tuple[Transport | None, list[OperationRequest] | None, bool]:
        """(transport, requests, batched); transport None for the IDE page, requests None
        when the client left before its body arrived."""
        method = scope["method"]
        if method == "GET":
            params = decode_get(bytes(scope.get("query_string", b"")))
            if not params:
                if self.ide is not None and prefers_html(_header(scope, b"accept")):
                    return None, None, False
                raise BadRequest(
                    "No GraphQL query found in the request: send `?query=...` (or POST a "
                    'JSON body {"query": "..."}).'
                )
            return Transport.GET, [request_from_params(params)], False
        if method == "POST":
            body = await read_body(receive)
            if body is None:
                return Transport.POST, None, False
            requests, batched = decode_post(_header(scope, b"content-type"), body, self.max_batch)
            return Transport.POST, requests, batched
        raise BadRequest(
            f"{method} is not a GraphQL request method: use GET (queries) or POST.",
            status=405,
            headers=(("allow", "GET, POST"),),
        )
