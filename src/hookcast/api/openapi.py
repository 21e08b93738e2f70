"""The OpenAPI 3.1 document, generated from the route table and the request models."""

from __future__ import annotations

import re
from typing import Any

from pydantic.json_schema import models_json_schema

from hookcast import __version__
from hookcast.api.context import Route

_ENVELOPE = {
    "type": "object",
    "required": ["status", "message"],
    "properties": {
        "status": {"type": "boolean"},
        "message": {"type": "string"},
        "data": {},
    },
}
_ERROR = {
    "type": "object",
    "required": ["status", "message"],
    "properties": {"status": {"const": False}, "message": {"type": "string"}},
}


def _operation_id(route: Route) -> str:
    return route.handler.__name__


def _parameters(route: Route) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", route.path)
    ]
    params += [
        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
        for name in route.query
    ]
    return params


def build_openapi(routes: list[Route]) -> dict[str, Any]:
    models = sorted({r.body for r in routes if r.body is not None}, key=lambda m: m.__name__)
    _, defs = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    schemas["Envelope"] = _ENVELOPE
    schemas["Error"] = _ERROR
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        op: dict[str, Any] = {
            "operationId": _operation_id(route),
            "summary": route.summary,
            "tags": [route.tag],
            "parameters": _parameters(route),
            "responses": {
                str(route.success): {
                    "description": "success",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}
                    },
                },
                "default": {
                    "description": "error",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                },
            },
        }
        if not route.path.startswith("/api/v1/projects") or route.path.count("{") == 0:
            op["security"] = [{"bearer": []}]
        if route.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{route.body.__name__}"}
                    }
                },
            }
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hookcast",
            "version": __version__,
            "description": "A webhooks gateway that speaks Convoy's REST API.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": paths,
    }
