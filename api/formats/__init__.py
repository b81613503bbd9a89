"""Provider formats: the message formats of the major LLM APIs, both ways.

`to_new_messages` turns what a client holds in one of them into messages with parts,
ready for the same checks and the same append as appendMessages (appendFormatted);
`from_messages` writes stored messages in a provider's request format (read by
ContextWindow.formatted). One module per format, each with its mapping in
docs/formats.md: what maps to what, what is dropped, and the normalizations a round
trip (append, then read back) may show.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from api.formats import ai_sdk_ui, anthropic, openai_chat, openai_responses
from api.formats.common import Converted, Json, Stored
from api.store.inputs import NewMessage

FORMATS: dict[str, ModuleType] = {
    "openai_chat": openai_chat,
    "openai_responses": openai_responses,
    "anthropic": anthropic,
    "ai_sdk_ui": ai_sdk_ui,
}
"""By the MessageFormat enum's value."""

IDS = uuid.UUID("8f3c2b1e-5d4a-4c1b-9e2f-6a7b8c9d0e1f")
"""Namespace of the message ids derived from an idempotency key."""


def message_id(key: uuid.UUID, index: int) -> uuid.UUID:
    """The id of the index-th message appended with idempotency key `key`: the same
    key and input give the same ids, so a retry is a replay (design.md "Idempotent
    retries")."""
    return uuid.uuid5(IDS, f"{key}:{index}")


def convert(format: str, value: Json) -> list[Converted]:
    converted: list[Converted] = FORMATS[format].to_messages(value)
    return converted


def to_new_messages(
    format: str, value: Json, key: uuid.UUID | None = None
) -> tuple[list[NewMessage], Callable[[int], str]]:
    """`value` in `format` as messages with parts, and how errors name them (the checks
    of a batch are the append service's, api/services/append.py).

    Malformed provider input is BAD_USER_INPUT naming the item (`messages[2].content[1]`);
    a message that breaks the rules of parts is named by the item it came from.
    """
    converted = convert(format, value)
    new = [
        NewMessage(
            role=c.role,
            parts=c.parts,
            model=c.model,
            usage=c.usage,
            status=c.status,
            id=None if key is None else message_id(key, i),
        )
        for i, c in enumerate(converted)
    ]
    sources = [c.source for c in converted]

    def where_of(i: int) -> str:
        return sources[i] if 0 <= i < len(sources) else f"messages[{i}]"

    return new, where_of


def from_messages(format: str, messages: Sequence[Stored]) -> Any:
    """Stored messages (records of the store, in version order) in `format`'s request
    form; parts the format cannot carry are dropped (docs/formats.md)."""
    return FORMATS[format].from_messages(messages)
