"""The web dashboard: static HTML, CSS and ES modules served by hookcast itself.

No build step: the files under ``static/`` are what the browser runs. The pages call the
JSON API with the key the user signs in with (kept in the tab's sessionStorage).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from hookcast.api.context import Handler

STATIC = Path(__file__).parent / "static"

_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}

#: everything the pages load comes from this origin; nothing inline, nothing external
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _files() -> dict[str, tuple[bytes, str]]:
    """Every servable file by name, read once: they are few and small."""
    return {
        p.name: (p.read_bytes(), _TYPES[p.suffix])
        for p in STATIC.iterdir()
        if p.is_file() and p.suffix in _TYPES
    }


async def _root(request: web.Request) -> web.Response:
    # returned, not raised: the API's error middleware turns raised exceptions into JSON
    return web.Response(status=302, headers={"Location": "/dashboard/"})


def _handler(files: dict[str, tuple[bytes, str]]) -> Handler:
    async def serve(request: web.Request) -> web.Response:
        found = files.get(request.match_info.get("name") or "index.html")
        if found is None:
            raise web.HTTPNotFound()
        body, content_type = found
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=_HEADERS)

    return serve


def setup(app: web.Application) -> None:
    """Mount the dashboard at /dashboard/ and send / there."""
    serve = _handler(_files())
    app.router.add_get("/", _root)
    app.router.add_get("/dashboard", _root)
    app.router.add_get("/dashboard/", serve)
    app.router.add_get("/dashboard/{name}", serve)
