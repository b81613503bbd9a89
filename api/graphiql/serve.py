"""The GraphiQL page and the mounts of its files."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from api.graphiql.assets import GraphiQLAssets
from api.graphiql.page import Mode, PageUrls, new_style_nonce, render_page, security_headers

ASSET_PATH = "/graphiql"
"""Where the page's files are served: /graphiql/vendor/ (npm) and /graphiql/static/ (ours)."""

STATIC_DIR = Path(__file__).parent / "static"


def _urls(request: Request, asset_path: str) -> PageUrls:
    # Behind a proxy that strips a path prefix, root_path carries it.
    base = str(request.scope.get("root_path", "")).rstrip("/") + asset_path
    return PageUrls(vendor=f"{base}/vendor", static=f"{base}/static")


class GraphiQLPage:
    """The IDE page as an ASGI app (the GraphQL transport, api/graphql/http.py, decides
    which requests are page requests).

    The first page request starts the asset build if nothing did (the app's lifespan
    normally has) and waits for it, up to the build's own timeout, so the first page a
    user opens is already the self-hosted one. Without assets the page uses the CDN,
    with integrity hashes and a notice.
    """

    def __init__(self, assets: GraphiQLAssets, asset_path: str = ASSET_PATH) -> None:
        self.assets = assets
        self.asset_path = asset_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.render(Request(scope, receive))
        await response(scope, receive, send)

    async def render(self, request: Request) -> HTMLResponse:
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
