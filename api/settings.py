"""Configuration from the environment (and an optional `.env` file).

Every variable is prefixed `CTXGRAPH_` except `DATABASE_URL`, the name every
hosting platform already uses. `.env.example` documents each one.
"""

from pathlib import Path
from typing import Self
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """All tunables of a ctxgraph process."""

    model_config = SettingsConfigDict(
        env_prefix="CTXGRAPH_", env_file=".env", extra="ignore", frozen=True
    )

    # --- database -----------------------------------------------------------
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "CTXGRAPH_DATABASE_URL"),
        description="PostgreSQL URL (postgres://, postgresql:// or postgresql+asyncpg://). "
        "Unset: an embedded PostgreSQL with pgvector runs in data_dir.",
    )
    database_direct_url: str | None = Field(
        default=None,
        description="A non-pooled URL for LISTEN/NOTIFY; defaults to DATABASE_URL.",
    )
    db_pooled: bool | None = Field(
        default=None,
        description="The URL goes through a transaction pooler (PgBouncer): turn asyncpg's "
        "statement caches off. Unset: detected for Neon '-pooler' hosts.",
    )
    data_dir: Path = Field(
        default=Path(".ctxgraph"), description="Where the embedded PostgreSQL keeps its data."
    )
    pool_size: int = Field(
        default=10,
        ge=1,
        description="Connections kept open per process: at most this many requests use the "
        "database at once, the others wait in line (CTXGRAPH_DB_QUEUE_*).",
    )
    pool_max_overflow: int = Field(
        default=1,
        ge=0,
        description="Connections beyond pool_size for work outside the line (the background "
        "embedder), closed when idle. Requests never need them: at most pool_size requests "
        "hold a connection, so none waits inside the pool or opens a session under load.",
    )
    db_queue_limit: int = Field(
        default=2_000,
        ge=0,
        description="Requests that may wait in line for a database connection per process; "
        "one more is refused at once with 503 SERVICE_UNAVAILABLE and Retry-After.",
    )
    db_queue_timeout: float = Field(
        default=3.0,
        gt=0,
        description="Seconds a request may wait in that line before it is refused with 503 "
        "and Retry-After (the line is first come, first served).",
    )
    retry_after: int = Field(
        default=1,
        ge=0,
        description="Seconds sent in Retry-After with a 503 (database unavailable or saturated).",
    )
    pool_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds to wait for a free connection (a request's wait is cut at "
        "database_timeout first).",
    )
    pool_recycle: float = Field(
        default=300.0,
        gt=0,
        description="Seconds after which a connection is replaced (serverless databases "
        "drop idle ones).",
    )
    connect_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds to wait when opening a connection (at startup, the realtime "
        "listener; a request's wait is cut at database_timeout first).",
    )
    database_timeout: float = Field(
        default=5.0,
        gt=0,
        description="Client-side bound, in seconds, on each use of the database by a request "
        "(waiting for a pooled connection, connecting, its statements and commit) and on each "
        "statement of the background work. Past it the connection is closed, never reused, and "
        "the request fails with SERVICE_UNAVAILABLE: a server that stops answering never "
        "enforces its own statement_timeout.",
    )

    # --- API limits -----------------------------------------------------------
    default_page_size: int = Field(
        default=50, ge=1, description="Page size of a connection when first/last are omitted."
    )
    max_page_size: int = Field(default=500, ge=1, description="Largest first/last of a connection.")
    max_name_length: int = Field(
        default=1_000,
        ge=1,
        description="Characters in a context name (and a message's toolCallId, toolName, model).",
    )
    max_metadata_bytes: int = Field(
        default=16 * 1024, ge=2, description="Bytes of a context's metadata serialized as JSON."
    )
    max_content_length: int = Field(
        default=1_000_000,
        ge=1,
        description="Characters in one message's content, or in its parts serialized as JSON "
        "(data: URLs included).",
    )
    max_messages_per_append: int = Field(
        default=1_000, ge=1, description="Messages in one appendMessages or createContext call."
    )
    max_token_count: int = Field(
        default=10_000_000,
        ge=0,
        le=2_147_483_647,
        description="Largest tokenCount of one message. A context's totalTokens stays at or "
        "below 2,147,483,647 (GraphQL's Int) whatever this is: an append that would take it "
        "over is refused.",
    )
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest HTTP request body in bytes (413 above).",
    )
    max_search_results: int = Field(
        default=100, ge=1, description="Largest `first` of similarity search."
    )

    # --- HTTP connections (api/http_protocol.py), per server process ---------------
    max_head_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Largest request head (request line and headers) in bytes: 431 as soon as "
        "that many arrived without its end.",
    )
    max_header_count: int = Field(
        default=100, ge=10, description="Header lines of one request (431 above)."
    )
    head_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a request head may take from its first byte (the first request: "
        "from the connection's opening) before 408 and close. Between requests, an idle "
        "keep-alive connection is closed after 5 s (uvicorn's keep-alive timeout).",
    )
    body_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a request body may take from the end of its head before 408 and "
        "close: a deadline for the whole body, however it trickles in. Raise it for large "
        "bodies over slow links.",
    )
    max_connections: int = Field(
        default=4096,
        ge=1,
        description="Open connections (HTTP and WebSocket) per server process; each one more is "
        "answered 503 with Retry-After: 1 and closed. `ctxgraph serve` raises the open-files "
        "limit to fit, or lowers this to what the limit allows.",
    )

    # --- subscriptions (graphql-transport-ws) --------------------------------------
    subscriptions_per_connection: int = Field(
        default=100, ge=1, description="Subscriptions one WebSocket connection may run at once."
    )
    subscription_init_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a WebSocket may stay open without connection_init before it is "
        "closed (4408).",
    )
    subscription_recheck_interval: float = Field(
        default=5.0,
        gt=0,
        description="Seconds between two checks for appends no notification announced (one "
        "query per process, not per subscriber) and between the listener's keepalives.",
    )

    # --- embeddings (optional provider for text search and auto-embedding) -----------
    embeddings_url: str | None = Field(
        default=None,
        description="An OpenAI-compatible embeddings API: its base URL "
        "(https://api.openai.com/v1) or the full .../embeddings URL. Unset: no provider "
        "(similarMessages(text:) is refused, messages are not embedded in the background).",
    )
    embeddings_api_key: SecretStr | None = Field(
        default=None, description="Bearer token for the embeddings API."
    )
    embeddings_model: str = Field(
        default="text-embedding-3-small",
        description="Embedding model; it must return 1536-d vectors.",
    )
    embeddings_timeout: float = Field(
        default=10.0, gt=0, description="Seconds to wait for the embeddings API."
    )
    embeddings_batch_size: int = Field(
        default=32, ge=1, le=2048, description="Messages embedded per provider call."
    )
    embeddings_poll_interval: float = Field(
        default=2.0, gt=0, description="Seconds between looks for unembedded messages."
    )

    # --- persisted queries (api/persisted_queries.py) -----------------------------
    persisted_query_cache_size: int = Field(
        default=1_000,
        ge=0,
        description="Documents kept per process for automatic persisted queries (an LRU); 0 "
        "turns APQ off (hash-only requests are answered PersistedQueryNotSupported).",
    )
    persisted_query_cache_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=0,
        description="Bytes of document text kept per process for automatic persisted queries.",
    )
    trusted_documents: Path | None = Field(
        default=None,
        description="Allowlist mode: the persisted-documents.json manifest of the generated "
        "client (GraphQL Code Generator client preset, persistedDocuments: true). Only its "
        "documents run; every other operation is refused with FORBIDDEN.",
    )

    # --- security and operations (api/security/, api/metrics.py) -------------------
    api_keys: SecretStr | None = Field(
        default=None,
        description="Comma-separated API keys. Set: every GraphQL operation needs "
        "`Authorization: Bearer <key>` (WebSocket: in the connection_init payload). Unset "
        "(and no api_key_hashes): the API is open. Only SHA-256 digests are kept in memory.",
    )
    api_key_hashes: str | None = Field(
        default=None,
        description="Comma-separated hex SHA-256 digests of API keys (`printf %s KEY | "
        "sha256sum`), so the keys themselves need not be in the environment.",
    )
    introspection: bool = Field(
        default=True, description="Answer __schema/__type queries (GraphiQL's docs need them)."
    )
    max_query_depth: int = Field(
        default=20,
        ge=1,
        description="Deepest nesting of fields in one operation (GraphiQL's introspection "
        "query is 15 deep).",
    )
    max_query_aliases: int = Field(
        default=30, ge=0, description="Aliased fields in one operation (fragments counted per use)."
    )
    max_query_tokens: int = Field(
        default=2_000,
        ge=100,
        description="Lexical tokens (comments included) of one GraphQL document; checked while "
        "parsing.",
    )
    max_query_cost: int = Field(
        default=50_000,
        ge=1,
        description="Objects an operation may ask for: page sizes multiplied through nested "
        "connections and lists. contexts(first: 500) { nodes { messages(last: 500) ... } } "
        "costs 250,500.",
    )
    max_batch_operations: int = Field(
        default=1,
        ge=1,
        le=100,
        description="Operations in one HTTP request (a JSON array body). 1: batching is off.",
    )
    plans: bool = Field(
        default=True,
        description="Answer the common shapes (a chat page, a sidebar, a branch switcher, an "
        "append) by their plans, without graphql-core's field walk; false runs every "
        "operation through graphql-core (same answers, more CPU).",
    )
    statement_timeout: float = Field(
        default=4.0,
        ge=0,
        description="Seconds one SQL statement may run before PostgreSQL cancels it "
        "(QUERY_TOO_COMPLEX); 0: no server-side limit. Below database_timeout, so that a slow "
        "statement is reported as such before the client-side bound gives up on the server.",
    )
    shutdown_timeout: int = Field(
        default=30,
        ge=1,
        description="Seconds `ctxgraph serve` waits for in-flight requests after SIGTERM.",
    )
    cors_origins: str = Field(
        default="",
        description="Comma-separated origins allowed to call the API from a browser "
        "(https://app.example.com), or *. Empty: no CORS headers (same origin only).",
    )
    access_log: bool = Field(
        default=True,
        description="One JSON line per request on the ctxgraph.access logger (request id, "
        "operation, status, duration).",
    )
    metrics: bool = Field(
        default=True,
        description="Serve Prometheus metrics at /metrics (behind the API keys when set).",
    )
    opentelemetry: bool = Field(
        default=False,
        description="FastAPI's native OpenTelemetry spans, metrics and logs through the "
        "global providers you configure (opentelemetry-sdk). Off: not even a per-request "
        "look at the providers; /metrics and the access log do not depend on it.",
    )

    log_level: str = Field(
        default="INFO", description="Server log level (DEBUG, INFO, WARNING, ERROR)."
    )

    @field_validator("database_url", "database_direct_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme = urlsplit(value).scheme
        if scheme not in {"postgres", "postgresql", "postgresql+asyncpg"}:
            raise ValueError(
                f"unsupported scheme {scheme!r}: use postgres://, postgresql:// "
                "or postgresql+asyncpg://"
            )
        return value

    @field_validator("trusted_documents", mode="before")
    @classmethod
    def _trusted_documents_readable(cls, value: object) -> object:
        # Checked when the settings are read, so `ctxgraph serve` fails with one
        # line instead of a worker's traceback.
        if value is None or value == "":
            return None
        from api.persisted_queries import load_trusted_documents

        load_trusted_documents(Path(str(value)))
        return value

    @model_validator(mode="after")
    def _statement_timeout_below_database_timeout(self) -> Self:
        if self.statement_timeout >= self.database_timeout:
            raise ValueError(
                f"CTXGRAPH_STATEMENT_TIMEOUT ({self.statement_timeout:g} s) must be below "
                f"CTXGRAPH_DATABASE_TIMEOUT ({self.database_timeout:g} s), or every slow "
                "statement is reported as an unavailable database; raise both together"
            )
        return self

    @property
    def pgdata_dir(self) -> Path:
        """The embedded server's PostgreSQL data directory inside data_dir."""
        return (self.data_dir / "pgdata").resolve()


def get_settings() -> Settings:
    """Read the settings from the environment now (not cached: tests override env)."""
    return Settings()
