"""Persisted queries: APQ as Apollo Client and urql do it, GET queries, trusted documents.

The protocol tests drive the real client libraries (clients/typescript/src/apq.ts,
Apollo's PersistedQueryLink and urql's persistedExchange, and the generated
client's e2e script) against a real `ctxgraph serve`; the edge cases go
through the ASGI app.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from graphql import parse, specified_rules, validate
from graphql.validation import NoDeprecatedCustomRule, NoUnusedFragmentsRule
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from api.app import create_app
from api.graphql.schema import build_schema
from api.persisted_queries import DocumentCache, load_trusted_documents, sha256_hex
from tests.conftest import RollbackConnector, test_settings
from tests.dbutil import REPO, running_server

TS_CLIENT = REPO / "clients" / "typescript"
MANIFEST = TS_CLIENT / "src" / "gql" / "persisted-documents.json"
CONTEXTS_QUERY = (
    "query Count($run: JSON) { contexts(filter: {metadataContains: $run}) { totalCount } }"
)


# --- the real clients against a real server -----------------------------------------


@pytest.fixture(scope="module")
def node_client() -> Path:
    """clients/typescript with its locked dependencies installed (npm ci when missing)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js is not installed: the client-library tests need node and npm")
    if not (TS_CLIENT / "node_modules" / ".package-lock.json").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=TS_CLIENT, check=True, timeout=600
        )
    return TS_CLIENT


def run_ts(client_dir: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", str(client_dir / "node_modules" / ".bin" / "tsx"), script, *args],
        cwd=client_dir,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def apq_server(database_url: str) -> Iterator[str]:
    """A fresh server: its APQ store starts empty."""
    with running_server({"DATABASE_URL": database_url}) as base:
        yield f"{base}/graphql"


def summary(exchanges: list[dict[str, Any]]) -> list[tuple[str, str, int, str]]:
    """(method, 'query'|'hash', status, first error message or 'data') per exchange."""
    rows = []
    for exchange in exchanges:
        body = exchange["body"]
        outcome = body["errors"][0]["message"] if body.get("errors") else "data"
        sent = "query" if exchange["sentQuery"] else "hash"
        rows.append((exchange["method"], sent, exchange["status"], outcome))
    return rows


@pytest.mark.slow
def test_apollo_and_urql_automatic_persisted_queries(node_client: Path, apq_server: str) -> None:
    run = uuid.uuid4().hex
    done = run_ts(node_client, "src/apq.ts", "--url", apq_server, "--run", run)
    assert done.returncode == 0, done.stderr
    steps = json.loads(done.stdout)["steps"]
    for name, step in steps.items():
        assert step["error"] is None, (name, step)

    # Apollo: the first request of each document is hash-only and answered with
    # the error Apollo looks for; the link retries with the text (POST).
    first = steps["apollo mutation, first time"]["exchanges"]
    assert summary(first) == [
        ("POST", "hash", 200, "PersistedQueryNotFound"),
        ("POST", "query", 200, "data"),
    ]
    assert first[0]["body"]["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert summary(steps["apollo mutation, known hash"]["exchanges"]) == [
        ("POST", "hash", 200, "data")
    ]
    assert summary(steps["apollo query, first time"]["exchanges"]) == [
        ("GET", "hash", 200, "PersistedQueryNotFound"),
        ("POST", "query", 200, "data"),
    ]
    # Afterwards a hash-only GET runs the stored text: a cacheable URL.
    known = steps["apollo query, known hash"]["exchanges"]
    assert summary(known) == [("GET", "hash", 200, "data")]
    assert known[0]["body"]["data"]["contexts"]["totalCount"] == 2  # both mutations ran
    # urql retries a GET as a GET with the text in the URL: registration over GET.
    assert summary(steps["urql query, first time"]["exchanges"]) == [
        ("GET", "hash", 200, "PersistedQueryNotFound"),
        ("GET", "query", 200, "data"),
    ]
    assert summary(steps["urql query, known hash"]["exchanges"]) == [("GET", "hash", 200, "data")]
    # a document whose URL would be too long (a chat page with every message's parts):
    # the hash still goes first as a GET, the text in a POST
    assert summary(steps["urql long query, first time"]["exchanges"]) == [
        ("GET", "hash", 200, "PersistedQueryNotFound"),
        ("POST", "query", 200, "data"),
    ]

    # The same hash-only GET from anything else (curl sends Accept: */*) gets
    # JSON, not the GraphiQL page.
    query_hash = known[0]["sha256Hash"]
    extensions = json.dumps({"persistedQuery": {"version": 1, "sha256Hash": query_hash}})
    variables = json.dumps({"first": 5, "filter": {"metadataContains": {"run": run}}})
    response = httpx.get(
        apq_server,
        params={"extensions": extensions, "variables": variables},
        headers={"accept": "*/*"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.json()["data"]["contexts"]["totalCount"] == 2

    # A stored mutation cannot be run by a GET, by hash or by text.
    mutation_hash = first[0]["sha256Hash"]
    mutation_extensions = json.dumps(
        {"persistedQuery": {"version": 1, "sha256Hash": mutation_hash}}
    )
    refused = httpx.get(
        apq_server,
        params={
            "extensions": mutation_extensions,
            "variables": json.dumps({"name": "via GET", "metadata": {"run": run}}),
        },
        timeout=10,
    )
    assert refused.status_code == 405, refused.text
    assert refused.headers["allow"] == "POST"
    assert "cannot be sent with GET" in refused.text
    by_text = httpx.get(
        apq_server,
        params={"query": f'mutation {{ createContext(metadata: {{run: "{run}"}}) {{ id }} }}'},
        timeout=10,
    )
    assert by_text.status_code == 405
    count = httpx.post(
        apq_server, json={"query": CONTEXTS_QUERY, "variables": {"run": {"run": run}}}, timeout=10
    )
    assert count.json()["data"]["contexts"]["totalCount"] == 2


@pytest.fixture(scope="module")
def trusted_server(database_url: str) -> Iterator[str]:
    env = {"DATABASE_URL": database_url, "CTXGRAPH_TRUSTED_DOCUMENTS": str(MANIFEST)}
    with running_server(env) as base:
        yield f"{base}/graphql"


@pytest.mark.slow
def test_generated_client_against_trusted_documents_server(
    node_client: Path, trusted_server: str
) -> None:
    # The generated client sends only the hashes embedded by the code generator,
    # over HTTP and over the WebSocket (the subscription), and everything works.
    done = run_ts(
        node_client, "src/e2e.ts", "--url", trusted_server, "--persisted", "trusted", "--json"
    )
    report = json.loads(done.stdout)
    statuses = {step["name"]: step["status"] for step in report["steps"]}
    assert done.returncode == 0, (statuses, done.stderr)
    assert set(statuses.values()) == {"passed"}
    assert len(statuses) == 10

    # The same client sending full texts (as any hand-written client would) is refused,
    # over HTTP and over the WebSocket.
    plain = run_ts(
        node_client, "src/e2e.ts", "--url", trusted_server, "--persisted", "off", "--json"
    )
    assert plain.returncode == 1
    details = {step["name"]: step["detail"] for step in json.loads(plain.stdout)["steps"]}
    assert details["createContext"].startswith("FORBIDDEN: This server runs only trusted documents")
    # The subscription went over the WebSocket and was refused there.
    assert details["messageAppended (receive)"].startswith("FORBIDDEN: This server runs only")


@pytest.mark.slow
def test_trusted_documents_server_refuses_other_operations(trusted_server: str) -> None:
    documents = load_trusted_documents(MANIFEST)
    contexts_hash = next(h for h, text in documents.items() if "query Contexts" in text)

    # Any other document: 403, FORBIDDEN, saying why and what to do.
    response = httpx.post(trusted_server, json={"query": "{ contexts { totalCount } }"}, timeout=10)
    assert response.status_code == 403
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert "CTXGRAPH_TRUSTED_DOCUMENTS" in error["message"]
    # Registering a new document the APQ way is refused too.
    text = "{ contexts { totalCount } }"
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": sha256_hex(text)}}
    response = httpx.post(
        trusted_server, json={"query": text, "extensions": extensions}, timeout=10
    )
    assert response.status_code == 403
    # A document of the manifest runs by hash (a GET, with or without the sha256:
    # prefix, or documentId) or by its exact text.
    by_get = httpx.get(
        trusted_server,
        params={
            "extensions": json.dumps(
                {"persistedQuery": {"version": 1, "sha256Hash": f"sha256:{contexts_hash}"}}
            ),
            "variables": json.dumps({"first": 1}),
        },
        timeout=10,
    )
    assert by_get.status_code == 200, by_get.text
    assert "totalCount" in by_get.json()["data"]["contexts"]
    by_id = httpx.post(
        trusted_server, json={"documentId": f"sha256:{contexts_hash}", "variables": {}}, timeout=10
    )
    assert "errors" not in by_id.json()
    by_text = httpx.post(trusted_server, json={"query": documents[contexts_hash]}, timeout=10)
    assert "errors" not in by_text.json()


# --- edge cases through the ASGI app ------------------------------------------------


@pytest_asyncio.fixture
async def http(conn: AsyncConnection) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(test_settings(), connector=RollbackConnector(conn))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        yield client


def apq(text: str, digest: str | None = None) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": digest or sha256_hex(text)}}


async def test_register_then_hash_only_post_and_get(http: httpx.AsyncClient) -> None:
    text = "query Probe { contexts(first: 1) { totalCount } }"
    missing = await http.post("/graphql", json={"extensions": apq(text)})
    assert missing.status_code == 200
    assert missing.headers["cache-control"] == "private, no-cache, must-revalidate"
    assert missing.json() == {
        "errors": [
            {
                "message": "PersistedQueryNotFound",
                "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
            }
        ]
    }
    registered = await http.post("/graphql", json={"query": text, "extensions": apq(text)})
    assert registered.json()["data"]["contexts"]["totalCount"] >= 0
    by_post = await http.post("/graphql", json={"extensions": apq(text)})
    assert by_post.json() == registered.json()
    by_get = await http.get(
        "/graphql", params={"extensions": json.dumps(apq(text))}, headers={"accept": "text/html"}
    )
    assert by_get.json() == registered.json()  # JSON, not the GraphiQL page


async def test_hash_that_does_not_match_the_text_is_refused(http: httpx.AsyncClient) -> None:
    text = "{ contexts(first: 1) { totalCount } }"
    wrong = await http.post(
        "/graphql", json={"query": text, "extensions": apq(text, sha256_hex(text + " "))}
    )
    assert wrong.status_code == 400
    assert wrong.json()["errors"][0]["message"].startswith("provided sha does not match query")
    # Nothing was stored under the wrong hash.
    again = await http.post("/graphql", json={"extensions": apq(text, sha256_hex(text + " "))})
    assert again.json()["errors"][0]["message"] == "PersistedQueryNotFound"


@pytest.mark.parametrize(
    "persisted",
    [
        {"version": 2, "sha256Hash": "0" * 64},
        {"version": 1, "sha256Hash": "not-a-hash"},
        {"version": 1},
        "abc",
    ],
)
async def test_malformed_persisted_query_extension(
    http: httpx.AsyncClient, persisted: object
) -> None:
    response = await http.post("/graphql", json={"extensions": {"persistedQuery": persisted}})
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "extensions.persistedQuery must be" in error["message"]


async def test_plain_requests_and_the_ide_are_untouched(http: httpx.AsyncClient) -> None:
    plain = await http.post("/graphql", json={"query": "{ contexts(first: 1) { totalCount } }"})
    assert "errors" not in plain.json()
    ide = await http.get("/graphql", headers={"accept": "text/html"})
    assert ide.status_code == 200
    assert ide.headers["content-type"].startswith("text/html")


async def test_apq_turned_off_answers_not_supported(conn: AsyncConnection) -> None:
    app = create_app(test_settings(persisted_query_cache_size=0), connector=RollbackConnector(conn))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        text = "{ contexts(first: 1) { totalCount } }"
        hash_only = await http.post("/graphql", json={"extensions": apq(text)})
        assert hash_only.json()["errors"][0] == {
            "message": "PersistedQueryNotSupported",
            "extensions": {"code": "PERSISTED_QUERY_NOT_SUPPORTED"},
        }
        with_text = await http.post("/graphql", json={"query": text, "extensions": apq(text)})
        assert "errors" not in with_text.json()


async def test_trusted_mode_refuses_batches_with_an_unlisted_operation(
    conn: AsyncConnection,
) -> None:
    # Batches of two pass the body limits (api/security), then reach the allowlist.
    settings = test_settings(trusted_documents=MANIFEST, max_batch_operations=2)
    app = create_app(settings, connector=RollbackConnector(conn))
    contexts_hash = next(h for h, t in load_trusted_documents(MANIFEST).items() if "Contexts" in t)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        batch = [
            {"documentId": f"sha256:{contexts_hash}"},
            {"query": "{ contexts { totalCount } }"},
        ]
        response = await http.post("/graphql", json=batch)
        # each operation of a batch is answered on its own: the listed one runs, the
        # other is refused
        assert response.status_code == 200
        listed, unlisted = response.json()
        assert "contexts" in listed["data"]
        assert "data" not in unlisted
        assert unlisted["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        unknown = await http.post("/graphql", json={"extensions": apq("{ x }")})
        assert unknown.status_code == 403
        assert "is not in this server's trusted documents" in unknown.json()["errors"][0]["message"]


def test_document_cache_is_bounded_by_entries_and_bytes() -> None:
    cache = DocumentCache(max_entries=2, max_bytes=10)
    cache.put("a", "aaaa")
    cache.put("b", "bbbb")
    assert cache.get("a") == "aaaa"  # a is now the most recently used
    cache.put("c", "cccc")
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == ("aaaa", None, "cccc")
    cache.put("d", "dddddddd")  # 8 bytes: both older entries must go to fit 10
    assert (len(cache), cache.get("d")) == (1, "dddddddd")
    cache.put("e", "e" * 11)  # larger than the whole cache: not kept
    assert cache.get("e") is None
    assert cache.get("d") == "dddddddd"


def test_trusted_documents_manifest_is_checked_when_settings_load(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(ValidationError, match="cannot read trusted documents"):
        test_settings(trusted_documents=missing)
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps({f"sha256:{sha256_hex('{ a }')}": "{ b }"}))
    with pytest.raises(ValidationError, match="is not the sha256 of its document"):
        test_settings(trusted_documents=edited)
    not_json = tmp_path / "bad.json"
    not_json.write_text("{")
    with pytest.raises(ValidationError, match="is not JSON"):
        test_settings(trusted_documents=not_json)
    assert test_settings(trusted_documents=MANIFEST).trusted_documents == MANIFEST
    assert len(load_trusted_documents(MANIFEST)) == 8


def test_client_operations_and_manifest_fit_the_schema() -> None:
    """The generated clients' operations and the trusted manifest are valid against the
    code's schema and use no deprecated field: removing or deprecating a field they
    need fails here, before a deployed client does."""
    schema = build_schema()._schema
    operations = TS_CLIENT / "operations"
    fragments = (operations / "fragments.graphql").read_text()
    # Each operation file with the shared fragments file (unused fragments are fine there).
    documents = {
        path.name: (path.read_text() + "\n" + fragments, False)
        for path in sorted(operations.glob("*.graphql"))
        if path.name != "fragments.graphql"
    }
    documents.update({h: (text, True) for h, text in load_trusted_documents(MANIFEST).items()})
    assert len(documents) == 16
    problems = {}
    for name, (text, whole) in documents.items():
        rules = [r for r in specified_rules if whole or r is not NoUnusedFragmentsRule]
        if errors := validate(schema, parse(text), [*rules, NoDeprecatedCustomRule]):
            problems[name] = [e.message for e in errors]
    assert problems == {}


async def test_hash_only_requests_keep_big_integers_exact(http: httpx.AsyncClient) -> None:
    """The APQ middleware rewrites the body: integers beyond 64 bits survive it."""
    text = "mutation Big($m: JSON) { createContext(metadata: $m) { metadata } }"
    body = {
        "query": text,
        "variables": {"m": {"big": 123456789012345678901234567890}},
        "extensions": apq(text),
    }
    registered = await http.post("/graphql", json=body)
    assert registered.json()["data"]["createContext"]["metadata"] == {
        "big": 123456789012345678901234567890
    }
    del body["query"]
    by_hash = await http.post("/graphql", json=body)
    assert by_hash.json()["data"]["createContext"]["metadata"] == {
        "big": 123456789012345678901234567890
    }
