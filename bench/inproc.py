"""CPU per request of the app itself, in process: no HTTP server, no load driver.

    .venv/bin/python -m bench.inproc chat-page [--requests 2000] \
        [--bodies /tmp/ctxgraph-bench/runs/STAMP/bodies] [--pgdata DIR]

Sends the bodies a `bench run` wrote (one JSON body per line, in
RUN_DIR/bodies/WORKLOAD.bodies) straight into the ASGI app, on the data set's
embedded PostgreSQL, with the garbage collector tuned as `ctxgraph serve` tunes
it and the access log off. Prints the CPU milliseconds per request of this
process (the app; PostgreSQL runs in its own processes), minimum and median of
10 rounds. On a shared machine whole processes run 20% slower or faster: compare
code A and B in alternating runs, and look at profiles for where the time goes:

    py-spy record --format raw -o out.txt -- .venv/bin/python -m bench.inproc chat-page
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from api.app import create_app
from api.db import EmbeddedPostgres, EngineConnector, create_engine
from api.runtime import tune_garbage_collector
from api.settings import Settings
from bench.__main__ import DEFAULT_DATA, DEFAULT_RUNS

Message = dict[str, Any]


async def call(app: Any, body: bytes) -> list[Message]:
    """One POST /graphql through the ASGI app; the messages it sent back."""
    incoming: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    headers = [
        (b"host", b"bench"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("bench", 80),
        "state": {},
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def measure(pgdata: Path, bodies: list[bytes], requests: int) -> list[float]:
    url = EmbeddedPostgres(pgdata).start()
    settings = Settings(_env_file=None, access_log=False)
    engine = create_engine(url, settings)
    app = create_app(settings, connector=EngineConnector(engine))
    try:
        first = await call(app, bodies[0])
        response = b"".join(m.get("body", b"") for m in first)
        if first[0].get("status") != 200 or b'"errors"' in response:
            raise SystemExit(f"the first body failed: {response[:300]!r}")
        for body in bodies[:100]:  # warm-up: caches, prepared statements, pool
            await call(app, body)
        tune_garbage_collector()
        rounds, per_round = [], max(1, requests // 10)
        for r in range(10):
            started = time.process_time()
            for i in range(per_round):
                await call(app, bodies[(r * per_round + i) % len(bodies)])
            rounds.append(1000 * (time.process_time() - started) / per_round)
        return rounds
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.inproc", description=__doc__)
    p.add_argument("workload", help="name of a bodies file (chat-page, sidebar, tree...)")
    p.add_argument("--bodies", type=Path, help="directory of WORKLOAD.bodies files")
    p.add_argument("--pgdata", type=Path, default=DEFAULT_DATA / "pgdata")
    p.add_argument("--requests", type=int, default=2000)
    a = p.parse_args(argv)
    bodies_dir = a.bodies or _latest_bodies(a.workload)
    path = bodies_dir / f"{a.workload}.bodies"
    bodies = [line.encode() for line in path.read_text().splitlines() if line.strip()]
    import uvloop  # what uvicorn runs the server on

    rounds = uvloop.run(measure(a.pgdata, bodies, a.requests))
    print(
        f"{a.workload}: CPU ms per request, 10 rounds: min {min(rounds):.3f}"
        f" median {statistics.median(rounds):.3f} ({path})"
    )
    return 0


def _latest_bodies(workload: str) -> Path:
    runs = sorted(DEFAULT_RUNS.glob(f"*/bodies/{workload}.bodies"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise SystemExit(f"no {workload}.bodies under {DEFAULT_RUNS}: `bench run` writes them")
    return runs[-1].parent


if __name__ == "__main__":
    sys.exit(main())
