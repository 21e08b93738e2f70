"""The web dashboard and the customer portal: static HTML, CSS and ES modules served by
hookcast itself.

No build step: the files under ``static/`` (the operator dashboard, at /dashboard/) and
``portal/`` (the customer portal, at /portal) are what the browser runs. The pages call the
JSON API: the dashboard with the key the user signs in with, the portal with the portal
link's token it was opened with (each kept in the tab's sessionStorage).
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

from aiohttp import web

from hookcast.api.context import CTX, Handler
from hookcast.domain.errors import AuthenticationError
from hookcast.settings import frame_ancestors

log = logging.getLogger("hookcast.dashboard")

STATIC = Path(__file__).parent / "static"
PORTAL = Path(__file__).parent / "portal"

_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}

#: everything the pages load comes from this origin; nothing inline, nothing external
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP + "; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

#: where the portal page's template takes what the server learnt of the link's token
_PORTAL_MARK = b"<!--portal-link-->"
#: longer than any token hookcast makes: not looked up
_TOKEN_MAX = 256


def _files(folder: Path) -> dict[str, tuple[bytes, str]]:
    """Every servable file by name, read once: they are few and small."""
    return {
        p.name: (p.read_bytes(), _TYPES[p.suffix])
        for p in folder.iterdir()
        if p.is_file() and p.suffix in _TYPES
    }


async def _root(request: web.Request) -> web.Response:
    # returned, not raised: the API's error middleware turns raised exceptions into JSON
    return web.Response(status=302, headers={"Location": "/dashboard/"})


def _handler(files: dict[str, tuple[bytes, str]], headers: dict[str, str]) -> Handler:
    async def serve(request: web.Request) -> web.Response:
        found = files.get(request.match_info.get("name") or "index.html")
        if found is None:
            raise web.HTTPNotFound()
        body, content_type = found
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)

    return serve


def portal_headers(sources: str) -> dict[str, str]:
    """The portal's: the dashboard's policy, but framable by *sources* (checked CSP source
    expressions) and never cached (the page is rendered for one token)."""
    headers = {
        "Content-Security-Policy": f"{_CSP}; form-action 'none'; frame-ancestors {sources}",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }
    if sources == "'none'":  # for browsers that predate frame-ancestors
        headers["X-Frame-Options"] = "DENY"
    return headers


async def _link_of(request: web.Request, token: str) -> dict[str, str]:
    """What the page needs to know of the portal token it was opened with: its link's
    project and whether it may manage endpoints, or why the token is refused. The token is
    verified exactly as the API verifies it (same checks, same cache)."""
    context = request.app.get(CTX)
    if context is None:
        return {}
    if len(token) > _TOKEN_MAX:
        return {"portal-error": "authorization failed"}
    try:
        principal = await context.auth.principal(
            request.clone(headers={"Authorization": f"Bearer {token}"})
        )
    except AuthenticationError as exc:
        return {"portal-error": exc.message}
    if principal.portal is None:
        return {"portal-error": "authorization failed: this is not a portal link's token"}
    return {
        "portal-project": principal.portal.project_id,
        "portal-manage": "true" if principal.portal.can_manage_endpoint else "false",
    }


def _portal_page(template: bytes, headers: dict[str, str]) -> Handler:
    async def page(request: web.Request) -> web.Response:
        token = request.query.get("token", "")
        link = await _link_of(request, token) if token else {}
        metas = "".join(
            f'<meta name="{name}" content="{html.escape(value, quote=True)}">'
            for name, value in link.items()
        )
        body = template.replace(_PORTAL_MARK, metas.encode())
        return web.Response(body=body, content_type="text/html", charset="utf-8", headers=headers)

    return page


def setup(app: web.Application, *, portal_frame_ancestors: str | None = None) -> None:
    """Mount the dashboard at /dashboard/ (and send / there), and the customer portal at
    /portal (``/portal?token=PRT.…``, a portal link's ``url``).

    *portal_frame_ancestors*: who may frame the portal (``Settings.portal_frame_ancestors``,
    already checked); when not given (an app built without settings, as some tests build
    it), nobody may."""
    serve = _handler(_files(STATIC), _HEADERS)
    app.router.add_get("/", _root)
    app.router.add_get("/dashboard", _root)
    app.router.add_get("/dashboard/", serve)
    app.router.add_get("/dashboard/{name}", serve)

    if not (PORTAL / "index.html").is_file():  # a package built without its files
        log.warning("portal.missing", extra={"path": str(PORTAL)})
        return
    headers = portal_headers(frame_ancestors(portal_frame_ancestors or "'none'"))
    assets = _files(PORTAL)
    template, _ = assets.pop("index.html")
    page = _portal_page(template, headers)
    app.router.add_get("/portal", page)
    app.router.add_get("/portal/", page)
    app.router.add_get("/portal/{name}", _handler(assets, {**headers, "Cache-Control": "no-cache"}))
