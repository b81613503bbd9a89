"""`python -m bench run`: serve a built data set, validate, load each workload, report.

Per workload: sample bodies from the database, send them once and check every
response (reads: every body; writes: the first few), count SQL statements per
request in-process (the same app code on an engine with a statement counter),
then warm up and measure over HTTP with a fixed number of connections for a
fixed time, taking CPU snapshots of the server and PostgreSQL around the run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench import workloads as wl
from bench.dataset import (
    connect,
    libpq_dsn,
    make_text,
    pgdata_dir,
    read_manifest,
    token_count,
)
from bench.load import drive, have_wrk
from bench.server import Server, busiest_processes, cpu_split, post_json, wait_quiet

REPO = Path(__file__).resolve().parent.parent
FORK_LATENCY_NAME = "bench fork-latency {n}"


@dataclass
class RunConfig:
    data_dir: Path | None  # a built data set (python -m bench build) ...
    out: Path
    workloads: list[str] = field(default_factory=lambda: list(wl.DEFAULT))
    connections: int = 16
    duration: float = 15.0
    warmup: float = 3.0
    workers: int = 1
    # CTXGRAPH_POOL_SIZE; None: the product's default, which is what the bench measures
    pool_size: int | None = None
    # serve the code of another checkout (a git worktree): before/after comparisons
    code: Path | None = None
    port: int = 18765
    driver: str = "wrk"
    threads: int = 1
    wait_quiet: float = 60.0
    quiet_pct: float = 15.0
    ids: int = 200
    statement_samples: int = 20
    long_history: int = 100_000
    profile: bool = False
    seed: int = 42
    label: str = ""
    # ... or a database that already holds one (dataset.load_into) and its manifest
    database_url: str | None = None
    dataset: dict[str, Any] | None = None

    @property
    def dsn(self) -> str:
        """libpq/asyncpg URL of the data set's database."""
        if self.database_url is not None:
            return libpq_dsn(self.database_url)
        assert self.data_dir is not None
        return f"postgresql://postgres@/postgres?host={pgdata_dir(self.data_dir)}"


def log(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kb = 0
    commit = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    versions = {}
    for pkg in (
        "strawberry-graphql",
        "fastapi",
        "uvicorn",
        "sqlalchemy",
        "asyncpg",
        "graphql-core",
    ):
        try:
            from importlib.metadata import version

            versions[pkg] = version(pkg)
        except Exception:
            versions[pkg] = "?"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": commit,
        "packages": versions,
    }


# --- preparing bodies -----------------------------------------------------------------


def _gql(url: str, query: str, **variables: Any) -> dict[str, Any]:
    status, raw = post_json(url, json.dumps({"query": query, "variables": variables}).encode(), 120)
    resp: dict[str, Any] = json.loads(raw)
    if status != 200 or resp.get("errors"):
        raise RuntimeError(f"setup request failed: HTTP {status} {raw[:300]!r}")
    data: dict[str, Any] = resp["data"]
    return data


def ensure_history(url: str, dsn: str, n: int, seed: int) -> tuple[str, int]:
    """A context with an n-message history, made once through the API and reused."""
    name = FORK_LATENCY_NAME.format(n=n)

    async def find() -> Any:
        async with connect(dsn) as conn:
            result = await conn.execute(
                sa.text(
                    "SELECT id, latest_version FROM contexts WHERE name = :name"
                    " AND parent_id IS NULL AND latest_version >= :n ORDER BY created_at LIMIT 1"
                ),
                {"name": name, "n": n},
            )
            return result.one_or_none()

    row = asyncio.run(find())
    if row is not None:
        return str(row.id), int(row.latest_version)
    import random

    rng = random.Random(f"{seed}:{name}")

    def batch(k: int, start: int) -> list[dict[str, Any]]:
        out = []
        for v in range(start, start + k):
            content = make_text(rng, 200, 800)
            role = "USER" if v % 2 else "ASSISTANT"
            out.append({"role": role, "content": content, "tokenCount": token_count(content)})
        return out

    log(f"creating '{name}' through the API ({n} messages in batches of 1000)")
    first = min(n, 1000)
    created = _gql(
        url,
        "mutation($name: String, $m: [MessageInput!]) {"
        " createContext(name: $name, messages: $m) { id latestVersion } }",
        name=name,
        m=batch(first, 1),
    )["createContext"]
    done = first
    while done < n:
        k = min(1000, n - done)
        _gql(
            url,
            "mutation($id: ID!, $m: [MessageInput!]!) {"
            " appendMessages(contextId: $id, messages: $m) { messages { version } } }",
            id=created["id"],
            m=batch(k, done + 1),
        )
        done += k
    return str(created["id"]), n


async def _sample_all(dsn: str, names: list[str], n: int, seed: int) -> dict[str, list[wl.Body]]:
    async with connect(dsn) as conn:
        return {name: await wl.sample_bodies(conn, name, n, seed) for name in names}


async def _embedding_count(dsn: str) -> int:
    async with connect(dsn) as conn:
        result = await conn.execute(
            sa.text("SELECT count(*) FROM messages WHERE embedding IS NOT NULL")
        )
        return int(result.scalar_one())


def prepare(cfg: RunConfig, url: str) -> dict[str, wl.Workload]:
    """Bodies for every requested workload, validated against the live server."""
    dsn = cfg.dsn
    wanted = list(cfg.workloads)
    sampled_names = {n for n in wanted if n in wl.CHECKS and n not in wl.FORK_LATENCY}
    if "mix" in wanted:
        sampled_names |= {"chat-page", "sidebar", "append", "fork", "search-all", "search-context"}
    samples = asyncio.run(_sample_all(dsn, sorted(sampled_names), cfg.ids, cfg.seed))
    result: dict[str, wl.Workload] = {}
    for name in sorted(sampled_names):
        check, writes = wl.CHECKS[name]
        result[name] = wl.Workload(name, wl.DESCRIPTIONS[name], check, writes, samples[name])
        if not samples[name]:
            result[name].skipped = "skipped: no context of the data set fits this workload"
    for name, n in (
        ("fork-short", 10),
        ("fork-long", cfg.long_history),
        ("fork-short-latest", 10),
        ("fork-long-latest", cfg.long_history),
    ):
        if name in wanted:
            cid, latest = ensure_history(url, dsn, n, cfg.seed)
            check, _ = wl.CHECKS[name]
            at_latest = name.endswith("-latest")
            bodies = wl.fork_latency_bodies(uuid_of(cid), latest, 1000, cfg.seed, at_latest)
            result[name] = wl.Workload(name, wl.DESCRIPTIONS[name], check, True, bodies)
    search = [k for k in ("search-all", "search-context") if k in result]
    if search:
        if not asyncio.run(_embedding_count(dsn)):
            for k in search:
                result[k].skipped = (
                    "skipped: the data set has no embeddings"
                    " (the search variant: bench build --embeddings N)"
                )
    for w in result.values():
        if w.skipped:
            continue
        todo = w.bodies[:3] if w.writes else w.bodies
        for i, b in enumerate(todo):
            status, raw = post_json(url, wl.dumps(b).encode())
            problem = w.check_response(b, status, raw)
            if problem:
                raise RuntimeError(f"{w.name}: body #{i} is answered wrongly: {problem}")
        log(f"{w.name}: {len(todo)}/{len(w.bodies)} bodies checked, all answered correctly")
    if "mix" in wanted:
        parts = {k: v.bodies for k, v in result.items() if not v.skipped}
        bodies = wl.mix_lines(parts, 1000, cfg.seed)
        missing = [k for k in ("search-all", "search-context") if k not in parts]
        description = wl.DESCRIPTIONS["mix"] + (
            " (search unavailable: its 2% went to chat-page)" if missing else ""
        )
        result["mix"] = wl.Workload("mix", description, _never, True, bodies)
    return {name: result[name] for name in wanted if name in result}


def _messages_per_body(w: wl.Workload) -> float:
    sizes = [len(b["variables"]["messages"]) for b in w.bodies]
    return sum(sizes) / max(1, len(sizes))


def _never(_b: wl.Body, _d: dict[str, Any]) -> str | None:
    return None


def uuid_of(value: str) -> uuid.UUID:
    return uuid.UUID(value)


# --- statements per request -----------------------------------------------------------


async def _count_statements(
    dsn: str, items: list[tuple[str, list[wl.Body]]]
) -> dict[str, tuple[float, float]]:
    """Per workload: (SQL statements per request, share of requests its plan answered),
    in process, on the app as `ctxgraph serve` builds it."""
    import httpx

    from api.app import create_app
    from api.db import EngineConnector, count_statements, create_engine
    from api.settings import Settings

    settings = Settings(_env_file=None, database_url=dsn)
    engine = create_engine(dsn, settings)
    seen: list[str] = []
    undo = count_statements(engine, seen.append)
    app = create_app(settings, connector=EngineConnector(engine))
    registry = app.state.metrics.registry

    def planned() -> float:
        return registry.get_sample_value("ctxgraph_plan_answers_total") or 0.0

    out: dict[str, tuple[float, float]] = {}
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for name, bodies in items:
                seen.clear()
                before = planned()
                for b in bodies:
                    r = await client.post("/graphql", json=b)
                    if r.status_code != 200 or b'"errors"' in r.content:
                        raise RuntimeError(f"{name}: in-process request failed: {r.text[:300]}")
                n = max(1, len(bodies))
                out[name] = (round(len(seen) / n, 2), round((planned() - before) / n, 2))
    finally:
        undo()
        await engine.dispose()
    return out


def statements_per_request(
    cfg: RunConfig, work: dict[str, wl.Workload]
) -> dict[str, tuple[float, float]]:
    items = []
    for w in work.values():
        if w.skipped:
            continue
        k = min(5, cfg.statement_samples) if w.writes and w.name != "mix" else cfg.statement_samples
        if w.name == "mix":
            k = 100
        # writes: bodies after the ones the load will start with
        items.append((w.name, w.bodies[-k:] if w.writes else w.bodies[:k]))
    return asyncio.run(_count_statements(cfg.dsn, items))


async def _pg_counters(dsn: str) -> tuple[int, int]:
    async with connect(dsn) as conn:
        row = (
            await conn.execute(
                sa.text(
                    "SELECT sessions, xact_commit + xact_rollback AS xacts"
                    " FROM pg_stat_database WHERE datname = current_database()"
                )
            )
        ).one()
        return int(row.sessions), int(row.xacts)


# --- profiling ------------------------------------------------------------------------


def start_profiler(server: Server, out: Path, seconds: float) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        log("py-spy not found: pip install py-spy (profiling skipped)")
        return None
    assert server.proc is not None
    cmd = [
        spy, "record", "--pid", str(server.proc.pid), "--subprocesses", "--rate", "200",
        "--duration", str(max(1, round(seconds))), "--format", "raw", "--nonblocking",
        "-o", str(out),
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# --- the run --------------------------------------------------------------------------


def measure(
    cfg: RunConfig, server: Server, w: wl.Workload, stmts: tuple[float, float] | None
) -> dict[str, Any]:
    run_dir = cfg.out
    bodies_file = run_dir / "bodies" / f"{w.name}.bodies"
    bodies_file.write_text("".join(wl.dumps(b) + "\n" for b in w.bodies))
    busy_before = wait_quiet(cfg.wait_quiet, cfg.quiet_pct) if cfg.wait_quiet > 0 else None
    noisy = busiest_processes(1.0) if busy_before and busy_before > cfg.quiet_pct else []
    log(
        f"{w.name}: warm-up {cfg.warmup:g}s, then {cfg.duration:g}s at {cfg.connections}"
        f" connections ({len(w.bodies)} distinct bodies; machine busy before"
        f" {busy_before or 0:.0f}% of a core)"
    )
    if cfg.warmup > 0:
        drive(server.url, bodies_file, f"{w.name}-warmup", cfg.connections, cfg.warmup,
              cfg.driver, cfg.threads)  # fmt: skip
    profiler = (
        start_profiler(server, run_dir / f"profile-{w.name}.txt", cfg.duration)
        if cfg.profile
        else None
    )
    pg_before = asyncio.run(_pg_counters(cfg.dsn))
    a = server.snapshot()
    res = drive(server.url, bodies_file, w.name, cfg.connections, cfg.duration, cfg.driver,
                cfg.threads)  # fmt: skip
    b = server.snapshot()
    pg_after = asyncio.run(_pg_counters(cfg.dsn))
    if profiler is not None:
        profiler.wait(timeout=60)
    (run_dir / f"{w.name}.driver.txt").write_text(res.output)
    cpu = cpu_split(a, b, res.driver_cpu_s, res.requests)
    s = res.summary
    row = {
        "workload": w.name,
        "description": w.description,
        "requests": s["requests"],
        "rps": s["rps"],
        # appends: messages written per second (a batch request carries several)
        "messages_per_s": round(s["rps"] * _messages_per_body(w))
        if w.name.startswith("append")
        else None,
        "p50_ms": s["p50_ms"],
        "p90_ms": s["p90_ms"],
        "p95_ms": s["p95_ms"],
        "p99_ms": s["p99_ms"],
        "max_ms": s["max_ms"],
        "mean_ms": s["mean_ms"],
        "errors": res.errors,
        "error_detail": {
            k: s[k]
            for k in ("non2xx", "connect_err", "read_err", "write_err", "timeouts", "gql_errors")
        },
        "statements_per_request": None if stmts is None else stmts[0],
        "planned_share": None if stmts is None else stmts[1],
        # pg_stat_database: new sessions (connection churn; 1 is our own probe) and
        # transactions per request (flushed by backends once a second: approximate)
        "pg_sessions": pg_after[0] - pg_before[0],
        "pg_xacts_per_request": round((pg_after[1] - pg_before[1]) / max(1, s["requests"]), 2),
        "response_kib": round(s["bytes"] / max(1, s["requests"]) / 1024, 2),
        "cpu": cpu,
        "busy_before_pct": None if busy_before is None else round(busy_before),
        "noisy_processes": noisy,
    }
    log(
        f"  {s['rps']:.0f} req/s, p50 {s['p50_ms']:.1f} / p95 {s['p95_ms']:.1f} / p99"
        f" {s['p99_ms']:.1f} ms, errors {res.errors}, CPU ms/req: server"
        f" {cpu['server_ms_per_req']:.2f}, pg {cpu['postgres_ms_per_req'] or 0:.2f};"
        f" other {cpu['other_pct']:.0f}%"
    )
    if profiler is not None:
        from bench.profile import summarize

        prof = run_dir / f"profile-{w.name}.txt"
        if prof.exists():
            (run_dir / f"profile-{w.name}.md").write_text(summarize(prof))
            row["profile"] = prof.name
    return row


def run(cfg: RunConfig) -> dict[str, Any]:
    manifest = cfg.dataset or (read_manifest(cfg.data_dir) if cfg.data_dir else None)
    if manifest is None:
        raise FileNotFoundError(f"{cfg.data_dir} has no data set: run `python -m bench build`")
    unknown = [n for n in cfg.workloads if n not in wl.ALL]
    if unknown:
        raise ValueError(f"unknown workloads {unknown}; known: {', '.join(wl.ALL)}")
    if cfg.driver == "wrk" and not have_wrk():
        raise FileNotFoundError(
            "wrk is not installed (apt-get install -y wrk) or use --driver python"
        )
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "bodies").mkdir(exist_ok=True)
    meta: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "machine": machine_info(),
        "dataset": manifest,
    }
    log(f"results: {cfg.out}")
    server = Server(
        cfg.data_dir,
        cfg.port,
        cfg.workers,
        cfg.out / "server.log",
        cfg.database_url,
        env={
            **({"CTXGRAPH_POOL_SIZE": str(cfg.pool_size)} if cfg.pool_size else {}),
            **({"PYTHONPATH": str(cfg.code)} if cfg.code else {}),
        },
    )
    results: list[dict[str, Any]] = []
    t0 = time.monotonic()
    with server:
        log(f"ctxgraph serve up on {server.url} (workers {cfg.workers})")
        work = prepare(cfg, server.url)
        stmts = statements_per_request(cfg, work)
        log(f"SQL statements per request: {stmts}")
        for w in work.values():
            if w.skipped:
                log(f"{w.name}: {w.skipped}")
                results.append(
                    {"workload": w.name, "description": w.description, "skipped": w.skipped}
                )
                continue
            results.append(measure(cfg, server, w, stmts.get(w.name)))
        # a server broken by the load must not go unnoticed either
        for w in work.values():
            if not w.skipped and not w.writes:
                status, raw = post_json(server.url, wl.dumps(w.bodies[0]).encode())
                problem = w.check_response(w.bodies[0], status, raw)
                if problem:
                    raise RuntimeError(f"after the load, {w.name} is answered wrongly: {problem}")
        meta["server_peak_rss_mib"] = _peak_rss_mib(server)
    meta["seconds"] = round(time.monotonic() - t0, 1)
    report = {"meta": meta, "results": results}
    from bench.report import write_reports

    write_reports(report, cfg.out)
    return report


def _peak_rss_mib(server: Server) -> int:
    total = 0
    for pid in server.server_pids():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024)
