"""Process tuning of serving processes (api/runtime.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from api.runtime import GC_GEN0_THRESHOLD, tune_garbage_collector


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restore_gc")
def test_startup_objects_are_frozen_and_young_collections_are_rarer() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    tune_garbage_collector()
    assert gc.get_freeze_count() > 10_000  # this process's modules, classes, functions...
    assert gc.get_threshold() == (GC_GEN0_THRESHOLD, 10, 10)
    # a higher threshold set by the operator stays
    gc.set_threshold(50_000, 10, 10)
    tune_garbage_collector()
    assert gc.get_threshold()[0] == 50_000
