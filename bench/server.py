"""The server under test (`ctxgraph serve` on a built data set) and CPU accounting.

CPU time is read from /proc (Linux), like the anchor's metrics.py: the server is
the `ctxgraph serve` process and its descendants (uvicorn workers); PostgreSQL is
the postmaster, its live backends and the children it has reaped, so backends
that exit during a run still count.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

from bench.dataset import pgdata_dir

TICK = os.sysconf("SC_CLK_TCK")


# --- /proc ---------------------------------------------------------------------------


def listening_sockets(port: int) -> int | None:
    """TCP sockets in LISTEN state on `port` (any address), from /proc/net/tcp{,6};
    None where /proc does not tell."""
    count, found = 0, False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        found = True
        for line in lines:
            _, local, _, state = line.split()[:4]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                count += 1
    return count if found else None


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    return s[s.rindex(")") + 2 :].split()  # fields from 3 (state) on


def cpu_seconds(pid: int, reaped_children: bool = False) -> float:
    """User + system CPU of one process (plus its reaped children's)."""
    f = _stat_fields(pid)
    if not f:
        return 0.0
    ticks = int(f[11]) + int(f[12])  # utime stime
    if reaped_children:
        ticks += int(f[13]) + int(f[14])  # cutime cstime
    return ticks / TICK


def parent_map() -> dict[int, int]:
    out: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            f = _stat_fields(int(d))
            if f:
                out[int(d)] = int(f[1])
    return out


def descendants(pid: int, parents: dict[int, int]) -> set[int]:
    """pid and every process below it."""
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        if p not in found:
            found.add(p)
            todo.extend(children.get(p, []))
    return found


def machine_ticks() -> tuple[int, int, int]:
    """(busy, total, steal) jiffies of the whole machine since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal
    busy = v[0] + v[1] + v[2] + v[5] + v[6]
    return busy, busy + v[3] + v[4] + v[7], v[7]


def machine_busy_pct(seconds: float = 1.0) -> float:
    """Busy CPU of the whole machine over a short window, in % of one core."""
    b0, t0, _ = machine_ticks()
    time.sleep(seconds)
    b1, t1, _ = machine_ticks()
    return 100.0 * (b1 - b0) / max(1, t1 - t0) * (os.cpu_count() or 1)


def busiest_processes(seconds: float = 1.0, n: int = 5) -> list[str]:
    """The processes that used the most CPU over a short window ("pid  pct%  comm")."""

    def sample() -> dict[int, tuple[float, str]]:
        out: dict[int, tuple[float, str]] = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        s = f.read()
                except OSError:
                    continue
                fields = s[s.rindex(")") + 2 :].split()
                comm = s[s.index("(") + 1 : s.rindex(")")]
                out[int(d)] = ((int(fields[11]) + int(fields[12])) / TICK, comm)
        return out

    a = sample()
    time.sleep(seconds)
    b = sample()
    rows = sorted(
        ((b[p][0] - a[p][0], p, b[p][1]) for p in b if p in a and p != os.getpid()),
        reverse=True,
    )[:n]
    return [f"{pid:>8} {100 * cpu / seconds:5.0f}%  {comm}" for cpu, pid, comm in rows if cpu > 0]


def wait_quiet(max_wait: float, quiet_pct: float) -> float:
    """Wait (up to max_wait s) until the machine is below quiet_pct of a core; return the
    last busy figure. Called while the server under test is idle, so busy = others."""
    deadline = time.monotonic() + max_wait
    while True:
        busy = machine_busy_pct(1.0)
        if busy <= quiet_pct or time.monotonic() >= deadline:
            return busy
        time.sleep(2.0)


@dataclass(frozen=True)
class CpuSnapshot:
    t: float
    busy: int
    total: int
    steal: int
    server_s: float
    pg_s: float | None  # None: PostgreSQL runs elsewhere


def cpu_split(a: CpuSnapshot, b: CpuSnapshot, driver_s: float, requests: int) -> dict[str, Any]:
    """Where the CPU went between two snapshots (% of one core) and CPU ms per request."""
    wall = max(1e-9, b.t - a.t)

    def pct(ticks: int) -> float:
        return 100.0 * ticks / TICK / wall

    per_req = 1000.0 / max(1, requests)
    server_s = b.server_s - a.server_s
    pg_s = None if a.pg_s is None or b.pg_s is None else b.pg_s - a.pg_s
    busy = pct(b.busy - a.busy)
    used = 100.0 * (server_s + (pg_s or 0.0) + driver_s) / wall
    return {
        "wall_s": round(wall, 2),
        "server_pct": round(100.0 * server_s / wall, 1),
        "postgres_pct": None if pg_s is None else round(100.0 * pg_s / wall, 1),
        "driver_pct": round(100.0 * driver_s / wall, 1),
        "other_pct": round(max(0.0, busy - used), 1),
        "steal_pct": round(pct(b.steal - a.steal), 1),
        "machine_busy_pct": round(busy, 1),
        "server_ms_per_req": round(server_s * per_req, 3),
        "postgres_ms_per_req": None if pg_s is None else round(pg_s * per_req, 3),
    }


# --- the server ------------------------------------------------------------------------


def ctxgraph_command() -> list[str]:
    """`ctxgraph` from this interpreter's environment (or `python -m api.cli`)."""
    script = Path(sys.executable).with_name("ctxgraph")
    if script.exists():
        return [str(script)]
    found = shutil.which("ctxgraph")
    return [found] if found else [sys.executable, "-m", "api.cli"]


def post_json(url: str, body: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    req = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"content-type": "application/json", "accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status: int = r.status
            return status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Server:
    """`ctxgraph serve` on the data set in data_dir, started and stopped by us."""

    def __init__(
        self,
        data_dir: Path | None,
        port: int,
        workers: int = 1,
        log_path: Path | None = None,
        database_url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """Serve the embedded data set in data_dir, or the database at database_url;
        `env` adds settings (CTXGRAPH_POOL_SIZE=20, PYTHONPATH=another checkout...)."""
        if (data_dir is None) == (database_url is None):
            raise ValueError("give exactly one of data_dir and database_url")
        self.data_dir = data_dir
        self.database_url = database_url
        self.port = port
        self.workers = workers
        self.log_path = log_path
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._workers_seen: float | None = None  # when every worker process existed

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    def start(self, timeout: float = 120.0) -> None:
        self._workers_seen = None
        with socket.socket() as probe_socket:
            if probe_socket.connect_ex(("127.0.0.1", self.port)) == 0:
                raise RuntimeError(f"something already listens on 127.0.0.1:{self.port}")
        env = {
            k: v
            for k, v in os.environ.items()
            if k != "DATABASE_URL" and not k.startswith("CTXGRAPH_")
        }
        # No log line per request: uvicorn's and ctxgraph's INFO lines, the access logs
        # among them, are below this level (PostGraphile writes none either).
        env["CTXGRAPH_LOG_LEVEL"] = "warning"
        if self.database_url is not None:
            env["DATABASE_URL"] = self.database_url
        else:
            env["CTXGRAPH_DATA_DIR"] = str(self.data_dir)
        env.update(self.env)
        self._log = open(self.log_path, "ab") if self.log_path else None
        cmd = [
            *ctxgraph_command(),
            "serve",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        probe = json.dumps({"query": "{ __typename }"}).encode()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"ctxgraph serve exited with {self.proc.returncode}"
                    + (f"; see {self.log_path}" if self.log_path else "")
                )
            try:
                status, raw = post_json(self.url, probe, timeout=2.0)
                if status == 200 and b'"Query"' in raw:
                    if self.workers == 1 or self._all_workers_listen():
                        return
            except OSError:
                pass
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"ctxgraph serve did not answer on {self.url} in {timeout:.0f} s")

    def _worker_count(self) -> int:
        assert self.proc is not None
        return len(self.server_pids()) - 1

    def _all_workers_listen(self) -> bool:
        """Every worker started, and (Linux) listens on its own socket for the port
        (api/listener.py): wrk opens its connections together, and the kernel spreads
        them over the sockets listening at that moment only. A checkout served with
        --code from before per-worker sockets has one shared socket: after 10 s the
        workers' existence is enough."""
        if self._worker_count() < self.workers:
            return False
        if self._workers_seen is None:
            self._workers_seen = time.monotonic()
        listening = listening_sockets(self.port)
        return (
            listening is None
            or listening >= self.workers
            or time.monotonic() - self._workers_seen > 10
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pgdata(self) -> Path | None:
        """The PostgreSQL data dir when it is on this machine (embedded servers)."""
        if self.data_dir is not None:
            return pgdata_dir(self.data_dir)
        host = parse_qs(urlsplit(self.database_url or "").query).get("host", [""])[0]
        return Path(host) if host and (Path(host) / "postmaster.pid").exists() else None

    def postmaster_pid(self) -> int | None:
        pgdata = self.pgdata()
        if pgdata is None:
            return None
        try:
            return int((pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def server_pids(self) -> set[int]:
        """The serve process and its workers (never the PostgreSQL processes)."""
        assert self.proc is not None
        parents = parent_map()
        ours = descendants(self.proc.pid, parents)
        pm = self.postmaster_pid()
        if pm is not None:
            ours -= descendants(pm, parents)
        return ours

    def worker_pids(self) -> list[int]:
        """The processes that handle requests: the workers, or the serve process itself."""
        assert self.proc is not None
        pids = self.server_pids()
        workers = sorted(p for p in pids if p != self.proc.pid)
        # with --workers > 1 uvicorn's supervisor only watches; the workers serve
        return workers if self.workers > 1 and workers else [self.proc.pid]

    def snapshot(self) -> CpuSnapshot:
        busy, total, steal = machine_ticks()
        pm = self.postmaster_pid()
        parents = parent_map()
        pg = None
        if pm is not None:
            pg_children = [p for p, parent in parents.items() if parent == pm]
            pg = cpu_seconds(pm, reaped_children=True) + sum(cpu_seconds(p) for p in pg_children)
        server = sum(cpu_seconds(p) for p in self.server_pids())
        return CpuSnapshot(time.time(), busy, total, steal, server, pg)
