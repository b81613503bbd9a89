"""Validation of client input before any SQL runs.

Table models do not validate on construction, and PostgreSQL's own refusals
(a NUL byte in text, a wrong vector size) would surface as internal errors,
so every client-supplied value is checked here with a message that says how
to fix it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from api.errors import BadUserInput
from api.settings import Settings
from api.store import parts as message_parts
from models import EMBEDDING_DIMENSIONS, ROLES

MAX_TOTAL_TOKENS = 2_147_483_647
"""The most tokens a context's history may count: `Context.totalTokens` is a GraphQL
Int (32-bit). The append statements refuse to go past it (api/store/messages.py)."""


def over_total_tokens(tokens: int, total: int | None = None) -> BadUserInput:
    """The refusal of messages that would take a context's totalTokens past the cap."""
    if total is None:
        what = f"The messages' tokenCounts add up to {tokens:,}"
    else:
        what = (
            f"This append would take the context's totalTokens from {total:,} to {total + tokens:,}"
        )
    return BadUserInput(
        f"{what}, over {MAX_TOTAL_TOKENS:,}, the most a context can count (totalTokens is a "
        "GraphQL Int). Nothing was written; messages without tokenCount can still be "
        "appended, and deleting messages makes room."
    )


@dataclass(frozen=True, slots=True)
class Limits:
    """The input limits in force (from Settings)."""

    max_name_length: int = 1_000
    max_metadata_bytes: int = 16 * 1024
    max_content_length: int = 1_000_000
    max_messages_per_append: int = 1_000
    max_token_count: int = 10_000_000
    default_page_size: int = 50
    max_page_size: int = 500
    max_search_results: int = 100

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_name_length=settings.max_name_length,
            max_metadata_bytes=settings.max_metadata_bytes,
            max_content_length=settings.max_content_length,
            max_messages_per_append=settings.max_messages_per_append,
            max_token_count=settings.max_token_count,
            default_page_size=settings.default_page_size,
            max_page_size=settings.max_page_size,
            max_search_results=settings.max_search_results,
        )


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to append, in its stored form (role, status lowercase; parts as
    api/store/parts.py stores them). Before `check_new_messages`, `parts` (when not
    None) is every part and `content` is ignored; after it, `content` is their text
    and `parts` None when they are one plain text part."""

    role: str
    content: str = ""
    id: uuid.UUID | None = None
    tool_call_id: str | None = None
    tool_name: str | None = None
    token_count: int | None = None
    model: str | None = None
    embedding: list[float] | None = None
    parts: list[dict[str, Any]] | None = None
    status: str | None = None
    """None (COMPLETED) or "incomplete"; "in_progress" only through streaming."""
    usage: dict[str, Any] | None = None

    @property
    def has_tool_parts(self) -> bool:
        """Whether the history must be asked about it (api/store/parts.py tool_probes)."""
        return message_parts.has_tool_parts(self.parts)


def parse_id(value: str, argument: str = "id") -> uuid.UUID:
    """A UUID from a GraphQL ID, or BAD_USER_INPUT (never a database error)."""
    try:
        return uuid.UUID(str(value))
    except (ValueError, AttributeError, TypeError):
        raise BadUserInput(
            f"`{argument}` must be a UUID such as 123e4567-e89b-12d3-a456-426614174000 "
            f"(got {str(value)[:60]!r})."
        ) from None


_SURROGATE_HINT = (
    "contains an unpaired UTF-16 surrogate (\\ud800-\\udfff), which is not valid Unicode; "
    "send well-formed UTF-8 (escape astral characters as a surrogate pair or send them as is)."
)


def _is_utf8_encodable(value: str) -> bool:
    """False when the string holds lone surrogates (JSON allows "\\ud800"; PostgreSQL does not)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def check_text(
    value: str | None, argument: str, max_length: int | None = None, setting: str | None = None
) -> str | None:
    """PostgreSQL text cannot hold NUL; enforce the length limit if any."""
    if value is None:
        return None
    if "\x00" in value:
        raise BadUserInput(f"`{argument}` must not contain NUL (\\u0000) characters.")
    if not value.isascii() and not _is_utf8_encodable(value):
        raise BadUserInput(f"`{argument}` {_SURROGATE_HINT}")
    if max_length is not None and len(value) > max_length:
        raise BadUserInput(
            f"`{argument}` is {len(value)} characters; the limit is {max_length}"
            + (f" (setting {setting})." if setting else ".")
        )
    return value


def check_name(name: str | None, limits: Limits) -> str | None:
    return check_text(name, "name", limits.max_name_length, "CTXGRAPH_MAX_NAME_LENGTH")


MAX_METADATA_DEPTH = 100
"""How deeply objects and arrays may nest in metadata. Far below what 16 KiB allows,
and far above real use: json.dumps recurses, and a document nested ~900 deep would
exhaust Python's recursion limit (an internal error instead of BAD_USER_INPUT)."""


def _nesting_depth(value: Any, limit: int) -> int:
    """Nesting depth of objects/arrays in a JSON value (iterative; stops past `limit`)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


def check_metadata(metadata: Any, limits: Limits, argument: str = "metadata") -> dict[str, Any]:
    """A JSON object within the size and nesting limits."""
    if not isinstance(metadata, dict):
        raise BadUserInput(
            f'`{argument}` must be a JSON object such as {{"user": "u1"}} '
            f"(got {type(metadata).__name__})."
        )
    if _nesting_depth(metadata, MAX_METADATA_DEPTH) > MAX_METADATA_DEPTH:
        raise BadUserInput(
            f"`{argument}` nests objects and arrays more than {MAX_METADATA_DEPTH} levels deep; "
            "flatten it."
        )
    try:
        serialized = json.dumps(
            metadata, separators=(",", ":"), allow_nan=False, ensure_ascii=False
        )
    except ValueError:
        raise BadUserInput(f"`{argument}` must not contain NaN or Infinity.") from None
    if "\\u0000" in serialized:
        raise BadUserInput(f"`{argument}` must not contain NUL (\\u0000) characters.")
    if not _is_utf8_encodable(serialized):
        raise BadUserInput(f"`{argument}` {_SURROGATE_HINT}")
    size = len(serialized.encode())
    if size > limits.max_metadata_bytes:
        raise BadUserInput(
            f"`{argument}` is {size} bytes as JSON; the limit is {limits.max_metadata_bytes} "
            "(setting CTXGRAPH_MAX_METADATA_BYTES)."
        )
    return metadata


FLOAT32_MAX = 3.4028234663852886e38


def check_embedding(embedding: Sequence[float], argument: str = "embedding") -> list[float]:
    """Exactly EMBEDDING_DIMENSIONS finite numbers."""
    if len(embedding) != EMBEDDING_DIMENSIONS:
        raise BadUserInput(
            f"`{argument}` must have exactly {EMBEDDING_DIMENSIONS} numbers (got {len(embedding)})."
        )
    values = list(map(float, embedding))
    # pgvector stores 32-bit floats: anything larger is "out of range" in PostgreSQL.
    # min/max are C loops (a NaN makes the comparisons false, so it is caught too)
    if -FLOAT32_MAX <= min(values) and max(values) <= FLOAT32_MAX:
        return values
    if not all(math.isfinite(x) for x in values):
        raise BadUserInput(f"`{argument}` must contain only finite numbers (no NaN/Infinity).")
    if not all(abs(x) <= FLOAT32_MAX for x in values):
        raise BadUserInput(
            f"`{argument}` must contain only numbers between -{FLOAT32_MAX:.7g} and "
            f"{FLOAT32_MAX:.7g} (32-bit floats)."
        )
    return values


def check_version(value: int | None, argument: str) -> int | None:
    if value is not None and value < 0:
        raise BadUserInput(f"`{argument}` must be >= 0 (got {value}).")
    return value


def messages_at(i: int) -> str:
    """How errors name the i-th message of a batch (the argument `messages`)."""
    return f"messages[{i}]"


def check_new_messages(
    messages: Sequence[NewMessage],
    limits: Limits,
    *,
    allow_empty: bool = False,
    where_of: Callable[[int], str] = messages_at,
) -> list[NewMessage]:
    """Validate a batch to append: size, texts, parts and where they may go, token
    counts, usage, embeddings, unique ids, and the tool-call rules the batch can break by
    itself (the history's part is the store's). Returns the messages in stored form."""
    if not messages and not allow_empty:
        raise BadUserInput("`messages` must contain at least one message.")
    if len(messages) > limits.max_messages_per_append:
        raise BadUserInput(
            f"`messages` has {len(messages)} items; at most {limits.max_messages_per_append} "
            "can be appended at once (setting CTXGRAPH_MAX_MESSAGES_PER_APPEND)."
        )
    seen: set[uuid.UUID] = set()
    checked: list[NewMessage] = []
    for i, m in enumerate(messages):
        where = where_of(i)
        if m.role not in ROLES:
            raise BadUserInput(f"`{where}.role` must be one of {', '.join(ROLES).upper()}.")
        if m.parts is not None:
            message_parts.check_parts(m.parts, m.role, where, limits)
            m = dataclasses.replace(
                m, content=message_parts.content_of(m.parts), parts=message_parts.stored(m.parts)
            )
        else:
            check_text(
                m.content,
                f"{where}.content",
                limits.max_content_length,
                "CTXGRAPH_MAX_CONTENT_LENGTH",
            )
        if m.status not in (None, "incomplete"):
            raise BadUserInput(
                f"`{where}.status` must be COMPLETED or INCOMPLETE; IN_PROGRESS messages are "
                "started by streaming, not appended."
            )
        if m.usage is not None:
            m = dataclasses.replace(m, usage=message_parts.check_usage(m.usage, where))
        for field_name, argument in (
            ("tool_call_id", "toolCallId"),
            ("tool_name", "toolName"),
            ("model", "model"),
        ):
            check_text(
                getattr(m, field_name),
                f"{where}.{argument}",
                limits.max_name_length,
                "CTXGRAPH_MAX_NAME_LENGTH",
            )
        if m.token_count is not None:
            if m.token_count < 0:
                raise BadUserInput(f"`{where}.tokenCount` must be >= 0 (got {m.token_count}).")
            if m.token_count > limits.max_token_count:
                raise BadUserInput(
                    f"`{where}.tokenCount` is {m.token_count}; the limit is "
                    f"{limits.max_token_count} (setting CTXGRAPH_MAX_TOKEN_COUNT)."
                )
        if m.embedding is not None:
            check_embedding(m.embedding, f"{where}.embedding")
        if m.id is not None:
            if m.id in seen:
                raise BadUserInput(f"`{where}.id` repeats an id used earlier in the same batch.")
            seen.add(m.id)
        checked.append(m)
    tokens = sum(m.token_count or 0 for m in checked)
    if tokens > MAX_TOTAL_TOKENS:  # more than any context can hold
        raise over_total_tokens(tokens)
    message_parts.tool_probes(checked, where_of)
    return checked
