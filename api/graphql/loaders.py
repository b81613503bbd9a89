"""Per-request DataLoaders: every list or relation field is batched into one statement.

Keys that carry arguments (a page request, a filter) are grouped by those
arguments, so `contexts { messages(last: 5) }` over 50 contexts is one
history statement, not 50.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, TypeVar

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection
from strawberry.dataloader import DataLoader, DefaultCache

from api.db import Connector
from api.store import contexts, history, messages, tree

A = TypeVar("A", bound=Hashable)
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
PageKey = tuple[uuid.UUID, history.HistoryPageRequest]
TreeKey = tuple[uuid.UUID, tree.TreePageRequest]

Batch = Callable[[AsyncConnection, Sequence[uuid.UUID], A], Awaitable[dict[uuid.UUID, V]]]
ContextsWith = Callable[
    [AsyncConnection, Sequence[uuid.UUID], A],
    Awaitable[tuple[dict[uuid.UUID, Row[Any]], dict[uuid.UUID, V]]],
]


class Loaders:
    """The DataLoaders of one request. Each batch uses its own short-lived connection,
    so sibling resolvers never share one concurrently.

    The batch functions are built from the connector alone, never from this object:
    a loader whose function refers back to its owner makes a reference cycle that
    keeps every row the request loaded alive until the cyclic garbage collector runs
    (~460 objects per chat page, most of its young-generation collections)."""

    def __init__(self, connector: Connector) -> None:
        # contexts come with their parents, which go straight into the cache
        context_cache = DefaultCache[uuid.UUID, Row[Any] | None]()
        self.context = DataLoader[uuid.UUID, Row[Any] | None](
            _contexts_with_parents(connector, context_cache), cache_map=context_cache
        )
        self.message = DataLoader[uuid.UUID, Row[Any] | None](
            _by_id(connector, messages.messages_by_ids)
        )
        self.ancestors = DataLoader[uuid.UUID, list[Row[Any]]](_batched(connector, tree.ancestors))
        self.forks_at = DataLoader[tuple[uuid.UUID, int], list[Row[Any]]](_forks_at(connector))
        page_cache = DefaultCache[PageKey, history.HistoryPage]()
        self.history_page = DataLoader[PageKey, history.HistoryPage](
            _grouped(connector, history.history_pages), cache_map=page_cache
        )
        self.history_count = DataLoader[tuple[uuid.UUID, history.HistoryFilter], int](
            _grouped(connector, history.history_counts)
        )
        tree_cache = DefaultCache[TreeKey, tree.TreePage]()
        self.tree_page = DataLoader[TreeKey, tree.TreePage](
            _grouped(connector, tree.tree_pages), cache_map=tree_cache
        )
        # A context with the page the field below it will ask for, in one statement: the
        # context goes into the context cache, the page into the page loader's cache.
        self.context_with_page = DataLoader[PageKey, Row[Any] | None](
            _contexts_with(connector, contexts.contexts_with_pages, context_cache, page_cache)
        )
        self.context_with_siblings = DataLoader[TreeKey, Row[Any] | None](
            _contexts_with(
                connector, contexts.contexts_with_sibling_forks, context_cache, tree_cache
            )
        )
        self.tree_count = DataLoader[tuple[uuid.UUID, tree.TreeQuery], int](
            _grouped(connector, tree.tree_counts)
        )

    def clear(self) -> None:
        """Forget everything loaded so far. A write makes it stale: mutation fields run one
        after another in a request, and a later one must not see an earlier one's reads."""
        for loader in vars(self).values():
            if isinstance(loader, DataLoader):
                loader.clear_all()


Fetch = Callable[[AsyncConnection, Sequence[uuid.UUID]], Awaitable[dict[uuid.UUID, V]]]


def _by_id(
    connector: Connector, fetch: Fetch[V]
) -> Callable[[list[uuid.UUID]], Awaitable[list[V | None]]]:
    async def load(ids: list[uuid.UUID]) -> list[V | None]:
        async with connector.read() as conn:
            found = await fetch(conn, ids)
        return [found.get(i) for i in ids]

    return load


def _batched(
    connector: Connector, fetch: Fetch[V]
) -> Callable[[list[uuid.UUID]], Awaitable[list[V]]]:
    async def load(ids: list[uuid.UUID]) -> list[V]:
        async with connector.read() as conn:
            found = await fetch(conn, ids)
        return [found[i] for i in ids]

    return load


def _grouped(
    connector: Connector, fetch: Batch[A, V]
) -> Callable[[list[tuple[uuid.UUID, A]]], Awaitable[list[V]]]:
    async def load(keys: list[tuple[uuid.UUID, A]]) -> list[V]:
        results: dict[tuple[uuid.UUID, A], V] = {}
        async with connector.read() as conn:
            for args, ids in _by_arguments(keys).items():
                found = await fetch(conn, ids, args)
                results.update({(cid, args): found[cid] for cid in ids})
        return [results[k] for k in keys]

    return load


def _by_arguments(keys: list[tuple[uuid.UUID, A]]) -> dict[A, list[uuid.UUID]]:
    """The distinct context ids of a batch, grouped by the arguments they come with."""
    groups: dict[A, list[uuid.UUID]] = defaultdict(list)
    for cid, args in keys:
        if cid not in groups[args]:
            groups[args].append(cid)
    return groups


def _forks_at(
    connector: Connector,
) -> Callable[[list[tuple[uuid.UUID, int]]], Awaitable[list[list[Row[Any]]]]]:
    async def load(keys: list[tuple[uuid.UUID, int]]) -> list[list[Row[Any]]]:
        async with connector.read() as conn:
            found = await tree.forks_at(conn, keys)
        return [found[k] for k in keys]

    return load


def _prime(cache: DefaultCache[K, V], key: K, value: V) -> None:
    """Put a loaded value into a loader's cache (the cache, not the loader: a batch
    function that refers to its loader makes a reference cycle), unless it has one."""
    if cache.get(key) is None:
        primed: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        primed.set_result(value)
        cache.set(key, primed)


def _contexts_with_parents(
    connector: Connector, cache: DefaultCache[uuid.UUID, Row[Any] | None]
) -> Callable[[list[uuid.UUID]], Awaitable[list[Row[Any] | None]]]:
    """The context loader's batch function: the contexts asked for, plus their parents
    primed into the loader's cache."""

    async def load(ids: list[uuid.UUID]) -> list[Row[Any] | None]:
        async with connector.read() as conn:
            found = await contexts.contexts_with_parents(conn, ids)
        asked = set(ids)
        for key, row in found.items():
            if key not in asked:
                _prime(cache, key, row)
        return [found.get(i) for i in ids]

    return load


def _contexts_with(
    connector: Connector,
    fetch: ContextsWith[A, V],
    context_cache: DefaultCache[uuid.UUID, Row[Any] | None],
    page_cache: DefaultCache[tuple[uuid.UUID, A], V],
) -> Callable[[list[tuple[uuid.UUID, A]]], Awaitable[list[Row[Any] | None]]]:
    """Contexts with a page the field below them will ask for, grouped by page request
    (api/graphql/lookahead.py): the contexts (and their parents) go into the context
    loader's cache, the pages into the page loader's, where that field finds them."""

    async def load(keys: list[tuple[uuid.UUID, A]]) -> list[Row[Any] | None]:
        found: dict[uuid.UUID, Row[Any]] = {}
        async with connector.read() as conn:
            for req, ids in _by_arguments(keys).items():
                rows, pages = await fetch(conn, ids, req)
                found.update(rows)
                for key, page in pages.items():
                    _prime(page_cache, (key, req), page)
        # the contexts asked for (None: missing) and the parents that came with them
        for cid in {*found, *(cid for cid, _ in keys)}:
            _prime(context_cache, cid, found.get(cid))
        return [found.get(cid) for cid, _ in keys]

    return load
