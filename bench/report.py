"""Reports of a run: results.json, results.md (a Markdown table) and chart.png."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    cfg = meta["config"]
    machine = meta["machine"]
    ds = meta["dataset"]
    lines = [
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB;"
        f" Python {machine['python']}; commit {machine['commit']}.",
        f"Data set: {ds['contexts']} contexts ({ds['roots']} roots, {ds['forks']} forks, max"
        f" depth {ds['max_depth']}), {ds['messages']} messages (seed {ds['spec']['seed']}).",
        f"Load: {cfg['driver']}, {cfg['connections']} connections, {cfg['warmup']:g} s warm-up"
        f" then {cfg['duration']:g} s per workload; `ctxgraph serve --workers {cfg['workers']}`.",
        "",
        "| workload | req/s | p50 ms | p95 ms | p99 ms | errors | SQL/req | planned | server CPU"
        " ms/req | PG CPU ms/req | other CPU % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for r in report["results"]:
        if r.get("skipped"):
            lines.append(f"| {r['workload']} | - | - | - | - | - | - | - | - | - | - |")
            notes.append(f"- {r['workload']}: {r['skipped']}")
            continue
        c = r["cpu"]
        lines.append(
            f"| {r['workload']} | {r['rps']:.0f} | {_f(r['p50_ms'])} | {_f(r['p95_ms'])}"
            f" | {_f(r['p99_ms'])} | {r['errors']} | {_f(r['statements_per_request'], 2)}"
            f" | {_f(r.get('planned_share'), 2)}"
            f" | {_f(c['server_ms_per_req'], 2)} | {_f(c['postgres_ms_per_req'], 2)}"
            f" | {_f(c['other_pct'], 0)} |"
        )
    lines.append("")
    lines.append(
        "SQL/req: statements per request, counted in-process on the same app code; planned:"
        " the share of those requests their plan answered (ctxgraph_plan_answers_total). CPU"
        " ms/req:"
        " CPU seconds of the server processes and of PostgreSQL (postmaster and backends) over"
        " the measured window, per request. other CPU %: machine busy time not used by the"
        " server, PostgreSQL or the load driver (% of one core): high values mean a noisy"
        " neighbour."
    )
    appends = [r for r in report["results"] if r.get("messages_per_s")]
    if appends:
        lines.append("")
        lines += [
            f"- {r['workload']}: {r['messages_per_s']} messages appended per second"
            for r in appends
        ]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def chart(report: dict[str, Any], path: Path, title: str = "ctxgraph") -> bool:
    """Throughput and latency percentiles per workload; False when matplotlib is missing."""
    try:
        importlib.import_module("matplotlib").use("Agg")
        plt = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return False
    rows = [r for r in report["results"] if not r.get("skipped")]
    if not rows:
        return False
    names = [r["workload"] for r in rows]
    x = list(range(len(rows)))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(8.0, 0.75 * len(rows) + 3), 8))
    bars = ax1.bar(x, [r["rps"] for r in rows], color="#3572b0")
    ax1.bar_label(bars, fmt="%.0f", fontsize=8)
    ax1.set_title("Throughput (requests/s, higher is better)")
    ax1.set_xticks(x, names, rotation=30, ha="right")
    width = 0.27
    for i, (key, color) in enumerate(
        (("p50_ms", "#7cb342"), ("p95_ms", "#f9a825"), ("p99_ms", "#e53935"))
    ):
        ax2.bar([v + (i - 1) * width for v in x], [r[key] for r in rows], width,
                label=key.removesuffix("_ms"), color=color)  # fmt: skip
    ax2.set_yscale("log")
    ax2.set_title("Latency (ms, log scale, lower is better)")
    ax2.set_xticks(x, names, rotation=30, ha="right")
    ax2.legend()
    cfg = report["meta"]["config"]
    fig.suptitle(
        f"{title}: {cfg['connections']} connections, {cfg['duration']:g} s per workload,"
        f" {cfg['workers']} worker(s), {report['meta']['machine']['cores']} cores"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_reports(report: dict[str, Any], out: Path) -> None:
    (out / "results.json").write_text(json.dumps(report, indent=1))
    (out / "results.md").write_text(markdown(report))
    chart(report, out / "chart.png")


def reprint(run_dir: Path) -> str:
    report = json.loads((run_dir / "results.json").read_text())
    write_reports(report, run_dir)
    return markdown(report)
