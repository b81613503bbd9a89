"""API keys over HTTP and WebSocket; what stays open; the open-access warning."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from httpx_ws import AsyncWebSocketSession, WebSocketDisconnect, aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport
from sqlalchemy.ext.asyncio import AsyncConnection

from api.app import create_app
from api.errors import Unauthenticated
from api.security.auth import ApiKeys, authenticate, open_access_warning
from tests.conftest import RollbackConnector, test_settings

KEYS = "first-key-0123456789,second-key-abcdefghij"
QUERY = {"query": "{ contexts(first: 1) { totalCount } }"}


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@asynccontextmanager
async def http_for(conn: AsyncConnection, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(test_settings(**settings), connector=RollbackConnector(conn))
    transport = ASGIWebSocketTransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def assert_unauthenticated(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    message: str = error["message"]
    return message


async def test_graphql_needs_a_key(conn: AsyncConnection) -> None:
    async with http_for(conn, api_keys=KEYS) as http:
        assert "Authorization: Bearer" in assert_unauthenticated(
            await http.post("/graphql", json=QUERY)
        )
        assert "not valid" in assert_unauthenticated(
            await http.post("/graphql", json=QUERY, headers=bearer("first-key-012345678"))
        )
        for bad in ("Basic Zmlyc3Qta2V5", "first-key-0123456789", "Bearer", "Bearer  "):
            assert_unauthenticated(
                await http.post("/graphql", json=QUERY, headers={"authorization": bad})
            )
        # Queries by GET are operations too.
        assert_unauthenticated(await http.get("/graphql", params={"query": "{ __typename }"}))
        assert_unauthenticated(
            await http.get(
                "/graphql", params={"query": "{ __typename }"}, headers={"accept": "text/html"}
            )
        )
        for key in KEYS.split(","):
            ok = await http.post("/graphql", json=QUERY, headers=bearer(key))
            assert ok.status_code == 200
            assert ok.json()["data"]["contexts"]["totalCount"] >= 0
        lower = await http.post(
            "/graphql", json=QUERY, headers={"authorization": "bearer second-key-abcdefghij"}
        )
        assert lower.status_code == 200


async def test_probes_and_ide_page_stay_open(conn: AsyncConnection) -> None:
    async with http_for(conn, api_keys=KEYS) as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200
        page = await http.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        # The metrics are behind the keys (they name operations).
        assert_unauthenticated(await http.get("/metrics"))
        assert (
            await http.get("/metrics", headers=bearer("first-key-0123456789"))
        ).status_code == 200


async def test_unset_keys_mean_open(conn: AsyncConnection) -> None:
    async with http_for(conn) as http:
        response = await http.post("/graphql", json=QUERY)
        assert response.status_code == 200
        assert "errors" not in response.json()


async def test_key_hashes_work_without_the_keys(conn: AsyncConnection) -> None:
    digest = hashlib.sha256(b"only-the-hash-is-configured").hexdigest()
    async with http_for(conn, api_key_hashes=f" {digest.upper()} ") as http:
        assert_unauthenticated(await http.post("/graphql", json=QUERY, headers=bearer("nope")))
        ok = await http.post("/graphql", json=QUERY, headers=bearer("only-the-hash-is-configured"))
        assert ok.status_code == 200


def test_only_digests_are_kept() -> None:
    settings = test_settings(api_keys=KEYS)
    keys = ApiKeys.from_settings(settings)
    assert len(keys.digests) == 2
    assert all(len(d) == 32 for d in keys.digests)
    assert "first-key" not in repr(keys)
    assert "first-key" not in repr(settings)
    with pytest.raises(ValueError, match="SHA-256"):
        ApiKeys.from_settings(test_settings(api_key_hashes="abc"))


def test_authenticate_reads_headers_or_payloads() -> None:
    keys = ApiKeys.from_settings(test_settings(api_keys=KEYS))
    authenticate({"Authorization": "Bearer first-key-0123456789"}, keys)
    authenticate({"authorization": "Bearer second-key-abcdefghij"}, keys)
    for credentials in ({}, {"Authorization": 42}, {"Authorization": "Bearer x"}, None):
        with pytest.raises(Unauthenticated):
            authenticate(credentials, keys)
    authenticate({}, ApiKeys())  # no keys: open


async def ws_outcome(http: httpx.AsyncClient, payload: Any) -> tuple[str, Any]:
    """('ack', result of `{ __typename }`) or ('closed', close code)."""
    codes: list[int] = []
    ws: AsyncWebSocketSession
    try:
        async with aconnect_ws("/graphql", http, subprotocols=["graphql-transport-ws"]) as ws:
            init: dict[str, Any] = {"type": "connection_init"}
            if payload is not None:
                init["payload"] = payload
            await ws.send_json(init)
            reply = await ws.receive_json(timeout=10)
            assert reply["type"] == "connection_ack", reply
            await ws.send_json(
                {"id": "1", "type": "subscribe", "payload": {"query": "{ __typename }"}}
            )
            result = await ws.receive_json(timeout=10)
            return "ack", result["payload"]
    except* WebSocketDisconnect as closed:
        codes = [e.code for e in closed.exceptions if isinstance(e, WebSocketDisconnect)]
    return "closed", codes[0] if codes else None


async def test_websocket_key_in_connection_init(conn: AsyncConnection) -> None:
    async with http_for(conn, api_keys=KEYS) as http:
        assert await ws_outcome(http, None) == ("closed", 4403)
        assert await ws_outcome(http, {}) == ("closed", 4403)
        assert await ws_outcome(http, {"Authorization": "Bearer wrong"}) == ("closed", 4403)
        assert await ws_outcome(http, {"Authorization": "Bearer first-key-0123456789"}) == (
            "ack",
            {"data": {"__typename": "Query"}},
        )
        assert await ws_outcome(http, {"authorization": "Bearer second-key-abcdefghij"}) == (
            "ack",
            {"data": {"__typename": "Query"}},
        )


async def test_websocket_open_without_keys(conn: AsyncConnection) -> None:
    async with http_for(conn) as http:
        assert await ws_outcome(http, {}) == ("ack", {"data": {"__typename": "Query"}})


@pytest.mark.parametrize(
    ("host", "keys", "warns"),
    [
        ("127.0.0.1", None, False),
        ("::1", None, False),
        ("localhost", None, False),
        ("0.0.0.0", None, True),
        ("::", None, True),
        ("192.0.2.10", None, True),
        ("0.0.0.0", KEYS, False),
    ],
)
def test_open_access_warning(host: str, keys: str | None, warns: bool) -> None:
    warning = open_access_warning(host, test_settings(api_keys=keys))
    assert (warning is not None) == warns
    if warning is not None:
        assert "\n" not in warning
        assert "CTXGRAPH_API_KEYS" in warning


async def test_keys_never_reach_the_logs(
    conn: AsyncConnection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with http_for(conn, api_keys=KEYS) as http:
        await http.post("/graphql", json=QUERY, headers=bearer("first-key-0123456789"))
        await http.post("/graphql", json=QUERY, headers=bearer("a-wrong-key-attempt"))
    assert caplog.records, "the access log wrote nothing"
    assert "first-key" not in caplog.text
    assert "a-wrong-key-attempt" not in caplog.text
