"""A plan's answer is graphql-core's, byte for byte, for generated selections
(issue 21, item 5).

Two real `ctxgraph serve` processes share one database: one answers the common
shapes by their plans, the other has CTXGRAPH_PLANS=false and runs everything
through graphql-core. Hypothesis writes operations over Context, Message, their
connections, the parent, root and ancestors: column subsets, aliases, named and
inline fragments (on the object type and on the Node interface), __typename,
@include/@skip with literals and variables, variables vs literals, page sizes in
and out of range, real and forged cursors, malformed and missing ids. Each
operation goes to both servers; the response bodies must be the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from graphql import parse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.graphql.plans import make_plan
from api.graphql.schema import build_schema
from tests.dbutil import running_server

SCHEMA = build_schema()._schema

CONTEXT_COLUMNS = [
    "id",
    "name",
    "metadata",
    "createdAt",
    "updatedAt",
    "deletedAt",
    "messageCount",
    "totalTokens",
    "latestVersion",
    "forkVersion",
]
MESSAGE_COLUMNS = [
    "id",
    "version",
    "role",
    "content",
    "tokenCount",
    "model",
    "toolName",
    "toolCallId",
    "createdAt",
    "deletedAt",
    "hasEmbedding",
]
PAGE_INFO = ["hasNextPage", "hasPreviousPage", "startCursor", "endCursor"]
PART_FIELDS = {
    "TextPart": ["text"],
    "ImagePart": ["url", "mediaType", "detail"],
    "FilePart": ["url", "mediaType", "filename"],
    "ToolCallPart": ["callId", "name", "arguments"],
    "ToolResultPart": ["callId", "output", "isError"],
    "ReasoningPart": ["text", "encrypted", "provider"],
    "DataPart": ["name", "data"],
}
USAGE_FIELDS = ["inputTokens", "outputTokens", "cachedInputTokens", "reasoningTokens"]
DIRECTIVES = [
    "",
    "",
    "",
    " @include(if: true)",
    " @skip(if: true)",
    " @include(if: $t)",
    " @skip(if: $s)",
]


@pytest.fixture(scope="module")
def servers(database_url: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(planned server, graphql-core server, the data both read)."""
    env = {"DATABASE_URL": database_url, "CTXGRAPH_ACCESS_LOG": "false"}
    with (
        running_server(env) as planned,
        running_server({**env, "CTXGRAPH_PLANS": "false"}) as reference,
    ):
        yield planned, reference, _family(planned)


def _post(base: str, query: str, variables: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(f"{base}/graphql", json={"query": query, "variables": variables}, timeout=30)


def _data(base: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    body = _post(base, query, variables).json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


def _family(base: str) -> dict[str, Any]:
    """A root with a deleted message, a fork and a fork of it, a deleted sibling."""
    messages = [
        {"role": "SYSTEM", "content": "be brief", "tokenCount": 3},
        {"role": "USER", "content": "u1", "tokenCount": 2},
        {"role": "ASSISTANT", "content": "a1", "model": "m-1"},
        {"role": "TOOL", "content": "{}", "toolName": "t", "toolCallId": "c1"},
        {"role": "USER", "content": "u2"},
    ]
    create = (
        'mutation($m: [MessageInput!]) { createContext(name: "equality root",'
        ' metadata: {k: "v", n: [1, 2]}, messages: $m) { id } }'
    )
    root = _data(base, create, {"m": messages})["createContext"]["id"]
    page = _data(
        base, "query($id: ID!) { context(id: $id) { messages { nodes { id } } } }", {"id": root}
    )
    deleted = page["context"]["messages"]["nodes"][2]["id"]
    _data(base, "mutation($id: ID!) { deleteMessage(id: $id) { id } }", {"id": deleted})
    fork = "mutation($id: ID!, $v: Int) { forkContext(id: $id, atVersion: $v) { id } }"
    append = (
        "mutation($id: ID!, $m: [MessageInput!]!) {"
        " appendMessages(contextId: $id, messages: $m) { messages { id } } }"
    )
    child = _data(base, fork, {"id": root, "v": 4})["forkContext"]["id"]
    _data(base, append, {"id": child, "m": [{"role": "ASSISTANT", "content": "c1"}]})
    grandchild = _data(base, fork, {"id": child, "v": 5})["forkContext"]["id"]
    _data(base, append, {"id": grandchild, "m": [{"role": "USER", "content": "g1"}]})
    exchange = [
        {"role": "USER", "parts": [{"text": "weather?"}, {"image": {"url": "https://e.x/a.png"}}]},
        {
            "role": "ASSISTANT",
            "parts": [
                {"reasoning": {"text": "look it up", "encrypted": "blob", "provider": "x"}},
                {"toolCall": {"callId": "w1", "name": "weather", "arguments": {"city": "Oslo"}}},
            ],
            "usage": {"inputTokens": 12, "outputTokens": 3},
            "model": "m-2",
        },
        {"role": "TOOL", "parts": [{"toolResult": {"callId": "w1", "output": {"t": -3}}}]},
        {
            "role": "ASSISTANT",
            "parts": [{"text": "-3 C"}, {"data": {"name": "card", "data": [1, {"a": None}]}}],
            "status": "INCOMPLETE",
        },
    ]
    _data(base, append, {"id": grandchild, "m": exchange})
    sibling = _data(base, fork, {"id": root, "v": 2})["forkContext"]["id"]
    _data(base, "mutation($id: ID!) { deleteContext(id: $id) { id } }", {"id": sibling})
    first = _data(
        base,
        "query($id: ID!) { context(id: $id) { messages(first: 2) { pageInfo { endCursor } }"
        " parent { forks(first: 1) { pageInfo { endCursor } } } } }",
        {"id": grandchild},
    )["context"]
    listed = _data(base, "{ contexts(first: 2) { pageInfo { endCursor } } }")
    return {
        "ids": [root, child, grandchild, sibling, "00000000-0000-4000-8000-000000000000", "nope"],
        "message_cursor": first["messages"]["pageInfo"]["endCursor"],
        "fork_cursor": first["parent"]["forks"]["pageInfo"]["endCursor"],
        "list_cursor": listed["contexts"]["pageInfo"]["endCursor"],
    }


class Document:
    """The fragments a generated operation defines (named fragments live at the top)."""

    def __init__(self) -> None:
        self.fragments: list[str] = []


Piece = str | Callable[[st.DrawFn], str]
"""A field selection, or a function drawing one (only called when it is chosen, so a
nested selection's fragments exist only when it is used)."""


@st.composite
def _fields(draw: st.DrawFn, doc: Document, type_name: str, pieces: list[Piece]) -> str:
    """Some of `pieces` with aliases, directives, fragments and __typename."""
    indexes = draw(st.lists(st.integers(0, len(pieces) - 1), min_size=1, max_size=len(pieces) + 1))
    chosen = [p if isinstance(p, str) else p(draw) for p in (pieces[i] for i in indexes)]
    if draw(st.booleans()):
        chosen.append("__typename")
    out = []
    for i, piece in enumerate(chosen):
        if draw(st.integers(0, 4)) == 0 and "{" not in piece:
            piece = f"a{i}_{piece.split('(')[0]}: {piece}"
        piece += draw(st.sampled_from(DIRECTIVES)) if "{" not in piece else ""
        out.append(piece)
    wrap = draw(st.integers(0, 5))
    if wrap == 0:
        name = f"F{len(doc.fragments)}"
        doc.fragments.append(f"fragment {name} on {type_name} {{ {' '.join(out)} }}")
        return f"...{name}"
    if wrap == 1:
        if type_name in ("Context", "Message") and draw(st.booleans()):
            return f"... on Node {{ id }} {' '.join(out)}"  # the interface has only id
        return f"... on {type_name} {{ {' '.join(out)} }}"
    return " ".join(out)


@st.composite
def _page_arguments(draw: st.DrawFn, cursor: str, lists: bool = False) -> str:
    size = draw(st.sampled_from([0, 1, 2, 3, 50, -1, 501]))
    forged = '"bm90IGEgY3Vyc29y"'
    real = json.dumps(cursor)
    options = [
        "",
        f"first: {size}",
        f"last: {size}",
        f"first: {size}, after: {real}",
        f"last: {size}, before: {real}",
        "first: 1, last: 1",
        f"after: {forged}",
        f"first: $n, after: {real}",
    ]
    if lists:
        options += [
            "orderBy: {field: NAME, direction: ASC}, first: 3",
            "filter: {rootsOnly: true}, last: 2",
        ]
    chosen = draw(st.sampled_from(options))
    return f"({chosen})" if chosen else ""


def _message_pieces(doc: Document) -> list[Piece]:
    """A message's columns, its status, usage and parts (the union, by member)."""

    def parts(d: st.DrawFn) -> str:
        members = d(st.lists(st.sampled_from(sorted(PART_FIELDS)), max_size=7, unique=True))
        inline = [f"... on {m} {{ {d(_fields(doc, m, list(PART_FIELDS[m])))} }}" for m in members]
        if d(st.booleans()) or not inline:
            inline.insert(0, "__typename")
        return f"parts {{ {' '.join(inline)} }}"

    return [
        *MESSAGE_COLUMNS,
        "status",
        lambda d: f"forks {{ {d(_fields(doc, 'Context', list(CONTEXT_COLUMNS)))} }}",
        lambda d: f"usage {{ {d(_fields(doc, 'TokenUsage', list(USAGE_FIELDS)))} }}",
        parts,
    ]


def _connection(
    doc: Document, type_name: str, node_columns: list[Piece], total: bool
) -> Callable[[st.DrawFn], str]:
    node_type = type_name.removesuffix("Connection")

    def draw_it(draw: st.DrawFn) -> str:
        pieces: list[Piece] = [
            lambda d: f"nodes {{ {d(_fields(doc, node_type, list(node_columns)))} }}",
            lambda d: (
                f"edges {{ cursor node {{ {d(_fields(doc, node_type, list(node_columns)))} }} }}"
            ),
            lambda d: f"pageInfo {{ {d(_fields(doc, 'PageInfo', list(PAGE_INFO)))} }}",
        ]
        if total:
            pieces.append("totalCount")
        return draw(_fields(doc, type_name, pieces))

    return draw_it


@st.composite
def operations(draw: st.DrawFn, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    doc = Document()
    variables: dict[str, Any] = {
        "t": draw(st.booleans()),
        "s": draw(st.booleans()),
        "n": draw(st.sampled_from([1, 2, 600])),
    }
    markers = "t_: __typename @include(if: $t) s_: __typename @skip(if: $s)"
    if draw(st.integers(0, 3)) == 0:
        args = draw(_page_arguments(data["list_cursor"], lists=True))
        body = _connection(doc, "ContextConnection", list(CONTEXT_COLUMNS), total=False)(draw)
        selection = f"contexts{args} {{ {markers} {body} }}"
    else:
        messages = _connection(doc, "MessageConnection", _message_pieces(doc), total=True)
        forks = _connection(doc, "ContextConnection", list(CONTEXT_COLUMNS), total=False)

        def forks_field(d: st.DrawFn) -> str:
            arguments = d(_page_arguments(data["fork_cursor"]))
            arguments = arguments.replace("last", "first").replace(", before", ", after")
            return f"forks{arguments} {{ {forks(d)} }}"

        pieces: list[Piece] = [
            *CONTEXT_COLUMNS,
            lambda d: f"messages{d(_page_arguments(data['message_cursor']))} {{ {messages(d)} }}",
            lambda d: f"parent {{ {d(_fields(doc, 'Context', [*CONTEXT_COLUMNS, forks_field]))} }}",
            lambda d: f"root {{ {d(_fields(doc, 'Context', list(CONTEXT_COLUMNS)))} }}",
            lambda d: f"ancestors {{ {d(_fields(doc, 'Context', list(CONTEXT_COLUMNS)))} }}",
        ]
        body = draw(_fields(doc, "Context", pieces))
        if draw(st.booleans()):
            variables["id"] = draw(st.sampled_from(data["ids"]))
            argument = "$id"
        else:
            argument = json.dumps(draw(st.sampled_from(data["ids"])))
        selection = f"context(id: {argument}) {{ {markers} {body} }}"
    fragments = " ".join(doc.fragments)
    used = ["$t: Boolean!", "$s: Boolean!"]
    for name, type_ in (("n", "Int"), ("id", "ID!")):
        if f"${name}" in selection + fragments:
            used.append(f"${name}: {type_}")
        else:
            variables.pop(name, None)
    return f"query Q({', '.join(used)}) {{ {selection} }} {fragments}", variables


PLANNED: list[bool] = []


@pytest.mark.slow
@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.data())
def test_plans_answer_byte_for_byte_as_graphql_core(
    servers: tuple[str, str, dict[str, Any]], data: st.DataObject
) -> None:
    planned, reference, family = servers
    query, variables = data.draw(operations(family))
    expected = _post(reference, query, variables)
    answer = _post(planned, query, variables)
    assert (answer.status_code, answer.content) == (expected.status_code, expected.content), query
    body = expected.json()
    if "data" in body:  # valid: did a plan answer it? (the share is checked below)
        PLANNED.append(make_plan(SCHEMA, parse(query), "Q", variables) is not None)


@pytest.mark.slow
def test_most_generated_operations_had_a_plan() -> None:
    """The comparison above is not vacuous: most valid operations it sent were planned."""
    assert len(PLANNED) >= 100
    print(f"planned: {sum(PLANNED)} of {len(PLANNED)} valid operations")  # noqa: T201
    assert sum(PLANNED) / len(PLANNED) >= 0.5, (sum(PLANNED), len(PLANNED))
