"""The optional embedding provider and the background worker, against a small
OpenAI-compatible server that the tests run on 127.0.0.1 (the real API is not
reachable from CI): success, provider errors, timeouts, wrong dimensions,
refused inputs, SKIP LOCKED claims, restarts and the app's background task.

The fake server embeds a text as the normalized sum of one-hot vectors, one per
word (crc32 of the word), so texts sharing words are close.
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.app import create_app
from api.db import EngineConnector
from api.embeddings import (
    EmbeddingProvider,
    EmbeddingWorker,
    ProviderError,
    background_embeddings,
)
from tests.conftest import GraphQLClient, RollbackConnector, graphql_client, test_settings

DIM = 1536
KEY = "sk-test-" + uuid.uuid4().hex


def fake_embedding(text: str, dims: int = DIM) -> list[float]:
    v = [0.0] * dims
    for word in text.lower().split():
        v[zlib.crc32(word.encode()) % dims] += 1.0
    n = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / n for x in v]


class FakeProvider:
    """An OpenAI-compatible POST /v1/embeddings on 127.0.0.1, with failure modes."""

    def __init__(self) -> None:
        self.mode = "ok"  # ok | error | hang
        self.dims = DIM
        self.block_marker: str | None = None  # hold requests with this word until release
        self.refuse_marker: str | None = None  # HTTP 400 for inputs containing this word
        self.requests: list[dict[str, Any]] = []
        self.blocked = asyncio.Event()
        self.release = asyncio.Event()
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"

    async def stop(self) -> None:
        self.release.set()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def inputs(self) -> list[str]:
        return [t for r in self.requests for t in r["body"]["input"]]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode()
            headers: dict[str, str] = {}
            while (line := (await reader.readline()).decode().strip()) != "":
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = json.loads(await reader.readexactly(int(headers["content-length"])))
            self.requests.append({"line": request_line, "headers": headers, "body": body})
            texts: list[str] = body["input"]
            held = self.block_marker is not None and any(self.block_marker in t for t in texts)
            if self.mode == "hang" or held:
                self.blocked.set()
                await self.release.wait()
                if self.mode == "hang":
                    return
            if self.mode == "error":
                await self._respond(writer, 500, {"error": {"message": "overloaded"}})
            elif self.refuse_marker is not None and any(self.refuse_marker in t for t in texts):
                await self._respond(writer, 400, {"error": {"message": "input too long"}})
            else:
                data = [
                    {"object": "embedding", "index": i, "embedding": fake_embedding(t, self.dims)}
                    for i, t in enumerate(texts)
                ]
                # Out of order on purpose: clients must use `index`.
                await self._respond(
                    writer, 200, {"object": "list", "data": data[::-1], "model": body["model"]}
                )
        finally:
            writer.close()

    async def _respond(self, writer: asyncio.StreamWriter, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        head = (
            f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    server = FakeProvider()
    await server.start()
    yield server
    await server.stop()


def provider_for(fake: FakeProvider, timeout: float = 5.0) -> EmbeddingProvider:
    return EmbeddingProvider(fake.url, "text-embedding-3-small", KEY, timeout)


SEARCH_TEXT = (
    "query($t: String!, $first: Int) {"
    " similarMessages(text: $t, first: $first, maxDistance: 0.99)"
    " { distance message { id content } } }"
)
CREATE = (
    "mutation($m: [MessageInput!]) { createContext(messages: $m) {"
    " id messages(first: 100) { nodes { id content } } } }"
)
HAS_EMBEDDING = "query($id: ID!) { message(id: $id) { hasEmbedding } }"


async def has_embedding(client: GraphQLClient, message_id: str) -> bool:
    data = await client.data(HAS_EMBEDDING, {"id": message_id})
    return bool(data["message"]["hasEmbedding"])


async def create(client: GraphQLClient, *contents: str) -> list[str]:
    """A context with these user messages; message ids in order."""
    messages = [{"role": "USER", "content": c} for c in contents]
    data = await client.data(CREATE, {"m": messages})
    return [n["id"] for n in data["createContext"]["messages"]["nodes"]]


# --- text queries -----------------------------------------------------------------------


@pytest_asyncio.fixture
async def text_client(conn: AsyncConnection, fake: FakeProvider) -> AsyncIterator[GraphQLClient]:
    """The app with the fake provider configured, on the rolled-back connection."""
    settings = test_settings(
        embeddings_url=fake.url, embeddings_api_key=KEY, embeddings_timeout=0.5
    )
    app = create_app(settings, connector=RollbackConnector(conn))
    try:
        async with graphql_client(app) as client:
            yield client
    finally:
        await app.state.embeddings.aclose()


async def test_text_query_is_embedded_by_the_provider(
    text_client: GraphQLClient, fake: FakeProvider
) -> None:
    tag = uuid.uuid4().hex
    rows = [f"{tag} apple pie recipe", f"{tag} banana bread", f"{tag} apple cider"]
    await text_client.data(
        "mutation($m: [MessageInput!]) { createContext(messages: $m) { id } }",
        {"m": [{"role": "USER", "content": c, "embedding": fake_embedding(c)} for c in rows]},
    )
    data = await text_client.data(SEARCH_TEXT, {"t": f"{tag} apple", "first": 3})
    got = [m["message"]["content"] for m in data["similarMessages"]]
    assert got[:2] == [f"{tag} apple cider", f"{tag} apple pie recipe"]
    assert got[2] == f"{tag} banana bread"
    (request,) = fake.requests
    assert request["line"].startswith("POST /v1/embeddings ")
    assert request["headers"]["authorization"] == f"Bearer {KEY}"
    assert request["body"] == {"model": "text-embedding-3-small", "input": [f"{tag} apple"]}


@pytest.mark.parametrize(
    ("mode", "dims", "fragment"),
    [
        ("error", DIM, "refused the request (HTTP 500); try again later"),
        ("hang", DIM, "did not answer within 0.5 s"),
        ("ok", 3, "returns 3 dimensions; ctxgraph needs 1536"),
    ],
)
async def test_text_query_provider_failures(
    text_client: GraphQLClient, fake: FakeProvider, mode: str, dims: int, fragment: str
) -> None:
    fake.mode, fake.dims = mode, dims
    error = await text_client.error(SEARCH_TEXT, {"t": "anything at all"})
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert fragment in error["message"]
    # Neither the provider's address nor the key reaches the client.
    assert "127.0.0.1" not in error["message"]
    assert KEY not in json.dumps(error)


async def test_text_query_checks_its_text_before_calling(
    text_client: GraphQLClient, fake: FakeProvider
) -> None:
    error = await text_client.error(SEARCH_TEXT, {"t": "   "})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    error = await text_client.error(SEARCH_TEXT, {"t": "nul \u0000 byte"})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert fake.requests == []


def test_provider_from_settings() -> None:
    assert EmbeddingProvider.from_settings(test_settings()) is None
    provider = EmbeddingProvider.from_settings(
        test_settings(
            embeddings_url="https://example.invalid/v1/",
            embeddings_model="m",
            embeddings_api_key="k",
        )
    )
    assert provider is not None
    assert provider.endpoint == "https://example.invalid/v1/embeddings"
    assert provider.model == "m"
    full = EmbeddingProvider("https://example.invalid/openai/embeddings", "m")
    assert full.endpoint == "https://example.invalid/openai/embeddings"
    app = create_app(test_settings(embeddings_url="https://example.invalid/v1"))
    assert app.state.embeddings.endpoint == "https://example.invalid/v1/embeddings"
    assert create_app(test_settings()).state.embeddings is None


# --- the background worker (real commits on the pooled engine) ---------------------------


@pytest_asyncio.fixture
async def live(engine: AsyncEngine) -> AsyncIterator[GraphQLClient]:
    app = create_app(test_settings(), connector=EngineConnector(engine))
    async with graphql_client(app) as client:
        yield client


@pytest_asyncio.fixture
async def worker(engine: AsyncEngine, fake: FakeProvider) -> AsyncIterator[EmbeddingWorker]:
    provider = provider_for(fake, timeout=0.5)
    w = EmbeddingWorker(engine, provider, batch_size=8)
    await drain(w)  # rows other tests committed without embeddings
    fake.requests.clear()
    yield w
    await provider.aclose()


async def drain(w: EmbeddingWorker) -> int:
    embedded = 0
    for _ in range(10_000):
        batch = await w.run_once()
        embedded += batch.embedded
        if batch.claimed == 0:
            return embedded
    raise AssertionError("the backlog never drained")


async def test_worker_embeds_what_was_appended_without_embedding(
    live: GraphQLClient, worker: EmbeddingWorker, fake: FakeProvider
) -> None:
    tag = uuid.uuid4().hex
    own = fake_embedding("something else entirely")
    data = await live.data(
        CREATE,
        {
            "m": [
                {"role": "USER", "content": f"{tag} hello there"},
                {"role": "ASSISTANT", "content": f"{tag} general kenobi"},
                {"role": "USER", "content": f"{tag} given", "embedding": own},
                {"role": "TOOL", "content": ""},
            ]
        },
    )
    ids = [n["id"] for n in data["createContext"]["messages"]["nodes"]]
    assert [await has_embedding(live, i) for i in ids] == [False, False, True, False]
    assert await drain(worker) == 2
    assert [await has_embedding(live, i) for i in ids] == [True, True, True, False]
    assert sorted(fake.inputs()) == [f"{tag} general kenobi", f"{tag} hello there"]
    # The stored vectors are the provider's; the client's own was not replaced.
    data = await live.data(
        "query($e: [Float!]) { similarMessages(embedding: $e, first: 1) { distance"
        " message { id } } }",
        {"e": fake_embedding(f"{tag} hello there")},
    )
    assert data["similarMessages"][0]["message"]["id"] == ids[0]
    assert data["similarMessages"][0]["distance"] == pytest.approx(0.0, abs=1e-6)
    data = await live.data(
        "query($e: [Float!]) { similarMessages(embedding: $e, first: 1) { message { id } } }",
        {"e": own},
    )
    assert data["similarMessages"][0]["message"]["id"] == ids[2]


@pytest.mark.parametrize(("mode", "dims"), [("error", DIM), ("hang", DIM), ("ok", 7)])
async def test_worker_failure_stores_nothing_and_a_restart_resumes(
    live: GraphQLClient,
    worker: EmbeddingWorker,
    fake: FakeProvider,
    engine: AsyncEngine,
    mode: str,
    dims: int,
) -> None:
    tag = uuid.uuid4().hex
    ids = await create(live, f"{tag} one", f"{tag} two")
    fake.mode, fake.dims = mode, dims
    with pytest.raises(ProviderError) as failure:
        await worker.run_once()
    assert failure.value.retryable is (dims == DIM)
    assert [await has_embedding(live, i) for i in ids] == [False, False]
    # A new process (fresh worker, fresh provider client) picks the rows up again.
    fake.mode, fake.dims = "ok", DIM
    fake.release.set()
    provider = provider_for(fake)
    try:
        assert await drain(EmbeddingWorker(engine, provider)) >= 2
    finally:
        await provider.aclose()
    assert [await has_embedding(live, i) for i in ids] == [True, True]


async def test_worker_sets_aside_inputs_the_provider_refuses(
    live: GraphQLClient, worker: EmbeddingWorker, fake: FakeProvider
) -> None:
    tag = uuid.uuid4().hex
    fake.refuse_marker = f"poison{tag}"
    ids = await create(live, f"{tag} fine", f"poison{tag} too long", f"{tag} also fine")
    batch = await worker.run_once()
    assert (batch.claimed, batch.embedded) == (3, 2)
    assert [await has_embedding(live, i) for i in ids] == [True, False, True]
    # Set aside: the next round does not ask for it again.
    fake.requests.clear()
    assert (await worker.run_once()).claimed == 0
    assert fake.requests == []


async def test_claims_skip_locked_rows_and_appends_never_wait(
    live: GraphQLClient, engine: AsyncEngine, fake: FakeProvider
) -> None:
    tag = uuid.uuid4().hex
    fake.block_marker = f"block{tag}"
    # A patient provider: the held request must outlast the checks below.
    provider = provider_for(fake, timeout=60)
    worker = EmbeddingWorker(engine, provider, batch_size=1)
    await drain(worker)
    data = await live.data(
        "mutation($m: [MessageInput!]) { createContext(messages: $m) { id"
        " messages { nodes { id } } } }",
        {"m": [{"role": "USER", "content": f"block{tag} first"}]},
    )
    cid = data["createContext"]["id"]
    (held,) = [n["id"] for n in data["createContext"]["messages"]["nodes"]]
    data = await live.data(
        "mutation($id: ID!) { appendMessages(contextId: $id, messages: [{role: USER,"
        f' content: "{tag} second"}}]) {{ messages {{ id }} }} }}',
        {"id": cid},
    )
    (free,) = [m["id"] for m in data["appendMessages"]["messages"]]
    first = asyncio.create_task(worker.run_once())
    await fake.blocked.wait()  # the first claim holds `held` while the provider thinks
    # Another claim skips the locked row instead of waiting for it.
    batch = await worker.run_once()
    assert (batch.claimed, batch.embedded) == (1, 1)
    assert await has_embedding(live, free)
    assert not await has_embedding(live, held)
    # Appending to the same context does not wait for the claim either.
    data = await live.data(
        "mutation($id: ID!) { appendMessages(contextId: $id, messages: [{role: USER,"
        f' content: "{tag} third"}}]) {{ context {{ latestVersion }} }} }}',
        {"id": cid},
    )
    assert data["appendMessages"]["context"]["latestVersion"] == 3
    fake.release.set()
    assert (await first).embedded == 1
    assert await has_embedding(live, held)
    await provider.aclose()


async def test_background_task_embeds_new_messages(
    live: GraphQLClient, engine: AsyncEngine, fake: FakeProvider
) -> None:
    """What the app's lifespan runs: the worker polls, drains, keeps going."""
    settings = test_settings(embeddings_url=fake.url, embeddings_poll_interval=0.05)
    provider = EmbeddingProvider.from_settings(settings)
    async with background_embeddings(provider, engine, settings) as worker:
        assert worker is not None
        tag = uuid.uuid4().hex
        (mid,) = await create(live, f"{tag} appended while running")
        worker.wake()
        for _ in range(400):  # a bounded wait for the condition, not a sleep for a race
            if await has_embedding(live, mid):
                break
            await asyncio.sleep(0.025)
        assert await has_embedding(live, mid)
        fake.mode = "error"  # failures back off without ending the task
        (later,) = await create(live, f"{tag} while failing")
        worker.wake()
        for _ in range(400):
            if worker.failures >= 1:
                break
            await asyncio.sleep(0.025)
        assert worker.failures >= 1
        assert f"{tag} while failing" in fake.inputs()
        assert not await has_embedding(live, later)
    # Stopped and closed: the provider's client is gone.
    assert provider is not None
    assert provider._client is None
