"""The GraphQL endpoint: Strawberry's ASGI app with ctxgraph's GraphiQL page, and
the asset mounts."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import Scope
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLRequestData
from strawberry.types import ExecutionResult
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

    async def execute_single(
        self,
        request: Request,
        request_adapter: Any,
        sub_response: Any,
        context: Any,
        root_value: Any,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """A query text that a plan has answered before is answered by its plan again,
        without Strawberry's parse, validation and extension hooks (api/graphql/plans.py,
        `Plans.answer`: the query limits and the operation's log line still apply);
        anything else, and anything the plan gives way on, goes through Strawberry."""
        plans = getattr(self.schema, "plans", None)
        if (
            plans is not None
            and isinstance(context, RequestContext)
            and isinstance(request_data.query, str)
            and (request_adapter.method == "POST" or self.allow_queries_via_get)
        ):
            result = await plans.answer(
                self.schema._schema,  # type: ignore[attr-defined]
                request_data.query,
                request_data.operation_name,
                request_data.variables,
                context,
            )
            if result is not None:
                return ExecutionResult(data=result.data, errors=None)
        return await super().execute_single(
            request=request,
            request_adapter=request_adapter,
            sub_response=sub_response,
            context=context,
            root_value=root_value,
            request_data=request_data,
        )

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


def graphql_routes(endpoint: GraphQLEndpoint, path: str = "/graphql") -> list[BaseRoute]:
    """HTTP (GET and POST; anything else is 405) and WebSocket routes to `endpoint`."""
    return [Route(path, endpoint, methods=["GET", "POST"]), WebSocketRoute(path, endpoint)]


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
