"""The domain error hierarchy.

The data layer raises these; the GraphQL layer maps each to a GraphQL error
whose `extensions.code` is the class's `code` (api/graphql/errors.py, the one
place that does). Messages are written for the API's user: what was wrong and
how to fix it. Anything that is not a CtxgraphError is a bug and is masked.
"""

from typing import ClassVar


class CtxgraphError(Exception):
    """Base of every error a client can cause."""

    code: ClassVar[str] = "BAD_USER_INPUT"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadUserInput(CtxgraphError):
    """An argument is malformed, out of range or over a limit."""

    code = "BAD_USER_INPUT"


class NotFound(CtxgraphError):
    code = "NOT_FOUND"


class VersionConflict(CtxgraphError):
    """expectedVersion did not match the context's latestVersion; nothing was written."""

    code = "VERSION_CONFLICT"


class ContextDeleted(CtxgraphError):
    """A write or fork addressed a soft-deleted context."""

    code = "CONTEXT_DELETED"


class Unauthenticated(CtxgraphError):
    code = "UNAUTHENTICATED"


class Forbidden(CtxgraphError):
    code = "FORBIDDEN"


class QueryTooComplex(CtxgraphError):
    code = "QUERY_TOO_COMPLEX"
