"""Checking a JSON value against a provider SDK's published request types (TypedDicts).

pydantic validates an `Iterable[...]` field lazily, item by item as it is consumed, and
consuming some of the SDKs' union-typed iterables outside validation panics in
pydantic-core; it also ignores keys a TypedDict does not declare. This walks the SDK's
own annotations instead: every required key present, no key the type does not declare,
every value of a declared type (Literal, Union, TypedDict, lists, dicts, scalars).
"""

from __future__ import annotations

import collections.abc
import types
import typing
from typing import Any

import typing_extensions


def problems(value: Any, tp: Any, path: str = "$") -> list[str]:
    """Where `value` departs from the type `tp` (empty when it conforms)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any or tp is object:
        return []
    if origin in (typing.Annotated, typing_extensions.Annotated):
        return problems(value, args[0], path)
    if origin in (typing_extensions.Required, typing_extensions.NotRequired, typing.Required,
                  typing.NotRequired):  # fmt: skip
        return problems(value, args[0], path)
    if tp is None or tp is type(None):
        return [] if value is None else [f"{path}: expected null, got {value!r:.60}"]
    if origin in (typing.Union, types.UnionType):
        found = [problems(value, member, path) for member in args]
        if any(not p for p in found):
            return []
        closest = min(found, key=lambda p: len(p))
        return [f"{path}: matches no member of {tp}: " + "; ".join(closest)]
    if origin in (typing.Literal, typing_extensions.Literal):
        return [] if value in args else [f"{path}: {value!r:.60} is not one of {args}"]
    if typing_extensions.is_typeddict(tp):
        return _typed_dict(value, tp, path)
    if origin in (list, collections.abc.Iterable, collections.abc.Sequence, list) or (
        getattr(origin or tp, "__name__", "") == "SequenceNotStr"
    ):
        if not isinstance(value, list):
            return [f"{path}: expected an array, got {type(value).__name__}"]
        item = args[0] if args else Any
        return [p for i, v in enumerate(value) for p in problems(v, item, f"{path}[{i}]")]
    if origin in (dict, dict, collections.abc.Mapping) or tp is dict:
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {type(value).__name__}"]
        item = args[1] if len(args) == 2 else Any
        return [p for k, v in value.items() for p in problems(v, item, f"{path}.{k}")]
    if tp is bool:
        return [] if isinstance(value, bool) else [f"{path}: expected a boolean"]
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected an integer"]
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected a number"]
    if tp is str:
        return [] if isinstance(value, str) else [f"{path}: expected a string, got {value!r:.60}"]
    if isinstance(tp, type):
        return [] if isinstance(value, tp) else [f"{path}: expected {tp.__name__}"]
    return [f"{path}: cannot check type {tp!r}"]


_REQUIRED = {typing.Required, typing_extensions.Required}
_NOT_REQUIRED = {typing.NotRequired, typing_extensions.NotRequired}


def _typed_dict(value: Any, tp: Any, path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: expected an object ({tp.__name__}), got {type(value).__name__}"]
    hints = typing.get_type_hints(tp, include_extras=True)
    found = [f"{path}: {tp.__name__} has no key {k!r}" for k in value if k not in hints]
    # from the annotations themselves: with `from __future__ import annotations` (the
    # SDKs' modules) __required_keys__ misses Required[...] in strings
    total = getattr(tp, "__total__", True)
    required = [
        k
        for k, hint in hints.items()
        if typing.get_origin(hint) in _REQUIRED
        or (total and typing.get_origin(hint) not in _NOT_REQUIRED)
    ]
    found += [f"{path}: {tp.__name__} needs {k!r}" for k in required if k not in value]
    for key, item in value.items():
        if key in hints:
            found += problems(item, hints[key], f"{path}.{key}")
    return found


def assert_conforms(tp: Any, value: Any) -> None:
    """`value` is of the type `tp` (an SDK's TypedDict, or a list or union of them)."""
    found = problems(value, tp)
    assert not found, "\n".join(found[:20])
