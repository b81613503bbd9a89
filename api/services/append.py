"""Appending messages: the checks every append passes, then the store's write."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Row

from api.db import Connector
from api.store import messages as store
from api.store.inputs import (
    Limits,
    NewMessage,
    check_new_messages,
    check_version,
    messages_at,
    parse_id,
)


@dataclass(frozen=True, slots=True)
class AppendRequest:
    """An append whose arguments passed every check; nothing is written yet."""

    context_id: uuid.UUID
    messages: list[NewMessage]
    expected_version: int | None
    where_of: Callable[[int], str] = messages_at
    """How errors name the i-th message (`messages[2]`, or a provider format's item)."""


def append_request(
    limits: Limits,
    context_id: Any,
    messages: Sequence[NewMessage],
    expected_version: int | None,
    where_of: Callable[[int], str] = messages_at,
) -> AppendRequest:
    """Check an append's arguments (BadUserInput naming the first wrong one): those of
    appendMessages, and of appendFormatted once its messages are converted."""
    key = parse_id(context_id, "contextId")
    checked = check_new_messages(messages, limits, where_of=where_of)
    check_version(expected_version, "expectedVersion")
    return AppendRequest(key, checked, expected_version, where_of)


async def append(db: Connector, request: AppendRequest) -> list[Row[Any]]:
    """Write it, atomically: the appended rows by version, or the store's refusal
    (NOT_FOUND, CONTEXT_DELETED, VERSION_CONFLICT), raised only when nothing was written."""
    return await store.append(
        db, request.context_id, request.messages, request.expected_version, request.where_of
    )
