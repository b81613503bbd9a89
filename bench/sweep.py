"""`python -m bench sweep`: the same workloads at increasing numbers of connections.

    python -m bench sweep --connections 16,64,256,1000 [--workloads chat-page,sidebar,mix]
                          [--workers 2] [--anchor DIR --anchor-data DIR]

At each level `python -m bench run` measures ctxgraph at the product's defaults
(req/s, p50/p90/p99/max, errors), and with `--anchor` the PostGraphile anchor's
run.sh measures its chat page and sidebar at the same level, one server at a time.
Writes sweep.json, sweep.md and sweep.png in the output directory.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.compare import run_anchor
from bench.runner import RunConfig, log, run

FIGURES = ("rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "errors")


def sweep(a: argparse.Namespace, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for level in a.levels:
        log(f"{level} connections: ctxgraph")
        cfg = RunConfig(
            data_dir=a.data_dir, out=out / f"ctxgraph-{level}", workloads=a.workload_list,
            connections=level, duration=a.duration, warmup=a.warmup, workers=a.workers,
            port=a.port, pool_size=a.pool_size, driver=a.driver, threads=a.threads,
            wait_quiet=a.wait_quiet, quiet_pct=a.quiet_pct, ids=a.ids, seed=a.seed,
        )  # fmt: skip
        for r in run(cfg)["results"]:
            if not r.get("skipped"):
                rows.append(_row("ctxgraph", level, r["workload"], r, r["cpu"]["other_pct"]))
        if a.anchor is not None:
            log(f"{level} connections: PostGraphile")
            anchor_args = argparse.Namespace(**{**vars(a), "connections": level})
            for name, figures in run_anchor(anchor_args, out / f"postgraphile-{level}").items():
                if name in a.workload_list:
                    rows.append(_row("postgraphile", level, name, figures, figures["other_pct"]))
        _write(a, out, rows)
    return _write(a, out, rows)


def _row(side: str, level: int, workload: str, r: dict[str, Any], other: Any) -> dict[str, Any]:
    return {
        "side": side,
        "connections": level,
        "workload": workload,
        **{k: r.get(k) for k in FIGURES},
        "other_pct": other,
    }


def _f(value: Any) -> str:
    return "-" if value is None else f"{value:,.1f}" if isinstance(value, float) else f"{value}"


def _write(a: argparse.Namespace, out: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    summary = {
        "config": {
            "connections": a.levels, "workloads": a.workload_list, "workers": a.workers,
            "duration": a.duration, "warmup": a.warmup, "driver": a.driver,
            "threads": a.threads, "pool_size": a.pool_size or "product default",
        },
        "rows": rows,
    }  # fmt: skip
    (out / "sweep.json").write_text(json.dumps(summary, indent=2) + "\n")
    summary["out"] = str(out)
    c = summary["config"]
    lines = [
        f"# Concurrency sweep: `ctxgraph serve --workers {c['workers']}` at its defaults,"
        f" {c['driver']} ({c['threads']} threads), {c['warmup']:g} s warm-up, {c['duration']:g} s"
        " measured per level",
        "",
        "| workload | server | connections | req/s | p50 ms | p90 ms | p99 ms | max ms | errors"
        " | other CPU % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: (r["workload"], r["side"], r["connections"])):
        lines.append(
            f"| {r['workload']} | {r['side']} | {r['connections']} | {_f(r['rps'])}"
            f" | {_f(r['p50_ms'])} | {_f(r['p90_ms'])} | {_f(r['p99_ms'])} | {_f(r['max_ms'])}"
            f" | {r['errors']} | {_f(r['other_pct'])} |"
        )
    (out / "sweep.md").write_text("\n".join(lines) + "\n")
    _chart(rows, out / "sweep.png")
    return summary


def _chart(rows: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the bench extras are not installed: tables only
        return
    workloads = sorted({r["workload"] for r in rows})
    fig, axes = plt.subplots(2, len(workloads), figsize=(5 * len(workloads), 7), squeeze=False)
    for col, name in enumerate(workloads):
        for side in sorted({r["side"] for r in rows}):
            mine = sorted(
                (r for r in rows if r["workload"] == name and r["side"] == side),
                key=lambda r: r["connections"],
            )
            if not mine:
                continue
            x = [r["connections"] for r in mine]
            axes[0][col].plot(x, [r["rps"] for r in mine], marker="o", label=side)
            for key, style in (("p50_ms", ":"), ("p99_ms", "-"), ("max_ms", "--")):
                values = [r[key] for r in mine]
                axes[1][col].plot(x, values, style, marker=".", label=f"{side} {key[:-3]}")
        axes[0][col].set_title(name)
        axes[0][col].set_ylabel("req/s")
        axes[1][col].set_ylabel("latency ms (log)")
        axes[1][col].set_yscale("log")
        for row in (0, 1):
            axes[row][col].set_xscale("log")
            axes[row][col].set_xlabel("connections")
            axes[row][col].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
