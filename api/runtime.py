"""Process-level tuning of a serving process (`ctxgraph serve` and its workers)."""

from __future__ import annotations

import gc

GC_GEN0_THRESHOLD = 10_000
"""Container allocations between young-generation collections (CPython's default: 700)."""


def tune_garbage_collector() -> None:
    """Keep the cyclic garbage collector off the request path as far as possible.

    Measured under wrk on chat-page (bench/README.md, "Optimizations"): with CPython's
    defaults the collector took 22-24% of the server's CPU, 1.5-1.9 ms per request.
    Every full collection walked every object that startup had made (schema, models,
    imported packages), and the young generation was collected every 700 allocations,
    walking the live objects of every request in flight each time. gc.freeze() moves
    the startup objects out of the collector's view for good; collecting the young
    generation every 10,000 allocations walks them far less often. Together: 0.9 ms
    per request. Call once, after startup.
    """
    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, GC_GEN0_THRESHOLD), gen1, gen2)
