"""Persisted queries: Apollo-style APQ and the trusted-documents allowlist.

The operation entry (api/graphql/operation.py) asks `PersistedQueries.resolve`
for every operation, whatever its transport (GET, POST, a batch's item, a
graphql-transport-ws `subscribe`), after authenticating it: a hash resolves to
its text, or the request is refused.

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

Mutations over GET are refused by the entry (405, only queries may use GET),
also when the GET names a stored mutation by hash.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from api.settings import Settings

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


def from_settings(settings: Settings) -> PersistedQueries:
    """The persisted-query rules `settings` configure (APQ cache, trusted documents)."""
    trusted = (
        load_trusted_documents(settings.trusted_documents) if settings.trusted_documents else None
    )
    cache = DocumentCache(settings.persisted_query_cache_size, settings.persisted_query_cache_bytes)
    return PersistedQueries(cache, trusted)
