"""Drive the server over HTTP from a separate process: wrk, or a Python fallback.

wrk (Debian: `apt-get install -y wrk`) is the driver of record: it is what the
anchor uses and it costs little CPU on a 2-core machine. Without wrk the
Python driver (bench/pydriver.py, httpx in its own process) gives the same
summary line, at a higher CPU cost taken from the server: its figures are for
smoke tests, not for comparisons.
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LUA = Path(__file__).resolve().with_name("wrk_graphql.lua")
SUMMARY = re.compile(r"^WRK_JSON (\{.*\})$", re.M)


@dataclass(frozen=True)
class LoadResult:
    summary: dict[str, Any]  # the WRK_JSON line
    driver_cpu_s: float  # CPU the driver process used
    output: str

    @property
    def requests(self) -> int:
        return int(self.summary["requests"])

    @property
    def errors(self) -> int:
        s = self.summary
        failures = s["non2xx"] + s["connect_err"] + s["read_err"] + s["write_err"] + s["timeouts"]
        # a response wrk counted but the script did not see is unchecked, hence an error
        unchecked = max(0, s["requests"] - s["responses_seen"])
        return int(failures + s["gql_errors"] + unchecked)


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def drive(
    url: str,
    bodies: Path,
    label: str,
    connections: int,
    duration: float,
    driver: str = "wrk",
    threads: int = 1,
    timeout_s: int = 10,
) -> LoadResult:
    """One fixed-duration run at a fixed number of keep-alive connections."""
    if driver == "wrk":
        cmd = [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            f"{timeout_s}s",
            "--latency",
            "-s",
            str(LUA),
            url,
            "--",
            str(bodies),
            label,
        ]
    else:
        cmd = [
            sys.executable,
            "-m",
            "bench.pydriver",
            url,
            str(bodies),
            label,
            "--connections",
            str(connections),
            "--duration",
            str(duration),
        ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    output = proc.stdout + proc.stderr
    m = SUMMARY.search(output)
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"{driver} failed ({proc.returncode}): {output[-500:]}")
    return LoadResult(json.loads(m.group(1)), cpu, output)
