"""Protocol edges answered by their specs (issue 20, items 6-9).

GraphQL over HTTP: every error response is a GraphQL JSON response with
`extensions.code`; a mutation over GET is 405 with `Allow: POST`; several
operations without operationName is a request error; under
application/graphql-response+json request errors are 4xx without `data`; the
npm package graphql-http's audit passes with no warning against a real server.
graphql-transport-ws over a real WebSocket: malformed messages close 4400, a
null connection_init payload is accepted.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from httpx_ws import AsyncWebSocketSession, WebSocketDisconnect, aconnect_ws
from sqlalchemy.ext.asyncio import AsyncConnection

from api.app import create_app
from tests.conftest import RollbackConnector, test_settings
from tests.dbutil import REPO, running_server

GRAPHQL_RESPONSE = "application/graphql-response+json"
TS_CLIENT = REPO / "clients" / "typescript"


@pytest.fixture
async def http(conn: AsyncConnection) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(test_settings(), connector=RollbackConnector(conn))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def graphql_error(response: httpx.Response, media_type: str = "application/json") -> str:
    """The code of the one error of a GraphQL error response (which has no data)."""
    assert response.headers["content-type"] == media_type, response.headers
    body = response.json()
    assert "data" not in body, body
    (error,) = body["errors"]
    code: str = error["extensions"]["code"]
    assert error["message"]
    return code


JSON = {"content-type": "application/json"}

BAD_BODIES: list[tuple[str, dict[str, str], bytes, int]] = [
    ("invalid JSON", JSON, b'{"query": "{ __typename }"', 400),
    ("invalid UTF-8", JSON, b'{"query": "{ __typename \xff }"}', 400),
    ("not an object", JSON, b'"{ __typename }"', 400),
    ("empty body", JSON, b"", 400),
    ("non-string query", JSON, b'{"query": 42}', 400),
    ("object query", JSON, b'{"query": {"a": 1}}', 400),
    ("non-object variables", JSON, b'{"query": "{ __typename }", "variables": [1]}', 400),
    ("string variables", JSON, b'{"query": "{ __typename }", "variables": "{}"}', 400),
    ("non-string operationName", JSON, b'{"query": "{ __typename }", "operationName": 1}', 400),
    ("non-object extensions", JSON, b'{"query": "{ __typename }", "extensions": "x"}', 400),
    ("no query", JSON, b'{"qeury": "{ __typename }"}', 400),
    ("batch item not an object", JSON, b"[1]", 400),
    ("no content type", {}, b'{"query": "{ __typename }"}', 415),
    ("form body", {"content-type": "application/x-www-form-urlencoded"}, b"query=x", 415),
    ("another charset", {"content-type": "application/json; charset=latin-1"}, b"{}", 415),
    (
        "deep JSON",
        JSON,
        b'{"query": "{ __typename }", "variables": {"a": ' + b"[" * 200 + b"]" * 200 + b"}}",
        400,
    ),
]


@pytest.mark.parametrize(
    ("headers", "body", "status"), [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES]
)
@pytest.mark.parametrize("accept", ["application/json", GRAPHQL_RESPONSE])
async def test_undecodable_requests_are_graphql_errors(
    http: httpx.AsyncClient, headers: dict[str, str], body: bytes, status: int, accept: str
) -> None:
    response = await http.post("/graphql", content=body, headers={**headers, "accept": accept})
    assert response.status_code == status, response.text
    assert graphql_error(response, accept) == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    "query_string",
    [
        "query=%7B__typename%7D&variables=%5B1%5D",
        "query=%7B__typename%7D&variables=%7Bnope",
        "query=%7B__typename%7D&extensions=1",
        "query=%7B__typename%7D&query=%7B__typename%7D",
        "query=%FF",
        "x=1",
    ],
)
async def test_undecodable_gets_are_graphql_errors(
    http: httpx.AsyncClient, query_string: str
) -> None:
    response = await http.get(f"/graphql?{query_string}")
    assert response.status_code == 400, response.text
    assert graphql_error(response) == "BAD_USER_INPUT"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
async def test_other_methods_are_405(http: httpx.AsyncClient, method: str) -> None:
    response = await http.request(method, "/graphql", json={"query": "{ __typename }"})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert graphql_error(response) == "BAD_USER_INPUT"


async def test_a_mutation_over_get_is_405_allow_post(
    http: httpx.AsyncClient, statements: Any
) -> None:
    statements.clear()
    for accept in ("application/json", GRAPHQL_RESPONSE):
        response = await http.get(
            "/graphql",
            params={"query": 'mutation { createContext(name: "by GET") { id } }'},
            headers={"accept": accept},
        )
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        assert graphql_error(response, accept) == "BAD_USER_INPUT"
    assert len(statements) == 0


@pytest.mark.parametrize("accept", ["application/json", GRAPHQL_RESPONSE])
async def test_several_operations_need_an_operation_name(
    http: httpx.AsyncClient, accept: str
) -> None:
    document = "query A { __typename } query B { __typename }"
    response = await http.post("/graphql", json={"query": document}, headers={"accept": accept})
    assert response.status_code == (400 if accept == GRAPHQL_RESPONSE else 200)
    assert graphql_error(response, accept) == "BAD_USER_INPUT"
    assert "operationName" in response.json()["errors"][0]["message"]
    named = await http.post(
        "/graphql", json={"query": document, "operationName": "B"}, headers={"accept": accept}
    )
    assert named.json() == {"data": {"__typename": "Query"}}
    unknown = await http.post(
        "/graphql", json={"query": document, "operationName": "C"}, headers={"accept": accept}
    )
    assert graphql_error(unknown, accept) == "BAD_USER_INPUT"


REQUEST_ERRORS = [
    ("parse", {"query": "{ contexts {"}),
    ("validation", {"query": "{ nope }"}),
    ("coercion", {"query": "query($id: ID!) { context(id: $id) { id } }", "variables": {}}),
    (
        "limits",
        {"query": "{ contexts(first: 500) { nodes { messages(last: 500) { nodes { id } } } } }"},
    ),
]


@pytest.mark.parametrize(("kind", "payload"), REQUEST_ERRORS, ids=[r[0] for r in REQUEST_ERRORS])
async def test_request_errors_by_media_type(
    http: httpx.AsyncClient, kind: str, payload: dict[str, Any]
) -> None:
    """application/graphql-response+json: 400 and no data; application/json: 200 (what
    legacy clients expect), no data either."""
    modern = await http.post("/graphql", json=payload, headers={"accept": GRAPHQL_RESPONSE})
    assert modern.status_code == 400
    code = graphql_error(modern, GRAPHQL_RESPONSE)
    assert code == ("QUERY_TOO_COMPLEX" if kind == "limits" else "BAD_USER_INPUT")
    legacy = await http.post("/graphql", json=payload, headers={"accept": "application/json"})
    assert legacy.status_code == 200
    assert graphql_error(legacy) == code


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE}, application/json;q=0.9", GRAPHQL_RESPONSE),
        (f"application/json, {GRAPHQL_RESPONSE};q=0.5", "application/json"),
        ("application/json", "application/json"),
        ("*/*", "application/json"),
        ("", "application/json"),
        ("text/plain", "application/json"),
    ],
)
async def test_media_type_negotiation(
    http: httpx.AsyncClient, accept: str, media_type: str
) -> None:
    headers = {"accept": accept} if accept else {}
    response = await http.post("/graphql", json={"query": "{ __typename }"}, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.json() == {"data": {"__typename": "Query"}}


# --- the graphql-http audit, against a real server ------------------------------------------


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[str]:
    with running_server({"DATABASE_URL": database_url}) as base:
        yield base


@pytest.mark.slow
def test_graphql_over_http_audit(server: str) -> None:
    """graphql-http's serverAudits (clients/typescript/src/audit-http.ts): 0 errors,
    0 warnings. Needs the TypeScript client's npm install, which CI does first."""
    installed = (TS_CLIENT / "node_modules" / "graphql-http").is_dir()
    if not installed or shutil.which("node") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run `npm ci` in clients/typescript before the tests")
        pytest.skip("run `npm ci` in clients/typescript (Node.js 20) for the audit")
    tsx = TS_CLIENT / "node_modules" / ".bin" / "tsx"
    done = subprocess.run(
        [str(tsx), "src/audit-http.ts", f"{server}/graphql"],
        cwd=TS_CLIENT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert ", 0 warnings, 0 errors" in done.stdout, done.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "raw",
    [b"GARBAGE\r\n\r\n", b"GET /graphql HTTP/1.1\r\nBad Header\r\n\r\n", b"\x00\x01\x02\r\n\r\n"],
    ids=["request line", "header line", "binary"],
)
def test_malformed_http_is_a_graphql_error(server: str, raw: bytes) -> None:
    """What the HTTP parser itself refuses is answered like everything else: JSON."""
    parts = urlsplit(server)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(raw)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), received
    assert b"content-type: application/json" in head.lower()
    (error,) = json.loads(body)["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


# --- graphql-transport-ws edges, over a real WebSocket ---------------------------------------


async def ws_exchange(base: str, frames: list[str]) -> list[Any] | int:
    """The replies to `frames` (text frames sent one by one, each awaiting a reply), or
    the close code if the server closed the socket."""
    url = base.replace("http://", "ws://") + "/graphql"
    replies: list[Any] = []
    closed: list[int] = []
    async with httpx.AsyncClient() as client:
        ws: AsyncWebSocketSession
        try:
            async with aconnect_ws(url, client, subprotocols=["graphql-transport-ws"]) as ws:
                for frame in frames:
                    await ws.send_text(frame)
                    replies.append(await ws.receive_json(timeout=10))
        except* WebSocketDisconnect as disconnected:
            closed = [e.code for e in disconnected.exceptions if isinstance(e, WebSocketDisconnect)]
    return closed[0] if closed else replies


INIT = json.dumps({"type": "connection_init"})


@pytest.mark.slow
@pytest.mark.parametrize(
    "frames",
    [
        ["[]"],
        ['"x"'],
        ["123"],
        ["null"],
        ['{"type": 1}'],
        ["{}"],
        ["not json"],
        [INIT, '{"id": 1, "type": "subscribe", "payload": {"query": "{ __typename }"}}'],
        [INIT, '{"id": "", "type": "subscribe", "payload": {"query": "{ __typename }"}}'],
        [INIT, '{"id": "1", "type": "subscribe", "payload": {"query": 5}}'],
        [INIT, '{"id": "1", "type": "subscribe", "payload": {"query": {"a": 1}}}'],
        [INIT, '{"id": "1", "type": "subscribe", "payload": null}'],
        [
            INIT,
            json.dumps(
                {"id": "1", "type": "subscribe", "payload": {"query": "{ a }", "variables": []}}
            ),
        ],
        [INIT, '{"id": 7, "type": "complete"}'],
    ],
    ids=[
        "array",
        "string",
        "number",
        "null",
        "numeric type",
        "no type",
        "not JSON",
        "numeric id",
        "empty id",
        "numeric query",
        "object query",
        "null payload",
        "array variables",
        "numeric complete id",
    ],
)
async def test_malformed_messages_close_4400(server: str, frames: list[str]) -> None:
    assert await ws_exchange(server, frames) == 4400


@pytest.mark.slow
async def test_null_connection_init_payload_is_accepted(server: str) -> None:
    replies = await ws_exchange(
        server,
        [
            json.dumps({"type": "connection_init", "payload": None}),
            json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "{ __typename }"}}),
        ],
    )
    assert replies == [
        {"type": "connection_ack"},
        {"id": "1", "type": "next", "payload": {"data": {"__typename": "Query"}}},
    ]


@pytest.mark.slow
async def test_a_request_error_ends_only_its_operation(server: str) -> None:
    replies = await ws_exchange(
        server,
        [
            INIT,
            json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "{ nope }"}}),
            json.dumps({"id": "2", "type": "subscribe", "payload": {"query": "{ __typename }"}}),
        ],
    )
    assert isinstance(replies, list)
    assert replies[1]["type"] == "error"
    assert replies[1]["id"] == "1"
    assert replies[1]["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert replies[2] == {"id": "2", "type": "next", "payload": {"data": {"__typename": "Query"}}}
