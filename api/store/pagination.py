"""Relay cursor pagination: argument validation and opaque cursors.

Cursors are URL-safe base64 of a small JSON array whose first item names the
ordering it belongs to, so a cursor from one listing is refused by another
instead of silently paging the wrong way.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

import orjson

from api.errors import BadUserInput
from api.store.inputs import Limits


def encode_cursor(kind: str, *values: Any) -> str:
    # orjson: ~1 us where json.dumps took ~10 (a page of 50 edges has 50 cursors). Its
    # text is UTF-8 where json.dumps escaped non-ASCII; decode_cursor reads both, so
    # cursors handed out before stay valid. The values are the store's columns
    # (bigint versions, timestamps, ids, names): none beyond orjson's 64-bit integers.
    raw = orjson.dumps([kind, *values], default=str)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str, argument: str) -> list[Any]:
    """The values of a cursor made by `encode_cursor(kind, ...)`, or BAD_USER_INPUT."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeError):
        data = None
    if not isinstance(data, list) or not data or data[0] != kind:
        raise BadUserInput(
            f"`{argument}` is not a cursor of this list; pass a cursor returned by "
            "this field's pageInfo or edges."
        )
    return data[1:]


@dataclass(frozen=True, slots=True)
class Window:
    """A validated page request: how many rows, which direction, which bounds."""

    size: int
    backward: bool
    after: str | None
    before: str | None


def page_window(
    limits: Limits,
    *,
    first: int | None,
    after: str | None,
    last: int | None = None,
    before: str | None = None,
) -> Window:
    """Validate Relay arguments; `first` pages forward, `last` backward."""
    if first is not None and last is not None:
        raise BadUserInput(
            "Pass either `first` (page forward) or `last` (page backward), not both."
        )
    for name, value in (("first", first), ("last", last)):
        if value is not None and value < 0:
            raise BadUserInput(f"`{name}` must be >= 0 (got {value}).")
        if value is not None and value > limits.max_page_size:
            raise BadUserInput(
                f"`{name}` must be <= {limits.max_page_size} (got {value}); page with "
                "`after`/`before` cursors instead (limit set by CTXGRAPH_MAX_PAGE_SIZE)."
            )
    backward = last is not None or (first is None and before is not None and after is None)
    size = (
        last
        if backward and last is not None
        else first
        if first is not None
        else limits.default_page_size
    )
    return Window(size=size, backward=backward, after=after, before=before)
