"""Health and readiness endpoints."""

from __future__ import annotations

import httpx

from api.app import create_app
from api.db import EngineConnector, create_engine
from api.migrate import head_revision
from tests.conftest import GraphQLClient, test_settings
from tests.dbutil import async_scratch_database


async def test_healthz(client: GraphQLClient) -> None:
    response = await client.http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_when_migrated(client: GraphQLClient) -> None:
    response = await client.http.get("/readyz")
    assert response.status_code == 200
    assert response.json()["revision"] == head_revision()


async def _readyz_status(url: str) -> httpx.Response:
    engine = create_engine(url, test_settings())
    try:
        app = create_app(test_settings(), connector=EngineConnector(engine))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await http.get("/readyz")
    finally:
        await engine.dispose()


async def test_readyz_503_when_not_migrated(database_url: str) -> None:
    async with async_scratch_database(database_url) as url:
        response = await _readyz_status(url)
    assert response.status_code == 503
    assert response.json()["status"] in {"database not migrated", "database unavailable"}


async def test_readyz_503_when_database_unreachable() -> None:
    response = await _readyz_status("postgresql://nobody@127.0.0.1:1/none")
    assert response.status_code == 503
    assert response.json() == {"status": "database unavailable"}
