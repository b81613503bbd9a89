"""Helpers for tests that need a database of their own or a running server."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
CTXGRAPH = str(Path(sys.executable).parent / "ctxgraph")


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(_libpq(url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def scratch_database(url: str) -> Iterator[str]:
    """A new, empty database on the test server (dropped afterwards); yields its URL.

    For sync tests (Alembic runs its own event loop)."""
    name = f"scratch_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(url, f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(url, name)
    finally:
        asyncio.run(_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@asynccontextmanager
async def async_scratch_database(url: str) -> AsyncIterator[str]:
    """`scratch_database` for async tests."""
    name = f"scratch_{uuid.uuid4().hex[:12]}"
    await _admin(url, f'CREATE DATABASE "{name}"')
    try:
        yield with_database(url, name)
    finally:
        await _admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def running_server(
    env: dict[str, str],
    cwd: Path | None = None,
    timeout: float = 60.0,
    args: Sequence[str] = (),
    output_to: list[str] | None = None,
    process_to: list[subprocess.Popen[bytes]] | None = None,
) -> Iterator[str]:
    """`ctxgraph serve [args]` in a subprocess; yields its base URL once /readyz is 200.
    After it stopped, its output is appended to `output_to` when given; the process is
    appended to `process_to` once started."""
    port = free_port()
    with tempfile.TemporaryFile(mode="w+") as log:
        # A file, not a pipe: an unread pipe would block a chatty server.
        proc = subprocess.Popen(
            [CTXGRAPH, "serve", "--port", str(port), *args],
            env={**os.environ, **env},
            cwd=cwd or REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if process_to is not None:
            process_to.append(proc)

        def output() -> str:
            log.seek(0)
            return log.read()

        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"server exited early:\n{output()}")
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"server did not become ready in time:\n{output()}")
                time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if output_to is not None:
                output_to.append(output())
            # pytest shows this only for a failing test: the server's side of the story
            print(f"--- ctxgraph serve on {base}, last output:\n{output()[-20_000:]}")  # noqa: T201
