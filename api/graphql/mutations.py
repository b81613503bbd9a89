"""Root mutation fields. Each runs in one transaction: all of it happens, or none."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection
from strawberry.scalars import JSON

from api import formats
from api.graphql.context import Info
from api.graphql.enums import MessageFormat
from api.graphql.inputs import MessageInput, new_messages
from api.graphql.types import Context, Message
from api.services.append import append, append_request
from api.store import contexts as contexts_store
from api.store import messages as messages_store
from api.store.inputs import (
    check_embedding,
    check_metadata,
    check_name,
    check_new_messages,
    check_version,
    parse_id,
)
from api.store.notify import notify_appended


@asynccontextmanager
async def _write(info: Info) -> AsyncIterator[AsyncConnection]:
    """The mutation's one transaction. Mutation fields of a request run one after
    another, so what the loaders cached before this write (for earlier fields) is
    stale once it commits: forget it."""
    async with info.context.db.transaction() as conn:
        yield conn
    info.context.loaders.clear()


@strawberry.type(description="The result of appendMessages.")
class AppendMessagesPayload:
    messages: list[Message] = strawberry.field(
        description="The appended messages, in version order."
    )
    _context_id: strawberry.Private[Any]

    @strawberry.field(description="The context after the append.")
    async def context(self, info: Info) -> Context:
        return await info.context.loaders.context.load(self._context_id)  # type: ignore[no-any-return]


@strawberry.type(description="Create, change, fork and delete contexts and messages.")
class Mutation:
    @strawberry.mutation(
        description="Create a root context, optionally with its first messages (versions 1..n)."
    )
    async def create_context(
        self,
        info: Info,
        name: Annotated[str | None, strawberry.argument(description="A display name.")] = None,
        metadata: Annotated[
            JSON | None,
            strawberry.argument(description="A JSON object owned by the client; {} when omitted."),
        ] = None,
        messages: Annotated[
            list[MessageInput] | None, strawberry.argument(description="The first messages.")
        ] = None,
    ) -> Context:
        limits = info.context.limits
        new = check_new_messages(new_messages(messages or []), limits, allow_empty=True)
        meta = {} if metadata is None else check_metadata(metadata, limits)
        async with _write(info) as conn:
            created = await contexts_store.create_context(conn, check_name(name, limits), meta, new)
            if new:
                await notify_appended(conn, created.id, created.latest_version)
        return created  # type: ignore[return-value]

    @strawberry.mutation(description="Set or clear (null) the name of a context.")
    async def rename_context(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The context to rename.")],
        name: Annotated[
            str | None, strawberry.argument(description="The new name, or null.")
        ] = None,
    ) -> Context:
        key, checked = parse_id(id), check_name(name, info.context.limits)
        async with _write(info) as conn:
            return await contexts_store.update_context(conn, key, name=checked)  # type: ignore[return-value]

    @strawberry.mutation(description="Replace the metadata object.")
    async def set_context_metadata(
        self,
        info: Info,
        id: Annotated[
            strawberry.ID, strawberry.argument(description="The context whose metadata to replace.")
        ],
        metadata: Annotated[
            JSON, strawberry.argument(description="The new metadata: a JSON object.")
        ],
    ) -> Context:
        key, meta = parse_id(id), check_metadata(metadata, info.context.limits)
        async with _write(info) as conn:
            return await contexts_store.update_context(conn, key, metadata=meta)  # type: ignore[return-value]

    @strawberry.mutation(description="Soft delete. Forks of it keep working.")
    async def delete_context(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The context to delete.")],
    ) -> Context:
        key = parse_id(id)
        async with _write(info) as conn:
            return await contexts_store.set_deleted(conn, key, True)  # type: ignore[return-value]

    @strawberry.mutation(description="Undo deleteContext.")
    async def restore_context(
        self,
        info: Info,
        id: Annotated[
            strawberry.ID, strawberry.argument(description="The deleted context to restore.")
        ],
    ) -> Context:
        key = parse_id(id)
        async with _write(info) as conn:
            return await contexts_store.set_deleted(conn, key, False)  # type: ignore[return-value]

    @strawberry.mutation(
        description="Append atomically: all messages or none. With expectedVersion, fails with "
        "VERSION_CONFLICT unless the context's latestVersion equals it."
    )
    async def append_messages(
        self,
        info: Info,
        context_id: Annotated[
            strawberry.ID, strawberry.argument(description="The context to append to.")
        ],
        messages: Annotated[
            list[MessageInput], strawberry.argument(description="The messages, in order (1..1000).")
        ],
        expected_version: Annotated[
            int | None,
            strawberry.argument(
                description="Optimistic concurrency: the latestVersion you last saw."
            ),
        ] = None,
    ) -> AppendMessagesPayload:
        request = append_request(
            info.context.limits, context_id, new_messages(messages), expected_version
        )
        # a transaction, or none for a batch that is one statement (atomic by itself)
        rows = await append(info.context.db, request)
        info.context.loaders.clear()  # as _write does
        return AppendMessagesPayload(messages=rows, _context_id=request.context_id)  # type: ignore[arg-type]

    @strawberry.mutation(
        description="Append messages given in a provider format, converted to parts "
        "(docs/formats.md: what maps to what, what is dropped), atomically as appendMessages "
        "does and under the same rules. idempotencyKey (a UUID) makes a retry return the "
        "stored messages: the message ids are derived from it."
    )
    async def append_formatted(
        self,
        info: Info,
        context_id: Annotated[
            strawberry.ID, strawberry.argument(description="The context to append to.")
        ],
        format: Annotated[
            MessageFormat, strawberry.argument(description="The format of messages.")
        ],
        messages: Annotated[
            JSON,
            strawberry.argument(
                description="OPENAI_CHAT: the value of messages; OPENAI_RESPONSES: input "
                "items (e.g. a response's output); ANTHROPIC: {system, messages} (a message "
                "may be a whole returned Message: its model and usage are kept); AI_SDK_UI: "
                "UIMessage[]."
            ),
        ],
        expected_version: Annotated[
            int | None,
            strawberry.argument(
                description="Optimistic concurrency: the latestVersion you last saw."
            ),
        ] = None,
        idempotency_key: Annotated[
            strawberry.ID | None,
            strawberry.argument(
                description="A UUID chosen for this append: sending it again with the same "
                "messages returns the stored messages instead of appending twice."
            ),
        ] = None,
    ) -> AppendMessagesPayload:
        limits = info.context.limits
        parse_id(context_id, "contextId")
        retry_key = None if idempotency_key is None else parse_id(idempotency_key, "idempotencyKey")
        new, where_of = formats.to_new_messages(str(format.value), messages, retry_key)
        request = append_request(limits, context_id, new, expected_version, where_of)
        rows = await append(info.context.db, request)
        info.context.loaders.clear()  # as _write does
        return AppendMessagesPayload(messages=rows, _context_id=request.context_id)  # type: ignore[arg-type]

    @strawberry.mutation(
        description="Fork in O(1): the new context shares the history up to atVersion (default: "
        "the latest) without copying it. It takes the parent's metadata unless metadata is given."
    )
    async def fork_context(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The context to fork.")],
        at_version: Annotated[
            int | None,
            strawberry.argument(description="Version of the parent to fork at (0..latestVersion)."),
        ] = None,
        name: Annotated[str | None, strawberry.argument(description="Name of the fork.")] = None,
        metadata: Annotated[
            JSON | None,
            strawberry.argument(description="Metadata of the fork (default: the parent's)."),
        ] = None,
    ) -> Context:
        limits = info.context.limits
        key = parse_id(id)
        check_version(at_version, "atVersion")
        meta = None if metadata is None else check_metadata(metadata, limits)
        async with _write(info) as conn:
            return await contexts_store.fork_context(  # type: ignore[return-value]
                conn, key, at_version, check_name(name, limits), meta
            )

    @strawberry.mutation(description="Soft delete one message of the context that owns it.")
    async def delete_message(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The message to delete.")],
    ) -> Message:
        key = parse_id(id)
        async with _write(info) as conn:
            return await messages_store.delete_message(conn, key)  # type: ignore[return-value]

    @strawberry.mutation(description="Store (or replace) a message's embedding.")
    async def set_message_embedding(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The message to embed.")],
        embedding: Annotated[
            list[float], strawberry.argument(description="Exactly 1536 finite numbers.")
        ],
    ) -> Message:
        key, vector = parse_id(id), check_embedding(embedding)
        async with _write(info) as conn:
            return await messages_store.set_embedding(conn, key, vector)  # type: ignore[return-value]
