"""API keys: `Authorization: Bearer <key>` over HTTP and in the WebSocket connection_init.

Keys come from CTXGRAPH_API_KEYS (comma-separated) and/or CTXGRAPH_API_KEY_HASHES
(hex SHA-256 digests). Only digests are kept; a presented key is hashed and
compared with every stored digest using `hmac.compare_digest`, without stopping
at the first match, so the time taken says nothing about the keys. No key
configured means the API is open.

`authenticate` is the single check; the HTTP middleware (`ApiKeyMiddleware`)
and the WebSocket hook (`authenticate_ws`, called from the router's
`on_ws_connect`) both use it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from strawberry.exceptions import ConnectionRejectionError

from api.errors import Unauthenticated
from api.settings import Settings

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
"""Always answered without a key (load balancers and orchestrators probe them)."""

GRAPHQL_PATH = "/graphql"

MISSING = (
    "This server requires an API key: send the header `Authorization: Bearer <key>` "
    "(WebSocket: put it in the connection_init payload)."
)
INVALID = "The API key is not valid."


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True)
class ApiKeys:
    """The configured keys, as SHA-256 digests only."""

    digests: tuple[bytes, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeys:
        digests: list[bytes] = []
        if settings.api_keys is not None:
            raw = settings.api_keys.get_secret_value()
            digests += [digest(k.strip()) for k in raw.split(",") if k.strip()]
        if settings.api_key_hashes:
            for h in settings.api_key_hashes.split(","):
                h = h.strip().lower()
                if not h:
                    continue
                try:
                    value = bytes.fromhex(h)
                except ValueError:
                    value = b""
                if len(value) != hashlib.sha256().digest_size:
                    raise ValueError(
                        "CTXGRAPH_API_KEY_HASHES must hold hex SHA-256 digests (64 hex digits "
                        "each, comma-separated)"
                    )
                digests.append(value)
        return cls(tuple(digests))

    @property
    def enabled(self) -> bool:
        return bool(self.digests)

    def check(self, key: str) -> bool:
        presented = digest(key)
        found = False
        for stored in self.digests:
            # No early exit: every stored digest is compared.
            found |= hmac.compare_digest(presented, stored)
        return found


def bearer_token(value: Any) -> str | None:
    """The token of an `Authorization: Bearer <token>` value, or None."""
    if not isinstance(value, str):
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _authorization(credentials: Mapping[str, Any] | Any) -> Any:
    """The Authorization value of headers or a connection_init payload (any case)."""
    if not isinstance(credentials, Mapping):
        return None
    getter = getattr(credentials, "get", None)
    for name in ("authorization", "Authorization", "AUTHORIZATION"):
        value = getter(name) if getter is not None else None
        if value is not None:
            return value
    for name, value in credentials.items():
        if isinstance(name, str) and name.lower() == "authorization":
            return value
    return None


def authenticate(credentials: Mapping[str, Any] | Any, keys: ApiKeys | Settings) -> None:
    """Raise Unauthenticated unless `credentials` (request headers or a connection_init
    payload) carry `Authorization: Bearer <key>` with a configured key. Open when no
    key is configured."""
    if isinstance(keys, Settings):
        keys = ApiKeys.from_settings(keys)
    if not keys.enabled:
        return
    token = bearer_token(_authorization(credentials))
    if token is None:
        raise Unauthenticated(MISSING)
    if not keys.check(token):
        raise Unauthenticated(INVALID)


async def authenticate_ws(context: Any) -> None:
    """The WebSocket check, for GraphQLEndpoint.on_ws_connect: the key goes in the
    connection_init payload (`{"Authorization": "Bearer <key>"}`); a key in the
    upgrade request's headers is accepted too (non-browser clients). Refused
    connections are closed with 4403 by Strawberry."""
    connection = getattr(context, "request", None)
    app = getattr(connection, "app", None)
    keys = getattr(getattr(app, "state", None), "api_keys", None)
    if not isinstance(keys, ApiKeys) or not keys.enabled:
        return
    payload = getattr(context, "connection_params", None)
    try:
        authenticate(payload if isinstance(payload, Mapping) else {}, keys)
        return
    except Unauthenticated:
        pass
    headers = getattr(connection, "headers", None)
    try:
        authenticate(headers if headers is not None else {}, keys)
    except Unauthenticated as exc:
        raise ConnectionRejectionError({"message": exc.message, "code": exc.code}) from None


def error_body(message: str, code: str) -> bytes:
    return json.dumps(
        {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]}
    ).encode()


def is_ide_request(scope: Scope) -> bool:
    """The GraphiQL page loads without a key (its files are under /graphiql); its requests
    need one.

    Mirrors Strawberry's rule: a GET without `query` whose Accept has text/html or */*.
    """
    if scope["method"] not in ("GET", "HEAD") or scope["path"] != GRAPHQL_PATH:
        return False
    query_string: bytes = scope.get("query_string", b"")
    if b"query=" in query_string:
        return False
    accept = _header(scope, b"accept")
    return "text/html" in accept or "*/*" in accept


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


class ApiKeyMiddleware:
    """HTTP: 401 + a GraphQL error coded UNAUTHENTICATED for /graphql and /metrics without
    a valid key. /healthz, /readyz, the IDE page and CORS preflights stay open;
    WebSockets are checked at connection_init (authenticate_ws)."""

    def __init__(self, app: ASGIApp, keys: ApiKeys, protected: tuple[str, ...]) -> None:
        self.app = app
        self.keys = keys
        self.protected = protected

    def _protects(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in self.protected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not self.keys.enabled
            or scope["method"] == "OPTIONS"
            or scope["path"] in OPEN_PATHS
            or not self._protects(scope["path"])
            or is_ide_request(scope)
        ):
            await self.app(scope, receive, send)
            return
        try:
            authenticate({"authorization": _header(scope, b"authorization") or None}, self.keys)
        except Unauthenticated as exc:
            body = error_body(exc.message, exc.code)
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"www-authenticate", b'Bearer realm="ctxgraph"'),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def is_loopback(host: str) -> bool:
    """Is `host` (an interface to bind) reachable only from this machine?"""
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def open_access_warning(host: str, settings: Settings) -> str | None:
    """The one-line warning for a server listening beyond loopback without keys."""
    if is_loopback(host) or ApiKeys.from_settings(settings).enabled:
        return None
    return (
        f"ctxgraph: WARNING: listening on {host} without API keys: anyone who can reach this "
        "address can read and write every context; set CTXGRAPH_API_KEYS"
    )
