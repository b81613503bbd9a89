"""The similarity-search benchmark: recall against exact search, routing, pitfalls, latency.

Every search goes through api.store.search (the code the API runs), on a data
set from bench.search.dataset loaded into a fresh embedded PostgreSQL; the
latency figures go through a real `ctxgraph serve` over HTTP. Results: a JSON
file and a Markdown table in bench/search/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy.ext.asyncio import AsyncEngine

from api.db import create_engine
from api.settings import Settings
from api.store.search import (
    DEFAULT_TUNING,
    QueryVector,
    SearchRequest,
    SearchTuning,
    explain,
    search,
)
from bench.search.dataset import (
    ROLE_NAMES,
    Dataset,
    exact_neighbours,
    generate,
    history_rows,
    live_rows,
    similarities,
    tree_rows,
)
from bench.search.load import prepare

K = 10


def say(message: str) -> None:
    """Progress on the terminal (the benchmark takes minutes)."""
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Case:
    """A family of queries: a request shape and the rows that may match it."""

    name: str
    request: SearchRequest
    candidates: np.ndarray  # row indices matching scope + filters


@dataclass
class Measure:
    case: str
    config: str
    queries: int
    recall: float
    min_rows: int
    short: int  # queries that returned fewer than min(k, matching rows)
    p50_ms: float
    p95_ms: float
    paths: dict[str, int] = field(default_factory=dict)


def _percentile(values: list[float], p: float) -> float:
    return float(np.percentile(np.array(values), p)) if values else float("nan")


def cases(ds: Dataset) -> list[Case]:
    live = live_rows(ds)
    tree = tree_rows(ds)
    # The deepest member of the tree: TREE and CONTEXT scopes start from it.
    depth = {0: 0}
    for i in ds.tree[1:]:
        parent = ds.contexts[i].parent
        assert parent is not None
        depth[i] = depth[parent] + 1
    leaf = max((i for i in ds.tree if not ds.contexts[i].deleted), key=lambda i: depth[i])
    history = history_rows(ds, leaf)
    history = history[~ds.deleted[history]]
    leaf_id = ds.contexts[leaf].id
    assistant = ROLE_NAMES.index("assistant")
    system = ROLE_NAMES.index("system")
    return [
        Case("all", SearchRequest(k=K), live),
        Case(
            "all, role 25%",
            SearchRequest(k=K, roles=("assistant",)),
            live[ds.roles[live] == assistant],
        ),
        Case("all, role 2%", SearchRequest(k=K, roles=("system",)), live[ds.roles[live] == system]),
        Case(
            f"tree ({len(tree)} rows)", SearchRequest(k=K, scope="tree", context_id=leaf_id), tree
        ),
        Case(
            f"context (fork depth {depth[leaf]}, {len(history)} rows)",
            SearchRequest(k=K, scope="context", context_id=leaf_id),
            history,
        ),
        Case(
            "context (one root of 50 rows)",
            SearchRequest(k=K, scope="context", context_id=ds.contexts[len(ds.tree) + 1].id),
            np.array(
                [r for r in ds.contexts[len(ds.tree) + 1].rows if not ds.deleted[r]], dtype=np.int64
            ),
        ),
    ]


async def measure(
    engine: AsyncEngine,
    ds: Dataset,
    case: Case,
    tuning: SearchTuning,
    config: str,
    queries: np.ndarray,
    truths: list[np.ndarray],
) -> Measure:
    index = {u: i for i, u in enumerate(ds.ids)}
    recalls: list[float] = []
    times: list[float] = []
    paths: dict[str, int] = {}
    min_rows = K
    short = 0
    for q, truth in zip(queries, truths, strict=True):
        vector = QueryVector(values=q.tolist())
        started = time.perf_counter()
        async with engine.begin() as conn:
            result = await search(conn, vector, case.request, tuning)
        times.append((time.perf_counter() - started) * 1000)
        got = [index[r.id] for r in result.rows]
        paths[result.path] = paths.get(result.path, 0) + 1
        expected = min(K, len(case.candidates))
        min_rows = min(min_rows, len(got))
        short += len(got) < expected
        recalls.append(len(set(got) & set(truth.tolist())) / expected)
    return Measure(
        case=case.name,
        config=config,
        queries=len(queries),
        recall=round(float(np.mean(recalls)), 4),
        min_rows=min_rows,
        short=short,
        p50_ms=round(_percentile(times, 50), 2),
        p95_ms=round(_percentile(times, 95), 2),
        paths=paths,
    )


async def plans(engine: AsyncEngine, ds: Dataset, case: Case) -> list[dict[str, Any]]:
    """Which plan the ANN statement gets, by ef_search, random_page_cost and enable_seqscan."""
    out = []
    q = QueryVector(values=ds.queries[0].tolist())
    for rpc, force in ((4.0, False), (1.1, False), (4.0, True), (1.1, True)):
        for ef in (40, 100, 200, 400):
            tuning = replace(
                DEFAULT_TUNING, ef_search=ef, random_page_cost=rpc, force_index=force, path="index"
            )
            async with engine.begin() as conn:
                lines = await explain(conn, q, case.request, tuning, analyze=True)
            text = "\n".join(lines)
            uses_index = "ix_messages_embedding_hnsw" in text
            ms = next(
                (float(ln.split(":")[1].split()[0]) for ln in lines if "Execution Time" in ln),
                float("nan"),
            )
            out.append(
                {
                    "case": case.name,
                    "random_page_cost": rpc,
                    "enable_seqscan": "off" if force else "on",
                    "ef_search": ef,
                    "plan": "HNSW index scan" if uses_index else "sequential scan + sort",
                    "execution_ms": round(ms, 1),
                }
            )
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serve(url: str) -> Iterator[str]:
    """A real `ctxgraph serve` on the benchmark database; yields its GraphQL URL."""
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": url, "CTXGRAPH_LOG_LEVEL": "WARNING"}
    env.pop("CTXGRAPH_EMBEDDINGS_URL", None)
    # The server's log goes to a file: an unread pipe fills up (the access log
    # writes a line per request) and then blocks the server.
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    endpoint = f"http://127.0.0.1:{port}/graphql"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                err = log.read().decode(errors="replace")
                raise RuntimeError(f"ctxgraph serve did not start: {err[-2000:]}")
            time.sleep(0.2)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


QUERY = (
    "query($e: [Float!], $first: Int, $scope: SearchScope, $cid: ID, $roles: [MessageRole!]) {"
    " similarMessages(embedding: $e, first: $first, scope: $scope, contextId: $cid,"
    " roles: $roles) { distance message { id role } } }"
)


# The floor of the HTTP + GraphQL layers for the same request body: the 1536-float
# variable is parsed, coerced and checked, a transaction is opened and closed, but
# `roles: []` matches nothing, so nothing is searched.
BASELINE = "query($e: [Float!]) { similarMessages(embedding: $e, roles: []) { distance } }"


def latency(
    endpoint: str,
    ds: Dataset,
    case: Case | None,
    queries: np.ndarray,
    warm: np.ndarray,
) -> dict[str, Any]:
    """End-to-end GraphQL latency, sequential requests from one client after warm-up.

    Timed from sending the request's bytes to having its parsed response: bodies are
    encoded before the clock starts (json.dumps of 1,536 floats takes ~1 ms of this
    client's CPU, which is not the server's latency).

    case None: the baseline request (same body, no search)."""
    variables: dict[str, Any] = {}
    if case is not None:
        req = case.request
        variables = {
            "first": req.k,
            "scope": req.scope.upper(),
            "cid": None if req.context_id is None else str(req.context_id),
            "roles": None if req.roles is None else [r.upper() for r in req.roles],
        }
    document = QUERY if case is not None else BASELINE
    times: list[float] = []
    rows: list[int] = []
    with httpx.Client(timeout=30) as client:
        warmup = min(len(warm), 100)
        for i, q in enumerate(np.concatenate([warm[:warmup], queries])):
            body = {"query": document, "variables": {**variables, "e": [float(x) for x in q]}}
            content = json.dumps(body).encode()
            started = time.perf_counter()
            response = client.post(
                endpoint, content=content, headers={"content-type": "application/json"}
            )
            elapsed = (time.perf_counter() - started) * 1000
            data = response.json()
            if "errors" in data:
                raise RuntimeError(data["errors"])
            if i >= warmup:
                times.append(elapsed)
                rows.append(len(data["data"].get("similarMessages", [])))
    return {
        "load_average_1m": round(os.getloadavg()[0], 2),
        "case": case.name if case is not None else "baseline: same body, roles [] (no search)",
        "requests": len(times),
        "warmup": min(len(warm), 100),
        "p50_ms": round(_percentile(times, 50), 2),
        "p95_ms": round(_percentile(times, 95), 2),
        "mean_ms": round(statistics.fmean(times), 2),
        "min_rows": min(rows),
    }


def warmup_queries(ds: Dataset, args: argparse.Namespace) -> np.ndarray:
    """Queries for warming caches: after the recall queries, before the latency ones."""
    return ds.queries[args.queries : args.queries + args.warmup]


def latency_queries(ds: Dataset, args: argparse.Namespace) -> np.ndarray:
    return ds.queries[args.queries + args.warmup :]


async def warm_caches(engine: AsyncEngine, ds: Dataset, args: argparse.Namespace) -> None:
    """Warm the caches (index and TOAST pages), as a running server would have them,
    with queries that are never measured."""
    for q in warmup_queries(ds, args):
        async with engine.begin() as conn:
            await search(conn, QueryVector(values=q.tolist()), SearchRequest(k=K))


async def warm(url: str, ds: Dataset, args: argparse.Namespace) -> None:
    engine = create_engine(url, Settings(_env_file=None))
    try:
        await warm_caches(engine, ds, args)
    finally:
        await engine.dispose()


async def run_searches(url: str, ds: Dataset, args: argparse.Namespace) -> dict[str, Any]:
    engine = create_engine(url, Settings(_env_file=None))
    out: dict[str, Any] = {"recall": [], "plans": []}
    try:
        all_cases = cases(ds)
        nq = min(args.queries, len(ds.queries))
        queries = ds.queries[:nq]
        sims = similarities(ds, queries)
        truths = {
            c.name: [exact_neighbours(sims[:, i], c.candidates, K) for i in range(nq)]
            for c in all_cases
        }
        await warm_caches(engine, ds, args)

        configs: list[tuple[str, SearchTuning, list[Case]]] = []
        for ef in args.ef_search:
            configs.append(
                (f"index, ef_search={ef}", replace(DEFAULT_TUNING, ef_search=ef), all_cases[:3])
            )
        configs += [
            ("default (auto routing)", DEFAULT_TUNING, all_cases),
            (
                "index forced (no exact fallback)",
                replace(DEFAULT_TUNING, path="index"),
                all_cases[3:],
            ),
            ("exact forced", replace(DEFAULT_TUNING, path="exact"), all_cases),
            (
                "iterative scan off, index forced",
                replace(DEFAULT_TUNING, path="index", iterative_scan="off"),
                all_cases[1:5],
            ),
            (
                "strict_order, index forced",
                replace(DEFAULT_TUNING, path="index", iterative_scan="strict_order"),
                all_cases[1:4],
            ),
            (
                "candidates = k (no overfetch)",
                replace(DEFAULT_TUNING, candidates=K),
                all_cases[:3],
            ),
        ]
        for config, tuning, selected in configs:
            for case in selected:
                # Exact over the whole table takes seconds a query: a sample is enough.
                slow = config == "exact forced" and case.request.scope == "all"
                n = min(nq, 20) if slow else nq
                m = await measure(
                    engine, ds, case, tuning, config, queries[:n], truths[case.name][:n]
                )
                say(
                    f"  {config:36} {case.name:38} recall {m.recall:.4f} short {m.short:3}"
                    f" p50 {m.p50_ms:7.2f} ms p95 {m.p95_ms:7.2f} ms {m.paths}"
                )
                out["recall"].append(asdict(m))
        for case in (all_cases[0], all_cases[1]):
            for p in await plans(engine, ds, case):
                say(f"  plan {p}")
                out["plans"].append(p)
    finally:
        await engine.dispose()
    return out


def markdown(result: dict[str, Any]) -> str:
    load = result["load"]
    lines = [
        f"# Similarity search benchmark: {load['rows']:,} messages",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']} (CPUs shared with other jobs during the runs)  ",
        f"Data: seed {load['seed']}, 1536-d clustered (bench/search/dataset.py); "
        f"{result['queries']} held-out queries, k = {K}; caches warmed with "
        f"{result.get('warmup_queries', 0)} other queries; shared_buffers "
        f"{result.get('shared_buffers', 'default')}.",
        "",
        "## Load",
        "",
        f"- COPY: {load['copy_seconds']} s; HNSW build (m={load['hnsw_m']}, "
        f"ef_construction={load['hnsw_ef_construction']}, maintenance_work_mem="
        f"{load['maintenance_work_mem']}, {load['parallel_maintenance_workers']} parallel "
        f"workers): **{load['build_seconds']} s**",
        f"- Sizes: index {load['index_bytes'] / 2**20:.0f} MiB, heap "
        f"{load['table_bytes'] / 2**20:.0f} MiB, TOAST {load['toast_bytes'] / 2**20:.0f} MiB",
        "",
        "## Recall@10 against exact search (store level, one transaction per query)",
        "",
        "| config | case | recall@10 | short results | p50 ms | p95 ms | paths |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for m in result["recall"]:
        paths = ", ".join(f"{k} {v}" for k, v in m["paths"].items())
        lines.append(
            f"| {m['config']} | {m['case']} | {m['recall']:.4f} | {m['short']}/{m['queries']} |"
            f" {m['p50_ms']} | {m['p95_ms']} | {paths} |"
        )
    lines += [
        "",
        "## Planner: the ANN statement by random_page_cost and ef_search",
        "",
        "| case | random_page_cost | enable_seqscan | ef_search | plan | execution ms |",
        "|---|---:|---|---:|---|---:|",
    ]
    for p in result["plans"]:
        lines.append(
            f"| {p['case']} | {p['random_page_cost']} | {p['enable_seqscan']} | {p['ef_search']} |"
            f" {p['plan']} |"
            f" {p['execution_ms']} |"
        )
    if result.get("latency"):
        lines += [
            "",
            "## End-to-end GraphQL latency (`ctxgraph serve`, one client, sequential)",
            "",
            "Each request is timed from sending its encoded body (httpx, keep-alive) to"
            " having the parsed response. Measured on a machine shared with other jobs:"
            " the 1-minute load average at the end of each case is shown (2 CPUs; figures"
            " above ~1 are inflated).",
            "",
            "| case | requests | p50 ms | p95 ms | mean ms | min rows | load |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for lat in result["latency"]:
            if "error" in lat:
                lines.append(f"| {lat['case']} | failed: {lat['error']} | | | | | |")
                continue
            lines.append(
                f"| {lat['case']} | {lat['requests']} (+{lat['warmup']} warm-up) |"
                f" {lat['p50_ms']} | {lat['p95_ms']} | {lat['mean_ms']} | {lat['min_rows']} |"
                f" {lat.get('load_average_1m', '')} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000, help="messages (multiple of 50)")
    parser.add_argument("--seed", type=int, default=20250101)
    parser.add_argument("--queries", type=int, default=200, help="held-out queries per case")
    parser.add_argument(
        "--ef-search", type=int, nargs="*", default=[40, 64, 100, 200], help="values to sweep"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".ctxgraph/bench-search"),
        help="where the benchmark databases live (one per rows/seed)",
    )
    parser.add_argument(
        "--reuse", action="store_true", help="reuse a database loaded by an earlier run"
    )
    parser.add_argument(
        "--maintenance-work-mem", default="2GB", help="for the HNSW build (default 2GB)"
    )
    parser.add_argument("--latency-requests", type=int, default=300)
    parser.add_argument(
        "--warmup", type=int, default=500, help="unmeasured queries that warm the caches first"
    )
    parser.add_argument(
        "--shared-buffers",
        default="2GB",
        help="PostgreSQL shared_buffers for the run ('default' = the embedded server's 128MB)",
    )
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument(
        "--skip-recall",
        action="store_true",
        help="only measure latency; keep the other figures of the last results file",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    ds = generate(args.rows, args.seed, queries=args.queries + args.warmup + args.latency_requests)
    say(f"generated {ds.rows} rows in {time.perf_counter() - started:.1f} s")
    shared_buffers = None if args.shared_buffers == "default" else args.shared_buffers
    server, url, load = prepare(
        ds,
        args.data_dir,
        reuse=args.reuse,
        maintenance_work_mem=args.maintenance_work_mem,
        shared_buffers=shared_buffers,
    )
    say(f"load: {load}")
    try:
        result: dict[str, Any] = {
            "command": "python -m bench.search " + " ".join(sys.argv[1:] if argv is None else argv),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
            "queries": args.queries,
            "warmup_queries": args.warmup,
            "shared_buffers": args.shared_buffers,
            "load": asdict(load),
            "tuning": asdict(DEFAULT_TUNING),
        }
        previous = args.out / f"search-{args.rows}.json"
        if args.skip_recall and previous.exists():
            kept = json.loads(previous.read_text())
            result.update({k: kept[k] for k in ("recall", "plans") if k in kept})
            recall_command = kept.get("recall_command", kept.get("command"))
            result["recall_command"] = recall_command
            result["command"] = f"{recall_command}; latency: {result['command']}"
        else:
            result.update(asyncio.run(run_searches(url, ds, args)))
        if not args.skip_latency:
            asyncio.run(warm(url, ds, args))
            all_cases = cases(ds)
            result["latency"] = []
            with serve(url) as endpoint:
                for case in [None, *all_cases[:4]]:
                    try:
                        lat = latency(
                            endpoint, ds, case, latency_queries(ds, args), warmup_queries(ds, args)
                        )
                    except (httpx.HTTPError, RuntimeError) as exc:
                        lat = {"case": case.name if case else "baseline", "error": repr(exc)}
                    say(f"  latency {lat}")
                    result["latency"].append(lat)
    finally:
        server.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"search-{args.rows}"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(result))
    say(f"wrote {args.out / stem}.json and .md")
    return 0
