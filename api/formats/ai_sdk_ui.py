"""AI_SDK_UI: the Vercel AI SDK's UIMessage[] (what useChat holds; `ai` package, v5+).

A UIMessage of the assistant is a whole turn: its steps (step-start parts) with their
tool calls, and the tools' results inside the tool parts. Here a step is an ASSISTANT
message and the results of its tool parts a TOOL message after it; read back, an
ASSISTANT message and the TOOL messages and ASSISTANT messages that follow it (up to
the next USER or SYSTEM message) are one UIMessage again, each ASSISTANT message
starting a step. What maps to what, and what is dropped: docs/formats.md, "AI_SDK_UI".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from api.formats.common import (
    Converted,
    Json,
    Stored,
    arr,
    fail,
    meta_of,
    need,
    obj,
    one_of,
    parse_data_url,
    string,
    with_meta,
    without_nulls,
)
from api.formats.openai_responses import NAME as RESPONSES
from api.store.parts import Part, parts_of, text_part

NAME = "ai_sdk_ui"
_CALL_STATES = ("input-available", "approval-requested", "approval-responded")
_RESULT_STATES = ("output-available", "output-error", "output-denied")
_SOURCES = ("source-url", "source-document")
# what a tool part carries besides its call and result, kept to write it back
_CALL_KEYS = ("title", "toolMetadata", "providerExecuted", "callProviderMetadata", "approval")
_RESULT_KEYS = ("resultProviderMetadata", "preliminary")


def _reasoning(p: dict[str, Any], at: str) -> Part:
    meta = p.get("providerMetadata")
    if meta is not None:
        obj(meta, f"{at}.providerMetadata")
    anthropic = (meta or {}).get("anthropic") or {}
    openai = (meta or {}).get("openai") or {}
    part: Part = {"type": "reasoning", "text": string(p, "text", at) or ""}
    if isinstance(anthropic, dict) and (
        anthropic.get("signature") or anthropic.get("redactedData")
    ):
        part["encrypted"] = anthropic.get("signature") or anthropic.get("redactedData")
        part["provider"] = "anthropic"
    elif isinstance(openai, dict) and (
        openai.get("reasoningEncryptedContent") or openai.get("itemId")
    ):
        if openai.get("reasoningEncryptedContent"):
            part["encrypted"] = openai["reasoningEncryptedContent"]
        part["provider"] = "openai"
        # what the Responses format needs to write it back as a reasoning item
        item_id = openai.get("itemId")
        with_meta(part, RESPONSES, {"item_id": item_id if isinstance(item_id, str) else None})
    return with_meta(part, NAME, {"providerMetadata": meta, "id": p.get("id")})


def _file(p: dict[str, Any], at: str) -> Part:
    media = string(p, "mediaType", at) or ""
    url = string(p, "url", at) or ""
    kind = "image" if media.startswith("image/") else "file"
    part = without_nulls(
        {
            "type": kind,
            "url": url,
            "media_type": media,
            "filename": string(p, "filename", at, required=False),
        }
    )
    if kind == "image" and "filename" in part:
        meta = {"filename": part.pop("filename")}
    else:
        meta = {}
    meta.update(
        providerMetadata=p.get("providerMetadata"), providerReference=p.get("providerReference")
    )
    return with_meta(part, NAME, meta)


def _simple(p: dict[str, Any], at: str) -> Part | None:
    """A part that is not a tool part or a step-start; None for one it does not take."""
    kind = p["type"]
    if kind == "text":
        part = text_part(string(p, "text", at) or "")
        return with_meta(part, NAME, {"providerMetadata": p.get("providerMetadata")})
    if kind == "reasoning":
        return _reasoning(p, at)
    if kind == "file":
        return _file(p, at)
    if kind in _SOURCES:
        string(p, "sourceId", at)
        return {"type": "data", "name": kind, "data": {k: v for k, v in p.items() if k != "type"}}
    if kind.startswith("data-") and len(kind) > 5:
        part = {"type": "data", "name": kind[5:], "data": p.get("data")}
        return with_meta(part, NAME, {"id": p.get("id")})
    return None


def _tool(p: dict[str, Any], at: str) -> tuple[Part, Part | None]:
    """A tool part's call, and its result if it has one."""
    kind = p["type"]
    dynamic = kind == "dynamic-tool"
    name = string(p, "toolName", at) if dynamic else kind[5:]
    state = p.get("state")
    if state == "input-streaming":
        fail(
            f"{at}.state",
            "is input-streaming: the call's input is not complete yet; append "
            "the message once it is.",
        )
    state = one_of(state, (*_CALL_STATES, *_RESULT_STATES), f"{at}.state")
    call_id = string(p, "toolCallId", at)
    arguments = p.get("input")
    meta: dict[str, Any] = {k: p.get(k) for k in _CALL_KEYS}
    meta.update(state=state, dynamic=dynamic or None)
    if arguments is None:  # an output-error whose input never parsed
        arguments, meta["noInput"] = {}, True
        meta["rawInput"] = p.get("rawInput")
    call = with_meta(
        {"type": "tool_call", "call_id": call_id, "name": name, "arguments": arguments}, NAME, meta
    )
    if state in _CALL_STATES:
        return call, None
    if state == "output-available":
        output, is_error = need(p, "output", at), False
    elif state == "output-error":
        output, is_error = string(p, "errorText", at), True
    else:  # output-denied: the model is told the call was refused
        reason = obj(need(p, "approval", at), f"{at}.approval").get("reason")
        output, is_error = reason if isinstance(reason, str) else "denied", True
    result = {"type": "tool_result", "call_id": call_id, "output": output, "is_error": is_error}
    return call, with_meta(result, NAME, {k: p.get(k) for k in _RESULT_KEYS})


def _is_tool(kind: str) -> bool:
    return kind == "dynamic-tool" or (kind.startswith("tool-") and len(kind) > 5)


def to_messages(value: Json) -> list[Converted]:
    """UIMessages as ctxgraph messages (BAD_USER_INPUT naming the message and part)."""
    out: list[Converted] = []
    for i, raw in enumerate(arr(value, "messages")):
        at = f"messages[{i}]"
        m = obj(raw, at)
        role = one_of(m.get("role"), ("system", "user", "assistant"), f"{at}.role")
        step: list[Part] = []
        results: list[Part] = []
        parts = arr(need(m, "parts", at), f"{at}.parts")
        for j, raw_part in enumerate(parts):
            where = f"{at}.parts[{j}]"
            p = obj(raw_part, where)
            kind = string(p, "type", where) or ""
            if kind == "step-start":
                if role == "assistant":
                    _flush(out, role, step, results, at)
                continue
            if _is_tool(kind):
                call, result = _tool(p, where)
                step.append(call)
                if result is not None:
                    results.append(result)
                continue
            part = _simple(p, where)
            if part is None:
                fail(f"{where}.type", f"is {kind!r}, which appendFormatted does not take.")
            if results:  # the step's tools have answered: what follows is the next step
                _flush(out, role, step, results, at)
            step.append(part)
        if not step and not results and not any(c.source == at for c in out):
            step.append(text_part(""))  # an empty UIMessage is an empty message
        _flush(out, role, step, results, at)
    return out


def _flush(out: list[Converted], role: str, step: list[Part], results: list[Part], at: str) -> None:
    """A step: its message, then a TOOL message with its tools' results."""
    if step:
        out.append(Converted(role, list(step), at))
    if results:
        out.append(Converted("tool", list(results), at))
    step.clear()
    results.clear()


# --- the read direction --------------------------------------------------------------------


def _media_type(p: Part) -> str:
    if p.get("media_type"):
        return str(p["media_type"])
    found = parse_data_url(p["url"])
    if found is not None:
        return found.media_type
    return "image/*" if p["type"] == "image" else "application/octet-stream"


def _reasoning_metadata(p: Part) -> dict[str, Any] | None:
    kept = meta_of(p, NAME).get("providerMetadata")
    if kept is not None:
        return dict(kept)
    encrypted = p.get("encrypted")
    if p.get("provider") == "anthropic" and encrypted:
        key = "signature" if p["text"] else "redactedData"
        return {"anthropic": {key: encrypted}}
    if p.get("provider") == "openai":
        openai = without_nulls(
            {
                "itemId": meta_of(p, RESPONSES).get("item_id"),
                "reasoningEncryptedContent": encrypted,
            }
        )
        return {"openai": openai} if openai else None
    return None


def _part_out(p: Part) -> dict[str, Any] | None:
    kind, meta = p["type"], meta_of(p, NAME)
    if kind == "text":
        return without_nulls(
            {"type": "text", "text": p["text"], "providerMetadata": meta.get("providerMetadata")}
        )
    if kind == "reasoning":
        return without_nulls(
            {
                "type": "reasoning",
                "text": p["text"],
                "id": meta.get("id"),
                "providerMetadata": _reasoning_metadata(p),
            }
        )
    if kind in ("image", "file"):
        return without_nulls(
            {
                "type": "file",
                "mediaType": _media_type(p),
                "filename": p.get("filename") or meta.get("filename"),
                "url": p["url"],
                "providerReference": meta.get("providerReference"),
                "providerMetadata": meta.get("providerMetadata"),
            }
        )
    if kind == "data":
        data = p["data"]
        if (
            p["name"] in _SOURCES
            and isinstance(data, dict)
            and isinstance(data.get("sourceId"), str)
        ):
            return {"type": p["name"], **data}
        return without_nulls({"type": f"data-{p['name']}", "id": meta.get("id"), "data": data})
    return None


def _tool_part(p: Part) -> dict[str, Any]:
    meta = meta_of(p, NAME)
    state = meta.get("state") if meta.get("state") in _CALL_STATES else "input-available"
    part: dict[str, Any] = (
        {"type": "dynamic-tool", "toolName": p["name"]}
        if meta.get("dynamic")
        else {"type": f"tool-{p['name']}"}
    )
    part["toolCallId"] = p["call_id"]
    part.update(without_nulls({k: meta.get(k) for k in _CALL_KEYS}))
    part["state"] = state
    if not meta.get("noInput"):
        part["input"] = p["arguments"]
    if state == "input-available":
        part.pop("approval", None)
    return part


def _answer(tool: dict[str, Any], result: Part) -> None:
    """Write a result into its tool part."""
    call_meta = tool.pop("_meta", {})
    meta = meta_of(result, NAME)
    if call_meta.get("state") == "output-denied":
        tool["state"] = "output-denied"
    elif result["is_error"]:
        tool["state"] = "output-error"
        output = result["output"]
        tool["errorText"] = output if isinstance(output, str) else str(output)
        if call_meta.get("rawInput") is not None:
            tool["rawInput"] = call_meta["rawInput"]
    else:
        tool["state"] = "output-available"
        tool["output"] = result["output"]
    if "input" not in tool and tool["state"] != "output-error":
        tool["input"] = {}
    if tool["state"] != "output-denied" and isinstance(tool.get("approval"), dict):
        if tool["approval"].get("approved") is not True:
            tool.pop("approval")
    tool.update(without_nulls({k: meta.get(k) for k in _RESULT_KEYS}))


def from_messages(messages: Sequence[Stored]) -> list[dict[str, Any]]:
    """Stored messages as UIMessage[] (docs/formats.md)."""
    out: list[dict[str, Any]] = []
    turn: dict[str, Any] | None = None  # the assistant UIMessage being written
    tools: dict[str, dict[str, Any]] = {}
    for m in messages:
        parts = parts_of(m.parts, m.content)
        if m.role == "tool":
            if turn is None:
                continue  # results of no call in this window
            results = [p for p in parts if p["type"] == "tool_result"]
            if not results and m.tool_call_id is not None:  # the legacy TOOL message
                results = [
                    {
                        "type": "tool_result",
                        "call_id": m.tool_call_id,
                        "output": m.content,
                        "is_error": False,
                    }
                ]
            for r in results:
                tool = tools.pop(r["call_id"], None)
                if tool is not None:
                    _answer(tool, r)
            continue
        if m.role != "assistant":
            turn = None
            written = [w for p in parts if (w := _part_out(p)) is not None]
            out.append({"id": str(m.id), "role": m.role, "parts": written})
            continue
        if turn is None:
            turn = {"id": str(m.id), "role": "assistant", "parts": []}
            tools = {}
            out.append(turn)
        turn["parts"].append({"type": "step-start"})
        for p in parts:
            if p["type"] == "tool_call":
                tool = _tool_part(p)
                tools[p["call_id"]] = tool
                tool["_meta"] = meta_of(p, NAME)
                turn["parts"].append(tool)
            elif (written_part := _part_out(p)) is not None:
                turn["parts"].append(written_part)
    for tool in tools.values():
        tool.pop("_meta", None)
    for message in out:
        for part in message["parts"]:
            part.pop("_meta", None)
    return out
