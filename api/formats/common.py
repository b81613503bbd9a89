"""What the format converters share: reading untrusted provider JSON with errors that
name the offending item, the converted message, data: URLs, JSON text of tool arguments.

A converter reads a value the client sent as JSON (nothing is trusted: every key may be
missing or of the wrong type) and writes messages whose parts are in the stored form of
api/store/parts.py; the rules of those parts (where they may go, sizes) are then checked
by the same code as for appendMessages.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

from api.errors import BadUserInput
from api.store.parts import Part

Json = Any


class Stored(Protocol):
    """A stored message as the store's records carry it (the read direction)."""

    @property
    def id(self) -> Any: ...
    @property
    def role(self) -> str: ...
    @property
    def content(self) -> str: ...
    @property
    def parts(self) -> list[Part] | None: ...
    @property
    def tool_call_id(self) -> str | None: ...
    @property
    def tool_name(self) -> str | None: ...


@dataclass
class Converted:
    """A message converted from provider input: role, parts in stored form, and where it
    came from (`source`, e.g. messages[3]: errors about the message name it)."""

    role: str
    parts: list[Part]
    source: str
    model: str | None = None
    usage: dict[str, Any] | None = None
    status: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def fail(where: str, problem: str) -> NoReturn:
    raise BadUserInput(f"`{where}` {problem}")


def obj(value: Json, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        fail(where, f"must be an object (got {_kind(value)}).")
    return value


def arr(value: Json, where: str) -> list[Any]:
    if not isinstance(value, list):
        fail(where, f"must be an array (got {_kind(value)}).")
    return value


def string(value: dict[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    item = value.get(key)
    if item is None:
        if required:
            fail(where, f"needs `{key}` (a string).")
        return None
    if not isinstance(item, str):
        fail(f"{where}.{key}", f"must be a string (got {_kind(item)}).")
    return item


def need(value: dict[str, Any], key: str, where: str) -> Json:
    if key not in value or value[key] is None:
        fail(where, f"needs `{key}`.")
    return value[key]


def one_of(value: Json, allowed: Sequence[str], where: str) -> str:
    if value not in allowed:
        fail(where, f"must be one of {', '.join(allowed)} (got {json.dumps(value)[:40]}).")
    return str(value)


def _kind(value: Json) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number"
    )


def json_text(value: Json, where: str) -> Json:
    """Tool arguments sent as JSON text (OpenAI's form), parsed."""
    if not isinstance(value, str):
        fail(where, f"must be a string of JSON text (got {_kind(value)}).")
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        fail(where, f"is not JSON ({exc.msg} at character {exc.pos}).")
    except RecursionError:
        fail(where, "nests JSON too deeply; flatten it.")


def dumps(value: Json) -> str:
    """JSON text as the providers write it: compact, key order kept, non-ASCII as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# --- data: URLs --------------------------------------------------------------------------


def data_url(media_type: str, data: str) -> str:
    """A base64 data: URL."""
    return f"data:{media_type};base64,{data}"


@dataclass(frozen=True)
class DataUrl:
    media_type: str
    data: str  # base64


def parse_data_url(url: str) -> DataUrl | None:
    """A base64 data: URL's media type and data; None for any other URL."""
    if not url[:5].lower() == "data:" or "," not in url:
        return None
    head, data = url[5:].split(",", 1)
    params = head.split(";")
    if "base64" not in (p.strip().lower() for p in params[1:]):
        return None
    return DataUrl(params[0] or "text/plain", data)


def text_data_url(text: str, media_type: str = "text/plain") -> str:
    return data_url(media_type, base64.b64encode(text.encode()).decode())


def decode_text(url: DataUrl) -> str | None:
    try:
        return base64.b64decode(url.data, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


# --- provider metadata kept on parts --------------------------------------------------------


def meta_of(part: Part, namespace: str) -> dict[str, Any]:
    """What a converter kept on a part to write it back (api/store/parts.py)."""
    found = (part.get("provider_metadata") or {}).get(namespace)
    return found if isinstance(found, dict) else {}


def with_meta(part: Part, namespace: str, meta: dict[str, Any]) -> Part:
    kept = {k: v for k, v in meta.items() if v is not None}
    if kept:
        part["provider_metadata"] = {**part.get("provider_metadata", {}), namespace: kept}
    return part


def without_nulls(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if v is not None}


def text_of(parts: Sequence[Part]) -> str:
    return "\n\n".join(p["text"] for p in parts if p["type"] == "text")


def output_text(output: Json) -> str:
    """A tool result's output as the string formats that want one: itself, or its JSON."""
    return output if isinstance(output, str) else dumps(output)
