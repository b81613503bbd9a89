"""Appending messages: the checks every append passes, then the store's write."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Row

from api.db import Connector
from api.store import messages as store
from api.store.inputs import Limits, NewMessage, check_new_messages, check_version, parse_id


@dataclass(frozen=True, slots=True)
class AppendRequest:
    """An append whose arguments passed every check; nothing is written yet."""

    context_id: uuid.UUID
    messages: list[NewMessage]
    expected_version: int | None


def append_request(
    limits: Limits,
    context_id: Any,
    messages: Sequence[NewMessage],
    expected_version: int | None,
) -> AppendRequest:
    """Check appendMessages' arguments (BadUserInput naming the first wrong one)."""
    key = parse_id(context_id, "contextId")
    checked = check_new_messages(messages, limits)
    check_version(expected_version, "expectedVersion")
    return AppendRequest(key, checked, expected_version)


async def append(db: Connector, request: AppendRequest) -> list[Row[Any]]:
    """Write it, atomically: the appended rows by version, or the store's refusal
    (NOT_FOUND, CONTEXT_DELETED, VERSION_CONFLICT), raised only when nothing was written."""
    return await store.append(db, request.context_id, request.messages, request.expected_version)
