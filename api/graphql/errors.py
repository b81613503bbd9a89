"""The one place where errors become GraphQL errors with `extensions.code`.

- CtxgraphError (raised by the data layer) -> its code and message.
- Errors GraphQL itself reports (syntax, unknown fields, wrong variable
  types) are the client's -> BAD_USER_INPUT.
- Anything else is a bug: logged with the request id, and masked as
  INTERNAL_SERVER_ERROR so no internals reach the client.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from api.errors import CtxgraphError
from api.security.failures import INTERNAL, SERVICE_UNAVAILABLE, internal_message
from api.security.failures import classify as classify_failure

log = logging.getLogger("ctxgraph.errors")


def coded(error: GraphQLError, request_id: str | None) -> GraphQLError:
    original = error.original_error
    if isinstance(original, CtxgraphError):
        code, message = original.code, original.message
    elif original is None or isinstance(original, GraphQLError):
        code, message = "BAD_USER_INPUT", error.message
    elif (failure := classify_failure(original)) is not None:
        # The database is down or a statement hit its timeout: say so (no driver text).
        code, message = failure
        log.warning("request %s failed: %s: %s", request_id, code, type(original).__name__)
    else:
        log.error("unexpected error (request %s) at %s", request_id, error.path, exc_info=original)
        code = INTERNAL
        message = internal_message(request_id)
    extensions = dict(error.extensions or {})
    extensions["code"] = code
    if code in (INTERNAL, SERVICE_UNAVAILABLE) and request_id:
        extensions["requestId"] = request_id
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions=extensions,
    )


class ErrorCodes(SchemaExtension):
    """Give every error a code; mask unexpected ones."""

    def _code_all(self, result: Any) -> None:
        if result is not None and getattr(result, "errors", None):
            request_id = getattr(self.execution_context.context, "request_id", None)
            # Errors the subscription resolver coded itself keep their code.
            result.errors = [
                e if (e.extensions or {}).get("code") else coded(e, request_id)
                for e in result.errors
            ]

    def on_operation(self) -> Iterator[None]:
        yield
        self._code_all(self.execution_context.result)

    def on_stream_result(self, result: Any) -> Iterator[None]:
        # A stream (subscription) sends each result before on_operation ends.
        self._code_all(result)
        yield
