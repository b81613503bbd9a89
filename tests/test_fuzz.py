"""Fuzzing: random argument values for every field, and malformed HTTP requests.

Nothing a client sends may produce a 5xx, an INTERNAL_SERVER_ERROR, or text
from inside the server (driver, SQL, Python). Each field of Query and
Mutation, and each field with arguments of Context and Message, is called
with values drawn from its argument types (valid and invalid: huge and
negative numbers, lone surrogates and NUL bytes, wrong types, random JSON),
through the public HTTP API of an app on the test database (one rolled-back
transaction). Hypothesis runs derandomized, so CI is reproducible.
"""

from __future__ import annotations

import asyncio
import json
import string
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

import httpx
import pytest
from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncConnection

from api.app import create_app
from api.graphql.schema import build_schema
from tests.conftest import RollbackConnector, test_settings

T = TypeVar("T")

ALLOWED_CODES = {
    "BAD_USER_INPUT",
    "NOT_FOUND",
    "VERSION_CONFLICT",
    "CONTEXT_DELETED",
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "QUERY_TOO_COMPLEX",
    "NOT_IMPLEMENTED",
}
LEAKS = (
    "Traceback",
    'File "',
    "asyncpg",
    "sqlalchemy",
    "psycopg",
    "SELECT ",
    "INSERT ",
    "UPDATE ",
    "site-packages",
    "object has no attribute",
    "NoneType",
    "RecursionError",
)
SCHEMA = build_schema()._schema
EXAMPLES = 12

# --- strategies from GraphQL input types ---------------------------------------------

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
SPECIAL_TEXT = [
    "",
    " ",
    "\x00",
    "\ud800",
    "' OR 1=1 --",
    "%s%s%n",
    "../../etc/passwd",
    "x" * 1_000_001,  # over the content limit
    "n" * 1_001,  # over the name limit
]
nasty_text = st.one_of(
    st.text(max_size=50),
    st.text(alphabet=st.characters(codec=None), max_size=20),  # lone surrogates, NUL
    st.sampled_from(SPECIAL_TEXT),
)
ids = st.one_of(
    st.uuids().map(str),
    st.just("123e4567-e89b-12d3-a456-426614174000"),
    nasty_text,
    st.integers().map(str),
)
ints = st.one_of(
    st.integers(min_value=-5, max_value=600),
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
    st.sampled_from([0, -1, 2**31 - 1, -(2**31), 2**31, 2**63, 10**30]),
)
floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324]),
)
cursors = st.one_of(
    nasty_text,
    st.binary(max_size=40).map(lambda b: __import__("base64").b64encode(b).decode()),
    st.sampled_from(["WyJtIiwgMV0=", "WyJtIl0=", "bnVsbA==", "WzEsMiwzXQ=="]),
)
ARGUMENT_OVERRIDES: dict[str, st.SearchStrategy[Any]] = {
    "after": cursors,
    "before": cursors,
}


def for_type(t: GraphQLInputType, name: str = "", depth: int = 0) -> st.SearchStrategy[Any]:
    """Values for an input type: mostly well-typed, sometimes null or any JSON at all."""
    if isinstance(t, GraphQLNonNull):
        inner = for_type(t.of_type, name, depth)
        return st.one_of(inner, inner, inner, json_values)
    base = _base(t, name, depth)
    return st.one_of(base, base, base, st.none(), json_values)


def _base(t: Any, name: str, depth: int) -> st.SearchStrategy[Any]:
    if name in ARGUMENT_OVERRIDES:
        return ARGUMENT_OVERRIDES[name]
    if isinstance(t, GraphQLList):
        item = for_type(t.of_type, name, depth + 1)
        if name == "embedding":
            return st.one_of(
                st.lists(floats, min_size=1536, max_size=1536),
                st.lists(floats, max_size=5),
                st.lists(item, max_size=3),
            )
        return st.lists(item, max_size=3 if depth else 4)
    if isinstance(t, GraphQLEnumType):
        return st.one_of(
            st.sampled_from(list(t.values)), st.text(string.ascii_uppercase, max_size=8)
        )
    if isinstance(t, GraphQLInputObjectType):
        fields = {key: for_type(f.type, key, depth + 1) for key, f in t.fields.items() if depth < 3}
        return st.fixed_dictionaries({}, optional=fields)
    if isinstance(t, GraphQLScalarType):
        return {
            "ID": ids,
            "String": nasty_text,
            "Int": ints,
            "Float": floats,
            "Boolean": st.booleans(),
            "JSON": json_values,
            "DateTime": st.one_of(st.datetimes().map(lambda d: d.isoformat()), nasty_text),
        }.get(t.name, json_values)
    raise AssertionError(f"no strategy for {t}")


def selection(t: Any, depth: int = 0) -> str:
    """A small selection set for an output type."""
    while isinstance(t, (GraphQLNonNull, GraphQLList)):
        t = t.of_type
    if not hasattr(t, "fields"):
        return ""
    names = [n for n, f in t.fields.items() if not f.args and _is_leaf(f.type)]
    parts = names[:6]
    if depth < 1:
        for n, f in t.fields.items():
            if not f.args and not _is_leaf(f.type) and n in ("nodes", "message", "context"):
                parts.append(f"{n} {selection(f.type, depth + 1)}")
    return "{ __typename " + " ".join(parts) + " }"


def _is_leaf(t: Any) -> bool:
    while isinstance(t, (GraphQLNonNull, GraphQLList)):
        t = t.of_type
    return not hasattr(t, "fields")


def operation(
    kind: str, field: str, definition: GraphQLField, wrap: str | None = None
) -> tuple[str, dict[str, GraphQLArgument]]:
    """The document calling `field` with every argument as a variable."""
    args = definition.args
    declared = ", ".join(f"${a}: {t.type}" for a, t in args.items())
    passed = ", ".join(f"{a}: ${a}" for a in args)
    call = f"{field}({passed})" if passed else field
    body = f"{call} {selection(definition.type)}"
    if wrap is not None:
        declared = ", ".join(x for x in ("$target: ID!", declared) if x)
        body = f"{wrap}(id: $target) {{ {body} }}"
    return f"{kind}({declared}) {{ {body} }}" if declared else f"{kind} {{ {body} }}", dict(args)


def targets() -> list[tuple[str, str, dict[str, GraphQLArgument]]]:
    out = []
    for kind, root in (("query", SCHEMA.query_type), ("mutation", SCHEMA.mutation_type)):
        assert isinstance(root, GraphQLObjectType)
        for name, f in root.fields.items():
            document, args = operation(kind, name, f)
            out.append((f"{kind}.{name}", document, args))
    for type_name, wrap in (("Context", "context"), ("Message", "message")):
        t = SCHEMA.get_type(type_name)
        assert isinstance(t, GraphQLObjectType)
        for name, f in t.fields.items():
            if f.args:
                document, args = operation("query", name, f, wrap)
                out.append((f"{type_name}.{name}", document, args))
    return out


TARGETS = targets()


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text[:500]
    for leak in LEAKS:
        assert leak not in response.text, response.text[:500]
    if response.headers.get("content-type", "").startswith("application/json"):
        body = response.json()
        for error in body.get("errors") or []:
            code = (error.get("extensions") or {}).get("code")
            assert code in ALLOWED_CODES, error


def encode(document: str, variables: dict[str, Any]) -> bytes:
    # ensure_ascii: lone surrogates travel as \\udXXX escapes, as a hostile client sends them.
    return json.dumps({"query": document, "variables": variables}, ensure_ascii=True).encode()


async def _start(conn: AsyncConnection) -> tuple[httpx.AsyncClient, str, str]:
    app = create_app(test_settings(), connector=RollbackConnector(conn))
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    created = await http.post(
        "/graphql",
        json={
            "query": 'mutation { createContext(name: "fuzz", messages: [{role: USER, '
            'content: "a"}, {role: ASSISTANT, content: "b"}]) { id messages { nodes { id } } } }'
        },
    )
    data = created.json()["data"]["createContext"]
    return http, data["id"], data["messages"]["nodes"][0]["id"]


@pytest.fixture
async def target(conn: AsyncConnection) -> AsyncIterator[tuple[httpx.AsyncClient, str, str]]:
    http, context_id, message_id = await _start(conn)
    yield http, context_id, message_id
    await http.aclose()


def in_thread(loop: asyncio.AbstractEventLoop) -> Callable[[Coroutine[Any, Any, T]], T]:
    """Run a coroutine on the test's loop from Hypothesis's (synchronous) thread."""

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=120)

    return run


@pytest.mark.parametrize(("name", "document", "args"), TARGETS, ids=[t[0] for t in TARGETS])
async def test_random_arguments_never_break_the_server(
    target: tuple[httpx.AsyncClient, str, str],
    name: str,
    document: str,
    args: dict[str, GraphQLArgument],
) -> None:
    http, context_id, message_id = target
    run = in_thread(asyncio.get_running_loop())
    real_ids = st.sampled_from([context_id, message_id])
    strategies = {
        a: st.one_of(real_ids, for_type(t.type, a)) if "id" in a.lower() else for_type(t.type, a)
        for a, t in args.items()
    }
    wrap_id = message_id if name.startswith("Message.") else context_id

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.fixed_dictionaries(strategies))
    def fuzz(variables: dict[str, Any]) -> None:
        if "$target" in document:
            variables = {**variables, "target": wrap_id}
        response = run(
            http.post(
                "/graphql",
                content=encode(document, variables),
                headers={"content-type": "application/json"},
            )
        )
        check(response)

    await asyncio.to_thread(fuzz)


RAW_BODIES: list[tuple[str, bytes, str]] = [
    ("malformed JSON", b'{"query": "{ __typename }"', "application/json"),
    ("not UTF-8", b"\xff\xfe\xfd", "application/json"),
    ("a string", b'"{ __typename }"', "application/json"),
    ("null", b"null", "application/json"),
    ("a number", b"12", "application/json"),
    ("query not a string", b'{"query": 5}', "application/json"),
    (
        "variables not an object",
        b'{"query": "{ __typename }", "variables": [1]}',
        "application/json",
    ),
    (
        "deep JSON",
        b'{"query": "{ __typename }", "variables": {"a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}}",
        "application/json",
    ),
    ("deep unbalanced JSON", b"[" * 50_000 + b"}", "application/json"),
    ("batch of non-objects", b"[1, 2]", "application/json"),
    ("empty body", b"", "application/json"),
    ("form", b"query=%7B__typename%7D", "application/x-www-form-urlencoded"),
    ("plain text", b"{ __typename }", "text/plain"),
    ("graphql", b"{ __typename }", "application/graphql"),
    ("no content type", b"{}", ""),
    ("syntax error", b'{"query": "{ contexts { "}', "application/json"),
    ("unknown field", b'{"query": "{ nope }"}', "application/json"),
    (
        "two anonymous operations",
        b'{"query": "{ a: __typename } { b: __typename }"}',
        "application/json",
    ),
    (
        "unknown operation name",
        b'{"query": "query A { __typename }", "operationName": "B"}',
        "application/json",
    ),
    (
        "operation name not a string",
        b'{"query": "{ __typename }", "operationName": 7}',
        "application/json",
    ),
    (
        "huge string",
        json.dumps({"query": "{ __typename }", "variables": {"s": "x" * 5_000_000}}).encode(),
        "application/json",
    ),
    (
        "huge document",
        json.dumps({"query": "{ " + "__typename " * 100_000 + "}"}).encode(),
        "application/json",
    ),
    (
        "deep document",
        json.dumps({"query": "{ " + "a { " * 3000 + "b" + " }" * 3000 + " }"}).encode(),
        "application/json",
    ),
    (
        "deep literal",
        json.dumps(
            {
                "query": "{ contexts(filter: {metadataContains: "
                + "{a: " * 450
                + "1"
                + "}" * 450
                + "}) { totalCount } }"
            }
        ).encode(),
        "application/json",
    ),
    (
        "wrong variable types",
        b'{"query": "query($n: Int) { contexts(first: $n) { totalCount } }", '
        b'"variables": {"n": "x"}}',
        "application/json",
    ),
    (
        "subscription over POST",
        b'{"query": "subscription { messageAppended(contextId: \\"x\\") { id } }"}',
        "application/json",
    ),
]


@pytest.mark.parametrize(
    ("what", "body", "content_type"), RAW_BODIES, ids=[b[0] for b in RAW_BODIES]
)
async def test_malformed_requests_are_client_errors(
    target: tuple[httpx.AsyncClient, str, str], what: str, body: bytes, content_type: str
) -> None:
    http, _, _ = target
    headers = {"content-type": content_type} if content_type else {}
    response = await http.post("/graphql", content=body, headers=headers)
    check(response)
    if what in ("huge string", "two anonymous operations"):
        return  # unused variables may be large; Strawberry runs the first operation
    is_error = response.status_code >= 400 or bool(response.json().get("errors"))
    assert is_error, (what, response.text[:300])


@pytest.mark.parametrize(
    "params",
    [
        {"query": "{ __typename }", "variables": "[" * 20_000},
        {"query": "{ __typename }", "variables": "{bad"},
        {"query": 'mutation { deleteContext(id: "x") { id } }'},
        {"query": "{ " + "a { " * 2000 + " }" * 2000 + " }"},
        {"query": "{ __typename }", "extensions": "[1]"},
    ],
)
async def test_malformed_get_requests(
    target: tuple[httpx.AsyncClient, str, str], params: dict[str, str]
) -> None:
    http, _, _ = target
    check(await http.get("/graphql", params=params))


async def test_other_methods(target: tuple[httpx.AsyncClient, str, str]) -> None:
    http, _, _ = target
    for method in ("PUT", "DELETE", "PATCH"):
        response = await http.request(method, "/graphql", json={"query": "{ __typename }"})
        assert response.status_code == 405
