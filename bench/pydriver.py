"""A small closed-loop HTTP driver (fallback when wrk is not installed).

`python -m bench.pydriver URL BODIES LABEL --connections 16 --duration 15` keeps
one request in flight per connection for the duration, rotating through the
bodies file like wrk_graphql.lua, and prints the same WRK_JSON summary line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httpx


def percentile(sorted_ms: list[float], p: float) -> float:
    if not sorted_ms:
        return 0.0
    k = min(len(sorted_ms) - 1, max(0, round(p / 100 * len(sorted_ms) + 0.5) - 1))
    return sorted_ms[k]


async def run(url: str, lines: list[bytes], connections: int, duration: float) -> dict[str, float]:
    latencies: list[float] = []
    counts = {"non2xx": 0, "read_err": 0, "gql_errors": 0, "responses_seen": 0, "bytes": 0}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {"content-type": "application/json", "accept": "application/json"}
    deadline = time.perf_counter() + duration

    async def worker(client: httpx.AsyncClient, offset: int) -> None:
        i, seq = offset, 0
        while time.perf_counter() < deadline:
            i = (i + 1) % len(lines)
            body = lines[i]
            if b"@SEQ@" in body:  # made anew per request, as the wrk script does
                seq += 1
                body = body.replace(b"@SEQ@", f"{offset}_{seq}".encode())
            t = time.perf_counter()
            try:
                r = await client.post(url, content=body, headers=headers)
            except httpx.HTTPError:
                counts["read_err"] += 1
                continue
            latencies.append((time.perf_counter() - t) * 1000)
            counts["responses_seen"] += 1
            counts["bytes"] += len(r.content)
            if r.status_code // 100 != 2:
                counts["non2xx"] += 1
            if b'"errors":' in r.content:
                counts["gql_errors"] += 1

    start = time.perf_counter()
    async with httpx.AsyncClient(limits=limits, timeout=10.0) as client:
        await asyncio.gather(*(worker(client, 7 * k) for k in range(connections)))
    secs = time.perf_counter() - start
    lat = sorted(latencies)
    return {
        "duration_s": round(secs, 3),
        "requests": len(lat),
        "rps": round(len(lat) / secs, 1),
        "p50_ms": percentile(lat, 50),
        "p90_ms": percentile(lat, 90),
        "p95_ms": percentile(lat, 95),
        "p99_ms": percentile(lat, 99),
        "p999_ms": percentile(lat, 99.9),
        "max_ms": lat[-1] if lat else 0.0,
        "mean_ms": sum(lat) / len(lat) if lat else 0.0,
        "connect_err": 0,
        "write_err": 0,
        "timeouts": 0,
        **counts,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("url")
    ap.add_argument("bodies")
    ap.add_argument("label")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--duration", type=float, default=15.0)
    a = ap.parse_args()
    with open(a.bodies, "rb") as f:
        lines = [ln.rstrip(b"\n") for ln in f if ln.strip()]
    summary = asyncio.run(run(a.url, lines, a.connections, a.duration))
    print("WRK_JSON " + json.dumps({"label": a.label, **summary}), flush=True)


if __name__ == "__main__":
    main()
