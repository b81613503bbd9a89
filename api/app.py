"""The FastAPI application factory.

Nothing is created at import time: `create_app` wires routes, and the
lifespan opens the database (starting the embedded server when there is no
DATABASE_URL) and closes it on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from api import persisted_queries
from api.db import Connector, Database, DatabaseConfigError, redact
from api.embeddings import EmbeddingProvider, background_embeddings
from api.graphiql import GraphiQLPage, default_assets, mount_graphiql_assets
from api.graphql.context import RequestContext
from api.graphql.execution import execution_context_class
from api.graphql.http import GraphQLHTTP
from api.graphql.operation import Operations
from api.graphql.schema import build_schema
from api.graphql.strawberry_adapter import WebSocketEndpoint
from api.metrics import Metrics
from api.migrate import head_revision
from api.realtime import Realtime
from api.runtime import tune_garbage_collector
from api.security.auth import ApiKeys, Authenticator
from api.security.http import install as install_security
from api.security.limits import QueryLimits
from api.settings import Settings, get_settings
from api.store.inputs import Limits

log = logging.getLogger("ctxgraph.app")

READINESS_TIMEOUT = 1.0
"""Seconds /readyz waits for the database (at most CTXGRAPH_DATABASE_TIMEOUT): it answers
within about that, 503 when the database did not answer in time, so a probe with the usual
one- or two-second timeout gets an answer rather than its own timeout."""


async def open_database(settings: Settings) -> Database:
    """Open the database and check that it answers; one clear line if it does not."""
    db = await asyncio.to_thread(Database.open, settings)
    try:
        async with db.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        await db.close()
        raise DatabaseConfigError(
            f"cannot connect to the database at {redact(db.url)}: {exc}"
        ) from exc
    return db


class GraphQLRoute:
    """ASGI middleware, innermost: every request and WebSocket to exactly `path` goes to
    the GraphQL endpoint (which answers every method itself), past Starlette's routing.
    An unexpected exception still reaches the outer ServerErrorMiddleware (500) and the
    security middlewares around this one."""

    def __init__(self, app: ASGIApp, endpoint: ASGIApp, path: str = "/graphql") -> None:
        self.app = app
        self.endpoint = endpoint
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"] == self.path:
            await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def create_app(settings: Settings | None = None, connector: Connector | None = None) -> FastAPI:
    """The ctxgraph ASGI app.

    Without `connector` the lifespan opens the database of `settings`; tests pass
    their own connector (e.g. one rolled-back transaction per test).
    """
    settings = settings or get_settings()
    limits = Limits.from_settings(settings)
    head = head_revision()
    graphiql_assets = default_assets()
    # Optional (CTXGRAPH_EMBEDDINGS_URL): text search and background embedding.
    embeddings = EmbeddingProvider.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if connector is not None:
            yield
            return
        # In the background: the API answers at once; the GraphiQL page waits for it.
        graphiql_assets.start()
        db = await open_database(settings)
        app.state.connector = db.connector
        if db.gate is not None and app.state.metrics is not None:
            db.gate.observer = app.state.metrics.observe_queue
        # One LISTEN connection per process, on a direct (non-pooled) URL.
        realtime = Realtime.create(settings, settings.database_direct_url or db.url)
        try:
            await realtime.start(db.connector, timeout=settings.connect_timeout)
        except BaseException:
            await db.close()
            raise
        app.state.realtime = realtime
        tune_garbage_collector()
        try:
            async with background_embeddings(embeddings, db.engine, settings) as worker:
                app.state.embedding_worker = worker
                yield
        finally:
            await realtime.stop()
            await db.close()

    # FastAPI's own OpenTelemetry looks up the three global providers on every
    # request to see whether any is configured: ~2% of a planned read's CPU
    # (py-spy, python -m bench.inproc sidebar), opt-in (CTXGRAPH_OPENTELEMETRY).
    otel = settings.opentelemetry
    app = FastAPI(
        title="ctxgraph",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        telemetry={"tracing": otel, "metrics": otel, "logs": otel},
    )
    app.state.embeddings = embeddings
    if connector is not None:
        app.state.connector = connector
        # A test connector has no listener: subscribers re-read on their interval only.
        app.state.realtime = Realtime.create(settings, None)

    async def get_context(connection: HTTPConnection) -> RequestContext:
        # HTTPConnection covers both HTTP requests and WebSocket connections.
        return RequestContext(
            connection.app.state.connector,
            limits,
            connection.headers.get("x-request-id"),
            realtime=connection.app.state.realtime,
            request=connection,
        )

    # --- GraphQL: every operation, over HTTP or WebSocket, goes through one entry
    # (api/graphql/operation.py): credentials, persisted queries, limits, plan or
    # graphql-core, error codes, metrics.
    api_keys = ApiKeys.from_settings(settings)
    app.state.api_keys = api_keys
    schema = build_schema()
    executor = execution_context_class()
    entry = Operations(
        schema._schema,
        authenticator=Authenticator(api_keys),
        persisted=persisted_queries.from_settings(settings),
        limits=QueryLimits.from_settings(settings),
        introspection=settings.introspection,
        executor_class=executor,
        plans=settings.plans,
    )
    websocket = WebSocketEndpoint(
        schema,
        entry,
        get_context,
        subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL],
        connection_init_wait_timeout=timedelta(seconds=settings.subscription_init_timeout),
        # Subscriptions are capped (with a coded error) in the resolver; this
        # backstop bounds every operation in flight on one socket.
        max_subscriptions_per_connection=2 * settings.subscriptions_per_connection,
    )
    graphql = GraphQLHTTP(
        entry,
        get_context,
        websocket=websocket,
        ide=GraphiQLPage(graphiql_assets),
        max_batch_operations=settings.max_batch_operations,
        retry_after=settings.retry_after,
    )
    # added first, so innermost: inside the security middlewares
    app.add_middleware(GraphQLRoute, endpoint=graphql)
    mount_graphiql_assets(app, graphiql_assets)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    readiness_timeout = min(READINESS_TIMEOUT, settings.database_timeout)

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        db: Connector = request.app.state.connector
        try:
            async with db.read(timeout=readiness_timeout) as conn:
                current = (
                    await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
                ).scalar_one_or_none()
        except Exception as exc:
            log.warning("readiness check failed: %s", str(exc) or type(exc).__name__)
            return JSONResponse({"status": "database unavailable"}, status_code=503)
        if current != head:
            return JSONResponse(
                {"status": "database not migrated", "current": current, "head": head},
                status_code=503,
            )
        return JSONResponse({"status": "ready", "revision": current})

    # --- security and operations (api/security/, api/metrics.py): API keys, body and
    # batch limits, CORS, security headers, request ids + access log, /metrics. Added
    # last so these middlewares wrap everything above (the query limits are schema
    # extensions, see build_schema).
    metrics = Metrics(app.state) if settings.metrics else None
    app.state.metrics = metrics
    if metrics is not None:
        exporter = metrics

        @app.get("/metrics", include_in_schema=False)
        async def prometheus_metrics() -> Response:
            body, content_type = exporter.render()
            return Response(body, media_type=content_type)

    install_security(app, settings, api_keys, metrics)

    return app
