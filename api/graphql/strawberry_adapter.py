"""The one module that relies on Strawberry's internals (strawberry-graphql is pinned
to a range in pyproject.toml; tests/test_adapters.py fails when upstream changes
what this module relies on):

- `resolve_info`: the graphql-core resolve info behind Strawberry's Info (the look-ahead
  reads the field's nodes, fragments and variables from it).
- graphql-transport-ws on Strawberry's protocol handler, with every operation sent to
  the operation entry (api/graphql/operation.py) and every message checked against
  the protocol first:

- A message that is not a JSON object with a string `type`, a `subscribe` whose id
  is not a non-empty string or whose payload is not an object with GraphQL
  parameters of their types, a `complete` without a string id: close 4400
  (upstream raised inside its loop and dropped the socket without a close frame).
- `connection_init` with `"payload": null` is accepted as no payload (the protocol
  allows `Record | null`); the credentials check still applies.
- A `subscribe` may carry a persisted query's hash instead of its text; request
  errors (authentication, persisted queries, parse, validation, limits) end that
  operation with an `error` message and leave the socket open.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

from graphql import GraphQLResolveInfo
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    SubscribeMessage,
)
from strawberry.types.unset import UnsetType
from strawberry.utils.aio import aclosing

from api import jsoncodec
from api.errors import Unauthenticated
from api.graphql.context import RequestContext

if TYPE_CHECKING:  # the entry imports the look-ahead, which imports this module
    from api.graphql.operation import Operations


_RESOLVE_INFO = ("field_nodes", "fragments", "variable_values", "schema", "return_type")


def resolve_info(info: Any) -> GraphQLResolveInfo[Any]:
    """graphql-core's resolve info behind a Strawberry Info (its private `_raw_info`, a
    graphql-core GraphQLResolveInfo or Strawberry's look-alike of it)."""
    raw = info._raw_info
    if not all(hasattr(raw, name) for name in _RESOLVE_INFO):  # pragma: no cover - upstream
        raise TypeError(f"strawberry.Info no longer wraps a resolve info: {type(raw)}")
    return cast("GraphQLResolveInfo[Any]", raw)


_PAYLOAD_TYPES: dict[str, type] = {
    "query": str,
    "operationName": str,
    "variables": dict,
    "extensions": dict,
    "documentId": str,
}


def _subscribe_problem(message: dict[str, Any]) -> str | None:
    """Why a `subscribe` message breaks the protocol, if it does."""
    if type(message.get("id")) is not str or not message["id"]:
        return "A subscribe message needs a non-empty string id."
    payload = message.get("payload")
    if type(payload) is not dict:
        return "A subscribe message needs an object payload."
    for name, kind in _PAYLOAD_TYPES.items():
        value = payload.get(name)
        if value is not None and type(value) is not kind:
            return f"payload.{name} must be a {'string' if kind is str else 'JSON object'}."
    return None


class TransportWSHandler(BaseGraphQLTransportWSHandler[RequestContext, None]):
    """Strawberry's graphql-transport-ws handler, its operations run by the entry."""

    entry: Operations  # set on the subclass the endpoint makes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requests: dict[str, Any] = {}
        """The decoded request of each operation id, until its task takes it."""

    async def handle_message(self, message: Any) -> None:
        if type(message) is not dict or type(message.get("type")) is not str:
            await self.handle_invalid_message("Messages must be JSON objects with a string type.")
            return
        kind = message["type"]
        if kind == "subscribe" and (problem := _subscribe_problem(message)) is not None:
            await self.handle_invalid_message(problem)
            return
        if kind == "complete" and type(message.get("id")) is not str:
            await self.handle_invalid_message("A complete message needs a string id.")
            return
        await super().handle_message(message)  # type: ignore[arg-type]  # checked above

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        if message.get("payload", None) is None:
            message = {"type": "connection_init", "payload": {}}
        await super().handle_connection_init(message)

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        from api.graphql.operation import OperationRequest

        payload: dict[str, Any] = dict(message["payload"])
        request = OperationRequest(
            query=payload.get("query"),
            operation_name=payload.get("operationName"),
            variables=payload.get("variables"),
            extensions=payload.get("extensions"),
            document_id=payload.get("documentId"),
        )
        id_ = message["id"]
        if id_ not in self.operations:
            self.requests[id_] = request
        # upstream's Operation wants a query text: the entry reads the request instead
        payload.setdefault("query", "")
        await super().handle_subscribe({**message, "payload": payload})  # type: ignore[typeddict-item]
        if id_ not in self.operations:  # refused (over the limit): no task will take it
            self.requests.pop(id_, None)

    async def run_operation(self, operation: Operation[RequestContext, None]) -> None:
        from api.graphql.operation import OperationRequest

        request = self.requests.pop(operation.id, None) or OperationRequest(
            operation.query, operation.operation_name, operation.variables
        )
        try:
            async with aclosing(self.entry.stream(request, self.context)) as outcomes:
                async for outcome in outcomes:
                    if not outcome.executed:
                        await operation.send_initial_errors(list(outcome.result.errors or ()))
                        return
                    await operation.send_next(outcome.result)  # type: ignore[arg-type]
            await operation.send_operation_message({"id": operation.id, "type": "complete"})
        except Exception as error:  # pragma: no cover - the entry reports its own errors
            await self.handle_task_exception(error)
            await operation.send_operation_message({"id": operation.id, "type": "complete"})


class WebSocketEndpoint(GraphQL[RequestContext, None]):
    """Strawberry's ASGI app for WebSockets only: origin check, subprotocol, the
    handler above, JSON by orjson; connection_init's credentials checked by the
    entry's authenticator."""

    def __init__(self, schema: Any, entry: Operations, context_getter: Any, **kwargs: Any) -> None:
        super().__init__(schema, graphql_ide=None, **kwargs)
        self.entry = entry
        self.context_getter = context_getter
        self.graphql_transport_ws_handler_class = type(
            "EntryTransportWSHandler", (TransportWSHandler,), {"entry": entry}
        )

    async def get_context(self, request: Any, response: Any) -> RequestContext:
        context: RequestContext = await self.context_getter(request)
        return context

    async def on_ws_connect(self, context: Any) -> UnsetType | dict[str, object] | None:
        try:
            await self.entry.authenticator.authenticate(context)
        except Unauthenticated as exc:
            raise ConnectionRejectionError({"message": exc.message, "code": exc.code}) from None
        return await super().on_ws_connect(context)

    def decode_json(self, data: str | bytes) -> object:
        try:
            return jsoncodec.loads(data)
        except (RecursionError, ValueError) as exc:  # upstream closes 4400 on JSONDecodeError
            raise json.JSONDecodeError(str(exc)[:100], "", 0) from None

    def encode_json(self, data: object) -> str:
        # a str: WebSocket messages must stay text frames
        return jsoncodec.dumps(data).decode()
