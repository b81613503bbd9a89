"""The workloads: GraphQL documents, their request bodies, and how a response is checked.

The read workloads are the PostGraphile anchor's q1/q2/q3 in ctxgraph's schema
(same selections, same sampling of ids: `ORDER BY md5(id || salt)`), so the two
servers answer the same question about the same kind of data. Bodies are
sampled from the database before the load and every read body is sent once and
validated before any figure is taken: an error is never counted as throughput.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bench.dataset import make_text, token_count


def _doc(text: str) -> str:
    # one line: the same text every time, so the server's parse/validation caches hit
    return " ".join(text.split())


CHAT_PAGE = _doc("""
query ChatPage($id: ID!) {
  context(id: $id) {
    id name messageCount
    messages(last: 50) { nodes { id version role content tokenCount createdAt } }
  }
}""")

CHAT_PAGE_APOLLO = _doc("""
query ChatPage($id: ID!) {
  context(id: $id) {
    __typename id name messageCount
    messages(last: 50) {
      __typename
      nodes { ...ChatMessage }
      pageInfo { __typename hasPreviousPage startCursor }
    }
  }
}
fragment ChatMessage on Message { __typename id version role content tokenCount createdAt }""")
"""The chat page as Apollo Client sends it: __typename everywhere (its cache adds
them), the message fields in a fragment, pageInfo for "load older"."""

CHAT_PAGE_HEADER = _doc("""
query ChatPage($id: ID!) {
  context(id: $id) {
    id name messageCount forkVersion
    parent { id name }
    root { id }
    messages(last: 50) { nodes { id version role content tokenCount createdAt } }
  }
}""")
"""The chat page with a header saying where a branch came from."""

CHAT_PAGE_DIRECTIVE = _doc("""
query ChatPage($id: ID!, $t: Boolean!) {
  context(id: $id) {
    id name messageCount
    messages(last: 50) { nodes { id version role content tokenCount @include(if: $t) createdAt } }
  }
}""")
"""The chat page with one field behind a client's directive."""

CHAT_PAGE_PARTS = _doc("""
query ChatPage($id: ID!) {
  context(id: $id) {
    id name messageCount
    messages(last: 50) {
      nodes {
        id version role content tokenCount createdAt
        parts {
          __typename
          ... on TextPart { text }
          ... on ToolCallPart { callId name arguments }
          ... on ToolResultPart { callId output isError }
          ... on ReasoningPart { text }
        }
      }
    }
  }
}""")
"""The chat page of an agent's conversation: the messages' typed parts as a client
selects them (the parts variant of the data set: `bench build --tool-calls 0.2`)."""

SIDEBAR = _doc("""
query Sidebar {
  contexts(first: 20) { nodes { id name messageCount updatedAt } }
}""")

TREE = _doc("""
query Tree($id: ID!) {
  context(id: $id) {
    id name forkVersion
    parent { id name latestVersion forks { nodes { id name forkVersion } } }
  }
}""")

APPEND = _doc("""
mutation Append($id: ID!, $messages: [MessageInput!]!) {
  appendMessages(contextId: $id, messages: $messages) {
    messages { id version }
  }
}""")

APPEND_FORMATTED = _doc("""
mutation AppendFormatted($id: ID!, $messages: JSON!) {
  appendFormatted(contextId: $id, format: OPENAI_CHAT, messages: $messages) {
    messages { id version }
  }
}""")
"""An assistant message that calls one tool, as OpenAI's chat completions return it."""

FORK = _doc("""
mutation Fork($id: ID!, $v: Int) {
  forkContext(id: $id, atVersion: $v) { id forkVersion latestVersion messageCount }
}""")

SEARCH = _doc("""
query Search($e: [Float!]!, $scope: SearchScope!, $id: ID) {
  similarMessages(embedding: $e, first: 10, scope: $scope, contextId: $id) {
    distance message { id version content }
  }
}""")

Body = dict[str, Any]
Check = Callable[[Body, dict[str, Any]], str | None]


def body(query: str, **variables: Any) -> Body:
    return {"query": query, "variables": variables} if variables else {"query": query}


def dumps(b: Body) -> str:
    return json.dumps(b, separators=(",", ":"))


# --- checks: None when the response is right, else what is wrong ----------------------


def check_chat_page(_b: Body, data: dict[str, Any]) -> str | None:
    c = data.get("context")
    if not c:
        return "context is null"
    nodes = c["messages"]["nodes"]
    want = min(50, c["messageCount"])
    versions = [n["version"] for n in nodes]
    if len(nodes) != want:
        return f"expected {want} messages, got {len(nodes)}"
    if versions != list(range(c["messageCount"] - want + 1, c["messageCount"] + 1)):
        return f"not the newest messages in ascending order: {versions[:3]}..{versions[-3:]}"
    return None


def check_chat_page_header(b: Body, data: dict[str, Any]) -> str | None:
    problem = check_chat_page(b, data)
    c = data["context"]
    if problem is None and (
        c["root"] is None or (c["parent"] is None) != (c["forkVersion"] is None)
    ):
        return f"header does not match the context: {c['parent']} {c['root']} {c['forkVersion']}"
    return problem


def check_sidebar(_b: Body, data: dict[str, Any]) -> str | None:
    nodes = data["contexts"]["nodes"]
    ts = [n["updatedAt"] for n in nodes]
    if len(nodes) != 20 or ts != sorted(ts, reverse=True):
        return f"expected 20 contexts newest first, got {len(nodes)}"
    return None


def check_tree(_b: Body, data: dict[str, Any]) -> str | None:
    c = data.get("context")
    if not c or not c.get("parent"):
        return "fork or its parent is null"
    if c["id"] not in [n["id"] for n in c["parent"]["forks"]["nodes"]]:
        return "fork missing from its parent's forks"
    return None


def check_append(b: Body, data: dict[str, Any]) -> str | None:
    msgs = data["appendMessages"]["messages"]
    want = len(b["variables"]["messages"])
    versions = [m["version"] for m in msgs]
    if len(msgs) != want or versions != list(range(versions[0], versions[0] + want)):
        return f"expected {want} appended messages with consecutive versions, got {versions}"
    return None


def check_append_formatted(b: Body, data: dict[str, Any]) -> str | None:
    msgs = data["appendFormatted"]["messages"]
    if len(msgs) != 1:
        return f"expected one appended message, got {msgs}"
    return None


def check_fork(b: Body, data: dict[str, Any]) -> str | None:
    f = data["forkContext"]
    v = b["variables"].get("v")
    if v is None:  # at the latest version: whatever it is, all three agree
        v = f["forkVersion"]
    if f["forkVersion"] != v or f["latestVersion"] != v or f["messageCount"] != v:
        return f"fork at {v} came back as {f}"
    return None


def check_search(_b: Body, data: dict[str, Any]) -> str | None:
    hits = data["similarMessages"]
    distances = [h["distance"] for h in hits]
    if len(hits) > 10 or distances != sorted(distances):
        return f"expected <= 10 matches nearest first, got {distances}"
    return None


# --- workloads ------------------------------------------------------------------------


@dataclass
class Workload:
    name: str
    description: str
    check: Check
    writes: bool = False
    bodies: list[Body] = field(default_factory=list)
    skipped: str | None = None  # why it was not measured

    def check_response(self, b: Body, status: int, raw: bytes) -> str | None:
        if status != 200:
            return f"HTTP {status}: {raw[:200]!r}"
        try:
            resp = json.loads(raw)
        except ValueError:
            return f"not JSON: {raw[:200]!r}"
        if resp.get("errors"):
            return "errors: " + json.dumps(resp["errors"])[:300]
        if not resp.get("data"):
            return "no data"
        return self.check(b, resp["data"])


DESCRIPTIONS = {
    "chat-page": "a root context by id with its 50 newest messages (200 roots with >= 50)",
    "chat-page-apollo": "chat-page as Apollo Client sends it: __typename, a fragment, pageInfo",
    "chat-page-header": "chat-page on forks with parent { id name }, root { id }, forkVersion",
    "chat-page-directive": "chat-page with @include(if: $t) on one message field",
    "chat-page-parts": "chat-page selecting the messages' parts (on the tool-call variant)",
    "sidebar": "the 20 most recently updated contexts",
    "tree": "a fork, its parent and the parent's forks (200 forks)",
    "chat-page-deep": "chat-page on forks at depth 5 (history across 6 segments)",
    "append": "one message (200-800 chars) appended to a random context",
    "append-batch": "10 messages (200-800 chars each) appended to a random context",
    "fork": "fork a random context at a random version",
    "append-formatted": "appendFormatted: one OPENAI_CHAT assistant message with one tool call",
    "search-all": "similarMessages scope ALL, first 10",
    "search-context": "similarMessages scope CONTEXT, first 10",
    "mix": "70% chat-page, 10% sidebar, 15% append, 3% fork, 2% search",
    "fork-short": "fork a 10-message context at a random version",
    "fork-long": "fork a 100,000-message context at a random version",
    "fork-short-latest": "fork a 10-message context at its latest version",
    "fork-long-latest": "fork a 100,000-message context at its latest version",
}
READS = ["chat-page", "sidebar", "tree", "chat-page-deep"]
WRITES_V2 = ["append-formatted"]
CLIENT_SHAPES = ["chat-page-apollo", "chat-page-header", "chat-page-directive", "chat-page-parts"]
DEFAULT = [*READS, "search-all", "search-context", "append", "append-batch", "fork", "mix"]
FORK_LATENCY = ["fork-short", "fork-long", "fork-short-latest", "fork-long-latest"]
ALL = [*DEFAULT, *CLIENT_SHAPES, *WRITES_V2, *FORK_LATENCY]
MIX = {"chat-page": 70, "sidebar": 10, "append": 15, "fork": 3, "search": 2}

CHECKS: dict[str, tuple[Check, bool]] = {
    "chat-page": (check_chat_page, False),
    "sidebar": (check_sidebar, False),
    "tree": (check_tree, False),
    "chat-page-deep": (check_chat_page, False),
    "chat-page-apollo": (check_chat_page, False),
    "chat-page-header": (check_chat_page_header, False),
    "chat-page-directive": (check_chat_page, False),
    "chat-page-parts": (check_chat_page, False),
    "append": (check_append, True),
    "append-batch": (check_append, True),
    "append-formatted": (check_append_formatted, True),
    "fork": (check_fork, True),
    "search-all": (check_search, False),
    "search-context": (check_search, False),
    "fork-short": (check_fork, True),
    "fork-long": (check_fork, True),
    "fork-short-latest": (check_fork, True),
    "fork-long-latest": (check_fork, True),
}


async def _ids(conn: AsyncConnection, where: str, salt: str, n: int) -> list[str]:
    rows = await conn.execute(
        sa.text(
            f"SELECT id FROM contexts WHERE deleted_at IS NULL AND {where}"
            " ORDER BY md5(id::text || :salt) LIMIT :n"
        ),
        {"salt": salt, "n": n},
    )
    return [str(r.id) for r in rows]


async def sample_bodies(
    conn: AsyncConnection, name: str, n: int = 200, seed: int = 42
) -> list[Body]:
    """Request bodies for one workload, sampled deterministically from the database."""
    rng = random.Random(f"{seed}:{name}")
    if name == "chat-page":
        ids = await _ids(conn, "parent_id IS NULL AND message_count >= 50", "q1", n)
        return [body(CHAT_PAGE, id=i) for i in ids]
    if name == "chat-page-deep":
        ids = await _ids(
            conn,
            "message_count >= 50 AND id IN (SELECT c5.id FROM contexts c5"
            " JOIN contexts c4 ON c4.id = c5.parent_id JOIN contexts c3 ON c3.id = c4.parent_id"
            " JOIN contexts c2 ON c2.id = c3.parent_id JOIN contexts c1 ON c1.id = c2.parent_id"
            " WHERE c1.parent_id IS NOT NULL)",
            "deep",
            n,
        )
        return [body(CHAT_PAGE, id=i) for i in ids]
    if name == "chat-page-apollo":
        ids = await _ids(conn, "parent_id IS NULL AND message_count >= 50", "q1", n)
        return [body(CHAT_PAGE_APOLLO, id=i) for i in ids]
    if name == "chat-page-directive":
        ids = await _ids(conn, "parent_id IS NULL AND message_count >= 50", "q1", n)
        return [body(CHAT_PAGE_DIRECTIVE, id=i, t=k % 2 == 0) for k, i in enumerate(ids)]
    if name == "chat-page-parts":
        ids = await _ids(conn, "parent_id IS NULL AND message_count >= 50", "q1", n)
        return [body(CHAT_PAGE_PARTS, id=i) for i in ids]
    if name == "chat-page-header":
        ids = await _ids(conn, "parent_id IS NOT NULL AND message_count >= 50", "header", n)
        return [body(CHAT_PAGE_HEADER, id=i) for i in ids]
    if name == "sidebar":
        return [body(SIDEBAR)]
    if name == "tree":
        ids = await _ids(conn, "parent_id IS NOT NULL", "q3", n)
        return [body(TREE, id=i) for i in ids]
    if name in ("append", "append-batch"):
        ids = await _ids(conn, "true", name, 10 * n)
        size = 10 if name == "append-batch" else 1
        out = []
        for i in ids:
            messages = []
            for k in range(size):
                content = make_text(rng, 200, 800)
                role = "USER" if k % 2 == 0 else "ASSISTANT"
                messages.append(
                    {"role": role, "content": content, "tokenCount": token_count(content)}
                )
            out.append(body(APPEND, id=i, messages=messages))
        return out
    if name == "append-formatted":
        ids = await _ids(conn, "true", name, 10 * n)
        out = []
        for k, i in enumerate(ids):
            content = make_text(rng, 200, 800)
            call = {
                # the load driver makes @SEQ@ unique per request (bench/wrk_graphql.lua)
                "id": f"call_{k}_{rng.getrandbits(64):016x}_@SEQ@",
                "type": "function",
                "function": {"name": "search_docs", "arguments": json.dumps({"q": content[:40]})},
            }
            message = {"role": "assistant", "content": content, "tool_calls": [call]}
            out.append(body(APPEND_FORMATTED, id=i, messages=[message]))
        return out
    if name == "fork":
        rows = await conn.execute(
            # roots nobody forked yet: the tree workload's parents keep their forks list
            sa.text(
                "SELECT id, latest_version FROM contexts c WHERE deleted_at IS NULL"
                " AND parent_id IS NULL AND name NOT LIKE 'bench fork-latency%'"
                " AND NOT EXISTS (SELECT 1 FROM contexts f WHERE f.parent_id = c.id)"
                " ORDER BY md5(id::text || 'fork') LIMIT :n"
            ),
            {"n": 5 * n},
        )
        return [body(FORK, id=str(r.id), v=rng.randint(0, r.latest_version)) for r in rows]
    if name in ("search-all", "search-context"):
        # "more like this message": the query is a stored message's embedding (the
        # search variant's clustered vectors), for CONTEXT within its own context
        rows = await conn.execute(
            sa.text(
                "SELECT m.context_id, CAST(m.embedding AS text) AS e FROM messages m"
                " JOIN contexts c ON c.id = m.context_id AND c.deleted_at IS NULL"
                " WHERE m.embedding IS NOT NULL AND m.deleted_at IS NULL"
                " ORDER BY md5(m.id::text || :salt) LIMIT :n"
            ),
            {"salt": name, "n": max(1, n // 4)},
        )
        scope = "ALL" if name == "search-all" else "CONTEXT"
        return [
            body(
                SEARCH,
                e=[float(x) for x in r.e.strip("[]").split(",")],
                scope=scope,
                id=None if scope == "ALL" else str(r.context_id),
            )
            for r in rows
        ]
    raise ValueError(f"no sampler for workload {name!r}")


def fork_latency_bodies(
    context_id: uuid.UUID, latest: int, n: int, seed: int = 42, at_latest: bool = False
) -> list[Body]:
    """Forks of one context at random versions, or at its latest (no atVersion)."""
    if at_latest:
        return [body(FORK, id=str(context_id))]
    rng = random.Random(f"{seed}:fork-latency:{latest}")
    return [body(FORK, id=str(context_id), v=rng.randint(0, latest)) for _ in range(n)]


def mix_lines(parts: dict[str, list[Body]], n: int = 1000, seed: int = 42) -> list[Body]:
    """n bodies drawn by the MIX weights (search split between ALL and CONTEXT)."""
    rng = random.Random(f"{seed}:mix")
    names = list(MIX)
    weights = [MIX[k] for k in names]
    cursor = dict.fromkeys(parts, 0)
    out = []
    for _ in range(n):
        k = rng.choices(names, weights)[0]
        if k == "search":
            k = rng.choice(["search-all", "search-context"])
        if k not in parts or not parts[k]:
            # a part that is not available (search not implemented) is replaced by chat-page
            k = "chat-page"
        b = parts[k][cursor[k] % len(parts[k])]
        cursor[k] += 1
        out.append(b)
    return out


def check_any(b: Body, status: int, raw: bytes) -> str | None:
    """The check for a mix line: by which operation the body carries."""
    name = {
        CHAT_PAGE: "chat-page",
        SIDEBAR: "sidebar",
        APPEND: "append",
        FORK: "fork",
        SEARCH: "search-all",
    }[b["query"]]
    check, _ = CHECKS[name]
    return Workload(name, "", check).check_response(b, status, raw)
