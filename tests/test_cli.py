"""The `ctxgraph` command, run as a user would: real processes, real servers."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.dbutil import CTXGRAPH, REPO, running_server


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CTXGRAPH, *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _no_db_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CTXGRAPH_DATABASE_URL"}
    }
    env["CTXGRAPH_DATA_DIR"] = str(tmp_path / "data")
    return env


def test_help_lists_every_command() -> None:
    result = _run("--help")
    assert result.returncode == 0
    for command in ("serve", "migrate", "db-url", "export-schema"):
        assert command in result.stdout


def test_export_schema_to_stdout_matches_committed_file() -> None:
    result = _run("export-schema", "-o", "-")
    assert result.returncode == 0
    assert result.stdout == (REPO / "schema.graphql").read_text()


def test_db_url_prints_external_url() -> None:
    result = _run("db-url", env={"DATABASE_URL": "postgres://u:p@db.example:5432/app"})
    assert result.returncode == 0
    assert result.stdout.strip() == "postgresql://u:p@db.example:5432/app"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://u@h/db", "unsupported scheme"),
        ("postgresql://nobody@127.0.0.1:1/none", "127.0.0.1:1"),
    ],
)
def test_bad_database_url_fails_with_one_clear_line(url: str, expected: str) -> None:
    result = _run("migrate", env={"DATABASE_URL": url})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("ctxgraph:")]
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]


def test_serve_on_external_database(database_url: str) -> None:
    with running_server({"DATABASE_URL": database_url}) as base:
        body = httpx.post(
            f"{base}/graphql", json={"query": "{ contexts(first: 1) { totalCount } }"}, timeout=10
        ).json()
        assert "errors" not in body
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200


def test_serve_embedded_keeps_data_across_restarts(tmp_path: Path) -> None:
    env = _no_db_env(tmp_path)
    mutation = 'mutation { createContext(name: "survivor") { id } }'
    with running_server(env, cwd=tmp_path) as base:
        created = httpx.post(f"{base}/graphql", json={"query": mutation}, timeout=10).json()
    context_id = created["data"]["createContext"]["id"]
    assert (tmp_path / "data" / "pgdata" / "PG_VERSION").exists()
    with running_server(env, cwd=tmp_path) as base:
        query = f'{{ context(id: "{context_id}") {{ name }} }}'
        body = httpx.post(f"{base}/graphql", json={"query": query}, timeout=10).json()
    assert body["data"]["context"] == {"name": "survivor"}
    url = _run("db-url", env=env)
    assert (
        url.stdout.strip()
        == f"postgresql://postgres:@/postgres?host={tmp_path / 'data' / 'pgdata'}"
    )


@pytest.mark.parametrize(("level", "lines"), [("INFO", 3), ("WARNING", 0)])
def test_serve_with_workers_writes_the_access_log(
    database_url: str, level: str, lines: int
) -> None:
    """Worker processes are spawned and configure logging from uvicorn's config: the
    access log (INFO lines of ctxgraph.access) follows CTXGRAPH_LOG_LEVEL there too."""
    output: list[str] = []
    env = {"DATABASE_URL": database_url, "CTXGRAPH_LOG_LEVEL": level}
    with running_server(env, args=["--workers", "2"], output_to=output) as base:
        for _ in range(3):
            body = httpx.post(
                f"{base}/graphql",
                json={"query": "query AccessLogProbe { contexts(first: 1) { totalCount } }"},
                timeout=10,
            ).json()
            assert "errors" not in body
    logged = [
        json.loads(line.split("ctxgraph.access: ", 1)[1])
        for line in output[0].splitlines()
        if "ctxgraph.access: " in line
    ]
    probes = [line for line in logged if line.get("operation_name") == "AccessLogProbe"]
    assert len(probes) == lines, output[0][-3000:]
    assert all(p["status"] == 200 and p["operation"] == "query" for p in probes)
