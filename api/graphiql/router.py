"""The GraphQL endpoint: Strawberry's ASGI app with ctxgraph's GraphiQL page, and
the asset mounts."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from graphql import ExecutionResult
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.types.unset import UnsetType

from api import jsoncodec
from api.graphiql.assets import GraphiQLAssets
from api.graphiql.page import Mode, PageUrls, new_style_nonce, render_page, security_headers
from api.graphql.context import RequestContext
from api.security.auth import authenticate_ws

ASSET_PATH = "/graphiql"
"""Where the page's files are served: /graphiql/vendor/ (npm) and /graphiql/static/ (ours)."""

STATIC_DIR = Path(__file__).parent / "static"

ContextGetter = Callable[[Request | WebSocket], Awaitable[Any]]


def _urls(request: Request, asset_path: str) -> PageUrls:
    # Behind a proxy that strips a path prefix, root_path carries it.
    base = str(request.scope.get("root_path", "")).rstrip("/") + asset_path
    return PageUrls(vendor=f"{base}/vendor", static=f"{base}/static")


class GraphQLEndpoint(GraphQL[Any, None]):
    """Strawberry's ASGI app, routed directly (`app.add_route`), whose IDE page is
    self-hosted GraphiQL when its assets are built.

    A plain ASGI route rather than Strawberry's FastAPI router: the router runs
    FastAPI's dependency injection and endpoint wrapping on every request, ~10% of
    a chat page's CPU in process, for nothing this endpoint needs
    (bench/README.md, "Optimizations").

    The first page request starts the asset build if nothing did (the app's
    lifespan normally has) and waits for it, up to the build's own timeout, so the
    first page a user opens is already the self-hosted one. Without assets the page
    uses the CDN, with integrity hashes and a notice.
    """

    def __init__(
        self,
        *args: Any,
        assets: GraphiQLAssets,
        context_getter: ContextGetter | None = None,
        asset_path: str = ASSET_PATH,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.assets = assets
        self.asset_path = asset_path
        self.context_getter = context_getter

    async def get_context(self, request: Request | WebSocket, response: Any) -> Any:
        if self.context_getter is None:
            return await super().get_context(request, response)
        return await self.context_getter(request)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A POSTed query text that a plan has answered before is answered by its plan
        again (`Plans.answer`, api/graphql/plans.py: the query limits and the operation's
        log line still apply), without Strawberry's HTTP view, parse, validation and
        extension hooks; anything else, and anything the plan gives way on, goes
        through Strawberry with the body as it came."""
        if scope["type"] == "http" and scope["method"] == "POST":
            body, receive = await _read_body(receive)
            result = None if body is None else await self._planned(scope, receive, body)
            if result is not None:
                answer: dict[str, Any] = {"data": result.data}
                if result.errors:  # a planned write that failed (Plan.run)
                    answer["errors"] = [e.formatted for e in result.errors]
                response = Response(self.encode_json(answer), media_type="application/json")
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _planned(self, scope: Scope, receive: Receive, body: bytes) -> ExecutionResult | None:
        """The plan's result for a plain JSON POST of a known text, else None."""
        plans = getattr(self.schema, "plans", None)
        request = _planned_request(scope, body)
        if plans is None or request is None:
            return None
        context = await self.get_context(Request(scope, receive), None)
        if not isinstance(context, RequestContext):
            return None
        result: ExecutionResult | None = await plans.answer(
            self.schema._schema,  # type: ignore[attr-defined]
            *request,
            context,
        )
        return result

    def decode_json(self, data: str | bytes) -> object:
        """Parse a request body; anything json.loads refuses is a malformed body (400).

        orjson wherever it gives json.loads's value (api/jsoncodec.py): a search
        body of 1,536 floats parses in ~0.1 ms instead of ~0.6.

        Python's parser raises plain ValueError for integers over 4,300 digits and
        RecursionError for deep nesting; Strawberry only turns JSONDecodeError into
        a 400, so both are re-raised as that instead of escaping as a 500.
        """
        try:
            return jsoncodec.loads(data)
        except (RecursionError, ValueError) as exc:
            raise json.JSONDecodeError(str(exc)[:100], "", 0) from None

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        if not self.assets.ready:
            build = asyncio.wrap_future(self.assets.start())
            # A slow build must not leave the request hanging past its timeout;
            # shield: other requests wait on the same build.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(build), self.assets.build_timeout + 5)
        mode: Mode = "self-hosted" if self.assets.ready else "cdn"
        nonce = new_style_nonce()
        html = render_page(
            mode,
            _urls(request, self.asset_path),
            list(self.assets.assets),
            self.assets.reason or "its build has not finished",
            nonce,
        )
        return HTMLResponse(html, headers=security_headers(mode, nonce))

    def encode_json(self, data: object) -> str:
        # orjson where it can (api/jsoncodec.py). A str, not bytes: WebSocket messages
        # go through here too and must stay text frames.
        return jsoncodec.dumps(data).decode()

    async def on_ws_connect(self, context: Any) -> UnsetType | dict[str, object] | None:
        # API keys (api/security/auth.py): the key travels in connection_init's payload.
        await authenticate_ws(context)
        return await super().on_ws_connect(context)


async def _read_body(receive: Receive) -> tuple[bytes | None, Receive]:
    """The request body (None when the client left first), and a receive that hands
    out the same messages again. The security middleware has bounded the body's size."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    replay = list(messages)

    async def replayed() -> Message:
        return replay.pop(0) if replay else await receive()

    if messages[-1]["type"] != "http.request":
        return None, replayed
    return b"".join(m.get("body", b"") for m in messages), replayed


_STREAMING = ("multipart/mixed", "text/event-stream")


def _planned_request(
    scope: Scope, body: bytes
) -> tuple[str, str | None, dict[str, Any] | None] | None:
    """(query, operationName, variables) of a plain JSON GraphQL POST that Strawberry
    would answer with a plain JSON response; None for anything else (a batch, another
    content type, a streaming Accept header, fields of unexpected types)."""
    content_type = accept = ""
    for key, value in scope["headers"]:
        if key == b"content-type":
            content_type = value.decode("latin-1").split(";")[0].strip().lower()
        elif key == b"accept":
            accept = value.decode("latin-1").lower()
    if content_type != "application/json" or any(s in accept for s in _STREAMING):
        return None
    try:
        data = jsoncodec.loads(body)
    except (RecursionError, ValueError):
        return None
    if type(data) is not dict:
        return None
    query, name, variables = data.get("query"), data.get("operationName"), data.get("variables")
    if type(query) is not str or not (name is None or type(name) is str):
        return None
    if not (variables is None or type(variables) is dict):
        return None
    return query, name, variables


def graphql_routes(endpoint: GraphQLEndpoint, path: str = "/graphql") -> list[BaseRoute]:
    """HTTP (GET and POST; anything else is 405) and WebSocket routes to `endpoint`."""
    return [Route(path, endpoint, methods=["GET", "POST"]), WebSocketRoute(path, endpoint)]


class GraphQLPosts:
    """ASGI middleware, innermost: a POST to exactly `path` goes straight to the
    endpoint, past Starlette's ExceptionMiddleware, FastAPI's AsyncExitStackMiddleware,
    the router's matching over every route and the route's method check.

    None of them does anything for this route: the endpoint raises no HTTPException
    and has no dependencies to clean up; an unexpected exception still reaches the
    outer ServerErrorMiddleware (500) and the security middlewares around this one.
    Why: those layers were ~5% of a planned sidebar's CPU in process (py-spy,
    `python -m bench.inproc sidebar`). Other methods (GET, OPTIONS, 405s), other
    paths and WebSockets take the routes as before.
    """

    def __init__(self, app: ASGIApp, endpoint: ASGIApp, path: str = "/graphql") -> None:
        self.app = app
        self.endpoint = endpoint
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == self.path:
            await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class _AssetFiles(StaticFiles):
    """StaticFiles with nosniff, and long caching for the version-named vendor files."""

    def __init__(self, *, directory: Path, immutable: bool) -> None:
        super().__init__(directory=directory, check_dir=False)
        self.immutable = immutable

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["X-Content-Type-Options"] = "nosniff"
        if response.status_code == 200:
            response.headers["Cache-Control"] = (
                "public, max-age=31536000, immutable" if self.immutable else "no-cache"
            )
        return response


def mount_graphiql_assets(
    app: Starlette, assets: GraphiQLAssets, asset_path: str = ASSET_PATH
) -> None:
    """Serve the built npm files (dist/, paths carry package@version) and ctxgraph's own."""
    app.mount(
        f"{asset_path}/vendor",
        _AssetFiles(directory=assets.dist_dir, immutable=True),
        name="graphiql-vendor",
    )
    app.mount(
        f"{asset_path}/static",
        _AssetFiles(directory=STATIC_DIR, immutable=False),
        name="graphiql-static",
    )
