"""ASGI middlewares: request ids and the access log, security headers, CORS, the body limit.

Order, outermost first (`install`):

1. RequestLogMiddleware: a request id (the client's X-Request-ID when it is
   sane, else a new one) put back into the request headers so the GraphQL
   context uses the same id, echoed in the response; one JSON log line per
   request (id, method, path, GraphQL operation, status, duration, error
   codes; never headers, variables or bodies) and the Prometheus observations.
2. SecurityHeadersMiddleware: nosniff, frame denial, referrer policy, a CSP for
   HTML (the IDE page) unless the page sets its own, no-store on API answers.
3. CORS (Starlette's), only when CTXGRAPH_CORS_ORIGINS is set.
4. ApiKeyMiddleware (api/security/auth.py) for /metrics; GraphQL operations are
   authenticated by the operation entry (api/graphql/operation.py).
5. BodyLimitMiddleware: 413 past CTXGRAPH_MAX_BODY_BYTES, before anything reads
   the body.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import BadUserInput
from api.security.auth import ApiKeyMiddleware, ApiKeys, error_body
from api.security.failures import INTERNAL, internal_message
from api.settings import Settings

if TYPE_CHECKING:
    from api.metrics import Metrics

access_log = logging.getLogger("ctxgraph.access")

SCOPE_KEY = "ctxgraph.request"
REQUEST_ID_HEADER = b"x-request-id"
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


@dataclass
class RequestInfo:
    """What the layers below tell the access log about one request."""

    request_id: str
    operation_type: str | None = None
    operation_name: str | None = None
    codes: list[str] = field(default_factory=list)
    status_override: int | None = None


def request_info(scope: Scope | None) -> RequestInfo | None:
    if scope is None:
        return None
    info = scope.get(SCOPE_KEY)
    return info if isinstance(info, RequestInfo) else None


def _request_id(scope: Scope) -> str:
    for key, value in scope.get("headers", ()):
        if key == REQUEST_ID_HEADER:
            candidate = bytes(value).decode("latin-1")
            if _SANE_ID.fullmatch(candidate):
                return candidate
            break
    # 16 hex digits as before (uuid4().hex[:16]), without building a UUID: ~0.3 us, not ~2.5
    return secrets.token_hex(8)


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics | None, enabled: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        info = RequestInfo(request_id)
        headers = [(k, v) for k, v in scope.get("headers", ()) if k != REQUEST_ID_HEADER]
        headers.append((REQUEST_ID_HEADER, request_id.encode()))
        scope = {**scope, "headers": headers, SCOPE_KEY: info}
        started = time.perf_counter()
        status = 0
        close_code: int | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal status, close_code
            if message["type"] == "http.response.start":
                status = info.status_override or message["status"]
                response_headers = list(message.get("headers", ()))
                response_headers.append((REQUEST_ID_HEADER, request_id.encode()))
                message = {**message, "status": status, "headers": response_headers}
            elif message["type"] == "websocket.accept":
                status = 101
            elif message["type"] == "websocket.close":
                close_code = message.get("code", 1000)
                status = status or 403
            await send(message)

        if self.metrics is not None:
            self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException as exc:
            if status == 0 and scope["type"] == "http" and isinstance(exc, Exception):
                # Nothing was sent: answer the masked 500 here, inside this layer, so
                # it carries the request id (and the security headers) a client needs
                # to report it. Re-raised: the server still logs the traceback.
                for message in _simple_response(500, _internal_error(request_id)):
                    if message["type"] == "http.response.start":
                        message["headers"] += SECURITY_HEADERS
                    await send_wrapper(message)
            status = status or 500
            raise
        finally:
            duration = time.perf_counter() - started
            if self.metrics is not None:
                self.metrics.in_flight.dec()
                self.metrics.observe_request(scope, status, duration)
            if self.enabled and access_log.isEnabledFor(logging.INFO):
                self._log(scope, info, status, duration, close_code)

    @staticmethod
    def _log(
        scope: Scope, info: RequestInfo, status: int, duration: float, close_code: int | None
    ) -> None:
        line: dict[str, Any] = {
            "request_id": info.request_id,
            "method": scope.get("method", "WS"),
            "path": scope["path"],
            "status": status,
            "duration_ms": round(duration * 1000, 2),
        }
        if info.operation_type is not None:
            line["operation"] = info.operation_type
            line["operation_name"] = info.operation_name
        if info.codes:
            line["error_codes"] = sorted(set(info.codes))
        if close_code is not None:
            line["close_code"] = close_code
        client = scope.get("client")
        if client:
            line["client"] = client[0]
        access_log.info(json.dumps(line, separators=(",", ":")))


SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)
IDE_CSP = (
    b"default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"font-src 'self' data: https://cdn.jsdelivr.net; img-src 'self' data:; "
    b"connect-src 'self' ws: wss:; worker-src 'self' blob:; frame-ancestors 'none'; "
    b"base-uri 'none'; form-action 'self'"
)
"""For HTML (the GraphiQL page) unless it sends its own: its files come from this
server or, without Node.js at build time, from the CDN (checked by SRI)."""


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {bytes(k).lower() for k, _ in headers}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                content_type = next(
                    (bytes(v) for k, v in headers if bytes(k).lower() == b"content-type"), b""
                )
                if b"text/html" in content_type and b"content-security-policy" not in present:
                    extra.append((b"content-security-policy", IDE_CSP))
                elif b"cache-control" not in present and b"application/" in content_type:
                    extra.append((b"cache-control", b"no-store"))
                if https and b"strict-transport-security" not in present:
                    extra.append((b"strict-transport-security", b"max-age=31536000"))
                message = {**message, "headers": headers + extra}
            await send(message)

        await self.app(scope, receive, send_wrapper)


def _internal_error(request_id: str) -> bytes:
    """The body of a 500 nothing else answered: GraphQL's masked error (api/graphql/errors)."""
    error = {"message": internal_message(request_id), "extensions": {"code": INTERNAL}}
    return json.dumps({"errors": [error]}, separators=(",", ":")).encode()


def _simple_response(status: int, body: bytes) -> tuple[Message, Message]:
    return (
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        },
        {"type": "http.response.body", "body": body},
    )


MAX_JSON_DEPTH = 100
"""Deepest nesting of arrays/objects accepted in a request's JSON (Python's JSON parser
recurses; far deeper input would end in RecursionError, a 500)."""
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def json_too_deep(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Does `raw` nest arrays/objects more than `limit` deep? Linear C-speed passes,
    no parsing: strings are dropped, then innermost pairs peeled off `limit` times."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        peeled = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if not peeled:
            return False
        if len(peeled) == len(brackets):  # unbalanced: invalid JSON anyway
            return len(peeled) > limit
        brackets = peeled
    return True


class BodyLimitMiddleware:
    """Reads (and holds) a request body up to the limit before the app sees it: 413,
    with a GraphQL error, past CTXGRAPH_MAX_BODY_BYTES."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def _too_large(self) -> bytes:
        return error_body(
            f"The request body is larger than {self.max_body_bytes} bytes "
            f"(limit CTXGRAPH_MAX_BODY_BYTES={self.max_body_bytes}).",
            BadUserInput.code,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_body_bytes:
                    for message in _simple_response(413, self._too_large()):
                        await send(message)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                for response in _simple_response(413, self._too_large()):
                    await send(response)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def cors_origins(settings: Settings) -> list[str]:
    return [o.strip().rstrip("/") for o in settings.cors_origins.split(",") if o.strip()]


def install(app: FastAPI, settings: Settings, keys: ApiKeys, metrics: Metrics | None) -> None:
    """Add the middlewares in order (Starlette wraps the last added outermost)."""
    protected = ("/metrics",)  # GraphQL operations: the operation entry authenticates them
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(ApiKeyMiddleware, keys=keys, protected=protected)
    origins = cors_origins(settings)
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["authorization", "content-type", "x-request-id", "accept"],
            expose_headers=["x-request-id"],
            allow_credentials=False,
            max_age=600,
        )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(RequestLogMiddleware, metrics=metrics, enabled=settings.access_log)


def record_operation(
    request: Any, operation_type: str | None, name: str | None, codes: list[str], seconds: float
) -> None:
    """Give the access log line of an HTTP request, and the metrics, the operation that
    ran and its error codes."""
    scope = getattr(request, "scope", None)
    info = request_info(scope)
    if info is not None and scope is not None and scope.get("type") == "http":
        info.operation_type = operation_type
        info.operation_name = name
        info.codes = codes
        if "SERVICE_UNAVAILABLE" in codes:
            info.status_override = 503
    app = getattr(request, "app", None)
    metrics = getattr(getattr(app, "state", None), "metrics", None)
    if metrics is not None:
        metrics.observe_operation(operation_type or "invalid", name, codes, seconds)


def record_plan(request: Any, fallback: str | None) -> None:
    """Count an operation with a plan: answered by it, or by graphql-core (`fallback`
    says why)."""
    app = getattr(request, "app", None)
    metrics = getattr(getattr(app, "state", None), "metrics", None)
    if metrics is None:
        return
    if fallback is None:
        metrics.observe_plan_answer()
    else:
        metrics.observe_fallback(fallback)
