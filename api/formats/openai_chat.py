"""OPENAI_CHAT: OpenAI Chat Completions, the value of `messages` (ChatCompletionMessageParam[]).

`to_messages` reads what a client holds (a request's messages, or a response's
`choices[i].message`); `from_messages` writes stored messages back as request messages.
What maps to what, and what is dropped: docs/formats.md, "OPENAI_CHAT".
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

NAME = "openai_chat"
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_AUDIO_FORMATS = {"wav": "audio/wav", "mp3": "audio/mpeg"}


def _texts(content: Json, where: str) -> list[Part]:
    """A system/developer/tool content: a string or an array of text parts."""
    if isinstance(content, str):
        return [text_part(content)]
    parts = []
    for j, item in enumerate(arr(content, f"{where}.content")):
        at = f"{where}.content[{j}]"
        one_of(obj(item, at).get("type"), ("text",), f"{at}.type")
        parts.append(text_part(string(item, "text", at) or ""))
    return parts


def _user_part(item: Json, at: str) -> Part:
    kind = one_of(
        obj(item, at).get("type"), ("text", "image_url", "input_audio", "file"), f"{at}.type"
    )
    if kind == "text":
        return text_part(string(item, "text", at) or "")
    if kind == "image_url":
        image = obj(need(item, "image_url", at), f"{at}.image_url")
        url = string(image, "url", f"{at}.image_url") or ""
        found = parse_data_url(url)
        return without_nulls(
            {
                "type": "image",
                "url": url,
                "media_type": found.media_type if found else None,
                "detail": string(image, "detail", f"{at}.image_url", required=False),
            }
        )
    if kind == "input_audio":
        audio = obj(need(item, "input_audio", at), f"{at}.input_audio")
        fmt = one_of(audio.get("format"), tuple(_AUDIO_FORMATS), f"{at}.input_audio.format")
        data = string(audio, "data", f"{at}.input_audio") or ""
        media = _AUDIO_FORMATS[fmt]
        return {"type": "file", "url": data_url(media, data), "media_type": media}
    file = obj(need(item, "file", at), f"{at}.file")
    if file.get("file_id") is not None:
        fail(
            f"{at}.file.file_id",
            "is a reference to an uploaded file, which ctxgraph cannot "
            "store; send the file's data as file_data.",
        )
    data = string(file, "file_data", f"{at}.file") or ""
    # file_data is a data: URL in OpenAI's examples; bare base64 is wrapped in one
    url = data if parse_data_url(data) else data_url("application/octet-stream", data)
    found = parse_data_url(url)
    return without_nulls(
        {
            "type": "file",
            "url": url,
            "media_type": found.media_type if found else None,
            "filename": string(file, "filename", f"{at}.file", required=False),
        }
    )


def _tool_call(item: Json, at: str) -> Part:
    call = obj(item, at)
    if call.get("type", "function") != "function":
        fail(f"{at}.type", f"is {call.get('type')!r}: only function tool calls are supported.")
    function = obj(need(call, "function", at), f"{at}.function")
    return {
        "type": "tool_call",
        "call_id": string(call, "id", at),
        "name": string(function, "name", f"{at}.function"),
        "arguments": json_text(
            need(function, "arguments", f"{at}.function"), f"{at}.function.arguments"
        ),
    }


def to_messages(value: Json) -> list[Converted]:
    """Chat messages as ctxgraph messages, one for one (BAD_USER_INPUT naming the item)."""
    out: list[Converted] = []
    for i, item in enumerate(arr(value, "messages")):
        where = f"messages[{i}]"
        m = obj(item, where)
        role = one_of(m.get("role"), ROLES, f"{where}.role")
        if role in ("system", "developer"):
            out.append(Converted("system", _texts(need(m, "content", where), where), where))
        elif role == "user":
            content = need(m, "content", where)
            if isinstance(content, str):
                parts = [text_part(content)]
            else:
                items = arr(content, f"{where}.content")
                parts = [_user_part(x, f"{where}.content[{j}]") for j, x in enumerate(items)]
            out.append(Converted("user", parts or [text_part("")], where))
        elif role == "assistant":
            parts = []
            content = m.get("content")
            if isinstance(content, str):
                parts.append(text_part(content))
            elif content is not None:
                for j, x in enumerate(arr(content, f"{where}.content")):
                    at = f"{where}.content[{j}]"
                    kind = one_of(obj(x, at).get("type"), ("text", "refusal"), f"{at}.type")
                    if kind == "text":
                        parts.append(text_part(string(x, "text", at) or ""))
                    else:
                        refusal = text_part(string(x, "refusal", at) or "")
                        parts.append(with_meta(refusal, NAME, {"refusal": True}))
            said_no = string(m, "refusal", where, required=False)
            if said_no is not None:
                parts.append(with_meta(text_part(said_no), NAME, {"refusal": True}))
            if m.get("function_call") is not None:
                fail(f"{where}.function_call", "is deprecated; send tool_calls.")
            calls = m.get("tool_calls") or []
            parts += [
                _tool_call(x, f"{where}.tool_calls[{j}]")
                for j, x in enumerate(arr(calls, f"{where}.tool_calls"))
            ]
            out.append(Converted("assistant", parts or [text_part("")], where))
        elif role == "tool":
            output = _texts(need(m, "content", where), where)
            result: Part = {
                "type": "tool_result",
                "call_id": string(m, "tool_call_id", where),
                "output": "\n\n".join(p["text"] for p in output),
                "is_error": False,
            }
            out.append(Converted("tool", [result], where))
        else:
            fail(f"{where}.role", "is 'function', deprecated by OpenAI: send tool messages.")
    return out


# --- the read direction --------------------------------------------------------------------


def _user_content(parts: list[Part]) -> str | list[dict[str, Any]]:
    if len(parts) == 1 and parts[0]["type"] == "text":
        return str(parts[0]["text"])
    content: list[dict[str, Any]] = []
    for p in parts:
        if p["type"] == "text":
            content.append({"type": "text", "text": p["text"]})
        elif p["type"] == "image":
            content.append(
                {
                    "type": "image_url",
                    "image_url": without_nulls({"url": p["url"], "detail": p.get("detail")}),
                }
            )
        elif p["type"] == "file":
            found = parse_data_url(p["url"])
            if found is None:
                continue  # an https: file: Chat Completions takes files by data only
            audio = {v: k for k, v in _AUDIO_FORMATS.items()}.get(found.media_type)
            if audio is not None:
                content.append(
                    {"type": "input_audio", "input_audio": {"data": found.data, "format": audio}}
                )
            else:
                file = without_nulls({"file_data": p["url"], "filename": p.get("filename")})
                content.append({"type": "file", "file": file})
    return content or ""


def from_messages(messages: Sequence[Stored]) -> list[dict[str, Any]]:
    """Stored messages as Chat Completions request messages (docs/formats.md)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        parts = parts_of(m.parts, m.content)
        texts = [p for p in parts if p["type"] == "text"]
        if m.role == "system":
            out.append({"role": "system", "content": "\n\n".join(p["text"] for p in texts)})
        elif m.role == "user":
            out.append({"role": "user", "content": _user_content(parts)})
        elif m.role == "assistant":
            plain = [p for p in texts if not meta_of(p, NAME).get("refusal")]
            refusals = [p["text"] for p in texts if meta_of(p, NAME).get("refusal")]
            calls = [
                {
                    "id": p["call_id"],
                    "type": "function",
                    "function": {"name": p["name"], "arguments": dumps(p["arguments"])},
                }
                for p in parts
                if p["type"] == "tool_call"
            ]
            message: dict[str, Any] = {"role": "assistant"}
            if len(plain) == 1:
                message["content"] = plain[0]["text"]
            elif plain:
                message["content"] = [{"type": "text", "text": p["text"]} for p in plain]
            elif not calls and not refusals:
                message["content"] = ""
            if refusals:
                message["refusal"] = "\n\n".join(refusals)
            if calls:
                message["tool_calls"] = calls
            out.append(message)
        else:  # tool
            results = [p for p in parts if p["type"] == "tool_result"]
            for r in results:
                content = output_text(r["output"])
                out.append({"role": "tool", "tool_call_id": r["call_id"], "content": content})
            if not results and m.tool_call_id is not None:  # the legacy TOOL message
                out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content})
    return out
