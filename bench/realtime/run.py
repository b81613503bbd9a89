"""Realtime latency: from an append's commit to its delivery on subscribers' WebSockets.

    python -m bench.realtime.run --subscribers 1 100 --messages 200

Starts `ctxgraph serve` on 127.0.0.1 (embedded PostgreSQL in a temporary data
directory, unless --url names a database), opens N graphql-transport-ws
connections that each subscribe to one context (messageAppended), then appends
one message at a time straight through the store (the same SQL and NOTIFY as
the appendMessages mutation) and takes t0 when COMMIT returns. A message's
latency on a subscriber is the time its `next` frame is read by this process
minus t0, so it includes NOTIFY delivery, the server's history read, GraphQL
execution, the WebSocket and this client's own scheduling. Appends are closed
loop: the next one starts when every subscriber got the previous one, so the
figures are per-message latency, not queueing under load. Warm-up messages
are not counted. Prints a JSON report (and writes it with --out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from api.db import EmbeddedPostgres, create_engine
from api.migrate import upgrade_to_head
from api.settings import Settings
from api.store import messages as messages_store
from api.store.inputs import NewMessage
from api.store.notify import notify_appended

CTXGRAPH = str(Path(sys.executable).parent / "ctxgraph")
TIMEOUT = 30.0

SUBSCRIBE = (
    "subscription($id: ID!, $after: Int) { messageAppended(contextId: $id, afterVersion: $after)"
    " { version content } }"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(ms: list[float]) -> dict[str, float]:
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(pct(ms, 0.95), 2),
        "p99_ms": round(pct(ms, 0.99), 2),
        "max_ms": round(max(ms), 2),
    }


class Arrivals:
    """When each version reached each subscriber; an event once all of them have it."""

    def __init__(self, subscribers: int) -> None:
        self.subscribers = subscribers
        self.times: dict[int, list[float]] = {}
        self._complete: dict[int, asyncio.Event] = {}

    def record(self, version: int, t: float) -> None:
        times = self.times.setdefault(version, [])
        times.append(t)
        if len(times) == self.subscribers:
            self.event(version).set()

    def event(self, version: int) -> asyncio.Event:
        return self._complete.setdefault(version, asyncio.Event())


class Subscriber:
    """One WebSocket with one subscription; records when each version arrives."""

    def __init__(self, ws: ClientConnection, arrivals: Arrivals) -> None:
        self.ws = ws
        self.arrivals = arrivals
        self.task: asyncio.Task[None] | None = None

    async def start(self, context_id: str, after: int) -> None:
        await self.ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        ack = json.loads(await asyncio.wait_for(self.ws.recv(), TIMEOUT))
        assert ack["type"] == "connection_ack", ack
        payload = {"query": SUBSCRIBE, "variables": {"id": context_id, "after": after}}
        await self.ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for frame in self.ws:
            t = time.perf_counter()
            message = json.loads(frame)
            if message["type"] != "next" or "errors" in message["payload"]:
                raise RuntimeError(f"unexpected frame: {message}")
            self.arrivals.record(message["payload"]["data"]["messageAppended"]["version"], t)


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU of a process (Linux /proc); 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    base: str, url: str, subscribers: int, messages: int, warmup: int, server_pid: int | None
) -> dict[str, Any]:
    engine = create_engine(url, Settings(_env_file=None))
    try:
        async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
            created = await http.post(
                "/graphql",
                json={"query": 'mutation { createContext(name: "bench-realtime") { id } }'},
            )
            context_id = created.json()["data"]["createContext"]["id"]
        key = uuid.UUID(context_id)
        arrivals = Arrivals(subscribers)
        commits: dict[int, float] = {}
        ws_url = base.replace("http", "ws", 1) + "/graphql"
        async with AsyncExitStack() as stack:
            subs = []
            for _ in range(subscribers):
                ws = await stack.enter_async_context(
                    connect(ws_url, subprotocols=[Subprotocol("graphql-transport-ws")])
                )
                sub = Subscriber(ws, arrivals)
                await sub.start(context_id, 0)
                subs.append(sub)

            cpu_start = 0.0
            for i in range(warmup + messages):
                if i == warmup:
                    cpu_start = cpu_seconds(server_pid)
                async with engine.begin() as conn:
                    rows = await messages_store.append_messages(
                        conn, key, [NewMessage(role="user", content=f"m{i}")], None
                    )
                    version = rows[-1].version
                    await notify_appended(conn, key, version)
                commits[version] = time.perf_counter()
                await asyncio.wait_for(arrivals.event(version).wait(), TIMEOUT)
            server_cpu = cpu_seconds(server_pid) - cpu_start
            for sub in subs:
                assert sub.task is not None
                sub.task.cancel()
    finally:
        await engine.dispose()

    measured = [v for v in sorted(commits) if v > warmup]
    each = [(t - commits[v]) * 1000 for v in measured for t in arrivals.times[v]]
    last = [(max(arrivals.times[v]) - commits[v]) * 1000 for v in measured]
    return {
        "subscribers": subscribers,
        "messages": len(measured),
        "delivery": summary(each),
        "all_delivered": summary(last),
        "server_cpu_ms_per_message": round(server_cpu * 1000 / len(measured), 2)
        if server_pid
        else None,
    }


def start_server(url: str, data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = open(data_dir / "serve.log", "wb")
    env = {**os.environ, "DATABASE_URL": url, "CTXGRAPH_DATA_DIR": str(data_dir)}
    proc = subprocess.Popen(
        [CTXGRAPH, "serve", "--port", str(port)],
        env=env,
        cwd=data_dir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"ctxgraph serve exited; see {data_dir / 'serve.log'}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.terminate()
            raise RuntimeError("ctxgraph serve did not become ready")
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--messages", type=int, default=200, help="measured appends per run")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--url", help="a migrated database (default: embedded, temporary)")
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    parser.add_argument(
        "--server", help="a running ctxgraph on --url's database (default: start one)"
    )
    args = parser.parse_args(argv)
    if args.server and not args.url:
        parser.error("--server needs --url (the database it serves)")

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ctxgraph-realtime-") as tmp:
        data_dir = Path(tmp)
        embedded = None
        url = args.url
        if url is None:
            embedded = EmbeddedPostgres(data_dir / "pgdata")
            url = embedded.start()
        proc = None
        try:
            upgrade_to_head(url)
            if args.server:
                base = args.server.rstrip("/")
            else:
                proc, base = start_server(url, data_dir)
            runs = [
                asyncio.run(
                    measure(base, url, n, args.messages, args.warmup, proc.pid if proc else None)
                )
                for n in args.subscribers
            ]
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
            if embedded is not None:
                embedded.stop()
    report = {
        "what": "append commit -> `next` frame read by the client, closed loop, one server "
        "process, subscribers on separate WebSockets",
        "cpus": os.cpu_count(),
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "runs": runs,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
