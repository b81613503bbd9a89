"""Optional embedding provider (an OpenAI-compatible `/embeddings` endpoint) and the
background worker that embeds messages appended without an embedding.

Configured by CTXGRAPH_EMBEDDINGS_URL (the API base such as https://api.openai.com/v1,
or the full .../embeddings URL), CTXGRAPH_EMBEDDINGS_API_KEY and
CTXGRAPH_EMBEDDINGS_MODEL (text-embedding-3-small). Without a URL there is no
provider: `similarMessages(text:)` is refused and no worker runs.

The worker claims a batch of messages that have no embedding with
`FOR UPDATE SKIP LOCKED` (so any number of processes share the work without
taking the same rows, and never wait for each other), calls the provider while
holding the claim, and stores the vectors in the same transaction. A failure
rolls the claim back: the rows stay unembedded and are claimed again after a
backoff, by this process or another, before or after a restart: the only state
is `embedding IS NULL`. Each statement is bounded client-side (asyncpg's
command_timeout, CTXGRAPH_DATABASE_TIMEOUT: api/db.py), so a database that stops
answering is a failure like any other. Appends never wait for the worker: it locks message rows
it claimed, never context rows. (A deleteMessage or setMessageEmbedding of a
claimed row waits for the provider call, at most the timeout.)
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from api.errors import CtxgraphError
from api.security.failures import classify as classify_failure
from api.settings import Settings
from models import EMBEDDING_DIMENSIONS

log = logging.getLogger("ctxgraph.embeddings")

# The provider limits inputs in tokens (8,191 for text-embedding-3-*); without a
# tokenizer, cap characters: ~4 characters a token for English, fewer for code and
# other scripts. An input still too long is refused (4xx) and set aside.
MAX_INPUT_CHARS = 20_000

HOW_TO_CONFIGURE = (
    "set CTXGRAPH_EMBEDDINGS_URL to an OpenAI-compatible embeddings API (for example "
    "https://api.openai.com/v1) and CTXGRAPH_EMBEDDINGS_API_KEY (CTXGRAPH_EMBEDDINGS_MODEL "
    "defaults to text-embedding-3-small), or pass `embedding` instead of `text`"
)


class ProviderError(CtxgraphError):
    """The embedding provider failed (unreachable, timed out, refused, or wrong output).

    Not the client's fault, hence INTERNAL_SERVER_ERROR; the message says what
    happened without the provider's URL, key or response body (those are logged).
    """

    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str, *, retryable: bool = True, bad_input: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        # The provider refused the input itself (too long, empty...): retrying the
        # same text cannot help, other texts may go through.
        self.bad_input = bad_input


def _endpoint(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/embeddings") else url + "/embeddings"


class EmbeddingProvider:
    """Client of an OpenAI-compatible embeddings endpoint (POST {input, model})."""

    def __init__(
        self,
        url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 10.0,
        dimensions: int = EMBEDDING_DIMENSIONS,
    ) -> None:
        self.endpoint = _endpoint(url)
        self.model = model
        self.timeout = timeout
        self.dimensions = dimensions
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddingProvider | None:
        if not settings.embeddings_url:
            return None
        key = settings.embeddings_api_key
        return cls(
            settings.embeddings_url,
            settings.embeddings_model,
            key.get_secret_value() if key is not None else None,
            settings.embeddings_timeout,
        )

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, headers=self._headers)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order; ProviderError on any failure."""
        body = {"model": self.model, "input": [t[:MAX_INPUT_CHARS] for t in texts]}
        try:
            response = await self._http().post(self.endpoint, json=body)
        except httpx.TimeoutException:
            log.warning("embedding provider timed out after %ss", self.timeout)
            raise ProviderError(
                f"The embedding provider did not answer within {self.timeout:g} s; try again later."
            ) from None
        except httpx.HTTPError as exc:
            log.warning("embedding provider unreachable: %r", exc)
            raise ProviderError(
                "The embedding provider could not be reached; try again later."
            ) from None
        if response.status_code != 200:
            log.warning(
                "embedding provider answered HTTP %s: %s",
                response.status_code,
                response.text[:500],
            )
            status = response.status_code
            retryable = status == 429 or status >= 500
            raise ProviderError(
                f"The embedding provider refused the request (HTTP {status})"
                + ("; try again later." if retryable else "."),
                retryable=retryable,
                bad_input=status in (400, 413, 422),
            )
        return self._vectors(response, len(texts))

    def _vectors(self, response: httpx.Response, n: int) -> list[list[float]]:
        try:
            data = sorted(response.json()["data"], key=lambda d: d["index"])
            vectors = [[float(x) for x in d["embedding"]] for d in data]
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("embedding provider sent an unreadable body: %r", exc)
            raise ProviderError("The embedding provider sent an unreadable answer.") from None
        if len(vectors) != n:
            raise ProviderError(
                f"The embedding provider returned {len(vectors)} vectors for {n} inputs."
            )
        for v in vectors:
            if len(v) != self.dimensions:
                log.error(
                    "embedding model %r returns %d dimensions; ctxgraph stores %d",
                    self.model,
                    len(v),
                    self.dimensions,
                )
                raise ProviderError(
                    f"The embedding model returns {len(v)} dimensions; ctxgraph needs "
                    f"{self.dimensions} (set CTXGRAPH_EMBEDDINGS_MODEL to a model with "
                    f"{self.dimensions}-d output, such as text-embedding-3-small).",
                    retryable=False,
                )
            if not all(math.isfinite(x) for x in v):
                raise ProviderError("The embedding provider returned non-finite numbers.")
        return vectors


def _vector_literal(values: list[float]) -> str:
    return "[" + ",".join(repr(v) for v in values) + "]"


_CLAIM = sa.text(
    "SELECT m.id, m.content FROM messages m"
    " WHERE m.embedding IS NULL AND m.deleted_at IS NULL AND m.content <> ''"
    " AND m.id <> ALL(CAST(:skip AS uuid[]))"
    " AND (SELECT c.deleted_at FROM contexts c WHERE c.id = m.context_id) IS NULL"
    " ORDER BY m.created_at, m.id LIMIT :n FOR UPDATE OF m SKIP LOCKED"
)
_STORE = sa.text(
    "UPDATE messages m SET embedding = CAST(v.e AS vector)"
    " FROM unnest(CAST(:ids AS uuid[]), CAST(:es AS text[])) AS v(id, e)"
    " WHERE m.id = v.id AND m.embedding IS NULL"
)


@dataclass(frozen=True, slots=True)
class Batch:
    """What one `run_once` did."""

    claimed: int
    embedded: int


@dataclass
class _SetAside:
    until: float
    failures: int


class EmbeddingWorker:
    """Embeds messages stored without an embedding, in batches, in the background."""

    def __init__(
        self,
        engine: AsyncEngine,
        provider: EmbeddingProvider,
        batch_size: int = 32,
        poll_interval: float = 2.0,
        max_backoff: float = 300.0,
    ) -> None:
        self.engine = engine
        self.provider = provider
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.failures = 0
        # Messages the provider refused (4xx) even alone: retried after their own
        # backoff, so one bad row never holds up the queue. In memory only: a
        # restart gives them another chance.
        self._set_aside: dict[uuid.UUID, _SetAside] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def _skipped(self) -> list[uuid.UUID]:
        now = time.monotonic()
        return [i for i, s in self._set_aside.items() if s.until > now]

    def _set_row_aside(self, message_id: uuid.UUID) -> None:
        previous = self._set_aside.get(message_id)
        failures = 1 if previous is None else previous.failures + 1
        delay = min(3600.0, 60.0 * 2 ** (failures - 1))
        self._set_aside[message_id] = _SetAside(time.monotonic() + delay, failures)
        log.warning(
            "embedding of message %s refused by the provider; retry in %ss", message_id, delay
        )

    async def run_once(self) -> Batch:
        """Claim one batch, embed it and store it.

        Raises ProviderError when the provider fails for the whole batch (nothing is
        stored, the claim is released). Messages whose text the provider refuses are
        set aside (retried later with their own backoff), the others stored.
        """
        async with self.engine.begin() as conn:
            rows = list(await conn.execute(_CLAIM, {"skip": self._skipped(), "n": self.batch_size}))
            if not rows:
                return Batch(0, 0)
            done: list[tuple[uuid.UUID, list[float]]] = []
            try:
                vectors = await self.provider.embed([r.content for r in rows])
                done = [(r.id, v) for r, v in zip(rows, vectors, strict=True)]
            except ProviderError as exc:
                if not exc.bad_input:
                    raise
                # Refused input: find the row(s) at fault one by one, keep the others.
                for r in rows:
                    try:
                        (vector,) = await self.provider.embed([r.content])
                    except ProviderError as one:
                        if not one.bad_input:
                            raise
                        self._set_row_aside(r.id)
                        continue
                    done.append((r.id, vector))
            if done:
                await conn.execute(
                    _STORE,
                    {"ids": [i for i, _ in done], "es": [_vector_literal(v) for _, v in done]},
                )
            for i, _ in done:
                self._set_aside.pop(i, None)
            return Batch(len(rows), len(done))

    async def run(self) -> None:
        """Work until cancelled: drain the backlog, then poll; back off on failures."""
        while True:
            try:
                batch = await self.run_once()
            except ProviderError as exc:
                self.failures += 1
                delay = min(self.max_backoff, 2.0 ** min(self.failures, 16))
                delay *= random.uniform(0.5, 1.0)
                log.warning("embedding worker: %s; next try in %.1fs", exc.message, delay)
                await self._pause(delay)
                continue
            except Exception as exc:
                self.failures += 1
                delay = min(self.max_backoff, 2.0 ** min(self.failures, 16))
                if classify_failure(exc) is not None:  # the database failed or timed out
                    log.warning(
                        "embedding worker: database unavailable (%s); next try in %.1fs",
                        str(exc) or type(exc).__name__,
                        delay,
                    )
                else:
                    log.exception("embedding worker failed; next try in %.1fs", delay)
                await self._pause(delay)
                continue
            self.failures = 0
            if batch.claimed == 0:
                await self._pause(self.poll_interval)

    async def _pause(self, seconds: float) -> None:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass

    def wake(self) -> None:
        """Look for work now instead of at the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="ctxgraph-embedding-worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None


@asynccontextmanager
async def background_embeddings(
    provider: EmbeddingProvider | None, engine: AsyncEngine, settings: Settings
) -> AsyncIterator[EmbeddingWorker | None]:
    """Run the worker while the app runs (nothing without a provider); close the provider."""
    if provider is None:
        yield None
        return
    worker = EmbeddingWorker(
        engine,
        provider,
        batch_size=settings.embeddings_batch_size,
        poll_interval=settings.embeddings_poll_interval,
    )
    worker.start()
    try:
        yield worker
    finally:
        await worker.stop()
        await provider.aclose()


def provider_of(state: Any) -> EmbeddingProvider | None:
    """The app's provider (app.state.embeddings), if any."""
    provider: EmbeddingProvider | None = getattr(state, "embeddings", None)
    return provider
