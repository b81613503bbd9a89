"""Persisted queries: Apollo-style APQ and the trusted-documents allowlist.

A pure ASGI middleware in front of `/graphql`. It reads the GraphQL request
(a JSON POST body, or the query string of a GET, or a graphql-transport-ws
`subscribe` message), resolves a document hash to its text, and hands
Strawberry an ordinary request with `query` filled in. Strawberry never
knows; the GraphiQL route and everything else are untouched.

Automatic persisted queries (the protocol of Apollo Client's
PersistedQueryLink and urql's persistedExchange):

- A request carries `extensions.persistedQuery = {version: 1, sha256Hash}`
  where sha256Hash is the hex SHA-256 of the UTF-8 query text.
- Hash only, hash unknown -> HTTP 200 with the error Apollo clients look for
  (message `PersistedQueryNotFound`, extensions.code
  `PERSISTED_QUERY_NOT_FOUND`); the client retries with the full text.
- Hash and text -> the hash is checked against the text (a mismatch is
  refused), the text is stored, the operation runs.
- Later, hash only (typically a GET, `?extensions={"persistedQuery":...}`
  with variables in the URL: cacheable) -> the stored text runs.

The store is an in-memory LRU per process, bounded by entries and bytes
(settings persisted_query_cache_size / persisted_query_cache_bytes). With
several processes a client may be told NOT_FOUND by one that has not seen
the document yet; it re-sends the text once, as the protocol intends.
persisted_query_cache_size=0 turns APQ off: hash-only requests get
`PersistedQueryNotSupported` and clients stop sending hashes.

Trusted documents (settings trusted_documents, CTXGRAPH_TRUSTED_DOCUMENTS):
the path of the manifest that GraphQL Code Generator's client preset emits
with `persistedDocuments: true` (`persisted-documents.json`, an object
`{"sha256:<hex>": "<document text>"}`). Then the server runs only those
documents: a request names one by hash (extensions.persistedQuery.sha256Hash
or `documentId`, with or without the `sha256:` prefix) or sends its exact
text; anything else, including APQ registration of new documents, is
refused with HTTP 403 and extensions.code FORBIDDEN, over HTTP and over
WebSocket alike.

Mutations over GET are refused by Strawberry itself (only queries may use
GET), also when the GET names a stored mutation by hash.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import orjson

from api import jsoncodec

if TYPE_CHECKING:
    from fastapi import FastAPI

    from api.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

NOT_FOUND_MESSAGE = "PersistedQueryNotFound"
NOT_SUPPORTED_MESSAGE = "PersistedQueryNotSupported"
NOT_FOUND_CODE = "PERSISTED_QUERY_NOT_FOUND"
NOT_SUPPORTED_CODE = "PERSISTED_QUERY_NOT_SUPPORTED"

_HEX64 = re.compile(r"[0-9a-f]{64}")
# What Apollo Server sends with APQ errors: the answer to a hash-only GET
# must not be cached, or a CDN would keep serving NOT_FOUND after registration.
_NO_CACHE = "private, no-cache, must-revalidate"


class TrustedDocumentsError(ValueError):
    """The trusted-documents manifest is missing or malformed."""


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _normalize_hash(value: object) -> str | None:
    """A lowercase 64-hex-digit SHA-256, accepting the `sha256:` prefix; None if malformed."""
    if not isinstance(value, str):
        return None
    value = value.removeprefix("sha256:").lower()
    return value if _HEX64.fullmatch(value) else None


def load_trusted_documents(path: Path) -> dict[str, str]:
    """Read a client-preset `persisted-documents.json`: {"sha256:<hex>": text}.

    Every key must be the SHA-256 of its text, so a hand-edited manifest that
    no longer matches its documents is caught at startup, not per request.
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TrustedDocumentsError(f"cannot read trusted documents {path}: {exc}") from exc
    except ValueError as exc:
        raise TrustedDocumentsError(f"trusted documents {path} is not JSON: {exc}") from exc
    if not isinstance(raw, dict) or not raw:
        raise TrustedDocumentsError(
            f"trusted documents {path} must be a non-empty JSON object "
            '{"sha256:<hash>": "<document>"} (GraphQL Code Generator client preset, '
            "persistedDocuments: true)"
        )
    documents: dict[str, str] = {}
    for key, text in raw.items():
        digest = _normalize_hash(key)
        if digest is None or not isinstance(text, str):
            raise TrustedDocumentsError(
                f"trusted documents {path}: entry {key!r} is not a sha256 hash -> document text"
            )
        if sha256_hex(text) != digest:
            raise TrustedDocumentsError(
                f"trusted documents {path}: entry {key!r} is not the sha256 of its document "
                "(use hashAlgorithm 'sha256' and do not edit the generated file)"
            )
        documents[digest] = text
    return documents


class DocumentCache:
    """A bounded LRU of APQ documents (hash -> text), bounded by count and UTF-8 bytes.

    Used from one event loop only: no lock needed.
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._docs: OrderedDict[str, str] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._docs)

    def get(self, digest: str) -> str | None:
        text = self._docs.get(digest)
        if text is not None:
            self._docs.move_to_end(digest)
        return text

    def put(self, digest: str, text: str) -> None:
        size = len(text.encode())
        if size > self.max_bytes or self.max_entries == 0:
            return  # too big to keep: the client simply sends it in full each time
        if digest in self._docs:
            self._docs.move_to_end(digest)
            return
        self._docs[digest] = text
        self._bytes += size
        while len(self._docs) > self.max_entries or self._bytes > self.max_bytes:
            _, old = self._docs.popitem(last=False)
            self._bytes -= len(old.encode())


@dataclass(frozen=True)
class Refusal:
    """A request answered by the middleware itself, as a GraphQL error."""

    status: int
    message: str
    code: str
    headers: tuple[tuple[str, str], ...] = ()

    def body(self) -> dict[str, Any]:
        return {"errors": [{"message": self.message, "extensions": {"code": self.code}}]}


@dataclass(frozen=True)
class Resolved:
    """Go on to Strawberry; `query` is the text to fill in when the request had none."""

    query: str | None = None


class PersistedQueries:
    """The decisions, independent of the transport."""

    def __init__(self, cache: DocumentCache, trusted: dict[str, str] | None) -> None:
        self.cache = cache
        self.trusted = trusted

    @property
    def apq_enabled(self) -> bool:
        return self.cache.max_entries > 0

    def resolve(self, query: object, extensions: object, document_id: object) -> Resolved | Refusal:
        text = query if isinstance(query, str) and query != "" else None
        digest: str | None = None
        persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
        if persisted is not None:
            digest = _normalize_hash(
                persisted.get("sha256Hash") if isinstance(persisted, dict) else None
            )
            if digest is None or not isinstance(persisted, dict) or persisted.get("version") != 1:
                return Refusal(
                    400,
                    "extensions.persistedQuery must be {version: 1, sha256Hash: <the hex "
                    "SHA-256 of the query text>}.",
                    "BAD_USER_INPUT",
                )
        if document_id is not None:
            named = _normalize_hash(document_id)
            if named is None or (digest is not None and named != digest):
                return Refusal(
                    400,
                    "documentId must be a SHA-256 document hash (sha256:<64 hex digits>), "
                    "the same as extensions.persistedQuery.sha256Hash when both are given.",
                    "BAD_USER_INPUT",
                )
            digest = named

        if self.trusted is not None:
            return self._resolve_trusted(text, digest)
        if digest is None:
            return Resolved()
        if not self.apq_enabled:
            if text is not None:
                return Resolved()
            return Refusal(
                200, NOT_SUPPORTED_MESSAGE, NOT_SUPPORTED_CODE, (("cache-control", _NO_CACHE),)
            )
        if text is None:
            stored = self.cache.get(digest)
            if stored is None:
                return Refusal(
                    200, NOT_FOUND_MESSAGE, NOT_FOUND_CODE, (("cache-control", _NO_CACHE),)
                )
            return Resolved(stored)
        if sha256_hex(text) != digest:
            return Refusal(
                400,
                "provided sha does not match query: extensions.persistedQuery.sha256Hash must "
                "be the hex SHA-256 of the UTF-8 query text exactly as sent.",
                "BAD_USER_INPUT",
            )
        self.cache.put(digest, text)
        return Resolved()

    def _resolve_trusted(self, text: str | None, digest: str | None) -> Resolved | Refusal:
        assert self.trusted is not None
        if digest is None:
            if text is None:
                return Resolved()  # no operation at all: Strawberry's own 400
            if sha256_hex(text) in self.trusted:
                return Resolved()
            return Refusal(
                403,
                "This server runs only trusted documents (CTXGRAPH_TRUSTED_DOCUMENTS) and this "
                "operation is not one of them. Send a document of the manifest by its hash "
                "(extensions.persistedQuery.sha256Hash or documentId), or add the operation to "
                "the client's operations and regenerate the manifest.",
                "FORBIDDEN",
            )
        stored = self.trusted.get(digest)
        if stored is None:
            return Refusal(
                403,
                f"Document sha256:{digest} is not in this server's trusted documents "
                "(CTXGRAPH_TRUSTED_DOCUMENTS): the client was generated from other operations "
                "than the server's manifest. Regenerate the client and deploy its "
                "persisted-documents.json with the server.",
                "FORBIDDEN",
            )
        if text is not None and text != stored:
            return Refusal(
                400,
                f"The query text is not the trusted document sha256:{digest}; send the hash alone.",
                "BAD_USER_INPUT",
            )
        return Resolved(None if text is not None else stored)


class PersistedQueryMiddleware:
    """ASGI middleware applying `PersistedQueries` to the GraphQL route."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        queries: PersistedQueries,
        path: str = "/graphql",
        max_body_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.app = app
        self.queries = queries
        self.paths = {path, path + "/"}
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self.paths:
            if scope["method"] == "GET":
                await self._get(scope, receive, send)
                return
            if scope["method"] == "POST":
                await self._post(scope, receive, send)
                return
        if (
            scope["type"] == "websocket"
            and scope["path"] in self.paths
            and (self.queries.trusted is not None or self.queries.apq_enabled)
        ):
            await self.app(scope, self._websocket_receive(receive, send), send)
            return
        await self.app(scope, receive, send)

    # --- HTTP GET: ?query=&variables=&extensions=&documentId= ----------------------

    async def _get(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        values = dict(params)
        if not {"query", "extensions", "documentId"} & values.keys():
            await self.app(scope, receive, send)  # the GraphiQL page, or Strawberry's 400
            return
        try:
            extensions = json.loads(values["extensions"]) if values.get("extensions") else None
        except ValueError:
            await self.app(scope, receive, send)  # Strawberry answers malformed JSON with 400
            return
        outcome = self.queries.resolve(values.get("query"), extensions, values.get("documentId"))
        if isinstance(outcome, Refusal):
            await _refuse(outcome, send)
            return
        if outcome.query is not None:
            params = [(k, v) for k, v in params if k != "query"] + [("query", outcome.query)]
            scope = dict(scope, query_string=urlencode(params).encode("latin-1"))
        await self.app(scope, receive, send)

    # --- HTTP POST: a JSON body ------------------------------------------------------

    async def _post(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = _header(scope, b"content-type") or b""
        if b"json" not in content_type.lower():
            await self.app(scope, receive, send)  # Strawberry refuses other bodies
            return
        chunks, complete = await _read_body(receive, self.max_body_bytes)
        body = b"".join(chunks)
        if not complete or (
            self.queries.trusted is None
            and b"persistedQuery" not in body
            and b"documentId" not in body
        ):
            # Not ours (or too big: the body limit is someone else's job): replay as is.
            await self.app(scope, _replay(chunks, receive, complete), send)
            return
        try:
            data = jsoncodec.loads(body)  # exact: the body is written again below
        except (RecursionError, ValueError):
            data = None
        if isinstance(data, list):
            # A batch (when the server accepts batches): every operation is resolved;
            # one refused operation refuses the request.
            items = [item if isinstance(item, dict) else {} for item in data]
            outcomes = [
                self.queries.resolve(i.get("query"), i.get("extensions"), i.get("documentId"))
                for i in items
            ]
            refused = next((o for o in outcomes if isinstance(o, Refusal)), None)
            if refused is not None:
                await _refuse(refused, send)
                return
            for item, outcome in zip(items, outcomes, strict=True):
                if isinstance(outcome, Resolved) and outcome.query is not None:
                    item["query"] = outcome.query
            await self._forward_json(scope, receive, send, data)
            return
        if not isinstance(data, dict):
            await self.app(scope, _replay(chunks, receive, complete), send)
            return
        outcome = self.queries.resolve(
            data.get("query"), data.get("extensions"), data.get("documentId")
        )
        if isinstance(outcome, Refusal):
            await _refuse(outcome, send)
            return
        if outcome.query is None:
            await self.app(scope, _replay(chunks, receive, complete), send)
            return
        data["query"] = outcome.query
        await self._forward_json(scope, receive, send, data)

    async def _forward_json(self, scope: Scope, receive: Receive, send: Send, data: Any) -> None:
        """Pass the request on with `data` as its body."""
        body = jsoncodec.dumps(data)
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.app(dict(scope, headers=headers), _replay([body], receive, True), send)

    # --- WebSocket: graphql-transport-ws `subscribe` messages --------------------------

    def _websocket_receive(self, receive: Receive, send: Send) -> Receive:
        async def wrapped() -> Message:
            while True:
                message = await receive()
                if message["type"] != "websocket.receive":
                    return message
                raw = message.get("text")
                if raw is None:
                    raw = message.get("bytes")
                try:
                    data = json.loads(raw) if raw is not None else None
                except ValueError:
                    return message  # the protocol handler closes the socket
                if not isinstance(data, dict) or data.get("type") != "subscribe":
                    return message
                payload = data.get("payload")
                if not isinstance(payload, dict):
                    return message
                outcome = self.queries.resolve(
                    payload.get("query"), payload.get("extensions"), payload.get("documentId")
                )
                if isinstance(outcome, Refusal):
                    # graphql-transport-ws: an `error` message ends that operation only.
                    error = {
                        "id": data.get("id"),
                        "type": "error",
                        "payload": outcome.body()["errors"],
                    }
                    await send({"type": "websocket.send", "text": json.dumps(error)})
                    continue
                if outcome.query is None:
                    return message
                data["payload"] = dict(payload, query=outcome.query)
                return {"type": "websocket.receive", "text": json.dumps(data)}

        return wrapped


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value)
    return None


async def _read_body(receive: Receive, limit: int) -> tuple[list[bytes], bool]:
    """The body's chunks, and whether they are all of it (False: over `limit`, or cut short)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return chunks, False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return chunks, True
        if size > limit:
            return chunks, False


def _replay(chunks: list[bytes], receive: Receive, complete: bool) -> Receive:
    """A receive that yields the buffered chunks first, then the rest of the stream."""
    pending = list(chunks)

    async def replay() -> Message:
        if pending:
            chunk = pending.pop(0)
            return {
                "type": "http.request",
                "body": chunk,
                "more_body": bool(pending) or not complete,
            }
        return await receive()

    return replay


async def _refuse(refusal: Refusal, send: Send) -> None:
    body = orjson.dumps(refusal.body())
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.encode(), v.encode()) for k, v in refusal.headers),
    ]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def install(app: FastAPI, settings: Settings, path: str = "/graphql") -> None:
    """Put the middleware in front of `app`'s GraphQL route, as `settings` configure it."""
    trusted = (
        load_trusted_documents(settings.trusted_documents) if settings.trusted_documents else None
    )
    cache = DocumentCache(settings.persisted_query_cache_size, settings.persisted_query_cache_bytes)
    app.add_middleware(
        PersistedQueryMiddleware,
        queries=PersistedQueries(cache, trusted),
        path=path,
        max_body_bytes=settings.max_body_bytes,
    )
