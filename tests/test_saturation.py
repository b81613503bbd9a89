"""Saturation is explicit and fair (issue 27): requests wait for a database connection
in arrival order, in a bounded line, or are refused at once with 503 and Retry-After.

The gate itself (api/store/gate.py) is checked for order and bounds; then a real
`ctxgraph serve` with one connection is overloaded for real: its connection held by a
request blocked on a table lock taken from outside, more requests than the line holds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from api.store.gate import Gate, Saturated
from tests.dbutil import _libpq, running_server


async def test_the_line_is_first_come_first_served() -> None:
    gate = Gate(capacity=1, max_waiting=10, max_wait=5)
    await gate.enter()  # the one slot is taken
    order: list[int] = []

    async def use(n: int) -> None:
        await gate.enter()
        order.append(n)
        await asyncio.sleep(0)  # hold it across a switch, as a statement would
        gate.leave()

    waiters = [asyncio.create_task(use(n)) for n in range(5)]
    await asyncio.sleep(0)  # all five are in line
    assert gate.waiting == 5
    gate.leave()
    # a newcomer arriving while the slot is being handed over does not pass the line
    late = asyncio.create_task(use(99))
    await asyncio.gather(*waiters, late)
    assert order == [0, 1, 2, 3, 4, 99]
    assert (gate.waiting, gate.in_use) == (0, 0)


async def test_a_full_line_refuses_at_once_and_a_slow_one_in_time() -> None:
    seen: list[tuple[float | None, str | None]] = []
    gate = Gate(capacity=1, max_waiting=1, max_wait=0.2)
    gate.observer = lambda waited, refused: seen.append((waited, refused))
    await gate.enter()
    first = asyncio.create_task(gate.enter())
    await asyncio.sleep(0)
    started = time.monotonic()
    with pytest.raises(Saturated, match="already wait"):
        await gate.enter()
    assert time.monotonic() - started < 0.05  # refused at once
    with pytest.raises(Saturated, match="within 0.2 s"):
        await first
    assert 0.15 < time.monotonic() - started < 2
    assert [r for _, r in seen] == ["queue full", "waited too long"]
    gate.leave()
    await gate.enter()  # free again: no wait, nothing observed
    assert len(seen) == 2


CHAT = "query($id: ID!) { context(id: $id) { id messages(last: 5) { nodes { id } } } }"


@pytest.fixture(scope="module")
def one_connection(database_url: str) -> Iterator[str]:
    env = {
        "DATABASE_URL": database_url,
        "CTXGRAPH_POOL_SIZE": "1",
        "CTXGRAPH_DB_QUEUE_LIMIT": "3",
        "CTXGRAPH_DB_QUEUE_TIMEOUT": "1",
        "CTXGRAPH_RETRY_AFTER": "2",
    }
    with running_server(env) as base:
        yield base


@pytest.mark.slow
async def test_a_real_overload_is_refused_fast_and_in_order(
    one_connection: str, database_url: str
) -> None:
    base = one_connection
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        created = await http.post(
            "/graphql", json={"query": 'mutation { createContext(name: "line") { id } }'}
        )
        cid = created.json()["data"]["createContext"]["id"]
        body = {"query": CHAT, "variables": {"id": cid}}
        blocker = await asyncpg.connect(_libpq(database_url))
        try:
            lock = blocker.transaction()
            await lock.start()
            await blocker.execute("LOCK TABLE contexts IN ACCESS EXCLUSIVE MODE")
            # the first request takes the one connection and waits for the lock
            holder = asyncio.create_task(http.post("/graphql", json=body))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            crowd = [asyncio.create_task(http.post("/graphql", json=body)) for _ in range(7)]
            answers = await asyncio.gather(*crowd)
            took = [time.monotonic() - started]
            await lock.rollback()
        finally:
            await blocker.close()
        held = await holder
        assert held.status_code == 200, held.text
        assert "errors" not in held.json()
        refused = [r for r in answers if r.status_code == 503]
        assert len(refused) == 7  # 4 at once (the line holds 3), 3 after a second in it
        for r in refused:
            assert r.headers["retry-after"] == "2"
            (error,) = r.json()["errors"]
            assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
            assert "busy" in error["message"]
        assert took[0] < 3  # never more than the line's own bound (and some slack)
        # and the line is empty again: as many requests as it takes (one using the
        # connection, three waiting) are all served
        again = await asyncio.gather(*(http.post("/graphql", json=body) for _ in range(4)))
        assert all(r.status_code == 200 and "errors" not in r.json() for r in again)
        metrics = (await http.get("/metrics")).text
        assert 'ctxgraph_db_queue_refused_total{reason="queue full"} 4.0' in metrics
        assert 'ctxgraph_db_queue_refused_total{reason="waited too long"} 3.0' in metrics
        assert "ctxgraph_db_queue_waiting 0.0" in metrics
        assert "ctxgraph_db_queue_wait_seconds_count" in metrics
