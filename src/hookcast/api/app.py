"""The aiohttp application: routes, the JSON error envelope, limits."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.typedefs import Middleware

from hookcast import dashboard, logs
from hookcast.api import incoming
from hookcast.api.auth import RateLimitedError
from hookcast.api.context import CTX, ApiContext, Route
from hookcast.api.envelope import JSON, error, ok
from hookcast.api.openapi import build_openapi
from hookcast.api.routes import (
    batches,
    deliveries,
    endpoints,
    event_types,
    events,
    keys,
    portal_links,
    projects,
    sources,
    subscriptions,
)
from hookcast.domain.errors import HookcastError
from hookcast.domain.ids import new_id
from hookcast.metrics import Metrics, metrics_handler

log = logging.getLogger("hookcast.api")
MAX_BODY = web.AppKey("max_body", int)

ALL_ROUTES: list[Route] = [
    events.PUBLISH,  # the hot path first: the router tries resources in order
    *batches.ROUTES,  # literal paths (batchreplay) before the {event_id} patterns
    *events.ROUTES,  # the hot path first: the router tries resources in order
    *endpoints.ROUTES,
    *subscriptions.ROUTES,
    *deliveries.ROUTES,
    *projects.ROUTES,
    *keys.ROUTES,
    *event_types.ROUTES,
    *portal_links.ROUTES,
    *sources.ROUTES,
]

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_request_ids = itertools.count(1)
_REQUEST_ID_PREFIX = new_id()[:16]


def front(metrics: Metrics | None) -> Middleware:
    """The one middleware (each layer of aiohttp's middleware chain costs a call per
    request): requests in flight counted, the guard's limits, the JSON envelope."""
    gauge = metrics.api_in_flight if metrics is not None else None

    @web.middleware
    async def middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
        if gauge is None:
            return await envelope(request, handler)
        gauge.inc()
        try:
            return await envelope(request, handler)
        finally:
            gauge.dec()

    return middleware


async def envelope(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Every response is JSON: domain errors, aiohttp's own errors and bugs alike; API
    requests with a body must send JSON (or no Content-Type). Each request has an id (the
    caller's ``X-Request-ID`` when it sent a sane one): in the response header and on every
    log line written while it is handled."""
    rid = _request_id(request)
    token = logs.request_id.set(rid)
    try:
        content_type = request.headers.get("Content-Type", "")
        if (
            content_type
            and request.can_read_body
            and not content_type.lower().startswith("application/json")
            and request.path.startswith("/api/")
        ):
            response: web.StreamResponse = error(
                "unsupported content type: send application/json", 415
            )
        else:
            response = await guard(request, handler)
    except HookcastError as exc:
        if exc.status_code >= 500:
            # the detail (a database's own words) goes to the log, not to the caller
            log.exception("api.error", extra={"path": request.path})
            response = error(f"internal error: see the server log for request {rid}", 500)
        else:
            response = error(exc.message, exc.status_code)
    except web.HTTPException as exc:
        response = error(_http_message(request, exc), exc.status, headers=_allow(exc))
    except Exception:
        log.exception("api.unhandled", extra={"path": request.path})
        response = error(f"internal error: see the server log for request {rid}", 500)
    finally:
        logs.request_id.reset(token)
    response.headers["X-Request-ID"] = rid
    return response


def _request_id(request: web.Request) -> str:
    given = request.headers.get("X-Request-ID", "")
    if 0 < len(given) <= 128 and given.isprintable():
        return given
    return f"{_REQUEST_ID_PREFIX}{next(_request_ids):x}"


#: hostile-input limits on the request head: the guard answers JSON 431 above these; the
#: HTTP parser itself refuses past twice as much, before any of our code runs (answered by
#: :class:`_WireErrors`, JSON too)
MAX_HEADERS = 100
MAX_HEADER_BYTES = 8192
#: the longest request line (URL) the HTTP parser takes (aiohttp's default); longer: 414
MAX_REQUEST_LINE = 8190


def _header_problem(request: web.Request) -> str | None:
    raw = request.raw_headers
    if len(raw) > MAX_HEADERS:
        return f"too many request headers: the limit is {MAX_HEADERS}"
    for name, value in raw:
        if len(name) + len(value) > MAX_HEADER_BYTES:
            shown = name[:64].decode("latin-1")
            return f"request header {shown!r} is too large: the limit is {MAX_HEADER_BYTES} bytes"
    return None


async def guard(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Header limits, then the per-key rate limit (429 with Retry-After)."""
    problem = _header_problem(request)
    if problem is not None:
        return error(problem, 431)
    if "%00" in request.raw_path:  # PostgreSQL text cannot hold NUL: refuse it up front
        return error("the URL must not contain NUL characters (%00)", 400)
    context = request.app.get(CTX)
    if context is not None and request.path.startswith("/api/"):
        try:
            await context.auth.throttle(request)
        except RateLimitedError as exc:
            return error(exc.message, 429, headers={"Retry-After": str(exc.retry_after_s)})
    return await handler(request)


def _http_message(request: web.Request, exc: web.HTTPException) -> str:
    if exc.status == 404:
        return "Resource not found" if request.match_info.route.resource else "route not found"
    if exc.status == 413:
        return f"request body too large: the limit is {request.app[MAX_BODY]} bytes"
    return exc.reason


def _allow(exc: web.HTTPException) -> dict[str, str] | None:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else None


async def health(request: web.Request) -> web.Response:
    return ok({"status": "up"}, "hookcast is up")


async def ready(request: web.Request) -> web.Response:
    check = request.app[CTX].readiness
    problem = await check() if check is not None else None
    if problem:
        return error(f"not ready: {problem}", 503)
    return ok({"status": "ready"}, "hookcast is ready")


def _openapi_handler(doc: bytes) -> _Handler:
    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=doc, content_type=JSON)

    return openapi


def _register(app: web.Application, route: Route) -> None:
    # one resource per route, the trailing slash optional (chi matches both)
    app.router.add_route(route.method, route.path + "{_slash:/?}", route.handler)


def create_app(
    context: ApiContext,
    *,
    max_body_bytes: int,
    metrics: Metrics | None = None,
    metrics_route: bool = True,
    metrics_token: str = "",
    portal_frame_ancestors: str | None = None,
) -> web.Application:
    """The API. With *metrics*, requests in flight are counted and, unless *metrics_route*
    is false (``/metrics`` served elsewhere), ``GET /metrics`` is served, for
    ``Authorization: Bearer <metrics_token>`` only when a token is given.
    *portal_frame_ancestors*: who may frame the customer portal (checked CSP sources)."""
    app = web.Application(
        middlewares=[front(metrics)],
        client_max_size=max_body_bytes,
        # the parser's own limits, a backstop behind the guard's JSON 431
        handler_args={
            "max_headers": 2 * MAX_HEADERS,
            "max_field_size": 2 * MAX_HEADER_BYTES,
            "max_line_size": MAX_REQUEST_LINE,
        },
    )
    app[CTX] = context
    app[MAX_BODY] = max_body_bytes
    for route in ALL_ROUTES:
        _register(app, route)
    incoming.setup(app, context, max_body_bytes)  # POST /ingest/{mask_id}: sources
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    if metrics is not None and metrics_route:  # Prometheus text format
        app.router.add_get("/metrics", metrics_handler(metrics, context.store, metrics_token))
    app.router.add_get("/openapi.json", _openapi_handler(orjson.dumps(build_openapi(ALL_ROUTES))))
    # the web UI at /dashboard/ (and / redirects there), the customer portal at /portal
    dashboard.setup(app, portal_frame_ancestors=portal_frame_ancestors)
    return app


# ------------------------------------------------ what the HTTP parser refuses, as JSON


class _WireErrors(web.RequestHandler):
    """aiohttp's connection protocol, answering with the JSON envelope what its HTTP parser
    refuses before any handler or middleware runs (a request line or header too long,
    garbage instead of HTTP): aiohttp has no hook for these answers (aio-libs/aiohttp#3287)
    but :meth:`handle_error`, which builds them."""

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # as aiohttp: an answer has begun, too late
            raise ConnectionError("response already started, cannot send an error response")
        rid = f"{_REQUEST_ID_PREFIX}{next(_request_ids):x}"
        if isinstance(exc, HttpProcessingError):
            status, text = self._refusal(exc)
            log.info(
                "api.bad_request",
                extra={
                    "status": status,
                    "error": text,
                    "remote": request.remote,
                    "request_id": rid,
                },
            )
        else:  # a handler failed outside the envelope (it should not happen)
            log.error("api.unhandled", exc_info=exc, extra={"request_id": rid})
            text = f"internal error: see the server log for request {rid}"
            if status == 504:
                text = "the request timed out"
        response = error(text, status, headers={"X-Request-ID": rid})
        response.force_close()
        return response

    def _refusal(self, exc: HttpProcessingError) -> tuple[int, str]:
        if isinstance(exc, LineTooLong):
            limit = exc.args[1] if len(exc.args) > 1 else None
            if limit == self.max_line_size != self.max_field_size:
                return 414, f"request line too long: the limit is {limit} bytes"
            if limit == self.max_field_size != self.max_line_size:
                return 431, f"request header too large: the limit is {MAX_HEADER_BYTES} bytes"
            return 400, f"request line or header too long: the limit is {limit} bytes"
        # the parser's words, up to the blank line before its quote of the offending bytes:
        # "Invalid method encountered", "Bad status line:\n  Invalid HTTP version", …
        words: list[str] = []
        for line in (exc.message or "").strip().splitlines():
            if not line.strip():
                break
            words.append(line.strip().rstrip(":."))
        reason = ": ".join(words).replace("Bad status line", "bad request line")
        if reason.startswith("Too many headers"):
            return 431, f"too many request headers: the limit is {MAX_HEADERS}"
        reason = "".join(c for c in reason[:200] if c.isprintable()) or "malformed request"
        return 400, f"bad HTTP request: {reason}"


class _ApiServer(web.Server):
    """aiohttp's :class:`web.Server`, making :class:`_WireErrors` protocols."""

    def __call__(self) -> web.RequestHandler:
        return _WireErrors(self, loop=self._loop, **self._kwargs)


class _ApiRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()  # starts the app, merges its handler_args
        return _ApiServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            **server._kwargs,
        )


def api_runner(app: web.Application) -> web.AppRunner:
    """The runner to serve *app* with: aiohttp's, but what the HTTP parser refuses before the
    app sees it is answered with the JSON envelope too (400, 414 or 431)."""
    return _ApiRunner(app, access_log=None, handle_signals=False)
