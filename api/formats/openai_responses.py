"""OPENAI_RESPONSES: OpenAI Responses, the value of `input` (ResponseInputItemParam[]).

A response's `output` items are valid input items, so what a client appends is usually
`response.output` (or the whole conversation's items). Consecutive assistant-side items
(reasoning, function_call, assistant message) are one model turn: one ASSISTANT message
whose parts keep their order; consecutive function_call_output items are one TOOL
message. What maps to what, and what is dropped: docs/formats.md, "OPENAI_RESPONSES".
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
    dumps,
    fail,
    json_text,
    meta_of,
    need,
    obj,
    one_of,
    output_text,
    parse_data_url,
    string,
    with_meta,
    without_nulls,
)
from api.store.parts import Part, parts_of, text_part

NAME = "openai_responses"
PROVIDER = "openai"
_SUPPORTED = ("message", "reasoning", "function_call", "function_call_output")


def _input_part(item: Json, at: str) -> Part:
    kind = one_of(
        obj(item, at).get("type"), ("input_text", "input_image", "input_file"), f"{at}.type"
    )
    if kind == "input_text":
        return text_part(string(item, "text", at) or "")
    if item.get("file_id") is not None:
        fail(
            f"{at}.file_id",
            "is a reference to an uploaded file, which ctxgraph cannot store; "
            "send the data (image_url / file_data) or a URL.",
        )
    if kind == "input_image":
        url = string(item, "image_url", at) or ""
        found = parse_data_url(url)
        return without_nulls(
            {
                "type": "image",
                "url": url,
                "media_type": found.media_type if found else None,
                "detail": string(item, "detail", at, required=False),
            }
        )
    data = string(item, "file_data", at, required=False)
    if data is not None:
        url = data if parse_data_url(data) else data_url("application/octet-stream", data)
    else:
        url = string(item, "file_url", at) or ""
    found = parse_data_url(url)
    return without_nulls(
        {
            "type": "file",
            "url": url,
            "media_type": found.media_type if found else None,
            "filename": string(item, "filename", at, required=False),
        }
    )


def _assistant_message(item: dict[str, Any], at: str) -> list[Part]:
    content = need(item, "content", at)
    if isinstance(content, str):
        parts = [text_part(content)]
    else:
        parts = []
        for j, x in enumerate(arr(content, f"{at}.content")):
            where = f"{at}.content[{j}]"
            kind = one_of(
                obj(x, where).get("type"), ("output_text", "refusal", "input_text"), f"{where}.type"
            )
            if kind == "refusal":
                parts.append(
                    with_meta(text_part(string(x, "refusal", where) or ""), NAME, {"refusal": True})
                )
            else:
                parts.append(text_part(string(x, "text", where) or ""))
    if parts:
        first = {"item_id": item.get("id"), "phase": item.get("phase")}
        with_meta(parts[0], NAME, first)
    return parts


def to_messages(value: Json) -> list[Converted]:
    """Input items as ctxgraph messages (BAD_USER_INPUT naming the item)."""
    out: list[Converted] = []
    turn: Converted | None = None  # the assistant turn being read
    results: Converted | None = None  # the tool results being read
    for i, raw in enumerate(arr(value, "messages")):
        at = f"messages[{i}]"
        item = obj(raw, at)
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind not in _SUPPORTED:
            fail(
                f"{at}.type",
                f"is {kind!r}, which appendFormatted does not take (it takes "
                f"{', '.join(_SUPPORTED)}).",
            )
        part: Part
        if kind == "message":
            role = one_of(
                item.get("role"), ("user", "system", "developer", "assistant"), f"{at}.role"
            )
            if role != "assistant":
                results = turn = None
                content = need(item, "content", at)
                if isinstance(content, str):
                    parts = [text_part(content)]
                else:
                    items = arr(content, f"{at}.content")
                    parts = [_input_part(x, f"{at}.content[{j}]") for j, x in enumerate(items)]
                role = "system" if role == "developer" else role
                out.append(Converted(role, parts or [text_part("")], at))
                continue
            results = None
            if turn is None:
                turn = Converted("assistant", [], at)
                out.append(turn)
            turn.parts += _assistant_message(item, at)
            if item.get("status") == "incomplete":
                turn.status = "incomplete"
            continue
        if kind == "function_call_output":
            turn = None
            if results is None:
                results = Converted("tool", [], at)
                out.append(results)
            output = need(item, "output", at)
            if not isinstance(output, str):
                arr(output, f"{at}.output")
            part = {
                "type": "tool_result",
                "call_id": string(item, "call_id", at),
                "output": output,
                "is_error": False,
            }
            results.parts.append(with_meta(part, NAME, {"item_id": item.get("id")}))
            continue
        results = None
        if turn is None:
            turn = Converted("assistant", [], at)
            out.append(turn)
        if kind == "reasoning":
            summary = arr(need(item, "summary", at), f"{at}.summary")
            texts = []
            for j, s in enumerate(summary):
                one_of(
                    obj(s, f"{at}.summary[{j}]").get("type"),
                    ("summary_text",),
                    f"{at}.summary[{j}].type",
                )
                texts.append(string(s, "text", f"{at}.summary[{j}]") or "")
            raw_content = item.get("content")
            if raw_content is not None:
                arr(raw_content, f"{at}.content")
            part = without_nulls(
                {
                    "type": "reasoning",
                    "text": "\n\n".join(texts),
                    "encrypted": string(item, "encrypted_content", at, required=False),
                    "provider": PROVIDER,
                }
            )
            meta = {"item_id": string(item, "id", at), "content": raw_content}
            turn.parts.append(with_meta(part, NAME, meta))
        else:  # function_call
            part = {
                "type": "tool_call",
                "call_id": string(item, "call_id", at),
                "name": string(item, "name", at),
                "arguments": json_text(need(item, "arguments", at), f"{at}.arguments"),
            }
            meta = {"item_id": item.get("id"), "namespace": item.get("namespace")}
            turn.parts.append(with_meta(part, NAME, meta))
    return out


# --- the read direction --------------------------------------------------------------------


def _input_content(parts: list[Part]) -> str | list[dict[str, Any]]:
    if len(parts) == 1 and parts[0]["type"] == "text":
        return str(parts[0]["text"])
    content: list[dict[str, Any]] = []
    for p in parts:
        if p["type"] == "text":
            content.append({"type": "input_text", "text": p["text"]})
        elif p["type"] == "image":
            content.append(
                {"type": "input_image", "image_url": p["url"], "detail": p.get("detail") or "auto"}
            )
        elif p["type"] == "file":
            source = "file_data" if parse_data_url(p["url"]) else "file_url"
            content.append(
                without_nulls(
                    {"type": "input_file", source: p["url"], "filename": p.get("filename")}
                )
            )
    return content


def _is_content_list(value: Json) -> bool:
    """A function_call_output's output list (input_text/input_image/input_file items)."""
    kinds = ("input_text", "input_image", "input_file")
    return isinstance(value, list) and all(
        isinstance(x, dict) and x.get("type") in kinds for x in value
    )


def _message_item(texts: list[Part], status: str) -> dict[str, Any]:
    meta = meta_of(texts[0], NAME)
    if meta.get("item_id") is None:  # written elsewhere: the easy form
        return {
            "type": "message",
            "role": "assistant",
            "content": "\n\n".join(p["text"] for p in texts),
        }
    content = [
        {"type": "refusal", "refusal": p["text"]}
        if meta_of(p, NAME).get("refusal")
        else {"type": "output_text", "text": p["text"], "annotations": []}
        for p in texts
    ]
    item = {
        "type": "message",
        "role": "assistant",
        "id": meta["item_id"],
        "status": status,
        "content": content,
    }
    if meta.get("phase") is not None:
        item["phase"] = meta["phase"]
    return item


def _assistant_items(parts: list[Part], status: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    texts: list[Part] = []

    def flush() -> None:
        if texts:
            items.append(_message_item(texts, status))
            texts.clear()

    for p in parts:
        meta = meta_of(p, NAME)
        if p["type"] == "text":
            if meta.get("item_id") is not None:
                flush()  # a message item of its own
            texts.append(p)
            continue
        if p["type"] == "reasoning":
            # only OpenAI's own reasoning, and only with its item id (the API requires it)
            if p.get("provider") != PROVIDER or meta.get("item_id") is None:
                continue
            flush()
            summary = [{"type": "summary_text", "text": p["text"]}] if p["text"] else []
            item: dict[str, Any] = {"type": "reasoning", "id": meta["item_id"], "summary": summary}
            if p.get("encrypted") is not None:
                item["encrypted_content"] = p["encrypted"]
            if meta.get("content") is not None:
                item["content"] = meta["content"]
            items.append(item)
        elif p["type"] == "tool_call":
            flush()
            call = {
                "type": "function_call",
                "call_id": p["call_id"],
                "name": p["name"],
                "arguments": dumps(p["arguments"]),
            }
            call.update(
                without_nulls({"id": meta.get("item_id"), "namespace": meta.get("namespace")})
            )
            items.append(call)
    flush()
    return items


def from_messages(messages: Sequence[Stored]) -> list[dict[str, Any]]:
    """Stored messages as Responses input items (docs/formats.md)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        parts = parts_of(m.parts, m.content)
        if m.role == "system":
            text = "\n\n".join(p["text"] for p in parts if p["type"] == "text")
            out.append({"type": "message", "role": "system", "content": text})
        elif m.role == "user":
            out.append({"type": "message", "role": "user", "content": _input_content(parts)})
        elif m.role == "assistant":
            status = "incomplete" if getattr(m, "status", None) == "incomplete" else "completed"
            out += _assistant_items(parts, status)
        else:
            results = [p for p in parts if p["type"] == "tool_result"]
            for r in results:
                output = r["output"]
                keep = isinstance(output, str) or _is_content_list(output)
                item = {
                    "type": "function_call_output",
                    "call_id": r["call_id"],
                    "output": output if keep else output_text(output),
                }
                item.update(without_nulls({"id": meta_of(r, NAME).get("item_id")}))
                out.append(item)
            if not results and m.tool_call_id is not None:  # the legacy TOOL message
                out.append(
                    {"type": "function_call_output", "call_id": m.tool_call_id, "output": m.content}
                )
    return out
