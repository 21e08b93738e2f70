"""The aiohttp application: routes, the JSON error envelope, limits."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from hookcast import dashboard, logs
from hookcast.api.auth import RateLimitedError
from hookcast.api.context import CTX, ApiContext, Route
from hookcast.api.envelope import JSON, error, ok
from hookcast.api.openapi import build_openapi
from hookcast.api.routes import (
    batches,
    deliveries,
    endpoints,
    events,
    keys,
    projects,
    subscriptions,
)
from hookcast.domain.errors import HookcastError
from hookcast.domain.ids import new_id
from hookcast.metrics import Metrics, in_flight_middleware, metrics_handler

log = logging.getLogger("hookcast.api")
MAX_BODY = web.AppKey("max_body", int)

ALL_ROUTES: list[Route] = [
    *batches.ROUTES,  # literal paths (batchreplay) before the {event_id} patterns
    *events.ROUTES,  # the hot path first: the router tries resources in order
    *endpoints.ROUTES,
    *subscriptions.ROUTES,
    *deliveries.ROUTES,
    *projects.ROUTES,
    *keys.ROUTES,
]

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_request_ids = itertools.count(1)
_REQUEST_ID_PREFIX = new_id()[:16]


@web.middleware
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
            response = await handler(request)
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
#: HTTP parser itself refuses (plain 400) past twice as much, before any of our code runs
MAX_HEADERS = 100
MAX_HEADER_BYTES = 8192


def _header_problem(request: web.Request) -> str | None:
    raw = request.raw_headers
    if len(raw) > MAX_HEADERS:
        return f"too many request headers: the limit is {MAX_HEADERS}"
    for name, value in raw:
        if len(name) + len(value) > MAX_HEADER_BYTES:
            shown = name[:64].decode("latin-1")
            return f"request header {shown!r} is too large: the limit is {MAX_HEADER_BYTES} bytes"
    return None


@web.middleware
async def guard(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Header limits, then the per-key rate limit (429 with Retry-After)."""
    problem = _header_problem(request)
    if problem is not None:
        return error(problem, 431)
    if "%00" in request.raw_path:  # PostgreSQL text cannot hold NUL: refuse it up front
        return error("the URL must not contain NUL characters (%00)", 400)
    if request.path.startswith("/api/"):
        try:
            await request.app[CTX].auth.throttle(request)
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
    context: ApiContext, *, max_body_bytes: int, metrics: Metrics | None = None
) -> web.Application:
    middlewares = [envelope] if metrics is None else [in_flight_middleware(metrics), envelope]
    middlewares.append(guard)  # inside the envelope: X-Request-ID on its answers too
    app = web.Application(
        middlewares=middlewares,
        client_max_size=max_body_bytes,
        # the parser's own limits, a backstop behind the guard's JSON 431
        handler_args={"max_headers": 2 * MAX_HEADERS, "max_field_size": 2 * MAX_HEADER_BYTES},
    )
    app[CTX] = context
    app[MAX_BODY] = max_body_bytes
    for route in ALL_ROUTES:
        _register(app, route)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    if metrics is not None:  # Prometheus text format; unauthenticated, like /health
        app.router.add_get("/metrics", metrics_handler(metrics, context.store))
    app.router.add_get("/openapi.json", _openapi_handler(orjson.dumps(build_openapi(ALL_ROUTES))))
    dashboard.setup(app)  # the web UI at /dashboard/ (and / redirects there)
    return app
