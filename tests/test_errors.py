"""Errors through the GraphQL API: every client error carries an allowed
`extensions.code` and a message that says what to fix; malformed input never
becomes a 500; unexpected exceptions are masked and logged with a request id."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from api.app import create_app
from api.store.direct import Direct
from tests.conftest import GraphQLClient, RollbackConnector, graphql_client, test_settings
from tests.helpers import create_context, fork, user

CLIENT_CODES = {
    "BAD_USER_INPUT",
    "NOT_FOUND",
    "VERSION_CONFLICT",
    "CONTEXT_DELETED",
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "QUERY_TOO_COMPLEX",
}
INTERNALS = ("Traceback", "asyncpg", "sqlalchemy", "psycopg", "SELECT ", "INSERT ", "UPDATE ")


def assert_client_error(body: dict[str, Any], code: str, *needles: str) -> dict[str, Any]:
    """The response failed with exactly one error of `code` whose message has `needles`."""
    errors = body.get("errors")
    assert errors, body
    assert len(errors) == 1, errors
    error: dict[str, Any] = errors[0]
    assert error["extensions"]["code"] in CLIENT_CODES
    assert error["extensions"]["code"] == code, error
    for needle in needles:
        assert needle in error["message"], error
    for internal in INTERNALS:
        assert internal not in error["message"], error
    return error


# --- GraphQL's own errors (parse, validation, variable coercion) -------------------------


@pytest.mark.parametrize(
    ("query", "variables", "needle"),
    [
        pytest.param("{ context(id: ", None, "Syntax Error", id="syntax"),
        pytest.param("{ nope }", None, "nope", id="unknown-field"),
        pytest.param('{ context(id: "x", bogus: 1) { id } }', None, "bogus", id="unknown-argument"),
        pytest.param("{ context { id } }", None, "id", id="missing-argument"),
        pytest.param('{ context(id: "x") }', None, "selection", id="missing-selection"),
        pytest.param("{ context(id: [1]) { id } }", None, "ID", id="literal-type"),
        pytest.param("query($x: ID!) { context(id: $x) { id } }", {}, "$x", id="missing-variable"),
        pytest.param(
            "query($x: ID!) { context(id: $x) { id } }", {"x": {"a": 1}}, "$x", id="variable-type"
        ),
        pytest.param("{ contexts(first: 2147483648) { totalCount } }", None, "Int", id="int32"),
        pytest.param(
            "{ contexts(orderBy: {field: SIZE, direction: ASC}) { totalCount } }",
            None,
            "SIZE",
            id="enum-value",
        ),
        pytest.param(
            "query($r: [MessageRole!]) { contexts { nodes { messages(roles: $r) { totalCount }"
            " } } }",
            {"r": ["user"]},
            "$r",
            id="enum-variable-lowercase",
        ),
        pytest.param(
            "{ __typename " + "{ a " * 2000 + "}" * 2000 + "}",
            None,
            "nested too deeply",
            id="nested-too-deeply",
        ),
        pytest.param(
            "mutation { createContext(metadata: " + "{a: " * 400 + "1" + "}" * 400 + ") { id } }",
            None,
            "nested too deeply",
            id="literal-nested-too-deeply",
        ),
        pytest.param("mutation { nope }", None, "nope", id="unknown-mutation"),
        pytest.param(
            "mutation { createContext(messages: [{role: USER}]) { id } }",
            None,
            "content",
            id="input-missing-field",
        ),
    ],
)
async def test_graphql_errors_are_bad_user_input(
    client: GraphQLClient, query: str, variables: dict[str, Any] | None, needle: str
) -> None:
    body = await client.execute(query, variables)
    assert body.get("data") is None
    assert_client_error(body, "BAD_USER_INPUT", needle)


async def test_syntax_error_code_is_stable_when_cached(client: GraphQLClient) -> None:
    """The parser cache must not change the answer the second time round."""
    for _ in range(3):
        body = await client.execute("{ context(id: ")
        assert_client_error(body, "BAD_USER_INPUT", "Syntax Error")
    for _ in range(3):
        body = await client.execute("{ nope }")
        assert_client_error(body, "BAD_USER_INPUT", "nope")


# --- malformed ids: BAD_USER_INPUT naming the argument, never a 500 ---------------------

MALFORMED_IDS = [
    "",
    "nope",
    "1",
    "123e4567-e89b-12d3-a456-42661417400",  # one digit short
    "123e4567-e89b-12d3-a456-4266141740000",  # one digit long
    "zzze4567-e89b-12d3-a456-426614174000",
    "' OR 1=1 --",
    "\u00e9\u00e8",
    "x" * 10_000,
]

ID_FIELDS = [
    ("query($id: ID!) { context(id: $id) { id } }", "id"),
    ("query($id: ID!) { message(id: $id) { id } }", "id"),
    ("query($id: ID!) { node(id: $id) { id } }", "id"),
    ('mutation($id: ID!) { renameContext(id: $id, name: "n") { id } }', "id"),
    ("mutation($id: ID!) { setContextMetadata(id: $id, metadata: {}) { id } }", "id"),
    ("mutation($id: ID!) { deleteContext(id: $id) { id } }", "id"),
    ("mutation($id: ID!) { restoreContext(id: $id) { id } }", "id"),
    ("mutation($id: ID!) { forkContext(id: $id) { id } }", "id"),
    ("mutation($id: ID!) { deleteMessage(id: $id) { id } }", "id"),
    (
        "mutation($id: ID!) { appendMessages(contextId: $id,"
        ' messages: [{role: USER, content: "x"}]) { messages { id } } }',
        "contextId",
    ),
    (
        "query($id: ID!) { contexts(filter: {parentId: $id}) { totalCount } }",
        "filter.parentId",
    ),
]


@pytest.mark.parametrize(("query", "argument"), ID_FIELDS)
@pytest.mark.parametrize("bad", MALFORMED_IDS, ids=lambda v: repr(v[:12]))
async def test_malformed_ids(client: GraphQLClient, query: str, argument: str, bad: str) -> None:
    body = await client.execute(query, {"id": bad})
    error = assert_client_error(body, "BAD_USER_INPUT", f"`{argument}`", "UUID")
    assert len(error["message"]) < 300  # a 10,000-character id is not echoed back


@pytest.mark.parametrize("bad", ["nope", "", "123"])
async def test_malformed_message_input_id(client: GraphQLClient, bad: str) -> None:
    ctx = await create_context(client)
    body = await client.execute(
        "mutation($id: ID!, $m: [MessageInput!]!) { appendMessages(contextId: $id, messages: $m)"
        " { messages { id } } }",
        {"id": ctx["id"], "m": [user("ok"), {**user("x"), "id": bad}]},
    )
    assert_client_error(body, "BAD_USER_INPUT", "`messages[1].id`")
    body = await client.execute(
        "mutation($m: [MessageInput!]) { createContext(messages: $m) { id } }",
        {"m": [{**user("x"), "id": bad}]},
    )
    assert_client_error(body, "BAD_USER_INPUT", "`messages[0].id`")


async def test_malformed_embedding_message_id(client: GraphQLClient) -> None:
    body = await client.execute(
        'mutation($e: [Float!]!) { setMessageEmbedding(id: "nope", embedding: $e) { id } }',
        {"e": [0.0] * 1536},
    )
    assert_client_error(body, "BAD_USER_INPUT", "`id`")


async def test_integer_ids_are_malformed_not_errors(client: GraphQLClient) -> None:
    """An ID literal may be an integer in GraphQL; it is still not a UUID."""
    body = await client.execute("{ context(id: 5) { id } }")
    assert_client_error(body, "BAD_USER_INPUT", "`id`")


# --- domain errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mutation",
    [
        'renameContext(id: $id, name: "n") { id }',
        "setContextMetadata(id: $id, metadata: {}) { id }",
        "deleteContext(id: $id) { id }",
        "restoreContext(id: $id) { id }",
        "forkContext(id: $id) { id }",
        'appendMessages(contextId: $id, messages: [{role: USER, content: "x"}])'
        " { messages { id } }",
        "deleteMessage(id: $id) { id }",
        "setMessageEmbedding(id: $id, embedding: $e) { id }",
    ],
)
async def test_unknown_ids_in_mutations_are_not_found(client: GraphQLClient, mutation: str) -> None:
    missing = str(uuid.uuid4())
    uses_e = "$e" in mutation
    header = "($id: ID!, $e: [Float!]!)" if uses_e else "($id: ID!)"
    variables: dict[str, Any] = {"id": missing}
    if uses_e:
        variables["e"] = [0.0] * 1536
    body = await client.execute(f"mutation{header} {{ {mutation} }}", variables)
    assert_client_error(body, "NOT_FOUND", missing)


async def test_unknown_ids_in_queries_are_null(client: GraphQLClient) -> None:
    missing = str(uuid.uuid4())
    data = await client.data(
        "query($id: ID!) { context(id: $id) { id } message(id: $id) { id } node(id: $id) { id } }",
        {"id": missing},
    )
    assert data == {"context": None, "message": None, "node": None}


async def test_fork_version_out_of_range(client: GraphQLClient) -> None:
    ctx = await create_context(client, messages=[user("a"), user("b")])
    query = "mutation($id: ID!, $v: Int) { forkContext(id: $id, atVersion: $v) { id } }"
    body = await client.execute(query, {"id": ctx["id"], "v": 3})
    assert_client_error(body, "BAD_USER_INPUT", "atVersion", "latestVersion", "2", "3")
    body = await client.execute(query, {"id": ctx["id"], "v": -1})
    assert_client_error(body, "BAD_USER_INPUT", "atVersion", "-1")
    data = await client.data(
        "query($f: ContextFilter) { contexts(filter: $f) { totalCount } }",
        {"f": {"parentId": ctx["id"], "includeDeleted": True}},
    )
    assert data["contexts"]["totalCount"] == 0


async def test_version_conflict(client: GraphQLClient) -> None:
    ctx = await create_context(client, messages=[user("a")])
    body = await client.execute(
        "mutation($id: ID!) { appendMessages(contextId: $id, expectedVersion: 0,"
        ' messages: [{role: USER, content: "x"}]) { messages { id } } }',
        {"id": ctx["id"]},
    )
    assert_client_error(body, "VERSION_CONFLICT", "expectedVersion", "1")


async def test_context_deleted(client: GraphQLClient) -> None:
    ctx = await create_context(client, messages=[user("a")])
    await client.data("mutation($id: ID!) { deleteContext(id: $id) { id } }", {"id": ctx["id"]})
    body = await client.execute(
        "mutation($id: ID!) { forkContext(id: $id) { id } }", {"id": ctx["id"]}
    )
    assert_client_error(body, "CONTEXT_DELETED", ctx["id"], "restoreContext")


async def test_name_over_limit(client: GraphQLClient) -> None:
    body = await client.execute(
        "mutation($n: String) { createContext(name: $n) { id } }", {"n": "x" * 1001}
    )
    assert_client_error(
        body, "BAD_USER_INPUT", "`name`", "1001", "1000", "CTXGRAPH_MAX_NAME_LENGTH"
    )
    ok = await client.data(
        "mutation($n: String) { createContext(name: $n) { name } }", {"n": "x" * 1000}
    )
    assert len(ok["createContext"]["name"]) == 1000
    ctx = await create_context(client, messages=[user("a")])
    for mutation in ("renameContext(id: $id, name: $n)", "forkContext(id: $id, name: $n)"):
        body = await client.execute(
            f"mutation($id: ID!, $n: String) {{ {mutation} {{ id }} }}",
            {"id": ctx["id"], "n": "y" * 1001},
        )
        assert_client_error(body, "BAD_USER_INPUT", "`name`", "1000")
    assert (await client.data("query($id: ID!) { context(id: $id) { name } }", {"id": ctx["id"]}))[
        "context"
    ]["name"] == "test"


@pytest.mark.parametrize("size", [0, 1, 1535, 1537])
async def test_embedding_dimensions(client: GraphQLClient, size: int) -> None:
    ctx = await create_context(client, messages=[user("a")])
    data = await client.data(
        "query($id: ID!) { context(id: $id) { message(version: 1) { id } } }", {"id": ctx["id"]}
    )
    mid = data["context"]["message"]["id"]
    body = await client.execute(
        "mutation($id: ID!, $e: [Float!]!) { setMessageEmbedding(id: $id, embedding: $e) { id } }",
        {"id": mid, "e": [0.1] * size},
    )
    assert_client_error(body, "BAD_USER_INPUT", "`embedding`", "1536", f"got {size}")
    body = await client.execute(
        "mutation($id: ID!, $m: [MessageInput!]!) { appendMessages(contextId: $id, messages: $m)"
        " { messages { id } } }",
        {"id": ctx["id"], "m": [{**user("b"), "embedding": [0.1] * size}]},
    )
    assert_client_error(body, "BAD_USER_INPUT", "`messages[0].embedding`", "1536")


async def post_raw(client: GraphQLClient, payload: str) -> tuple[int, str]:
    response = await client.http.post(
        "/graphql", content=payload.encode(), headers={"content-type": "application/json"}
    )
    return response.status_code, response.text


async def test_non_finite_numbers(client: GraphQLClient) -> None:
    """Python's JSON accepts NaN/Infinity tokens; they must be refused as input."""
    ctx = await create_context(client, messages=[user("a")])
    data = await client.data(
        "query($id: ID!) { context(id: $id) { message(version: 1) { id } } }", {"id": ctx["id"]}
    )
    mid = data["context"]["message"]["id"]
    vector = ", ".join(["0.1"] * 1535)
    for token in ("NaN", "Infinity", "-Infinity"):
        status, text = await post_raw(
            client,
            '{"query": "mutation($id: ID!, $e: [Float!]!) { setMessageEmbedding(id: $id,'
            f' embedding: $e) {{ id }} }}", "variables": {{"id": "{mid}", "e": [{vector},'
            f" {token}]}}}}",
        )
        assert status in (200, 400), text
        body = json.loads(text)
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
        status, text = await post_raw(
            client,
            '{"query": "mutation($m: JSON) { createContext(metadata: $m) { id } }",'
            f' "variables": {{"m": {{"x": [1, {token}]}}}}}}',
        )
        assert status in (200, 400), text
        body = json.loads(text)
        assert_client_error(body, "BAD_USER_INPUT", "`metadata`", "NaN or Infinity")
    # A literal that overflows a double is infinite too.
    body = await client.execute(
        f'mutation {{ setMessageEmbedding(id: "{mid}", embedding: [{vector}, 1e999]) {{ id }} }}'
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    check = await client.data("query($id: ID!) { message(id: $id) { hasEmbedding } }", {"id": mid})
    assert check["message"]["hasEmbedding"] is False


def nested(depth: int) -> dict[str, Any]:
    """A JSON object `depth` levels deep (objects and arrays alternating)."""
    value: Any = 1
    for level in range(depth - 1):
        value = {"a": value} if level % 2 else [value]
    return {"a": value}


def literal(value: Any) -> str:
    """A JSON value as a GraphQL input literal."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    return json.dumps(value)


@pytest.mark.parametrize("depth", [101, 150])
async def test_metadata_nested_too_deep(client: GraphQLClient, depth: int) -> None:
    """Deep nesting is refused by a limit, not by running out of Python stack (json.dumps
    failed near 900 levels: an internal error). GraphQL literals reach the check whatever
    the HTTP layer does about deep JSON bodies."""
    value = literal(nested(depth))
    for query, argument in (
        (f"mutation {{ createContext(metadata: {value}) {{ id }} }}", "metadata"),
        (
            f"{{ contexts(filter: {{metadataContains: {value}}}) {{ totalCount }} }}",
            "filter.metadataContains",
        ),
    ):
        body = await client.execute(query)
        assert_client_error(body, "BAD_USER_INPUT", f"`{argument}`", "100 levels")


@pytest.mark.parametrize("depth", [101, 300, 905])
async def test_deep_json_variables_are_refused(client: GraphQLClient, depth: int) -> None:
    """The same through variables: refused as BAD_USER_INPUT (by the request's JSON depth
    limit or by the metadata check, whichever comes first), never an internal error."""
    body = await client.execute(
        "mutation($m: JSON) { createContext(metadata: $m) { id } }", {"m": nested(depth)}
    )
    assert_client_error(body, "BAD_USER_INPUT", "100 levels")


async def test_metadata_nested_at_the_limit(client: GraphQLClient) -> None:
    data = await client.data(
        f"mutation {{ createContext(metadata: {literal(nested(100))}) {{ metadata }} }}"
    )
    assert data["createContext"]["metadata"] == nested(100)


# --- forged cursors of every list -------------------------------------------------------


def forged(*values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


TS = "2026-01-01T00:00:00+00:00"
UID = "123e4567-e89b-12d3-a456-426614174000"

FORGED = [
    pytest.param("messages(after: $c) { totalCount }", forged("m", 2**70), id="msg-bigint"),
    pytest.param("messages(before: $c) { totalCount }", forged("m", -(2**70)), id="msg-neg"),
    pytest.param("messages(after: $c) { totalCount }", forged("m", True), id="msg-bool"),
    pytest.param("messages(after: $c) { totalCount }", forged("m", 1.5), id="msg-float"),
    pytest.param("messages(after: $c) { totalCount }", forged("m", "3"), id="msg-str"),
    pytest.param("messages(last: 2, before: $c) { totalCount }", forged("m"), id="msg-empty"),
    pytest.param("forks(after: $c) { totalCount }", forged("f", TS, 5), id="forks-int-id"),
    pytest.param("forks(after: $c) { totalCount }", forged("f", TS, [UID]), id="forks-list-id"),
    pytest.param("forks(after: $c) { totalCount }", forged("f", TS, "x"), id="forks-bad-uuid"),
    pytest.param("forks(after: $c) { totalCount }", forged("f", 5, UID), id="forks-int-ts"),
    pytest.param("forks(after: $c) { totalCount }", forged("f", "junk", UID), id="forks-junk-ts"),
    pytest.param(
        "forks(after: $c) { totalCount }", forged("f", "2026-01-01T00:00:00", UID), id="forks-naive"
    ),
    pytest.param("forks(after: $c) { totalCount }", forged("f", 1, TS, UID), id="forks-extra"),
    pytest.param(
        "descendants(after: $c) { totalCount }", forged("d", 2**70, TS, UID), id="desc-bigdepth"
    ),
    pytest.param(
        "descendants(after: $c) { totalCount }", forged("d", 2**31, TS, UID), id="desc-int32"
    ),
    pytest.param(
        "descendants(after: $c) { totalCount }", forged("d", "1", TS, UID), id="desc-str-depth"
    ),
    pytest.param(
        "descendants(after: $c) { totalCount }", forged("d", [1], TS, UID), id="desc-list-depth"
    ),
    pytest.param(
        "descendants(after: $c) { totalCount }", forged("d", 1, TS, [UID]), id="desc-list-id"
    ),
    pytest.param(
        "descendants(after: $c) { totalCount }", forged("d", 1, 20260101, UID), id="desc-int-ts"
    ),
    pytest.param("descendants(after: $c) { totalCount }", forged("d", TS, UID), id="desc-short"),
    pytest.param("messages(after: $c) { totalCount }", "%%%", id="not-base64"),
    pytest.param("messages(after: $c) { totalCount }", "\u00e9t\u00e9", id="non-ascii"),
    pytest.param(
        "messages(after: $c) { totalCount }",
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        id="not-utf8",
    ),
]


@pytest.mark.parametrize(("field", "cursor"), FORGED)
async def test_forged_cursors(live_client: GraphQLClient, field: str, cursor: str) -> None:
    """live_client: a database error would not poison a shared rolled-back transaction."""
    tag = {"tag": uuid.uuid4().hex}
    ctx = await create_context(live_client, messages=[user("a"), user("b")], metadata=tag)
    await fork(live_client, ctx["id"])
    body = await live_client.execute(
        f"query($id: ID!, $c: String) {{ context(id: $id) {{ {field} }} }}",
        {"id": ctx["id"], "c": cursor},
    )
    argument = "before" if "before" in field else "after"
    assert_client_error(body, "BAD_USER_INPUT", f"`{argument}`", "cursor")


# --- HTTP-level input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param("{not json", id="not-json"),
        pytest.param('{"query": 5}', id="query-not-string"),
        pytest.param('{"variables": {}}', id="no-query"),
        pytest.param('{"query": "{ __typename }", "variables": [1]}', id="variables-not-object"),
        pytest.param("[1, 2]", id="list-of-numbers"),
    ],
)
async def test_bad_request_bodies_are_400(client: GraphQLClient, payload: str) -> None:
    status, text = await post_raw(client, payload)
    assert status == 400, text
    assert "Traceback" not in text


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param('"just a string"', id="json-string"),
        pytest.param("5", id="json-number"),
        pytest.param("null", id="json-null"),
        pytest.param("[" * 5000 + "]" * 5000, id="json-nested-lists"),
        pytest.param(
            '{"query": "mutation($m: JSON) { createContext(metadata: $m) { id } }",'
            ' "variables": {"m": ' + '{"a":' * 5000 + "1" + "}" * 5000 + "}}",
            id="json-nested-5000",
        ),
        pytest.param(
            '{"query": "{ __typename }", "variables": {"x": ' + "1" * 5000 + "}}",
            id="json-int-over-4300-digits",
        ),
    ],
)
async def test_hostile_bodies_are_not_500(client: GraphQLClient, payload: str) -> None:
    try:
        status, text = await post_raw(client, payload)
    except Exception as exc:  # the ASGI test transport re-raises what the app let out
        pytest.fail(f"the app raised {type(exc).__name__}")
    assert status in (200, 400), text


async def test_subscription_over_plain_http_is_a_client_error(client: GraphQLClient) -> None:
    body = await client.execute(f'subscription {{ messageAppended(contextId: "{UID}") {{ id }} }}')
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body


# --- unexpected exceptions are masked -----------------------------------------------------

SECRET = "password=hunter2 host=db.internal.example"


class ExplodingConnector:
    """A connector whose every connection fails with a plain exception: the subject is
    error masking, not SQL, so no database is involved."""

    timeout: float | None = None

    def __init__(self) -> None:
        self.calls = 0

    @asynccontextmanager
    async def read(self, timeout: float | None = None) -> AsyncIterator[AsyncConnection]:
        self.calls += 1
        raise RuntimeError(f"connection failed: {SECRET}")
        yield  # pragma: no cover

    @asynccontextmanager
    async def direct(self) -> AsyncIterator[Direct]:
        self.calls += 1
        raise RuntimeError(f"connection failed: {SECRET}")
        yield  # pragma: no cover

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        self.calls += 1
        raise RuntimeError(f"transaction failed: {SECRET}")
        yield  # pragma: no cover

    def single_statement(self) -> AbstractAsyncContextManager[Direct]:
        return self.direct()


@pytest.fixture
def exploding() -> ExplodingConnector:
    return ExplodingConnector()


@asynccontextmanager
async def exploding_client(connector: ExplodingConnector) -> AsyncIterator[GraphQLClient]:
    app = create_app(test_settings(), connector=connector)
    async with graphql_client(app) as c:
        yield c


def assert_masked(
    error: dict[str, Any], request_id: str | None, caplog: pytest.LogCaptureFixture
) -> str:
    """The error is masked; the log has the details and the request id. Returns the id."""
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    rid = error["extensions"].get("requestId")
    assert isinstance(rid, str)
    assert rid
    if request_id is not None:
        assert rid == request_id
    assert error["message"] == f"Internal server error (request id {rid})."
    assert "hunter2" not in json.dumps(error)
    assert "RuntimeError" not in json.dumps(error)
    logged = [
        r
        for r in caplog.records
        if r.levelno >= logging.ERROR and rid in r.getMessage() and r.exc_info is not None
    ]
    assert logged, [r.getMessage() for r in caplog.records]
    exc = logged[0].exc_info[1] if logged[0].exc_info else None
    assert isinstance(exc, RuntimeError)
    assert "hunter2" in str(exc)  # the details are in the server log only
    return rid


QUERIES = [
    pytest.param(f'{{ context(id: "{UID}") {{ id }} }}', id="loader"),
    pytest.param("{ contexts { totalCount nodes { id } } }", id="listing"),
    pytest.param(f'{{ node(id: "{UID}") {{ id }} }}', id="node"),
    pytest.param('mutation { createContext(name: "x") { id } }', id="mutation"),
    pytest.param(f'mutation {{ forkContext(id: "{UID}") {{ id }} }}', id="fork"),
]


@pytest.mark.parametrize("query", QUERIES)
async def test_unexpected_errors_are_masked(
    exploding: ExplodingConnector, caplog: pytest.LogCaptureFixture, query: str
) -> None:
    caplog.set_level(logging.ERROR)
    async with exploding_client(exploding) as c:
        response = await c.http.post(
            "/graphql", json={"query": query}, headers={"x-request-id": "req-1234abcd"}
        )
    assert response.status_code == 200
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    body = response.json()
    assert len(body["errors"]) == 1
    assert exploding.calls >= 1
    assert_masked(body["errors"][0], "req-1234abcd", caplog)


async def test_masked_error_without_request_header(
    exploding: ExplodingConnector, caplog: pytest.LogCaptureFixture
) -> None:
    """Without X-Request-Id the server makes one, shows it to the client and logs it."""
    caplog.set_level(logging.ERROR)
    async with exploding_client(exploding) as c:
        first = await c.execute(f'{{ context(id: "{UID}") {{ id }} }}')
        second = await c.execute(f'{{ context(id: "{UID}") {{ id }} }}')
    a = assert_masked(first["errors"][0], None, caplog)
    b = assert_masked(second["errors"][0], None, caplog)
    assert a != b


async def test_masked_error_keeps_sibling_fields(
    exploding: ExplodingConnector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    async with exploding_client(exploding) as c:
        body = await c.execute(f'{{ __typename context(id: "{UID}") {{ id }} }}')
    assert body["data"] == {"__typename": "Query", "context": None}
    assert body["errors"][0]["path"] == ["context"]
    assert_masked(body["errors"][0], None, caplog)


async def test_client_errors_are_not_logged_as_failures(
    client: GraphQLClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    await client.execute('{ context(id: "nope") { id } }')
    await client.execute("{ nope }")
    await client.execute(f'mutation {{ deleteContext(id: "{UID}") {{ id }} }}')
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_failed_mutation_is_masked_and_rolled_back(
    conn: AsyncConnection, caplog: pytest.LogCaptureFixture
) -> None:
    """A mutation that fails after its statements ran changes nothing (one transaction),
    and the failure is masked: the connector's transaction breaks after the append's
    SQL, before it would commit."""
    caplog.set_level(logging.ERROR)
    rollback = RollbackConnector(conn)

    class BreaksBeforeCommit(RollbackConnector):
        @asynccontextmanager
        async def transaction(self) -> AsyncIterator[AsyncConnection]:
            async with rollback.transaction() as c:
                yield c
                raise RuntimeError(f"commit failed: {SECRET}")

        # single_statement: RollbackConnector's, a savepoint by this transaction()

    async with graphql_client(create_app(test_settings(), connector=rollback)) as good:
        ctx = await create_context(good, messages=[user("a")])
        app = create_app(test_settings(), connector=BreaksBeforeCommit(conn))
        async with graphql_client(app) as bad:
            body = await bad.execute(
                "mutation($id: ID!) { appendMessages(contextId: $id,"
                ' messages: [{role: USER, content: "b"}]) { messages { id } } }',
                {"id": ctx["id"]},
            )
            assert_masked(body["errors"][0], None, caplog)
            body = await bad.execute(
                "mutation($id: ID!) { forkContext(id: $id) { id } }", {"id": ctx["id"]}
            )
            assert_masked(body["errors"][0], None, caplog)
        data = await good.data(
            "query($id: ID!) { context(id: $id) { latestVersion messageCount"
            " messages { nodes { content } } forks { totalCount } } }",
            {"id": ctx["id"]},
        )
    assert data["context"]["latestVersion"] == 1
    assert data["context"]["messageCount"] == 1
    assert [n["content"] for n in data["context"]["messages"]["nodes"]] == ["a"]
    assert data["context"]["forks"]["totalCount"] == 0
