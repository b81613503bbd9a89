"""The GraphiQL page and its security headers.

Self-hosted, every script and style comes from this server and the
Content-Security-Policy allows nothing else. In CDN mode the vendor files come
from the CDN with subresource integrity, and a notice says why and how to get
the self-hosted page. ctxgraph's own setup script and stylesheet are always
served from here, so the page needs no inline script or style.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from html import escape
from typing import Literal
from urllib.parse import urlsplit

from api.graphiql.assets import CDN_BASE, VendorAsset

Mode = Literal["self-hosted", "cdn"]


@dataclass(frozen=True)
class PageUrls:
    """Where the page's files are served (paths on this server)."""

    vendor: str
    static: str

    def vendor_url(self, asset: VendorAsset) -> str:
        return f"{self.vendor}/{asset.key}"


def content_security_policy(mode: Mode, style_nonce: str) -> str:
    """Scripts and styles from this server only (plus the CDN in CDN mode).

    `style_nonce` admits the <style> elements that GraphiQL's dialogs insert
    (react-remove-scroll, which tags them with the page's nonce); no inline
    script is allowed at all.
    """
    extra = ""
    if mode == "cdn":
        parts = urlsplit(CDN_BASE)
        extra = f" {parts.scheme}://{parts.netloc}"
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'self'{extra}",
            f"style-src 'self'{extra} 'nonce-{style_nonce}'",
            # GraphiQL's icons and fonts are data: URLs inside its stylesheet.
            "img-src 'self' data:",
            "font-src 'self' data:",
            # HTTP and graphql-transport-ws to this same origin.
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def security_headers(mode: Mode, style_nonce: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(mode, style_nonce),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        # The mode can change once the assets are built: never cache the page.
        "Cache-Control": "no-store",
    }


def _notice(reason: str) -> str:
    host = urlsplit(CDN_BASE).netloc
    return (
        '<p class="ctxgraph-notice" role="status" id="ctxgraph-notice">'
        f"GraphiQL is loaded from {escape(host)} (integrity-checked) because its "
        f"self-hosted copy is not available: {escape(reason)}. "
        "For a page that makes no request outside this server, install Node.js "
        "(with npm) and restart <code>ctxgraph serve</code>: it then runs "
        "<code>npm ci</code> in <code>graphiql/</code> once and serves the files itself."
        "</p>"
    )


def new_style_nonce() -> str:
    return secrets.token_urlsafe(18)


def render_page(
    mode: Mode,
    urls: PageUrls,
    assets: tuple[VendorAsset, ...] | list[VendorAsset],
    reason: str,
    style_nonce: str,
) -> str:
    """The HTML of the GraphiQL page."""
    styles: list[str] = []
    scripts: list[str] = []
    for asset in assets:
        # Integrity in both modes: the same digests, so a damaged copy is refused too.
        attrs = f' integrity="{escape(asset.integrity)}"'
        if mode == "self-hosted":
            src = escape(urls.vendor_url(asset))
        else:
            src = escape(asset.cdn_url)
            attrs += ' crossorigin="anonymous"'
        if asset.kind == "style":
            styles.append(f'<link rel="stylesheet" href="{src}"{attrs}>')
        else:
            scripts.append(f'<script src="{src}"{attrs}></script>')
    static = escape(urls.static)
    notice = _notice(reason) if mode == "cdn" else ""
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="referrer" content="no-referrer">',
            "<title>ctxgraph \u00b7 GraphiQL</title>",
            # An empty icon: no /favicon.ico request.
            '<link rel="icon" href="data:,">',
            *styles,
            f'<link rel="stylesheet" href="{static}/ctxgraph-graphiql.css">',
            "</head>",
            f'<body data-graphiql-mode="{mode}" data-style-nonce="{escape(style_nonce)}">',
            notice,
            '<div id="graphiql">Loading GraphiQL\u2026</div>',
            *scripts,
            f'<script src="{static}/ctxgraph-graphiql.js"></script>',
            "</body>",
            "</html>",
            "",
        ]
    )
