"""Summaries of py-spy's collapsed stacks (`py-spy record --format raw`).

Each line of the raw file is `frame;frame;...;frame COUNT`, root first, a frame
being `function (file:line)`. The summary lists where the samples were spent:
by package (self time), by function (self time) and by function (inclusive,
each function counted once per stack).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _parse(frame: str) -> tuple[str, str]:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip(), ""
    return m.group("func"), m.group("file")


def package_of(file: str) -> str:
    """The top-level package a source file belongs to (`api`, `strawberry`, `<stdlib>`...)."""
    if not file:
        return "<native>"
    parts = Path(file).parts
    if "site-packages" in parts:
        rest = parts[parts.index("site-packages") + 1 :]
        return rest[0].removesuffix(".py") if rest else "<site-packages>"
    for top in ("api", "models", "bench"):
        if top in parts:
            return top
    if "lib" in parts and any(p.startswith("python3") for p in parts):
        return "<stdlib>"
    return parts[0] if parts else "<unknown>"


def load(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        stacks.append((frames, int(count)))
    return stacks


def top_costs(path: Path, n: int = 15) -> dict[str, list[tuple[str, float]]]:
    """Shares (% of samples) by package (self), function (self) and function (inclusive)."""
    stacks = load(path)
    total = sum(c for _, c in stacks) or 1
    by_package: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in stacks:
        if not frames:
            continue
        func, file = _parse(frames[-1])
        by_package[package_of(file)] += count
        self_time[f"{func} ({Path(file).name})"] += count
        seen = set()
        for f in frames:
            func, file = _parse(f)
            key = f"{func} ({package_of(file)}/{Path(file).name})"
            if key not in seen:
                seen.add(key)
                inclusive[key] += count

    def pct(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100.0 * v / total, 1)) for k, v in c.most_common(n)]

    return {
        "package_self": pct(by_package),
        "function_self": pct(self_time),
        "function_inclusive": pct(inclusive),
        "samples": [("samples", float(total))],
    }


def summarize(path: Path, n: int = 15) -> str:
    costs = top_costs(path, n)
    samples = int(costs["samples"][0][1])
    out = [f"# Profile {path.name} ({samples} samples)", ""]
    titles = {
        "package_self": "Self time by package",
        "function_self": "Self time by function",
        "function_inclusive": "Inclusive time by function",
    }
    for key, title in titles.items():
        out += [f"## {title}", "", "| % | where |", "|---:|---|"]
        out += [f"| {p:.1f} | `{name}` |" for name, p in costs[key]]
        out.append("")
    return "\n".join(out)
