"""The aiohttp application: routes, the JSON error envelope, limits."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

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
    requests must send JSON (or no Content-Type)."""
    try:
        content_type = request.headers.get("Content-Type", "")
        if (
            content_type
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
            log.exception("api.error", extra={"path": request.path})
        response = error(exc.message, exc.status_code)
    except web.HTTPException as exc:
        response = error(_http_message(request, exc), exc.status, headers=_allow(exc))
    except Exception:
        log.exception("api.unhandled", extra={"path": request.path})
        response = error("internal server error", 500)
    response.headers["X-Request-ID"] = (
        request.headers.get("X-Request-ID") or f"{_REQUEST_ID_PREFIX}{next(_request_ids):x}"
    )
    return response


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


def create_app(context: ApiContext, *, max_body_bytes: int) -> web.Application:
    app = web.Application(middlewares=[envelope], client_max_size=max_body_bytes)
    app[CTX] = context
    app[MAX_BODY] = max_body_bytes
    for route in ALL_ROUTES:
        _register(app, route)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/openapi.json", _openapi_handler(orjson.dumps(build_openapi(ALL_ROUTES))))
    return app
