"""API keys: `Authorization: Bearer <key>` over HTTP and in the WebSocket connection_init.

Keys come from CTXGRAPH_API_KEYS (comma-separated) and/or CTXGRAPH_API_KEY_HASHES
(hex SHA-256 digests). Only digests are kept; a presented key is hashed and
compared with every stored digest using `hmac.compare_digest`, without stopping
at the first match, so the time taken says nothing about the keys. No key
configured means the API is open.

`Authenticator` is the single check: the operation entry calls it for every
GraphQL operation, the WebSocket handler for connection_init; `ApiKeyMiddleware`
guards the other protected paths (/metrics).
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

from api.errors import Unauthenticated
from api.settings import Settings

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


def error_body(message: str, code: str) -> bytes:
    return json.dumps(
        {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]}
    ).encode()


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request acts for: `open` when no credential is configured, else the kind
    of credential it presented."""

    kind: str


OPEN = Identity("open")
API_KEY = Identity("api_key")


@dataclass(frozen=True)
class Authenticator:
    """The one credential check of every GraphQL operation (api/graphql/operation.py
    calls it first, whatever the transport) and of a WebSocket's connection_init.

    The identity is decided once per HTTP request or WebSocket connection and kept on
    its RequestContext: a batch or a socket's later operations reuse it."""

    keys: ApiKeys

    def identify(self, connection: Any, connection_params: Any = None) -> Identity:
        """The identity of an HTTP request (its headers) or a WebSocket (its
        connection_init payload, else the upgrade request's headers); raises
        Unauthenticated."""
        if not self.keys.enabled:
            return OPEN
        if isinstance(connection_params, Mapping):
            try:
                authenticate(connection_params, self.keys)
                return API_KEY
            except Unauthenticated:
                if getattr(connection, "scope", {}).get("type") != "websocket":
                    raise
        headers = getattr(connection, "headers", None)
        authenticate(headers if headers is not None else {}, self.keys)
        return API_KEY

    async def authenticate(self, context: Any) -> Identity:
        """The identity of the request or connection `context` belongs to, decided once."""
        identity = getattr(context, "identity", None)
        if isinstance(identity, Identity):
            return identity
        identity = self.identify(context.request, context.connection_params)
        context.identity = identity
        return identity


class ApiKeyMiddleware:
    """HTTP: 401 + a GraphQL error coded UNAUTHENTICATED for the protected paths other
    than /graphql (/metrics) without a valid key. GraphQL operations are authenticated
    by the operation entry, after the request is parsed."""

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
            or not self._protects(scope["path"])
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
