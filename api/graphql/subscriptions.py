"""Root subscription fields: live messages over graphql-transport-ws.

`messageAppended` registers its interest with the process's realtime hub
BEFORE it reads anything, then reads the history after the last version it
delivered whenever the hub wakes it (a NOTIFY from an append, a listener
reconnect, the process's periodic re-check). Reads are by version from the database, so
the switch from replay to live has no gap and no duplicate, and a dropped
notification is caught up by the next read.

An error raised while the stream runs ends it; graphql-core lets it escape the
event stream, so this module codes it itself (`coded`, the mapping every error
gets) with the field's path.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Row
from strawberry.dataloader import DataLoader

from api.errors import BadUserInput, CtxgraphError
from api.graphql.context import Info, RequestContext
from api.graphql.errors import coded
from api.graphql.loaders import Loaders
from api.graphql.types import Message
from api.realtime import Realtime
from api.store.contexts import contexts_by_ids
from api.store.guards import context_not_found
from api.store.history import HistoryFilter, HistoryPage, HistoryPageRequest, history_pages
from api.store.inputs import check_version, parse_id

log = logging.getLogger("ctxgraph.subscriptions")

_RETRY_MIN = 0.05


@strawberry.type(description="Live updates, over WebSocket with the graphql-transport-ws protocol.")
class Subscription:
    @strawberry.subscription(
        description="Every message appended to this context from now on, in version order. With "
        "afterVersion, first replays the history after that version, so a client that "
        "reconnects misses nothing. Only visible (not deleted) messages are sent; a message "
        "deleted before it could be sent is skipped. Reconnecting clients pass the version of "
        "the last message they received as afterVersion."
    )
    async def message_appended(
        self,
        info: Info,
        context_id: Annotated[
            strawberry.ID, strawberry.argument(description="The context to watch.")
        ],
        after_version: Annotated[
            int | None,
            strawberry.argument(
                description="Replay the history after this version first (messages with a "
                "greater version, inherited ones included). Omitted: only messages appended "
                "from now on."
            ),
        ] = None,
    ) -> AsyncGenerator[Message, None]:
        try:
            async for row in message_stream(info.context, context_id, after_version):
                yield row  # type: ignore[misc]
        except CtxgraphError as exc:
            raise _coded(info, exc) from None
        except Exception as exc:
            raise _coded(info, exc) from exc


def _coded(info: Info, exc: Exception) -> GraphQLError:
    """The error as the entry reports others: a code, unexpected ones masked and logged."""
    message = exc.message if isinstance(exc, CtxgraphError) else str(exc)
    error = GraphQLError(message, path=[info.path.key], original_error=exc)
    return coded(error, info.context.request_id)


async def message_stream(
    ctx: RequestContext, context_id: str, after_version: int | None
) -> AsyncIterator[Row[Any]]:
    """The messages of `context_id` after `after_version` (or from now on), forever."""
    key = parse_id(context_id, "contextId")
    check_version(after_version, "afterVersion")
    realtime = ctx.realtime
    if realtime is None:
        raise RuntimeError("the app was built without realtime support")
    if ctx.subscriptions >= realtime.max_per_connection:
        raise BadUserInput(
            f"This connection already runs {ctx.subscriptions} subscriptions, the limit "
            "(setting CTXGRAPH_SUBSCRIPTIONS_PER_CONNECTION); complete one or open another "
            "connection."
        )
    ctx.subscriptions += 1
    try:
        # Interest first: anything that commits after the reads below is
        # announced to this watch, so nothing falls between replay and live.
        with realtime.hub.watch(key) as watch:
            async with ctx.db.read() as conn:
                context = (await contexts_by_ids(conn, [key])).get(key)
            if context is None:
                raise context_not_found(key)
            # New messages of this context get versions above its latestVersion
            # (inherited ones stay at or below its fork version).
            delivered: int = context.latest_version if after_version is None else after_version
            watch.started = watch.delivered = delivered
            size = ctx.limits.max_page_size
            backoff = _RETRY_MIN
            while True:
                seen = watch.notified_version
                try:
                    page = await _read_after(ctx, realtime, key, delivered, size)
                except Exception as exc:
                    if not _is_transient(exc):
                        raise
                    # The database restarts or a pooled connection died: keep the
                    # subscription and catch up when the database answers again.
                    log.warning("subscription read failed (retry in %.2fs): %s", backoff, exc)
                    await watch.wait(watch.notified_version, backoff)
                    backoff = min(backoff * 2, realtime.recheck_interval)
                    continue
                backoff = _RETRY_MIN
                for row in page.rows:
                    # Loaders cache for the life of the WebSocket (one context
                    # per connection); each message must see fresh data.
                    _forget_cached(ctx.loaders)
                    yield row
                    delivered = watch.delivered = row.version
                if not page.has_next:
                    await watch.wait(seen, realtime.subscriber_timeout)
    finally:
        ctx.subscriptions -= 1


def _forget_cached(loaders: Loaders) -> None:
    """Empty every loader's cache. Cheaper than building new Loaders, which took about
    an eighth of the server's CPU per event with 100 subscribers (py-spy)."""
    for loader in vars(loaders).values():
        if isinstance(loader, DataLoader):
            loader.clear_all()


def _is_transient(exc: Exception) -> bool:
    """A lost or refused database connection (worth retrying), not a bug."""
    if isinstance(exc, sa_exc.DBAPIError):
        return exc.connection_invalidated or isinstance(
            exc, (sa_exc.OperationalError, sa_exc.InterfaceError)
        )
    return isinstance(exc, (OSError, TimeoutError, sa_exc.TimeoutError))


async def _read_after(
    ctx: RequestContext, realtime: Realtime, key: uuid.UUID, after: int, size: int
) -> HistoryPage:
    """The visible history of `key` after version `after`, one page (shared by identical reads)."""
    request = HistoryPageRequest(HistoryFilter(), size=size, backward=False, after_version=after)

    async def fetch() -> HistoryPage:
        async with ctx.db.read() as conn:
            return (await history_pages(conn, [key], request))[key]

    return await realtime.hub.shared_read(key, (after, size), fetch)
