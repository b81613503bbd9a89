"""`python -m bench compare`: the PostGraphile anchor and ctxgraph, alternating.

Each pair runs the anchor's own `run.sh` (its server, its wrk script, its
checks) on its seeded data dir, then `python -m bench run` for the same three
read workloads on ctxgraph's data set, with the same connections, warm-up and
duration, one server at a time. The ratio ctxgraph/PostGraphile is taken per
pair and the median over pairs is reported: on a shared VM absolute req/s drift
by 15-25 % between identical runs, ratios within a pair much less.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import subprocess
from pathlib import Path
from typing import Any

from bench.runner import RunConfig, log, run

PAIRS = {"q1": "chat-page", "q2": "sidebar", "q3": "tree"}


def run_anchor(a: argparse.Namespace, out: Path) -> dict[str, dict[str, Any]]:
    """One anchor run (run.sh), its figures by our workload names."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(a.anchor / "run.sh"),
        "--datadir", str(a.anchor_data),
        "--duration", str(round(a.duration)),
        "--warmup", str(round(a.warmup)),
        "--connections", str(a.connections),
        "--threads", str(getattr(a, "threads", 1)),
        "--queries", ",".join(PAIRS),
        "--results", str(out),
        "--wait-quiet", str(round(a.wait_quiet)),
        "--retries", "0",
        "--ids", str(a.ids),
    ]  # fmt: skip
    with open(out / "run.log", "w") as logf:
        rc = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, check=False).returncode
    summaries = sorted(out.glob("*/summary.json"))
    if not summaries:
        raise RuntimeError(f"the anchor run failed (exit {rc}); see {out / 'run.log'}")
    summary = json.loads(summaries[-1].read_text())
    figures = {}
    for r in summary["results"]:
        errors = r["non2xx"] + r["gql_errors"] + r["connect_err"] + r["read_err"]
        errors += r["write_err"] + r["timeouts"] + max(0, r["requests"] - r["responses_seen"])
        cpu = r.get("cpu", {})
        figures[PAIRS[r["query"]]] = {
            "rps": r["rps"],
            "p50_ms": r["p50_ms"],
            "p90_ms": r.get("p90_ms"),
            "p99_ms": r["p99_ms"],
            "max_ms": r.get("max_ms"),
            "errors": errors,
            "server_ms_per_req": _num(cpu.get("server_ms_per_req")),
            "postgres_ms_per_req": _num(cpu.get("pg_ms_per_req")),
            "other_pct": cpu.get("other_pct"),
        }
    return figures


def _num(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _also(a: argparse.Namespace) -> list[str]:
    """Extra ctxgraph workloads, each compared with the anchor's chat page."""
    return [n.strip() for n in getattr(a, "also", "").split(",") if n.strip()]


def run_ctxgraph(a: argparse.Namespace, out: Path) -> dict[str, dict[str, Any]]:
    cfg = RunConfig(
        data_dir=a.data_dir, out=out, workloads=[*PAIRS.values(), *_also(a)],
        connections=a.connections, duration=a.duration, warmup=a.warmup, workers=a.workers,
        port=a.port, pool_size=a.pool_size, driver=a.driver, threads=a.threads,
        wait_quiet=a.wait_quiet, quiet_pct=a.quiet_pct, ids=a.ids, seed=a.seed,
        code=getattr(a, "code", None),
    )  # fmt: skip
    report = run(cfg)
    figures = {}
    for r in report["results"]:
        figures[r["workload"]] = {
            "rps": r["rps"],
            "p50_ms": r["p50_ms"],
            "p99_ms": r["p99_ms"],
            "errors": r["errors"],
            "server_ms_per_req": r["cpu"]["server_ms_per_req"],
            "postgres_ms_per_req": r["cpu"]["postgres_ms_per_req"],
            "other_pct": r["cpu"]["other_pct"],
            "statements_per_request": r["statements_per_request"],
        }
    return figures


def compare(a: argparse.Namespace, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    pairs: list[dict[str, Any]] = []
    for i in range(1, a.pairs + 1):
        log(f"pair {i}/{a.pairs}: PostGraphile")
        anchor = run_anchor(a, out / f"pair{i}-postgraphile")
        log("  " + ", ".join(f"{k} {v['rps']:.0f} req/s" for k, v in anchor.items()))
        log(f"pair {i}/{a.pairs}: ctxgraph")
        ours = run_ctxgraph(a, out / f"pair{i}-ctxgraph")
        pairs.append({"postgraphile": anchor, "ctxgraph": ours})
        _write(a, out, pairs)
    return _write(a, out, pairs)


def _write(a: argparse.Namespace, out: Path, pairs: list[dict[str, Any]]) -> dict[str, Any]:
    rows = []
    ok = True
    # each ctxgraph workload against its anchor counterpart (the extra ones: the chat page)
    against = {**{n: n for n in PAIRS.values()}, **dict.fromkeys(_also(a), "chat-page")}
    for name, anchor_name in against.items():
        ratios = [p["ctxgraph"][name]["rps"] / p["postgraphile"][anchor_name]["rps"] for p in pairs]
        errors = sum(
            p["ctxgraph"][name]["errors"] + p["postgraphile"][anchor_name]["errors"] for p in pairs
        )
        ok = ok and errors == 0

        def med(
            side: str, key: str, name: str = name, anchor_name: str = anchor_name
        ) -> float | None:
            which = name if side == "ctxgraph" else anchor_name
            values = [p[side][which][key] for p in pairs if p[side][which].get(key) is not None]
            return statistics.median(values) if values else None

        rows.append({
            "workload": name if name == anchor_name else f"{name} (vs {anchor_name})",
            "ratio_rps_median": round(statistics.median(ratios), 3),
            "ratios": [round(r, 3) for r in ratios],
            "postgraphile_rps_median": med("postgraphile", "rps"),
            "ctxgraph_rps_median": med("ctxgraph", "rps"),
            "postgraphile_p99_ms_median": med("postgraphile", "p99_ms"),
            "ctxgraph_p99_ms_median": med("ctxgraph", "p99_ms"),
            "postgraphile_server_ms_per_req": med("postgraphile", "server_ms_per_req"),
            "ctxgraph_server_ms_per_req": med("ctxgraph", "server_ms_per_req"),
            "postgraphile_pg_ms_per_req": med("postgraphile", "postgres_ms_per_req"),
            "ctxgraph_pg_ms_per_req": med("ctxgraph", "postgres_ms_per_req"),
            "errors": errors,
        })  # fmt: skip
    summary = {
        "config": {
            "pairs": len(pairs), "connections": a.connections, "duration": a.duration,
            "warmup": a.warmup, "workers": a.workers, "driver": a.driver,
        },
        "rows": rows,
        "pairs": pairs,
        "ok": ok,
    }  # fmt: skip
    (out / "compare.json").write_text(json.dumps(summary, indent=1))
    (out / "compare.md").write_text(compare_markdown(summary))
    compare_chart(summary, out / "compare.png")
    return summary


def compare_markdown(summary: dict[str, Any]) -> str:
    c = summary["config"]
    lines = [
        f"ctxgraph (`--workers {c['workers']}`) vs PostGraphile 5.1 (Node, 1 process):"
        f" {c['pairs']} alternating pairs, {c['connections']} connections, {c['warmup']:g} s"
        f" warm-up + {c['duration']:g} s per workload; medians over pairs.",
        "",
        "| workload | ctxgraph/PostGraphile req/s (median) | per pair | ctxgraph req/s"
        " | PostGraphile req/s | ctxgraph p99 ms | PostGraphile p99 ms"
        " | server CPU ms/req (ctx / PGL) | PG CPU ms/req (ctx / PGL) | errors |",
        "|---|---:|---|---:|---:|---:|---:|---|---|---:|",
    ]

    def f(v: Any, d: int = 1) -> str:
        return "-" if v is None else f"{v:.{d}f}"

    for r in summary["rows"]:
        lines.append(
            f"| {r['workload']} | **{r['ratio_rps_median']:.2f}x** |"
            f" {', '.join(f'{x:.2f}' for x in r['ratios'])} |"
            f" {f(r['ctxgraph_rps_median'], 0)} | {f(r['postgraphile_rps_median'], 0)} |"
            f" {f(r['ctxgraph_p99_ms_median'])} | {f(r['postgraphile_p99_ms_median'])} |"
            f" {f(r['ctxgraph_server_ms_per_req'], 2)}"
            f" / {f(r['postgraphile_server_ms_per_req'], 2)} |"
            f" {f(r['ctxgraph_pg_ms_per_req'], 2)} / {f(r['postgraphile_pg_ms_per_req'], 2)} |"
            f" {r['errors']} |"
        )
    return "\n".join(lines) + "\n"


def compare_chart(summary: dict[str, Any], path: Path) -> bool:
    try:
        importlib.import_module("matplotlib").use("Agg")
        plt = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return False
    rows = summary["rows"]
    names = [r["workload"] for r in rows]
    x = list(range(len(rows)))
    w = 0.38
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, key, title in (
        (ax1, "rps_median", "Throughput, median req/s (higher is better)"),
        (ax2, "p99_ms_median", "p99 latency, median ms (lower is better)"),
    ):
        for i, (side, color) in enumerate((("ctxgraph", "#3572b0"), ("postgraphile", "#9e9e9e"))):
            values = [r[f"{side}_{key}"] or 0 for r in rows]
            bars = ax.bar([v + (i - 0.5) * w for v in x], values, w, label=side, color=color)
            ax.bar_label(bars, fmt="%.0f" if key == "rps_median" else "%.1f", fontsize=8)
        ax.set_xticks(x, names)
        ax.set_title(title)
        ax.legend()
    c = summary["config"]
    fig.suptitle(
        f"ctxgraph vs PostGraphile 5.1: {c['pairs']} alternating pairs, {c['connections']}"
        f" connections, {c['duration']:g} s each"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
