"""Convoy's response envelope ``{status, message, data}``; errors carry no ``data`` key."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

JSON = "application/json"


def ok(data: Any, message: str, status: int = 200) -> web.Response:
    body = orjson.dumps({"status": True, "message": message, "data": data})
    return web.Response(body=body, status=status, content_type=JSON)


def error(message: str, status: int, headers: dict[str, str] | None = None) -> web.Response:
    body = orjson.dumps({"status": False, "message": message})
    return web.Response(body=body, status=status, content_type=JSON, headers=headers)
