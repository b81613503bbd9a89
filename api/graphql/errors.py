"""The one place where errors become GraphQL errors with `extensions.code` (the
operation entry, api/graphql/operation.py, calls `coded` for every error).

- CtxgraphError (raised by the data layer) -> its code and message.
- Errors GraphQL itself reports (syntax, unknown fields, wrong variable
  types) are the client's -> BAD_USER_INPUT.
- Anything else is a bug: logged with the request id, and masked as
  INTERNAL_SERVER_ERROR so no internals reach the client.
"""

from __future__ import annotations

import logging

from graphql import GraphQLError

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
