"""The GraphiQL page: self-hosted assets, the CDN fallback, the build, the headers.

The browser test (tests/browser/) runs the page in chromium; these check the
HTML, the files and the build logic over HTTP. Stand-in `npm` scripts play a
failing, hanging or working npm; the self-hosted tests use the real build of
graphiql/ (`npm ci` from the lockfile), which needs Node.js: without it they
skip, except in CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import time
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Route

from api.graphiql import (
    VENDOR_ASSETS,
    AssetState,
    GraphiQLAssets,
    GraphiQLPage,
    default_assets,
    mount_graphiql_assets,
)
from api.graphiql.assets import CDN_BASE, NPM_PROJECT_DIR, sri_digest
from tests.conftest import GraphQLClient

HTML = {"Accept": "text/html"}


class Tags(HTMLParser):
    """The script, stylesheet and notice elements of a page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.styles: list[dict[str, str | None]] = []
        self.inline_scripts = 0
        self.ids: set[str] = set()
        self.body: dict[str, str | None] = {}
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.add(str(attributes["id"]))
        if tag == "script":
            if attributes.get("src"):
                self.scripts.append(attributes)
            else:
                self.inline_scripts += 1
        elif tag == "link" and attributes.get("rel") == "stylesheet":
            self.styles.append(attributes)
        elif tag == "body":
            self.body = attributes

    @property
    def urls(self) -> list[str]:
        return [str(a["src"]) for a in self.scripts] + [str(a["href"]) for a in self.styles]


def directives(csp: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for part in csp.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


def ide_app(assets: GraphiQLAssets) -> FastAPI:
    """Just the page and the mounts, around `assets` (the page needs no database)."""
    app = FastAPI()
    app.router.routes.append(Route("/graphql", GraphiQLPage(assets), methods=["GET"]))
    mount_graphiql_assets(app, assets)
    return app


def fake_npm(directory: Path, body: str) -> str:
    """An executable `npm` stand-in running the shell `body`."""
    path = directory / "npm"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def npm_project(tmp_path: Path) -> Path:
    """A copy of graphiql/ without node_modules or dist."""
    project = tmp_path / "graphiql"
    project.mkdir()
    for name in ("package.json", "package-lock.json"):
        shutil.copy(NPM_PROJECT_DIR / name, project / name)
    return project


@pytest.fixture(scope="module")
def built() -> GraphiQLAssets:
    """graphiql/ built for real, as `ctxgraph serve` does (runs `npm ci` the first time)."""
    assets = default_assets()
    if not assets.ready and (shutil.which("npm") is None or shutil.which("node") is None):
        if os.environ.get("CI") == "true":
            pytest.fail("Node.js/npm is needed in CI for the self-hosted GraphiQL assets")
        pytest.skip("Node.js/npm not found: the self-hosted GraphiQL assets cannot be built")
    assert assets.build() is AssetState.READY, assets.reason
    return assets


# --- the pins --------------------------------------------------------------


def test_pins_agree_with_package_json_and_the_lockfile() -> None:
    package = json.loads((NPM_PROJECT_DIR / "package.json").read_text())
    lock = json.loads((NPM_PROJECT_DIR / "package-lock.json").read_text())
    for asset in VENDOR_ASSETS:
        assert package["dependencies"][asset.package] == asset.version, asset
        locked = lock["packages"][f"node_modules/{asset.package}"]
        assert locked["version"] == asset.version, asset
        assert locked["integrity"].startswith("sha512-")
        assert re.fullmatch(r"sha384-[A-Za-z0-9+/]{64}", asset.integrity)
    # graphiql's UMD build runs on the React globals: one React for all.
    assert package["dependencies"]["react"] == package["dependencies"]["react-dom"]
    assert "graphql" in package["dependencies"]  # graphiql's peer, pinned with it


def test_the_pinned_digests_are_those_of_the_npm_files(built: GraphiQLAssets) -> None:
    node_modules = NPM_PROJECT_DIR / "node_modules"
    for asset in VENDOR_ASSETS:
        served = (built.dist_dir / asset.key).read_bytes()
        assert sri_digest(served) == asset.integrity, asset
        assert served == (node_modules / asset.package / asset.file).read_bytes()


# --- the self-hosted page ----------------------------------------------------


async def test_self_hosted_page_loads_everything_from_the_server(
    client: GraphQLClient, built: GraphiQLAssets
) -> None:
    response = await client.http.get("/graphql", headers=HTML)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = Tags(response.text)
    assert page.body["data-graphiql-mode"] == "self-hosted"
    assert "ctxgraph-notice" not in page.ids
    assert "https://" not in response.text
    assert "http://" not in response.text
    assert page.inline_scripts == 0

    # React first, then GraphiQL and graphql-ws, then ctxgraph's setup; all local.
    vendor = [f"/graphiql/vendor/{a.key}" for a in VENDOR_ASSETS]
    scripts = [str(s["src"]) for s in page.scripts]
    assert scripts == [u for u in vendor if u.endswith(".js")] + [
        "/graphiql/static/ctxgraph-graphiql.js"
    ]
    assert [str(s["href"]) for s in page.styles] == [u for u in vendor if u.endswith(".css")] + [
        "/graphiql/static/ctxgraph-graphiql.css"
    ]
    by_url = {f"/graphiql/vendor/{a.key}": a for a in VENDOR_ASSETS}
    for tag in page.scripts + page.styles:
        url = str(tag.get("src") or tag.get("href"))
        if url in by_url:
            assert tag["integrity"] == by_url[url].integrity

    for url in page.urls:
        asset = await client.http.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["x-content-type-options"] == "nosniff"
        expected_type = "text/css" if url.endswith(".css") else "javascript"
        assert expected_type in asset.headers["content-type"], url
        if url in by_url:
            assert sri_digest(asset.content) == by_url[url].integrity
            assert "immutable" in asset.headers["cache-control"]
        else:
            assert asset.headers["cache-control"] == "no-cache"


async def test_ide_page_security_headers(client: GraphQLClient, built: GraphiQLAssets) -> None:
    response = await client.http.get("/graphql", headers=HTML)
    csp = directives(response.headers["content-security-policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]
    # The nonce is for the <style> elements of GraphiQL's dialogs, new on every page.
    nonce = Tags(response.text).body["data-style-nonce"]
    assert csp["style-src"] == ["'self'", f"'nonce-{nonce}'"]
    again = await client.http.get("/graphql", headers=HTML)
    assert Tags(again.text).body["data-style-nonce"] != nonce
    assert csp["connect-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"


async def test_setup_script_speaks_graphql_transport_ws_with_the_headers(
    client: GraphQLClient,
) -> None:
    script = (await client.http.get("/graphiql/static/ctxgraph-graphiql.js")).text
    # graphql-ws's client (graphql-transport-ws) with the Headers tab as connection_init payload.
    assert "window.__webpack_nonce__ = document.body.dataset.styleNonce" in script
    assert "graphqlWs.createClient" in script
    assert "connectionParams: headers" in script
    assert "GraphiQL.createFetcher" in script
    assert 'defaultEditorToolsVisibility: "headers"' in script
    assert '"Authorization": ""' in script


async def test_api_requests_are_not_the_page(client: GraphQLClient) -> None:
    assert await client.data("{ __typename }") == {"__typename": "Query"}
    response = await client.http.get(
        "/graphql", params={"query": "{ __typename }"}, headers={"Accept": "application/json"}
    )
    assert response.json() == {"data": {"__typename": "Query"}}


async def test_asset_mounts_serve_only_their_files(client: GraphQLClient) -> None:
    for url in (
        "/graphiql/vendor/package.json",
        "/graphiql/vendor/../package-lock.json",
        "/graphiql/vendor/react@18.3.1/package.json",
        "/graphiql/static/../assets.py",
    ):
        response = await client.http.get(url)
        assert response.status_code == 404, url


# --- without Node.js: the CDN page ---------------------------------------------


async def test_without_node_the_page_uses_the_cdn_with_integrity(tmp_path: Path) -> None:
    assets = GraphiQLAssets(project_dir=npm_project(tmp_path), npm="npm-is-not-installed")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=ide_app(assets)), base_url="http://test"
    ) as http:
        response = await http.get("/graphql", headers=HTML)
    assert assets.state is AssetState.UNAVAILABLE
    assert assets.reason == "Node.js/npm not found on PATH"
    page = Tags(response.text)
    assert page.body["data-graphiql-mode"] == "cdn"

    vendor = {a.cdn_url: a for a in VENDOR_ASSETS}
    for tag in page.scripts + page.styles:
        url = str(tag.get("src") or tag.get("href"))
        if url.startswith("/graphiql/static/"):
            continue  # ctxgraph's own files still come from the server
        assert url in vendor, url
        assert tag["integrity"] == vendor[url].integrity
        assert tag["crossorigin"] == "anonymous"
    assert sorted(u for u in page.urls if u.startswith("https://")) == sorted(vendor)
    assert all(url.startswith(CDN_BASE + f"{a.package}@{a.version}/") for url, a in vendor.items())

    # The notice says why and what to do.
    assert "ctxgraph-notice" in page.ids
    assert "Node.js/npm not found on PATH" in response.text
    assert "install Node.js" in response.text
    assert "restart <code>ctxgraph serve</code>" in response.text

    csp = directives(response.headers["content-security-policy"])
    assert csp["script-src"] == ["'self'", "https://cdn.jsdelivr.net"]
    nonce = page.body["data-style-nonce"]
    assert csp["style-src"] == ["'self'", "https://cdn.jsdelivr.net", f"'nonce-{nonce}'"]
    assert csp["connect-src"] == ["'self'"]
    assert response.headers["x-content-type-options"] == "nosniff"


# --- the build -------------------------------------------------------------------


def test_a_failing_npm_leaves_the_cdn_page_with_its_reason(tmp_path: Path) -> None:
    npm = fake_npm(tmp_path, 'echo "npm error network request failed" >&2; exit 1')
    assets = GraphiQLAssets(project_dir=npm_project(tmp_path), npm=npm)
    assert assets.build() is AssetState.UNAVAILABLE
    assert assets.reason == "`npm ci` exited with 1: npm error network request failed"
    assert not assets.dist_dir.exists()


def test_a_hanging_npm_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    # The child `sleep` holds the output pipe: the build only returns once the
    # whole process group is gone.
    npm = fake_npm(tmp_path, "sleep 60 & wait")
    assets = GraphiQLAssets(project_dir=npm_project(tmp_path), npm=npm, build_timeout=0.5)
    started = time.monotonic()
    assert assets.build() is AssetState.UNAVAILABLE
    assert time.monotonic() - started < 30
    assert assets.reason == "`npm ci` took longer than 0.5 s"


def _populate_node_modules(project: Path, source: Path) -> None:
    for asset in VENDOR_ASSETS:
        target = project / "node_modules" / asset.package / asset.file
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / asset.key, target)


def test_the_build_refuses_files_that_differ_from_the_pins(
    tmp_path: Path, built: GraphiQLAssets
) -> None:
    project = npm_project(tmp_path)
    _populate_node_modules(project, built.dist_dir)
    tampered = project / "node_modules/react/umd/react.production.min.js"
    tampered.write_bytes(tampered.read_bytes() + b"\n// changed")
    # npm "succeeds" but leaves the changed file: the digest check catches it.
    assets = GraphiQLAssets(project_dir=project, npm=fake_npm(tmp_path, "exit 0"))
    assert assets.build() is AssetState.UNAVAILABLE
    assert "react.production.min.js does not match its pinned digest" in assets.reason
    assert not assets.dist_dir.exists()


@pytest.mark.parametrize("npm_runs", [True, False])
async def test_first_page_request_builds_and_waits(
    tmp_path: Path, built: GraphiQLAssets, npm_runs: bool
) -> None:
    """The page request starts the build and answers with the self-hosted page.

    npm_runs: `npm ci` fills node_modules (a stand-in copying the real files);
    otherwise node_modules already has the pinned files and npm is not needed.
    """
    project = npm_project(tmp_path)
    if npm_runs:
        fill = tmp_path / "fill"
        _populate_node_modules(fill, built.dist_dir)
        npm = fake_npm(tmp_path, f'cp -r "{fill}/node_modules" .')
    else:
        _populate_node_modules(project, built.dist_dir)
        npm = "npm-is-not-installed"
    assets = GraphiQLAssets(project_dir=project, npm=npm)
    assert assets.state is AssetState.NOT_STARTED
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=ide_app(assets)), base_url="http://test"
    ) as http:
        response = await http.get("/graphql", headers=HTML)
        assert Tags(response.text).body["data-graphiql-mode"] == "self-hosted", assets.reason
        for asset in VENDOR_ASSETS:
            served = await http.get(f"/graphiql/vendor/{asset.key}")
            assert sri_digest(served.content) == asset.integrity
    assert assets.ready
    # A new process finds dist/ complete without building.
    assert GraphiQLAssets(project_dir=project, npm="npm-is-not-installed").ready


def test_command_line_status(built: GraphiQLAssets, capsys: pytest.CaptureFixture[str]) -> None:
    from api.graphiql.__main__ import main

    assert main(["status"]) == 0
    assert f"GraphiQL assets in {built.dist_dir}: ready" in capsys.readouterr().err
