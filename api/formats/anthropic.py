"""ANTHROPIC: Anthropic Messages, an object {system, messages} (MessageCreateParams' two
keys; a bare array is taken as its messages).

A user message's tool_result blocks become a TOOL message (before a USER message with
its other blocks, if any); everything else is one message for one. A message may be a
whole `Message` the API returned: its model, usage and stop_reason are kept. What maps
to what, and what is dropped: docs/formats.md, "ANTHROPIC".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from api.formats.common import (
    Converted,
    Json,
    Stored,
    arr,
    data_url,
    decode_text,
    dumps,
    fail,
    need,
    obj,
    one_of,
    parse_data_url,
    string,
    text_data_url,
    without_nulls,
)
from api.store.parts import Part, parts_of, text_part

PROVIDER = "anthropic"
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_USER_BLOCKS = ("text", "image", "document", "tool_result")
_ASSISTANT_BLOCKS = ("text", "thinking", "redacted_thinking", "tool_use")
_RESULT_BLOCKS = ("text", "image", "document", "search_result")


def _image(block: dict[str, Any], at: str) -> Part:
    source = obj(need(block, "source", at), f"{at}.source")
    kind = one_of(source.get("type"), ("base64", "url"), f"{at}.source.type")
    if kind == "base64":
        media = one_of(source.get("media_type"), IMAGE_TYPES, f"{at}.source.media_type")
        data = string(source, "data", f"{at}.source") or ""
        return {"type": "image", "url": data_url(media, data), "media_type": media}
    return {"type": "image", "url": string(source, "url", f"{at}.source") or ""}


def _document(block: dict[str, Any], at: str) -> Part:
    source = obj(need(block, "source", at), f"{at}.source")
    kind = one_of(source.get("type"), ("base64", "text", "url"), f"{at}.source.type")
    title = string(block, "title", at, required=False)
    if kind == "base64":
        media = one_of(source.get("media_type"), ("application/pdf",), f"{at}.source.media_type")
        url = data_url(media, string(source, "data", f"{at}.source") or "")
    elif kind == "text":
        media = one_of(source.get("media_type"), ("text/plain",), f"{at}.source.media_type")
        url = text_data_url(string(source, "data", f"{at}.source") or "")
    else:
        media, url = "application/pdf", string(source, "url", f"{at}.source") or ""
    return without_nulls({"type": "file", "url": url, "media_type": media, "filename": title})


def _block(block: Json, at: str, allowed: tuple[str, ...]) -> Part:
    b = obj(block, at)
    kind = b.get("type")
    if kind not in allowed:
        fail(
            f"{at}.type",
            f"is {kind!r}, which appendFormatted does not take here (it takes "
            f"{', '.join(allowed)}).",
        )
    if kind == "text":
        return text_part(string(b, "text", at) or "")
    if kind == "image":
        return _image(b, at)
    if kind == "document":
        return _document(b, at)
    if kind == "tool_use":
        return {
            "type": "tool_call",
            "call_id": string(b, "id", at),
            "name": string(b, "name", at),
            "arguments": need(b, "input", at),
        }
    if kind == "tool_result":
        content = b.get("content", "")
        if not isinstance(content, str):
            for j, x in enumerate(arr(content, f"{at}.content")):
                one_of(
                    obj(x, f"{at}.content[{j}]").get("type"),
                    _RESULT_BLOCKS,
                    f"{at}.content[{j}].type",
                )
        is_error = b.get("is_error", False)
        if not isinstance(is_error, bool):
            fail(f"{at}.is_error", "must be true or false.")
        return {
            "type": "tool_result",
            "call_id": string(b, "tool_use_id", at),
            "output": content,
            "is_error": is_error,
        }
    if kind == "thinking":
        return {
            "type": "reasoning",
            "text": string(b, "thinking", at) or "",
            "encrypted": string(b, "signature", at),
            "provider": PROVIDER,
        }
    return {  # redacted_thinking
        "type": "reasoning",
        "text": "",
        "encrypted": string(b, "data", at),
        "provider": PROVIDER,
    }


def _blocks(content: Json, at: str, allowed: tuple[str, ...]) -> list[Part]:
    if isinstance(content, str):
        return [text_part(content)]
    items = arr(content, f"{at}.content")
    return [_block(x, f"{at}.content[{j}]", allowed) for j, x in enumerate(items)]


def _usage(message: dict[str, Any], at: str) -> dict[str, Any] | None:
    usage = message.get("usage")
    if usage is None:
        return None
    u = obj(usage, f"{at}.usage")
    return (
        without_nulls(
            {
                "input_tokens": u.get("input_tokens"),
                "output_tokens": u.get("output_tokens"),
                "cached_input_tokens": u.get("cache_read_input_tokens"),
            }
        )
        or None
    )


def to_messages(value: Json) -> list[Converted]:
    """{system, messages} as ctxgraph messages (BAD_USER_INPUT naming the item)."""
    out: list[Converted] = []
    if isinstance(value, list):
        system, messages = None, value
    else:
        request = obj(value, "messages")
        system, messages = request.get("system"), need(request, "messages", "messages")
    if system is not None:
        out.append(Converted("system", _blocks(system, "system", ("text",)), "system"))
    for i, raw in enumerate(arr(messages, "messages")):
        at = f"messages[{i}]"
        m = obj(raw, at)
        role = one_of(m.get("role"), ("user", "assistant", "system"), f"{at}.role")
        content = need(m, "content", at)
        if role == "system":
            out.append(Converted("system", _blocks(content, at, ("text",)), at))
        elif role == "assistant":
            converted = Converted("assistant", _blocks(content, at, _ASSISTANT_BLOCKS), at)
            converted.model = string(m, "model", at, required=False)
            converted.usage = _usage(m, at)
            if m.get("stop_reason") == "max_tokens":
                converted.status = "incomplete"
            converted.parts = converted.parts or [text_part("")]
            out.append(converted)
        else:
            parts = _blocks(content, at, _USER_BLOCKS)
            results = [p for p in parts if p["type"] == "tool_result"]
            rest = [p for p in parts if p["type"] != "tool_result"]
            if results:
                out.append(Converted("tool", results, at))
            if rest or not results:
                out.append(Converted("user", rest or [text_part("")], at))
    return out


# --- the read direction --------------------------------------------------------------------


def _image_block(p: Part) -> dict[str, Any] | None:
    found = parse_data_url(p["url"])
    if found is None:
        if p["url"][:6].lower() in ("https:", "http:/"):
            return {"type": "image", "source": {"type": "url", "url": p["url"]}}
        return None
    if found.media_type not in IMAGE_TYPES:
        return None
    source = {"type": "base64", "media_type": found.media_type, "data": found.data}
    return {"type": "image", "source": source}


def _document_block(p: Part) -> dict[str, Any] | None:
    found = parse_data_url(p["url"])
    source: dict[str, Any]
    if found is None:
        if p["url"][:6].lower() not in ("https:", "http:/"):
            return None
        source = {"type": "url", "url": p["url"]}
    elif found.media_type == "application/pdf":
        source = {"type": "base64", "media_type": "application/pdf", "data": found.data}
    elif found.media_type == "text/plain" and (text := decode_text(found)) is not None:
        source = {"type": "text", "media_type": "text/plain", "data": text}
    else:
        return None
    return without_nulls({"type": "document", "source": source, "title": p.get("filename")})


def _result_content(output: Json) -> Json:
    if isinstance(output, str):
        return output
    if isinstance(output, list) and all(
        isinstance(x, dict) and x.get("type") in _RESULT_BLOCKS for x in output
    ):
        return output
    return dumps(output)


def _blocks_out(m: Stored) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    parts = parts_of(m.parts, m.content)
    for p in parts:
        kind = p["type"]
        block: dict[str, Any] | None = None
        if kind == "text":
            # the API refuses empty text blocks
            block = {"type": "text", "text": p["text"]} if p["text"] else None
        elif kind == "image" and m.role == "user":
            block = _image_block(p)
        elif kind == "file" and m.role == "user":
            block = _document_block(p)
        elif kind == "reasoning" and p.get("provider") == PROVIDER and p.get("encrypted"):
            if p["text"]:
                block = {"type": "thinking", "thinking": p["text"], "signature": p["encrypted"]}
            else:
                block = {"type": "redacted_thinking", "data": p["encrypted"]}
        elif kind == "tool_call":
            arguments = p["arguments"]
            block = {
                "type": "tool_use",
                "id": p["call_id"],
                "name": p["name"],
                "input": arguments if isinstance(arguments, dict) else {"value": arguments},
            }
        elif kind == "tool_result":
            block = {
                "type": "tool_result",
                "tool_use_id": p["call_id"],
                "content": _result_content(p["output"]),
            }
            if p["is_error"]:
                block["is_error"] = True
        if block is not None:
            blocks.append(block)
    if m.role == "tool" and not any(p["type"] == "tool_result" for p in parts):
        if m.tool_call_id is not None:  # the legacy TOOL message
            return [{"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}]
        return []
    return blocks


def from_messages(messages: Sequence[Stored]) -> dict[str, Any]:
    """Stored messages as {system, messages} of a Messages request (docs/formats.md)."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            system += [p["text"] for p in parts_of(m.parts, m.content) if p["type"] == "text"]
            continue
        blocks = _blocks_out(m)
        if not blocks:
            continue
        role = "assistant" if m.role == "assistant" else "user"
        if out and out[-1]["role"] == role:  # the API takes turns; results first in a turn
            merged = out[-1]["content"] + blocks
            results = [b for b in merged if b["type"] == "tool_result"]
            out[-1]["content"] = results + [b for b in merged if b["type"] != "tool_result"]
        else:
            out.append({"role": role, "content": blocks})
    for message in out:
        content = message["content"]
        if len(content) == 1 and content[0]["type"] == "text":
            message["content"] = content[0]["text"]
    request: dict[str, Any] = {}
    texts = [t for t in system if t]
    if texts:
        request["system"] = (
            texts[0] if len(texts) == 1 else [{"type": "text", "text": t} for t in texts]
        )
    request["messages"] = out
    return request
