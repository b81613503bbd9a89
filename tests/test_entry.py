"""Every way into an operation is authenticated after parsing (issue 20, items 1-2).

A real `ctxgraph serve` with an API key gets the requests a client could craft,
byte for byte over a socket (percent-encoded and repeated parameter names,
`;`-separated parameters, persisted queries by hash over GET and POST, a text a
plan has answered before, a batch, other methods, a WebSocket): without the key
every one is 401 (4403 on a WebSocket) and no byte of data comes back. Only a
GET that decodes to no GraphQL parameter and prefers text/html gets the IDE page.
"""

from __future__ import annotations

import hashlib
import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from httpx_ws import AsyncWebSocketSession, WebSocketDisconnect, aconnect_ws

from api.graphql.operation import Operations
from tests.dbutil import running_server
from tests.test_auth import http_for

KEY = "entry-test-key-0123456789"
QUERY = "{ contexts(first: 2) { nodes { id name } } }"
VARIABLES_QUERY = "query Q($n: Int) { contexts(first: $n) { nodes { id } } }"
HASH = hashlib.sha256(QUERY.encode()).hexdigest()
APQ = {"persistedQuery": {"version": 1, "sha256Hash": HASH}}
HTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def q(value: str) -> str:
    return quote(value, safe="")


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[str]:
    env = {
        "DATABASE_URL": database_url,
        "CTXGRAPH_API_KEYS": KEY,
        "CTXGRAPH_MAX_BATCH_OPERATIONS": "5",
    }
    with running_server(env) as base:
        # what a client with the key did before: the text ran (by its plan) and its
        # hash was registered for automatic persisted queries
        learnt = httpx.post(
            f"{base}/graphql",
            json={"query": QUERY, "extensions": APQ},
            headers={"authorization": f"Bearer {KEY}"},
        )
        assert learnt.status_code == 200, learnt.text
        assert "errors" not in learnt.json()
        yield base


def raw(
    base: str, method: str, target: str, headers: dict[str, str], body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request with exactly this target (no client-side re-encoding)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.request(method, target, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


JSON = {"content-type": "application/json"}

WAYS_IN: list[tuple[str, str, str, dict[str, str], bytes | None]] = [
    ("POST", "POST", "/graphql", JSON, json.dumps({"query": QUERY}).encode()),
    (
        "POST preferring graphql-response+json",
        "POST",
        "/graphql",
        {**JSON, "accept": "application/graphql-response+json"},
        json.dumps({"query": QUERY}).encode(),
    ),
    ("GET, curl's Accept", "GET", f"/graphql?query={q(QUERY)}", {"accept": "*/*"}, None),
    ("GET, a browser's Accept", "GET", f"/graphql?query={q(QUERY)}", {"accept": HTML}, None),
    ("GET, no Accept", "GET", f"/graphql?query={q(QUERY)}", {}, None),
    ("GET %71uery", "GET", f"/graphql?%71uery={q(QUERY)}", {"accept": "*/*"}, None),
    ("GET %71uery from a browser", "GET", f"/graphql?%71uery={q(QUERY)}", {"accept": HTML}, None),
    ("GET %71%75%65%72%79", "GET", f"/graphql?%71%75%65%72%79={q(QUERY)}", {"accept": HTML}, None),
    (
        "GET %71uery with variables",
        "GET",
        f"/graphql?%71uery={q(VARIABLES_QUERY)}&%76ariables={q(json.dumps({'n': 2}))}",
        {"accept": HTML},
        None,
    ),
    (
        "GET query twice",
        "GET",
        f"/graphql?query={q(QUERY)}&query={q(QUERY)}",
        {"accept": HTML},
        None,
    ),
    (
        "GET query twice, once encoded",
        "GET",
        f"/graphql?%71uery={q(QUERY)}&query=%7B__typename%7D",
        {"accept": HTML},
        None,
    ),
    ("GET ;-separated", "GET", f"/graphql?x=1;query={q(QUERY)}", {"accept": "*/*"}, None),
    ("GET &; mixed", "GET", f"/graphql?x=1&;query={q(QUERY)}", {"accept": "*/*"}, None),
    ("GET APQ by hash", "GET", f"/graphql?extensions={q(json.dumps(APQ))}", {"accept": HTML}, None),
    (
        "GET APQ by hash, encoded name",
        "GET",
        f"/graphql?%65xtensions={q(json.dumps(APQ))}",
        {"accept": HTML},
        None,
    ),
    ("GET documentId", "GET", f"/graphql?documentId=sha256:{HASH}", {"accept": HTML}, None),
    ("GET operationName only", "GET", "/graphql?operationName=Q", {"accept": HTML}, None),
    (
        "GET variables only",
        "GET",
        f"/graphql?variables={q(json.dumps({'n': 1}))}",
        {"accept": HTML},
        None,
    ),
    ("POST APQ by hash", "POST", "/graphql", JSON, json.dumps({"extensions": APQ}).encode()),
    (
        "POST APQ with the text",
        "POST",
        "/graphql",
        JSON,
        json.dumps({"query": QUERY, "extensions": APQ}).encode(),
    ),
    (
        "POST documentId",
        "POST",
        "/graphql",
        JSON,
        json.dumps({"documentId": f"sha256:{HASH}"}).encode(),
    ),
    ("POST batch", "POST", "/graphql", JSON, json.dumps([{"query": QUERY}] * 2).encode()),
    ("POST batch of APQ", "POST", "/graphql", JSON, json.dumps([{"extensions": APQ}]).encode()),
    (
        "POST form-encoded",
        "POST",
        "/graphql",
        {"content-type": "application/x-www-form-urlencoded"},
        f"query={q(QUERY)}".encode(),
    ),
    ("POST malformed JSON", "POST", "/graphql", JSON, b'{"query": '),
    ("PUT", "PUT", "/graphql", JSON, json.dumps({"query": QUERY}).encode()),
    ("GET with no parameter, JSON Accept", "GET", "/graphql", {"accept": "*/*"}, None),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "target", "headers", "body"),
    [way[1:] for way in WAYS_IN],
    ids=[way[0] for way in WAYS_IN],
)
@pytest.mark.parametrize("key", [None, "Bearer wrong-key"], ids=["no key", "wrong key"])
def test_every_way_in_needs_the_key(
    server: str,
    method: str,
    target: str,
    headers: dict[str, str],
    body: bytes | None,
    key: str | None,
) -> None:
    if key is not None:
        headers = {**headers, "authorization": key}
    status, response_headers, payload = raw(server, method, target, headers, body)
    assert status == 401, payload
    assert response_headers["www-authenticate"].startswith("Bearer")
    answer = json.loads(payload)
    assert "data" not in answer
    (error,) = answer["errors"]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert "nodes" not in payload.decode()
    assert "contexts" not in payload.decode()


@pytest.mark.slow
def test_the_same_ways_in_run_with_the_key(server: str) -> None:
    """The ways in above are real ways in: with the key they run (or are refused for
    what they are), so the 401s are the key's doing."""
    auth = {"authorization": f"Bearer {KEY}"}
    for target in (
        f"/graphql?query={q(QUERY)}",
        f"/graphql?%71uery={q(QUERY)}",
        f"/graphql?extensions={q(json.dumps(APQ))}",
        f"/graphql?documentId=sha256:{HASH}",
    ):
        status, _, payload = raw(server, "GET", target, {"accept": HTML, **auth})
        assert status == 200, (target, payload)
        assert "nodes" in json.loads(payload)["data"]["contexts"], target
    status, _, payload = raw(server, "GET", f"/graphql?x=1;query={q(QUERY)}", {**auth})
    assert status == 400, payload
    assert json.loads(payload)["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    twice = f"/graphql?query={q(QUERY)}&%71uery={q(QUERY)}"
    status, _, payload = raw(server, "GET", twice, {**auth})
    assert status == 400, payload
    assert "more than once" in json.loads(payload)["errors"][0]["message"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "target",
    ["/graphql", "/graphql?x=1;query=" + q(QUERY), "/graphql?Query=" + q(QUERY)],
    ids=["no parameters", ";-separated", "another parameter's name"],
)
def test_only_a_get_without_graphql_parameters_gets_the_ide(server: str, target: str) -> None:
    """Decoded to no GraphQL parameter and preferring HTML: the page, which holds no
    data, with or without a key."""
    status, headers, payload = raw(server, "GET", target, {"accept": HTML})
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert b"<html" in payload.lower()
    assert b'"data"' not in payload


async def _ws_close_code(base: str, init: dict[str, Any]) -> int | None:
    url = base.replace("http://", "ws://") + "/graphql"
    codes: list[int] = []
    async with httpx.AsyncClient() as http:
        ws: AsyncWebSocketSession
        try:
            async with aconnect_ws(url, http, subprotocols=["graphql-transport-ws"]) as ws:
                await ws.send_json(init)
                reply = await ws.receive_json(timeout=10)
                assert reply["type"] != "connection_ack", reply
        except* WebSocketDisconnect as closed:
            codes = [e.code for e in closed.exceptions if isinstance(e, WebSocketDisconnect)]
    return codes[0] if codes else None


@pytest.mark.slow
@pytest.mark.parametrize(
    "init",
    [
        {"type": "connection_init"},
        {"type": "connection_init", "payload": None},
        {"type": "connection_init", "payload": {}},
        {"type": "connection_init", "payload": {"Authorization": "Bearer wrong"}},
        {"type": "connection_init", "payload": {"Authorization": KEY}},
    ],
    ids=["no payload", "null payload", "empty payload", "wrong key", "no Bearer"],
)
async def test_websocket_without_the_key_is_4403(server: str, init: dict[str, Any]) -> None:
    assert await _ws_close_code(server, init) == 4403


@pytest.mark.slow
async def test_websocket_subscribe_before_init_is_refused(server: str) -> None:
    url = server.replace("http://", "ws://") + "/graphql"
    subscribe = {"id": "1", "type": "subscribe", "payload": {"query": QUERY}}
    async with httpx.AsyncClient() as http:
        ws: AsyncWebSocketSession
        with pytest.raises(ExceptionGroup) as refused:  # noqa: PT012
            async with aconnect_ws(url, http, subprotocols=["graphql-transport-ws"]) as ws:
                await ws.send_json(subscribe)
                await ws.receive_json(timeout=10)
    codes = [e.code for e in refused.value.exceptions if isinstance(e, WebSocketDisconnect)]
    assert codes == [4401]


# --- one entry: every step before execution runs on every path and transport ----------------
# (issue 21, item 1). The steps are the entry's own list (Operations.STEPS): a step added
# there is checked here on every path without changing this test.

PATH_CASES: dict[str, tuple[str, bool]] = {
    "planned read": (
        "query Chat($id: ID!) { context(id: $id) { id messages(last: 5) { nodes { id } } } }",
        True,
    ),
    "read by graphql-core": (
        "query Tree($id: ID!) { context(id: $id) { id descendants { nodes { id } } } }",
        False,
    ),
    "planned append": (
        "mutation Append($id: ID!) { appendMessages(contextId: $id, messages: "
        '[{role: USER, content: "x"}]) { messages { id } } }',
        True,
    ),
    "mutation by graphql-core": (
        'mutation Rename($id: ID!) { renameContext(id: $id, name: "n") { id } }',
        False,
    ),
}
TRANSPORTS = ["POST", "GET", "batch", "WebSocket"]
COMBINATIONS = [
    (case, transport)
    for case in PATH_CASES
    for transport in TRANSPORTS
    if not (transport == "GET" and case.startswith(("planned append", "mutation")))
]


async def _send(
    http: httpx.AsyncClient, transport: str, text: str, variables: dict[str, Any], key: str | None
) -> dict[str, Any]:
    """One operation over `transport`; its GraphQL result (or refusal) as a dict."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    payload = {"query": text, "variables": variables}
    if transport == "POST":
        return dict((await http.post("/graphql", json=payload, headers=headers)).json())
    if transport == "GET":
        params = {"query": text, "variables": json.dumps(variables)}
        return dict((await http.get("/graphql", params=params, headers=headers)).json())
    if transport == "batch":
        answer = (await http.post("/graphql", json=[payload], headers=headers)).json()
        return dict(answer[0] if isinstance(answer, list) else answer)
    init: dict[str, Any] = {"type": "connection_init", "payload": {}}
    if key:
        init["payload"] = {"Authorization": f"Bearer {key}"}
    reply: dict[str, Any] = {}
    ws: AsyncWebSocketSession
    try:
        async with aconnect_ws("/graphql", http, subprotocols=["graphql-transport-ws"]) as ws:
            await ws.send_json(init)
            ack = await ws.receive_json(timeout=10)
            assert ack["type"] == "connection_ack", ack
            await ws.send_json({"id": "1", "type": "subscribe", "payload": payload})
            message = await ws.receive_json(timeout=10)
            reply = (
                message["payload"] if message["type"] == "next" else {"errors": message["payload"]}
            )
    except* WebSocketDisconnect as closed:
        codes = [e.code for e in closed.exceptions if isinstance(e, WebSocketDisconnect)]
        reply = {"closed": codes[0] if codes else None}
    return reply


async def _context_id(http: httpx.AsyncClient, key: str | None = None) -> str:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    created = await http.post(
        "/graphql",
        json={"query": 'mutation { createContext(name: "entry") { id } }'},
        headers=headers,
    )
    return str(created.json()["data"]["createContext"]["id"])


@pytest.mark.parametrize(("case", "transport"), COMBINATIONS)
async def test_every_step_runs_on_every_path(
    conn: Any,
    case: str,
    transport: str,
    monkeypatch: pytest.MonkeyPatch,
    plan_runs: list[bool],
    executed: list[str | None],
) -> None:
    text, planned = PATH_CASES[case]
    ran: list[str] = []
    for step in Operations.STEPS:
        original = getattr(Operations, f"_step_{step}")

        async def counted(self: Any, admission: Any, _o: Any = original, _s: str = step) -> None:
            ran.append(_s)
            await _o(self, admission)

        monkeypatch.setattr(Operations, f"_step_{step}", counted)
    async with http_for(conn, max_batch_operations=2) as http:
        cid = await _context_id(http)
        ran.clear()
        plan_runs.clear()
        executed.clear()
        answer = await _send(http, transport, text, {"id": cid}, None)
    assert "errors" not in answer, answer
    assert ran == list(Operations.STEPS)  # each step once, in order
    # and then the path this operation takes, and only that one
    assert (plan_runs, executed) == (([True], []) if planned else ([], [text]))


@pytest.mark.parametrize(("case", "transport"), COMBINATIONS)
async def test_credentials_limits_and_reporting_on_every_path(
    conn: Any, case: str, transport: str, statements: Any
) -> None:
    """The concerns the steps and the reporting implement, observed from outside on
    each path: no key, no SQL; over the limits, no SQL; every operation counted by
    name in /metrics."""
    text, _ = PATH_CASES[case]
    name = text.split("(")[0].split()[-1]
    async with http_for(conn, api_keys=KEY, max_batch_operations=2) as http:
        cid = await _context_id(http, KEY)
        statements.clear()
        refused = await _send(http, transport, text, {"id": cid}, None)
        if transport == "WebSocket":
            assert refused == {"closed": 4403}
        else:
            assert refused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
            assert "data" not in refused
        assert len(statements) == 0
        ok = await _send(http, transport, text, {"id": cid}, KEY)
        assert "errors" not in ok, ok
        metrics = await http.get("/metrics", headers={"authorization": f"Bearer {KEY}"})
        assert f'name="{name}",outcome="ok"' in metrics.text
    async with http_for(conn, max_query_depth=1, max_batch_operations=2) as http:
        statements.clear()
        over = await _send(http, transport, text, {"id": cid}, None)
        assert over["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX", over
        assert len(statements) == 0
