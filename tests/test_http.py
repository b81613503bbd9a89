"""HTTP hardening: request ids and the access log, security headers, CORS, /metrics,
a database that goes away (coded, fast, 503, recovers), statement_timeout, and a
graceful shutdown that finishes in-flight requests."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]  # no stubs published
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.app import create_app
from api.db import EmbeddedPostgres, EngineConnector, create_engine
from api.migrate import upgrade_to_head
from tests.conftest import RollbackConnector, test_settings
from tests.dbutil import CTXGRAPH, REPO, _libpq, async_scratch_database, free_port


@asynccontextmanager
async def http_for(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@asynccontextmanager
async def rollback_http(conn: AsyncConnection, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with http_for(
        create_app(test_settings(**settings), connector=RollbackConnector(conn))
    ) as h:
        yield h


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "ctxgraph.access"]


async def test_request_id_and_one_access_line_per_request(
    conn: AsyncConnection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ctxgraph.access")
    async with rollback_http(conn) as http:
        mine = await http.post(
            "/graphql",
            json={
                "query": "query Listing($name: String) { contexts(filter: {nameContains: $name})"
                " { totalCount } }",
                "variables": {"name": "s3cret-variable-value"},
            },
            headers={"x-request-id": "client-id.42"},
        )
        assert mine.headers["x-request-id"] == "client-id.42"
        fresh = await http.post("/graphql", json={"query": "{ __typename }"})
        generated = fresh.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{16}", generated)
        junk = await http.post(
            "/graphql", json={"query": "{ __typename }"}, headers={"x-request-id": "a b" * 50}
        )
        assert re.fullmatch(r"[0-9a-f]{16}", junk.headers["x-request-id"])
        bad = await http.post(
            "/graphql",
            json={"query": 'mutation Broken { renameContext(id: "nope", name: "x") { id } }'},
        )
        assert bad.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        await http.get("/healthz")

    lines = access_lines(caplog)
    assert len(lines) == 5
    first, second, third, fourth, fifth = lines
    assert first["request_id"] == "client-id.42"
    assert first["operation"] == "query"
    assert first["operation_name"] == "Listing"
    assert first["status"] == 200
    assert first["method"] == "POST"
    assert first["path"] == "/graphql"
    assert isinstance(first["duration_ms"], float)
    assert "error_codes" not in first
    assert second["request_id"] == generated
    assert second["operation_name"] is None
    assert fourth["operation"] == "mutation"
    assert fourth["operation_name"] == "Broken"
    assert fourth["error_codes"] == ["BAD_USER_INPUT"]
    assert fifth["path"] == "/healthz"
    assert "operation" not in fifth
    # Structured, one line each, and nothing the client sent beyond names.
    for record in caplog.records:
        assert "\n" not in record.getMessage()
    assert "s3cret-variable-value" not in caplog.text
    assert "nameContains" not in caplog.text


async def test_an_exception_escaping_the_endpoint_is_a_masked_500(
    conn: AsyncConnection, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/graphql skips the router (GraphQLRoute): whatever escapes the endpoint still
    meets the security middlewares, and the 500 carries the request id."""
    from api.graphql.http import GraphQLHTTP

    async def explode(self: Any, scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("endpoint failed: password=hunter2")

    monkeypatch.setattr(GraphQLHTTP, "__call__", explode)
    caplog.set_level(logging.INFO, logger="ctxgraph.access")
    app = create_app(test_settings(), connector=RollbackConnector(conn))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.post(
            "/graphql", json={"query": "{ __typename }"}, headers={"x-request-id": "boom.1"}
        )
    assert response.status_code == 500
    assert "hunter2" not in response.text
    assert response.json() == {
        "errors": [
            {
                "message": "Internal server error (request id boom.1).",
                "extensions": {"code": "INTERNAL_SERVER_ERROR"},
            }
        ]
    }
    assert response.headers["x-request-id"] == "boom.1"
    assert response.headers["x-content-type-options"] == "nosniff"
    [line] = access_lines(caplog)
    assert (line["request_id"], line["status"], line["path"]) == ("boom.1", 500, "/graphql")


async def test_security_headers(conn: AsyncConnection) -> None:
    async with rollback_http(conn, api_keys="k" * 20, max_body_bytes=2048) as http:
        page = await http.get("/graphql", headers={"accept": "text/html"})
        api = await http.post(
            "/graphql",
            json={"query": "{ __typename }"},
            headers={"authorization": "Bearer " + "k" * 20},
        )
        denied = await http.post("/graphql", json={"query": "{ __typename }"})
        too_big = await http.post(
            "/graphql", content=b"x" * 4096, headers={"authorization": "Bearer " + "k" * 20}
        )
    assert (page.status_code, api.status_code, denied.status_code, too_big.status_code) == (
        200,
        200,
        401,
        413,
    )
    for response in (page, api, denied, too_big):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "x-request-id" in response.headers
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "default-src" in csp
    assert api.headers["cache-control"] == "no-store"


async def test_cors(conn: AsyncConnection) -> None:
    preflight_headers = {
        "origin": "https://app.example.com",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
    }
    async with rollback_http(
        conn, cors_origins="https://app.example.com, https://other.example.com/", api_keys="k" * 20
    ) as http:
        preflight = await http.options("/graphql", headers=preflight_headers)
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        allowed = await http.post(
            "/graphql",
            json={"query": "{ __typename }"},
            headers={"origin": "https://other.example.com", "authorization": "Bearer " + "k" * 20},
        )
        assert allowed.headers["access-control-allow-origin"] == "https://other.example.com"
        assert "x-request-id" in allowed.headers["access-control-expose-headers"].lower()
        # A 401 is readable by the allowed page too (so it can ask for a key).
        denied = await http.post(
            "/graphql",
            json={"query": "{ __typename }"},
            headers={"origin": "https://app.example.com"},
        )
        assert denied.status_code == 401
        assert denied.headers["access-control-allow-origin"] == "https://app.example.com"
        evil = await http.post(
            "/graphql",
            json={"query": "{ __typename }"},
            headers={"origin": "https://evil.example", "authorization": "Bearer " + "k" * 20},
        )
        assert "access-control-allow-origin" not in evil.headers
        evil_preflight = await http.options(
            "/graphql", headers={**preflight_headers, "origin": "https://evil.example"}
        )
        assert evil_preflight.status_code == 400
    async with rollback_http(conn) as http:
        plain = await http.post(
            "/graphql",
            json={"query": "{ __typename }"},
            headers={"origin": "https://app.example.com"},
        )
        assert "access-control-allow-origin" not in plain.headers


async def test_metrics(engine: AsyncEngine) -> None:
    app = create_app(test_settings(), connector=EngineConnector(engine))
    async with http_for(app) as http:
        for _ in range(3):
            await http.post("/graphql", json={"query": "query Named { contexts { totalCount } }"})
        await http.post("/graphql", json={"query": 'query Missing { context(id: "x") { id } }'})
        await http.post("/graphql", json={"query": "{ __typename }"})
        # Client-chosen names cannot grow the label set without bound.
        for i in range(230):
            await http.post("/graphql", json={"query": f"query Op{i} {{ __typename }}"})
        text = (await http.get("/metrics")).text
    assert 'ctxgraph_graphql_operations_total{name="Named",outcome="ok",type="query"} 3.0' in text
    assert (
        'ctxgraph_graphql_operations_total{name="Missing",outcome="BAD_USER_INPUT",type="query"}'
        " 1.0" in text
    )
    assert 'ctxgraph_graphql_operations_total{name="anonymous",outcome="ok",type="query"}' in text
    assert (
        'ctxgraph_graphql_operation_duration_seconds_count{name="Named",type="query"} 3.0' in text
    )
    assert 'ctxgraph_http_requests_total{method="POST",route="/graphql",status="200"}' in text
    assert 'ctxgraph_http_request_duration_seconds_bucket{le="+Inf",route="/graphql"}' in text
    names = set(re.findall(r'ctxgraph_graphql_operations_total\{name="([^"]+)"', text))
    assert "other" in names
    assert len(names) <= 200 + 2  # + anonymous and other
    for gauge in ("size", "checked_out", "checked_in", "overflow"):
        assert re.search(rf"^ctxgraph_db_pool_{gauge} \d", text, re.M), gauge
    assert re.search(r"^process_resident_memory_bytes \d", text, re.M)


async def test_metrics_can_be_turned_off(conn: AsyncConnection) -> None:
    async with rollback_http(conn, metrics=False) as http:
        assert (await http.get("/metrics")).status_code == 404


QUERY = {"query": "query Count { contexts { totalCount } }"}


async def test_database_down_fails_fast_coded_503_and_recovers(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pgdata")
    url = server.start()
    await asyncio.to_thread(upgrade_to_head, url)
    settings = test_settings(connect_timeout=30, pool_timeout=30)
    engine = create_engine(url, settings)
    app = create_app(settings, connector=EngineConnector(engine))
    try:
        async with http_for(app) as http:
            assert (await http.post("/graphql", json=QUERY)).status_code == 200
            server.stop()
            for _ in range(3):
                started = time.monotonic()
                down = await http.post("/graphql", json=QUERY)
                # Far below the 30 s connect/pool timeouts: the refusal is immediate.
                assert time.monotonic() - started < 5
                assert down.status_code == 503
                (error,) = down.json()["errors"]
                assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
                assert error["extensions"]["requestId"] == down.headers["x-request-id"]
                assert error["message"].startswith("The database is unavailable")
                assert "asyncpg" not in down.text
                assert "Errno" not in down.text
            ready = await http.get("/readyz")
            assert ready.status_code == 503

            server = EmbeddedPostgres(tmp_path / "pgdata")
            server.start()
            # Back by itself: no restart of the app, the first request already succeeds.
            up = await http.post("/graphql", json=QUERY)
            assert up.status_code == 200, up.text
            assert "errors" not in up.json()
            assert (await http.get("/readyz")).status_code == 200
    finally:
        await engine.dispose()
        server.stop()


async def test_statement_timeout_is_coded(engine: AsyncEngine, database_url: str) -> None:
    settings = test_settings(statement_timeout=0.3)
    timed = create_engine(database_url, settings)
    app = create_app(settings, connector=EngineConnector(timed))
    try:
        async with http_for(app) as http:
            created = await http.post(
                "/graphql",
                json={
                    "query": "mutation($n: String) { createContext(name: $n) { id } }",
                    "variables": {"n": f"timeout-{uuid.uuid4().hex}"},
                },
            )
            cid = created.json()["data"]["createContext"]["id"]
            async with engine.connect() as locker:
                await locker.exec_driver_sql(
                    f"SELECT id FROM contexts WHERE id = '{cid}' FOR UPDATE"
                )
                # The append waits for the row lock until statement_timeout cancels it.
                blocked = await http.post(
                    "/graphql",
                    json={
                        "query": "mutation($id: ID!) { appendMessages(contextId: $id, messages: "
                        '[{role: USER, content: "x"}]) { context { latestVersion } } }',
                        "variables": {"id": cid},
                    },
                )
                await locker.rollback()
            (error,) = blocked.json()["errors"]
            assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
            assert "CTXGRAPH_STATEMENT_TIMEOUT" in error["message"]
            again = await http.post(
                "/graphql",
                json={
                    "query": "mutation($id: ID!) { appendMessages(contextId: $id, messages: "
                    '[{role: USER, content: "x"}]) { context { latestVersion } } }',
                    "variables": {"id": cid},
                },
            )
            assert again.json()["data"]["appendMessages"]["context"]["latestVersion"] == 1
    finally:
        await timed.dispose()


async def _waiting_for_lock(url: str) -> bool:
    conn = await asyncpg.connect(_libpq(url))
    try:
        n = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ctxgraph' "
            "AND wait_event_type = 'Lock'"
        )
        return bool(n)
    finally:
        await conn.close()


@pytest.mark.slow
async def test_sigterm_finishes_in_flight_requests(database_url: str) -> None:
    """`ctxgraph serve` on 0.0.0.0 warns (no keys); on SIGTERM it stops accepting but
    finishes a request that was waiting on a lock, and exits 0."""
    async with async_scratch_database(database_url) as url:
        port = free_port()
        with tempfile.TemporaryFile(mode="w+") as log:
            proc = subprocess.Popen(
                [CTXGRAPH, "serve", "--host", "0.0.0.0", "--port", str(port)],
                env={**os.environ, "DATABASE_URL": url, "CTXGRAPH_SHUTDOWN_TIMEOUT": "60"},
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            base = f"http://127.0.0.1:{port}"
            try:
                async with httpx.AsyncClient(base_url=base, timeout=60) as http:
                    async with asyncio.timeout(60):
                        while True:
                            assert proc.poll() is None, log.seek(0) or log.read()
                            try:
                                if (await http.get("/readyz")).status_code == 200:
                                    break
                            except httpx.TransportError:
                                pass
                            await asyncio.sleep(0.1)
                    created = await http.post(
                        "/graphql", json={"query": 'mutation { createContext(name: "s") { id } }'}
                    )
                    cid = created.json()["data"]["createContext"]["id"]
                    locker = await asyncpg.connect(_libpq(url))
                    tx = locker.transaction()
                    await tx.start()
                    await locker.execute(
                        "SELECT 1 FROM contexts WHERE id = $1 FOR UPDATE", uuid.UUID(cid)
                    )
                    in_flight = asyncio.create_task(
                        http.post(
                            "/graphql",
                            json={
                                "query": "mutation($id: ID!) { appendMessages(contextId: $id, "
                                'messages: [{role: USER, content: "last"}]) '
                                "{ messages { version } } }",
                                "variables": {"id": cid},
                            },
                        )
                    )
                    async with asyncio.timeout(30):
                        while not await _waiting_for_lock(url):
                            await asyncio.sleep(0.05)
                    proc.send_signal(signal.SIGTERM)
                    # New connections are refused once the server stops listening.
                    async with asyncio.timeout(30):
                        while True:
                            try:
                                async with httpx.AsyncClient(timeout=2) as fresh:
                                    await fresh.get(f"{base}/healthz")
                            except httpx.TransportError:
                                break
                            await asyncio.sleep(0.05)
                    assert not in_flight.done()
                    await tx.rollback()
                    await locker.close()
                    response = await in_flight
                    assert response.status_code == 200
                    assert response.json()["data"]["appendMessages"]["messages"] == [{"version": 1}]
                assert await asyncio.to_thread(proc.wait, 60) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                log.seek(0)
                output = log.read()
        warnings = [line for line in output.splitlines() if "without API keys" in line]
        assert len(warnings) == 1, output
        assert "0.0.0.0" in warnings[0]


@pytest.mark.parametrize("enabled", [False, True])
async def test_fastapi_opentelemetry_is_opt_in(
    conn: AsyncConnection, monkeypatch: pytest.MonkeyPatch, enabled: bool
) -> None:
    """CTXGRAPH_OPENTELEMETRY: FastAPI's native spans come from a configured global
    tracer provider only when asked for."""
    from opentelemetry import trace

    asked: list[str] = []

    class Provider(trace.TracerProvider):
        def get_tracer(
            self,
            instrumenting_module_name: str,
            instrumenting_library_version: str | None = None,
            schema_url: str | None = None,
            attributes: Any = None,
        ) -> trace.Tracer:
            asked.append(instrumenting_module_name)
            return trace.NoOpTracer()

    monkeypatch.setattr(trace, "get_tracer_provider", lambda: Provider())
    async with rollback_http(conn, opentelemetry=enabled) as http:
        response = await http.post("/graphql", json={"query": "{ __typename }"})
    assert response.json() == {"data": {"__typename": "Query"}}
    assert bool(asked) is enabled
