"""Typed message parts: their stored form and the rules of design.md "Parts (v2)".

Every write path (appendMessages, createContext, the planned append, appendFormatted)
turns its input into parts of this form and hands them to `check_parts` and
`tool_probes` (through api/store/inputs.py `check_new_messages`), so the rules live
here once.

The stored form (`messages.parts`, JSONB) is a list of objects, keys snake_case, keys
whose value is null left out:

    {"type": "text", "text": str}
    {"type": "image", "url": str, "media_type"?: str, "detail"?: str}
    {"type": "file", "url": str, "media_type"?: str, "filename"?: str}
    {"type": "tool_call", "call_id": str, "name": str, "arguments": JSON}
    {"type": "tool_result", "call_id": str, "output": JSON, "is_error": bool}
    {"type": "reasoning", "text": str, "encrypted"?: str, "provider"?: str}
    {"type": "data", "name": str, "data": JSON}

Any part may carry "provider_metadata": {format: {...}}, what a provider format needs
to write the part back exactly (an OpenAI item id, an AI SDK providerMetadata); only
the converters of api/formats write and read it, the API does not show it.

A message that is one text part without provider metadata is stored with parts NULL
and its text in `content`, like every row written before parts existed: one
representation for both, so a replay written either way compares equal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from api.errors import BadUserInput

if TYPE_CHECKING:
    from api.store.inputs import Limits, NewMessage

Part = dict[str, Any]

TEXT, IMAGE, FILE, TOOL_CALL, TOOL_RESULT, REASONING, DATA = (
    "text",
    "image",
    "file",
    "tool_call",
    "tool_result",
    "reasoning",
    "data",
)

INPUT_NAMES = {
    TEXT: "text",
    IMAGE: "image",
    FILE: "file",
    TOOL_CALL: "toolCall",
    TOOL_RESULT: "toolResult",
    REASONING: "reasoning",
    DATA: "data",
}
"""The MessagePartInput field of each kind: what error messages call them."""

ALLOWED: dict[str, tuple[str, ...]] = {
    "user": (TEXT, IMAGE, FILE, DATA),
    "assistant": (TEXT, IMAGE, FILE, TOOL_CALL, REASONING, DATA),
    "system": (TEXT, DATA),
    "tool": (TOOL_RESULT, TEXT, IMAGE, FILE, DATA),
}
"""Which kinds of part each role may hold (design.md: tool calls and reasoning in
ASSISTANT messages only, tool results in TOOL messages only, SYSTEM text and data)."""

CONTENT_SEPARATOR = "\n\n"

MAX_JSON_DEPTH = 100
"""How deeply JSON values in parts (tool arguments, outputs, data) may nest: as for
metadata, far above real use and far below what would exhaust the recursion of a JSON
encoder (an internal error instead of BAD_USER_INPUT)."""

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")

USAGE_KEYS = ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens")
_INT_MAX = 2**31 - 1


def text_part(text: str) -> Part:
    return {"type": TEXT, "text": text}


def content_of(parts: Sequence[Part]) -> str:
    """`content` of a message with these parts: its text parts joined by a blank line."""
    return CONTENT_SEPARATOR.join(p["text"] for p in parts if p["type"] == TEXT)


def stored(parts: list[Part]) -> list[Part] | None:
    """What `messages.parts` holds for these parts (None: one plain text part)."""
    if len(parts) == 1 and parts[0].keys() == {"type", "text"} and parts[0]["type"] == TEXT:
        return None
    return parts


def parts_of(parts: list[Part] | None, content: str) -> list[Part]:
    """A stored message's parts (a row with parts NULL is one text part, its content)."""
    return [text_part(content)] if parts is None else parts


def has_tool_parts(parts: Sequence[Part] | None) -> bool:
    return parts is not None and any(p["type"] in (TOOL_CALL, TOOL_RESULT) for p in parts)


# --- checks of one message -------------------------------------------------------------


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


def serialized(parts: Sequence[Part], where: str) -> str:
    """The parts as JSON text (what counts against the content limit), or BAD_USER_INPUT
    for what JSON or PostgreSQL's jsonb cannot hold."""
    # the list, a part and its JSON value: two levels more than a value alone
    if _nesting_depth(list(parts), MAX_JSON_DEPTH + 2) > MAX_JSON_DEPTH + 2:
        raise BadUserInput(
            f"`{where}.parts` nests JSON objects and arrays more than {MAX_JSON_DEPTH} "
            "levels deep; flatten it."
        )
    try:
        text = json.dumps(parts, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        raise BadUserInput(f"`{where}.parts` must not contain NaN or Infinity.") from None
    if "\\u0000" in text:
        raise BadUserInput(f"`{where}.parts` must not contain NUL (\\u0000) characters.")
    try:
        text.encode()
    except UnicodeEncodeError:
        raise BadUserInput(
            f"`{where}.parts` contains an unpaired UTF-16 surrogate (\\ud800-\\udfff), which "
            "is not valid Unicode; send well-formed UTF-8."
        ) from None
    return text


def _string(
    part: Part,
    key: str,
    where: str,
    *,
    required: bool = True,
    max_length: int | None = None,
    nonempty: bool = False,
) -> None:
    value = part.get(key)
    if value is None:
        if required:
            raise BadUserInput(f"`{where}` needs `{key}`.")
        return
    if not isinstance(value, str):
        raise BadUserInput(f"`{where}.{key}` must be a string (got {type(value).__name__}).")
    if nonempty and not value:
        raise BadUserInput(f"`{where}.{key}` must not be empty.")
    if max_length is not None and len(value) > max_length:
        raise BadUserInput(
            f"`{where}.{key}` is {len(value)} characters; the limit is {max_length} "
            "(setting CTXGRAPH_MAX_NAME_LENGTH)."
        )


def _url(part: Part, where: str) -> None:
    _string(part, "url", where)
    url: str = part["url"]
    if not _SCHEME.match(url):
        raise BadUserInput(
            f"`{where}.url` must be an absolute URL (https://... or a data: URL), got {url[:60]!r}."
        )
    if url[:5].lower() == "data:" and "," not in url:
        raise BadUserInput(
            f"`{where}.url` is a data: URL without data: write data:<media type>;base64,<data>."
        )


_FIELDS: dict[str, frozenset[str]] = {
    TEXT: frozenset({"text"}),
    IMAGE: frozenset({"url", "media_type", "detail"}),
    FILE: frozenset({"url", "media_type", "filename"}),
    TOOL_CALL: frozenset({"call_id", "name", "arguments"}),
    TOOL_RESULT: frozenset({"call_id", "output", "is_error"}),
    REASONING: frozenset({"text", "encrypted", "provider"}),
    DATA: frozenset({"name", "data"}),
}


def check_part(part: Part, role: str, where: str, limits: Limits) -> None:
    """One part in the stored form: its fields, and whether a `role` message may hold it."""
    kind = part.get("type")
    if kind not in _FIELDS:
        raise BadUserInput(f"`{where}` is a part of unknown kind {kind!r}.")
    unknown = part.keys() - _FIELDS[kind] - {"type", "provider_metadata"}
    if unknown:
        raise BadUserInput(f"`{where}` has unknown fields: {', '.join(sorted(unknown))}.")
    if kind not in ALLOWED[role]:
        allowed = ", ".join(INPUT_NAMES[k] for k in ALLOWED[role])
        raise BadUserInput(
            f"`{where}` is a {INPUT_NAMES[kind]} part, which a {role.upper()} message cannot "
            f"hold ({role.upper()} messages hold {allowed}). Tool calls and reasoning go in "
            "ASSISTANT messages, tool results in TOOL messages."
        )
    names = limits.max_name_length
    if kind in (TEXT, REASONING):
        _string(part, "text", where)
    if kind in (IMAGE, FILE):
        _url(part, where)
        _string(part, "media_type", where, required=False, max_length=names)
        _string(part, "detail", where, required=False, max_length=names)
        _string(part, "filename", where, required=False, max_length=names)
    if kind in (TOOL_CALL, TOOL_RESULT):
        _string(part, "call_id", where, max_length=names, nonempty=True)
    if kind in (TOOL_CALL, DATA):
        _string(part, "name", where, max_length=names, nonempty=True)
    for key in ("arguments", "output", "data"):
        if key in _FIELDS[kind] and part.get(key) is None:
            raise BadUserInput(f"`{where}` needs `{key}` (a JSON value, not null).")
    if kind == TOOL_RESULT and not isinstance(part.get("is_error"), bool):
        raise BadUserInput(f"`{where}.is_error` must be true or false.")
    if kind == REASONING:
        _string(part, "encrypted", where, required=False)
        _string(part, "provider", where, required=False, max_length=names)
    meta = part.get("provider_metadata")
    if meta is not None and not isinstance(meta, dict):
        raise BadUserInput(f"`{where}.provider_metadata` must be an object.")


def check_parts(parts: list[Part], role: str, where: str, limits: Limits) -> str:
    """Every part of one message (placement included) and their size; their JSON text."""
    if not parts:
        raise BadUserInput(
            f'`{where}.parts` is empty: give at least one part, or content (content: "" '
            "for an empty message)."
        )
    for j, part in enumerate(parts):
        if not isinstance(part, dict):
            raise BadUserInput(f"`{where}.parts[{j}]` must be an object.")
        check_part(part, role, f"{where}.parts[{j}]", limits)
    text = serialized(parts, where)
    if len(text) > limits.max_content_length:
        raise BadUserInput(
            f"`{where}.parts` is {len(text)} characters serialized as JSON; the limit is "
            f"{limits.max_content_length} (setting CTXGRAPH_MAX_CONTENT_LENGTH). data: URLs "
            "count in full: link large files by https: URL instead."
        )
    return text


def check_usage(usage: dict[str, Any] | None, where: str) -> dict[str, Any] | None:
    """Token usage as stored: the given counts (non-negative Ints), None when none is."""
    if usage is None:
        return None
    unknown = usage.keys() - set(USAGE_KEYS)
    if unknown:
        raise BadUserInput(f"`{where}.usage` has unknown fields: {', '.join(sorted(unknown))}.")
    kept = {}
    for key in USAGE_KEYS:
        value = usage.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _INT_MAX:
            raise BadUserInput(
                f"`{where}.usage.{key}` must be an integer between 0 and {_INT_MAX} "
                f"(got {value!r})."
            )
        kept[key] = value
    return kept or None


# --- tool calls across a batch and its history -----------------------------------------


@dataclass(frozen=True, slots=True)
class ToolProbe:
    """A question for the history a batch is appended to (api/store/messages.py): is
    `call_id` free there (a call), or an open call of it (a result)? At part `part` of
    message `ord` of the batch."""

    ord: int
    part: int
    call_id: str
    kind: str  # "call" or "result"


def tool_probes(
    messages: Sequence[NewMessage], where: Callable[[int], str] = lambda i: f"messages[{i}]"
) -> list[ToolProbe]:
    """The rules a batch can break by itself (BAD_USER_INPUT: a callId used twice, a
    result given twice), and the probes the history must answer for the rest.

    A result answers a call earlier in the same batch, or else must find an open call in
    the history (a probe); a call's id must be new to the history (a probe). The legacy
    TOOL message (content + toolCallId, no parts) is outside these rules.
    """
    calls: dict[str, bool] = {}  # call ids of this batch -> answered in it
    results_outside: set[str] = set()
    probes: list[ToolProbe] = []
    for i, m in enumerate(messages):
        for j, part in enumerate(m.parts or ()):
            kind = part["type"]
            if kind not in (TOOL_CALL, TOOL_RESULT):
                continue
            call_id: str = part["call_id"]
            at = f"`{where(i)}.parts[{j}]`"
            if kind == TOOL_CALL:
                if call_id in calls:
                    raise BadUserInput(
                        f"{at}: callId {call_id!r} is used by an earlier tool call of this "
                        "batch; callIds are unique within a history."
                    )
                calls[call_id] = False
                probes.append(ToolProbe(i, j, call_id, "call"))
            elif call_id in calls:
                if calls[call_id]:
                    raise BadUserInput(
                        f"{at}: the tool call {call_id!r} already has a result earlier in "
                        "this batch; a call gets one result."
                    )
                calls[call_id] = True
            elif call_id in results_outside:
                raise BadUserInput(
                    f"{at}: the tool call {call_id!r} already has a result earlier in this "
                    "batch; a call gets one result."
                )
            else:
                results_outside.add(call_id)
                probes.append(ToolProbe(i, j, call_id, "result"))
    return probes


def violation(
    probe: ToolProbe, called: bool, answered: bool, where: Callable[[int], str]
) -> BadUserInput:
    """The error for a probe the history answered wrong."""
    at = f"`{where(probe.ord)}.parts[{probe.part}]`"
    if probe.kind == "call":
        return BadUserInput(
            f"{at}: callId {probe.call_id!r} is already used by a tool call of this "
            "history; callIds are unique within a history (inherited messages included)."
        )
    if not called:
        return BadUserInput(
            f"{at}: there is no tool call {probe.call_id!r} earlier in this history or "
            "batch for this result to answer; append the ASSISTANT message with the "
            "toolCall part first."
        )
    return BadUserInput(
        f"{at}: the tool call {probe.call_id!r} already has a result in this history; a "
        "call gets one result."
    )
