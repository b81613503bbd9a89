"""Infrastructure failures a client should see as such, not as a masked bug.

`classify` looks through an exception's chain: a database that cannot be
reached (refused, closed, shutting down, pool exhausted) becomes
SERVICE_UNAVAILABLE (HTTP 503 for the request) so clients retry, as does one that
did not answer within CTXGRAPH_DATABASE_TIMEOUT (api/store/deadline.py); a statement
cancelled by CTXGRAPH_STATEMENT_TIMEOUT becomes QUERY_TOO_COMPLEX naming the
setting. Messages never carry driver text.
"""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy.exc

from api.store.deadline import DatabaseTimeout
from api.store.gate import Saturated

SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
INTERNAL = "INTERNAL_SERVER_ERROR"
UNAVAILABLE_MESSAGE = "The database is unavailable right now; retry in a few seconds."
TIMEOUT_MESSAGE = (
    "A database statement ran longer than the server's limit (CTXGRAPH_STATEMENT_TIMEOUT) "
    "and was cancelled. Ask for less (smaller pages, fewer nested connections) or retry."
)


def internal_message(request_id: str | None) -> str:
    """What a client is told of a masked bug (INTERNAL): only the id to report it by."""
    return "Internal server error" + (f" (request id {request_id})." if request_id else ".")


# SQLSTATE classes/codes: 08 connection exception, 57P01-57P03 admin/crash
# shutdown and cannot-connect-now, 53300 too many connections.
_UNAVAILABLE_STATES = ("57P01", "57P02", "57P03", "53300")
_QUERY_CANCELED = "57014"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__, getattr(current, "orig", None)]


def _sqlstate(exc: BaseException) -> str | None:
    state = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    return state if isinstance(state, str) else None


def _timeout_message(seconds: float) -> str:
    return (
        f"The database did not answer within {seconds:g} s (CTXGRAPH_DATABASE_TIMEOUT); "
        "retry in a few seconds. A write that failed so may or may not have been stored: "
        "retry it with the same message ids."
    )


def classify(exc: BaseException) -> tuple[str, str] | None:
    """(code, message) for an infrastructure failure, or None for anything else."""
    unavailable = False
    for e in _chain(exc):
        if isinstance(e, DatabaseTimeout):
            return SERVICE_UNAVAILABLE, _timeout_message(e.seconds)
        if isinstance(e, Saturated):
            return SERVICE_UNAVAILABLE, (
                f"The server is busy: {e.why}. Nothing was run; retry after the number of "
                "seconds in the Retry-After header."
            )
        state = _sqlstate(e)
        if state == _QUERY_CANCELED:
            from api.errors import QueryTooComplex

            return QueryTooComplex.code, TIMEOUT_MESSAGE
        if (
            (state is not None and (state.startswith("08") or state in _UNAVAILABLE_STATES))
            or isinstance(e, (ConnectionError, TimeoutError, sqlalchemy.exc.TimeoutError))
            or (isinstance(e, sqlalchemy.exc.DBAPIError) and e.connection_invalidated)
            or type(e).__name__
            in ("ConnectionDoesNotExistError", "InterfaceError", "CannotConnectNowError")
            or (isinstance(e, OSError) and e.errno is not None)
        ):
            unavailable = True
    return (SERVICE_UNAVAILABLE, UNAVAILABLE_MESSAGE) if unavailable else None
