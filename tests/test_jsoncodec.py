"""api/jsoncodec.py: orjson's speed, json.loads's values."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest

from api.jsoncodec import SLOW, dumps, loads, loads_fast

SAME = [
    '{"a": 1, "b": [1.5, -2, 0.000123456789012345678], "c": null, "d": "é"}',
    "[" + ",".join(["0.0123456789"] * 1536) + "]",
    '{"max": 18446744073709551615, "min": -9223372036854775808}',  # orjson holds these
    "[]",
    '"text"',
]
EXACT_ONLY_IN_JSON = [
    '{"big": 100000000000000000000000000000}',  # orjson would give a float
    '{"nested": {"list": [1.0, -123456789012345678901234567890]}}',
    "[1e30]",  # a float that large could have been an integer
    '{"x": NaN}',  # orjson refuses what json.loads accepts
    '"\\ud800"',  # a lone surrogate
]


@pytest.mark.parametrize("text", SAME)
def test_orjson_answers_when_it_agrees_with_json(text: str) -> None:
    assert loads_fast(text) is not SLOW
    assert loads(text) == json.loads(text)
    assert loads(text.encode()) == json.loads(text)


@pytest.mark.parametrize("text", EXACT_ONLY_IN_JSON)
def test_json_answers_when_orjson_may_differ(text: str) -> None:
    assert loads_fast(text) is SLOW
    expected = json.loads(text)
    value = loads(text)
    if isinstance(expected, dict) and isinstance(expected.get("x"), float):
        assert math.isnan(value["x"])
    else:
        assert value == expected
        assert repr(value) == repr(expected)  # ints stay ints


def test_dumps_writes_datetimes_as_isoformat_also_beside_a_long_integer() -> None:
    """Planned answers carry UTC datetimes for orjson to write; where orjson refuses the
    value (an integer beyond 64 bits) json.dumps writes them the same way."""
    at = datetime(2026, 11, 28, 13, 0, 0, 123000, tzinfo=UTC)
    assert dumps({"at": at}) == b'{"at":"2026-11-28T13:00:00.123000+00:00"}'
    assert json.loads(dumps({"at": at, "big": 2**70})) == {"at": at.isoformat(), "big": 2**70}
    with pytest.raises(TypeError, match="not JSON serializable"):
        dumps({"big": 2**70, "other": object()})
