"""Soak: mixed reads and writes at a steady rate against a real `ctxgraph serve`.

    python -m bench.soak.run --duration 600 --rate 10

Starts `ctxgraph serve` on 127.0.0.1 (embedded PostgreSQL in a temporary data
directory, unless --url points at a running server), creates contexts, then
sends operations open-loop at a fixed rate (so a slow server shows up as
latency, not as a lower rate) with at most --concurrency in flight:
appends 40%, history pages 35%, context listings 10%, counters 10%, forks 5%.
When --concurrency requests are already in flight the next one waits (counted
as started late), so the run never queues unboundedly and ends on time.
Every minute it records per-window latency percentiles and errors, and the
server's resident memory (the API process). At the end it checks every
context: versions 1..n contiguous and messageCount/totalTokens equal to what
was acknowledged. It stops by itself after --duration seconds; traffic goes
only to 127.0.0.1. The report goes to bench/soak/results/ and stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
CTXGRAPH = str(Path(sys.executable).parent / "ctxgraph")

APPEND = (
    "mutation Append($id: ID!, $m: [MessageInput!]!) { appendMessages(contextId: $id, "
    "messages: $m) { context { latestVersion } messages { version } } }"
)
HISTORY = (
    "query History($id: ID!) { context(id: $id) { messages(last: 50) { nodes { version role "
    "content tokenCount } pageInfo { hasPreviousPage } } } }"
)
LIST = "query List { contexts(first: 20) { nodes { id name messageCount latestVersion } } }"
COUNTERS = (
    "query Counters($id: ID!) { context(id: $id) { messageCount totalTokens latestVersion } }"
)
FORK = 'mutation Fork($id: ID!) { forkContext(id: $id, name: "soak-fork") { id forkVersion } }'
CREATE = "mutation Create($name: String) { createContext(name: $name) { id } }"
CHECK = (
    "query Check($id: ID!, $after: String) { context(id: $id) { messageCount totalTokens "
    "latestVersion messages(first: 500, after: $after) { nodes { version tokenCount } "
    "pageInfo { hasNextPage endCursor } } } }"
)


@dataclass
class Window:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: int = 0
    late: int = 0


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Soak:
    def __init__(self, base: str, contexts: int, concurrency: int) -> None:
        self.http = httpx.AsyncClient(
            base_url=base,
            timeout=30,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self.n_contexts = contexts
        self.ids: list[str] = []
        self.acked: dict[str, list[int]] = defaultdict(list)  # token counts acknowledged
        self.error_samples: list[str] = []

    async def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.http.post("/graphql", json={"query": query, "variables": variables})
        body: dict[str, Any] = response.json()
        if response.status_code != 200 or body.get("errors"):
            raise RuntimeError(f"{response.status_code} {json.dumps(body)[:300]}")
        data: dict[str, Any] = body["data"]
        return data

    async def setup(self) -> None:
        for i in range(self.n_contexts):
            data = await self.gql(CREATE, {"name": f"soak-{i}"})
            self.ids.append(data["createContext"]["id"])

    async def one(self, rng: random.Random) -> str:
        r = rng.random()
        cid = rng.choice(self.ids)
        if r < 0.40:
            tokens = [rng.randint(1, 50) for _ in range(rng.randint(1, 3))]
            msgs = [{"role": "USER", "content": f"soak {t} " * 8, "tokenCount": t} for t in tokens]
            await self.gql(APPEND, {"id": cid, "m": msgs})
            self.acked[cid].extend(tokens)
            return "append"
        if r < 0.75:
            await self.gql(HISTORY, {"id": cid})
            return "history"
        if r < 0.85:
            await self.gql(LIST)
            return "list"
        if r < 0.95:
            await self.gql(COUNTERS, {"id": cid})
            return "counters"
        await self.gql(FORK, {"id": cid})
        return "fork"

    async def verify(self) -> list[str]:
        problems = []
        for cid in self.ids:
            versions: list[int] = []
            tokens = 0
            after = None
            while True:
                data = (await self.gql(CHECK, {"id": cid, "after": after}))["context"]
                page = data["messages"]
                versions += [n["version"] for n in page["nodes"]]
                tokens += sum(n["tokenCount"] or 0 for n in page["nodes"])
                if not page["pageInfo"]["hasNextPage"]:
                    break
                after = page["pageInfo"]["endCursor"]
            expected = self.acked[cid]
            if versions != list(range(1, len(expected) + 1)):
                problems.append(f"{cid}: versions not 1..{len(expected)}")
            if data["messageCount"] != len(expected) or data["latestVersion"] != len(expected):
                problems.append(f"{cid}: messageCount {data['messageCount']} != {len(expected)}")
            if data["totalTokens"] != sum(expected) or tokens != sum(expected):
                problems.append(f"{cid}: totalTokens {data['totalTokens']} != {sum(expected)}")
        return problems


async def soak(args: argparse.Namespace, base: str, server_pid: int | None) -> dict[str, Any]:
    s = Soak(base, args.contexts, args.concurrency)
    await s.setup()
    rng = random.Random(args.seed)
    windows: list[Window] = []
    memory: list[tuple[float, int | None]] = []
    sem = asyncio.Semaphore(args.concurrency)
    tasks: set[asyncio.Task[None]] = set()
    interval = 1.0 / args.rate
    start = time.monotonic()
    if server_pid is not None:
        memory.append((0.0, rss_kib(server_pid)))
    next_memory = args.memory_every

    async def run(window: Window) -> None:
        t0 = time.perf_counter()
        try:
            kind = await s.one(rng)
        except Exception as exc:
            window.errors += 1
            if len(s.error_samples) < 20:
                s.error_samples.append(repr(exc)[:300])
            return
        finally:
            sem.release()
        window.latencies[kind].append((time.perf_counter() - t0) * 1000)

    i = 0
    while True:
        due = start + i * interval
        now = time.monotonic()
        if due - start >= args.duration:
            break
        if due > now:
            await asyncio.sleep(due - now)
        elapsed = time.monotonic() - start
        current = int(elapsed // args.window)
        while len(windows) <= current:
            windows.append(Window())
        if sem.locked():
            # The server is behind: this operation starts late (the rate is not kept).
            windows[current].late += 1
        await sem.acquire()
        if time.monotonic() - due > 1.0:
            # More than a second behind schedule: skip ahead rather than burst.
            i = int((time.monotonic() - start) / interval)
        task = asyncio.create_task(run(windows[current]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
        if server_pid is not None and elapsed >= next_memory:
            memory.append((round(elapsed, 1), rss_kib(server_pid)))
            next_memory += args.memory_every
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - start
    if server_pid is not None:
        memory.append((round(elapsed, 1), rss_kib(server_pid)))
    problems = await s.verify()
    await s.http.aclose()

    report_windows = []
    for i, w in enumerate(windows):
        every = [x for values in w.latencies.values() for x in values]
        report_windows.append(
            {
                "minute": i + 1 if args.window == 60 else i,
                "requests": len(every) + w.errors,
                "errors": w.errors,
                "started_late": w.late,
                "p50_ms": round(pct(every, 0.50), 2),
                "p95_ms": round(pct(every, 0.95), 2),
                "p99_ms": round(pct(every, 0.99), 2),
                "max_ms": round(max(every, default=0.0), 2),
            }
        )
    by_kind: dict[str, list[float]] = defaultdict(list)
    for w in windows:
        for kind, values in w.latencies.items():
            by_kind[kind] += values
    rss = [m for _, m in memory if m is not None]
    return {
        "duration_s": round(elapsed, 1),
        "achieved_rate_per_s": round(sum(x["requests"] for x in report_windows) / elapsed, 2),
        "target_rate_per_s": args.rate,
        "requests": sum(x["requests"] for x in report_windows),
        "errors": sum(w.errors for w in windows),
        "error_samples": s.error_samples,
        "consistency_problems": problems,
        "contexts": len(s.ids),
        "messages_appended": sum(len(v) for v in s.acked.values()),
        "windows": report_windows,
        "by_operation": {
            k: {
                "count": len(v),
                "p50_ms": round(pct(v, 0.5), 2),
                "p95_ms": round(pct(v, 0.95), 2),
                "p99_ms": round(pct(v, 0.99), 2),
                "mean_ms": round(statistics.fmean(v), 2),
            }
            for k, v in sorted(by_kind.items())
        },
        "server_rss_kib": memory,
        "server_rss_start_end_kib": [rss[0], rss[-1]] if rss else None,
        # Growth over the second half only: start-up warms caches and the pool.
        "server_rss_second_half_growth_kib": (rss[-1] - rss[len(rss) // 2]) if rss else None,
    }


def start_server(port: int, data_dir: str, log_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CTXGRAPH_DATA_DIR": data_dir,
        "CTXGRAPH_ACCESS_LOG": "false",
        "CTXGRAPH_LOG_LEVEL": "warning",
    }
    env.pop("DATABASE_URL", None)
    log = log_path.open("wb")
    return subprocess.Popen(
        [CTXGRAPH, "serve", "--port", str(port)], env=env, cwd=REPO, stdout=log, stderr=log
    )


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the server exited during start-up")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise SystemExit("the server did not become ready")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds (default 600)")
    parser.add_argument("--rate", type=float, default=10, help="operations per second")
    parser.add_argument("--concurrency", type=int, default=32, help="most requests in flight")
    parser.add_argument("--contexts", type=int, default=20)
    parser.add_argument("--window", type=float, default=60, help="seconds per report window")
    parser.add_argument("--memory-every", type=float, default=30, help="RSS sample interval")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--url", help="a running server (its memory is not sampled)")
    parser.add_argument("--output", type=Path, help="report file (default: results/soak-*.json)")
    args = parser.parse_args(argv)
    if args.duration > 3600 or args.rate > 500:
        parser.error("bounded: at most 3600 s and 500 operations/s")

    proc = None
    with tempfile.TemporaryDirectory(prefix="ctxgraph-soak-") as tmp:
        if args.url:
            base = args.url.rstrip("/")
            if not base.startswith(("http://127.", "http://localhost", "http://[::1]")):
                parser.error("--url must be a loopback address")
        else:
            import socket

            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            base = f"http://127.0.0.1:{port}"
            proc = start_server(port, tmp, Path(tmp) / "server.log")
            wait_ready(base, proc)
        try:
            report = asyncio.run(soak(args, base, proc.pid if proc else None))
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=60)
    RESULTS.mkdir(exist_ok=True)
    out = args.output or RESULTS / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"{'window':>6} {'reqs':>6} {'errs':>5} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}"]
    for w in report["windows"]:
        lines.append(
            f"{w['minute']:>6} {w['requests']:>6} {w['errors']:>5} {w['p50_ms']:>8} "
            f"{w['p95_ms']:>8} {w['p99_ms']:>8} {w['max_ms']:>8}"
        )
    lines.append(
        f"requests {report['requests']}, errors {report['errors']}, consistency problems "
        f"{len(report['consistency_problems'])}, RSS start/end KiB "
        f"{report['server_rss_start_end_kib']}; report: {out}"
    )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0 if report["errors"] == 0 and not report["consistency_problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
