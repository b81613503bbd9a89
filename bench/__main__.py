"""`python -m bench`: build the data set, run the workloads, compare with the anchor.

python -m bench build [--data-dir DIR] [--scale 1] [--seed 42] [--force] [--embeddings N]
                     [--tool-calls SHARE]
python -m bench run [--data-dir DIR] [--workloads chat-page,sidebar,...] [--workers 1]
                    [--connections 16] [--duration 15] [--warmup 3] [--out DIR] [--profile]
python -m bench compare --anchor DIR --anchor-data DIR [--pairs 3] ...
python -m bench sweep [--connections 16,64,256,1000] [--workloads chat-page,sidebar,mix]
                      [--anchor DIR --anchor-data DIR] ...
python -m bench report RUN_DIR
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
import warnings
from pathlib import Path

from bench import workloads as wl

DEFAULT_DATA = Path("/tmp/ctxgraph-bench/data")
DEFAULT_RUNS = Path("/tmp/ctxgraph-bench/runs")


def _out_dir(out: str | None, label: str) -> Path:
    if out:
        return Path(out)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return DEFAULT_RUNS / (stamp + (f"-{label}" if label else ""))


def _add_load_options(p: argparse.ArgumentParser, sweep: bool = False) -> None:
    p.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA,
        help=f"built data set (default {DEFAULT_DATA})",
    )
    if sweep:
        p.add_argument(
            "--connections",
            default="16,64,256,1000",
            help="comma-separated levels of keep-alive connections (default 16,64,256,1000)",
        )
    else:
        p.add_argument(
            "--connections", type=int, default=16, help="keep-alive connections (default 16)"
        )
    p.add_argument(
        "--threads", type=int, default=1, help="wrk threads (default 1; 2 for 1000 connections)"
    )
    p.add_argument(
        "--duration", type=float, default=15.0, help="measured seconds per workload (default 15)"
    )
    p.add_argument(
        "--warmup", type=float, default=3.0, help="warm-up seconds, discarded (default 3)"
    )
    p.add_argument("--workers", type=int, default=1, help="ctxgraph serve --workers (default 1)")
    p.add_argument(
        "--port", type=int, default=18765, help="port for ctxgraph serve (default 18765)"
    )
    p.add_argument(
        "--pool-size",
        type=int,
        default=None,
        help="CTXGRAPH_POOL_SIZE of the server (default: the product's own default, which"
        " the bench measures)",
    )
    p.add_argument(
        "--driver", choices=["wrk", "python"], default="wrk", help="load driver (default wrk)"
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=60.0,
        help="before each workload wait up to this many s for the machine to be quiet",
    )
    p.add_argument(
        "--quiet-pct",
        type=float,
        default=15.0,
        help="'quiet' = busy below this %% of one core (default 15)",
    )
    p.add_argument(
        "--ids", type=int, default=200, help="distinct ids per read workload (default 200)"
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--label", default="", help="suffix of the results directory name")
    p.add_argument("--out", help="results directory (default /tmp/ctxgraph-bench/runs/STAMP)")


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    # SIGTERM unwinds like Ctrl-C, so the server we started (and its PostgreSQL) stop
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="command", required=True)

    b = sub.add_parser(
        "build", help="generate the data set and load it into a fresh embedded PostgreSQL"
    )
    b.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    b.add_argument(
        "--scale", type=float, default=1.0, help="x 2000 roots / 500 forks / 100000 messages"
    )
    b.add_argument("--seed", type=int, default=42)
    b.add_argument("--force", action="store_true", help="delete an existing data set first")
    b.add_argument(
        "--embeddings",
        type=int,
        default=0,
        metavar="N",
        help="the search variant: give the first N messages a clustered 1536-d embedding"
        " and build the HNSW index (100000: all of them, ~6 min on 2 cores; default 0)",
    )
    b.add_argument(
        "--tool-calls",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="the parts variant: this share of ASSISTANT messages call a tool, answered by"
        " the TOOL message after them (chat-page-parts; e.g. 0.2)",
    )

    r = sub.add_parser("run", help="serve the data set and measure the workloads")
    _add_load_options(r)
    r.add_argument(
        "--workloads",
        default=",".join(wl.DEFAULT),
        help=f"comma-separated, in order (default {','.join(wl.DEFAULT)});"
        f" also: {','.join(wl.FORK_LATENCY)}, or 'all'",
    )
    r.add_argument(
        "--code",
        type=Path,
        help="serve the code of another checkout (a git worktree) instead of this one,"
        " for before/after comparisons (SQL/req is still counted on this checkout)",
    )
    r.add_argument(
        "--profile",
        action="store_true",
        help="record py-spy stacks of the server during each measurement (slower)",
    )
    r.add_argument(
        "--long-history",
        type=int,
        default=100_000,
        help="messages of the fork-long context (default 100000)",
    )

    c = sub.add_parser("compare", help="alternate runs of the PostGraphile anchor and ctxgraph")
    _add_load_options(c)
    c.add_argument(
        "--anchor",
        type=Path,
        required=True,
        help="a copy of ../shared/anchors/postgraphile (npm installed, ../.venv made)",
    )
    c.add_argument("--anchor-data", type=Path, required=True, help="the anchor's seeded data dir")
    c.add_argument("--pairs", type=int, default=3, help="alternating pairs (default 3)")
    c.add_argument(
        "--code",
        type=Path,
        help="serve the code of another checkout (a git worktree) as ctxgraph: a before run in"
        " the same sitting as an after run",
    )
    c.add_argument(
        "--also",
        default="",
        help="more ctxgraph workloads, each set against the anchor's chat page (q1): e.g."
        " chat-page-apollo,chat-page-header,chat-page-directive",
    )

    sw = sub.add_parser("sweep", help="the workloads at increasing numbers of connections")
    _add_load_options(sw, sweep=True)
    sw.add_argument(
        "--workloads", default="chat-page,sidebar,mix", help="default chat-page,sidebar,mix"
    )
    sw.add_argument(
        "--anchor", type=Path, help="also the PostGraphile anchor (chat-page, sidebar) per level"
    )
    sw.add_argument("--anchor-data", type=Path, help="the anchor's seeded data dir")

    rep = sub.add_parser("report", help="rewrite results.md and chart.png of a run directory")
    rep.add_argument("run_dir", type=Path)

    a = ap.parse_args(argv)
    if a.command == "build":
        from bench.dataset import DatasetSpec, build, iter_summary

        spec = DatasetSpec.scaled(a.scale, a.seed, a.embeddings, a.tool_calls)
        manifest = build(a.data_dir, spec, force=a.force)
        print(f"data set in {a.data_dir}")
        for line in iter_summary(manifest):
            print(line)
        return 0 if manifest["counter_mismatches"] == 0 else 1
    if a.command == "report":
        from bench.report import reprint

        print(reprint(a.run_dir))
        return 0
    if a.command == "sweep":
        from bench.sweep import sweep

        a.levels = [int(n) for n in a.connections.split(",") if n.strip()]
        a.workload_list = [n.strip() for n in a.workloads.split(",") if n.strip()]
        summary = sweep(a, _out_dir(a.out, a.label or "sweep"))
        print((Path(summary["out"]) / "sweep.md").read_text() if "out" in summary else "")
        return 1 if any(r["errors"] for r in summary["rows"]) else 0
    if a.command == "compare":
        from bench.compare import compare

        summary = compare(a, _out_dir(a.out, a.label or "compare"))
        return 0 if summary["ok"] else 1

    from bench.report import markdown
    from bench.runner import RunConfig, run

    names = (
        wl.ALL if a.workloads == "all" else [n.strip() for n in a.workloads.split(",") if n.strip()]
    )
    cfg = RunConfig(
        data_dir=a.data_dir, out=_out_dir(a.out, a.label), workloads=list(names),
        connections=a.connections, duration=a.duration, warmup=a.warmup, workers=a.workers,
        pool_size=a.pool_size, port=a.port, driver=a.driver, threads=a.threads,
        wait_quiet=a.wait_quiet, quiet_pct=a.quiet_pct,
        ids=a.ids, profile=a.profile, code=a.code, seed=a.seed, label=a.label,
        long_history=a.long_history,
    )  # fmt: skip
    report = run(cfg)
    print(markdown(report))
    bad = [r["workload"] for r in report["results"] if not r.get("skipped") and r["errors"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
