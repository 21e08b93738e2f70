"""The event catalog (``/event-types``) and schema validation on publish (issue 16), through
the real gateway over HTTP, on a SQLite file and on PostgreSQL.

* CRUD, paging, duplicates (400, as Convoy answers any service error), deprecate;
* import from an OpenAPI 3.1 document's ``webhooks`` (the body itself, or Convoy's
  ``{"spec": "<JSON text>"}``) and from a plain ``{"event_types": [...]}`` list: an upsert
  by name, idempotent, all or nothing, bounded;
* bad input (an invalid JSON Schema, a remote ``$ref``, an example that breaks its own
  schema, names, sizes) is a 400 that names the field and changes nothing;
* ``validate_event_schemas``: off, any ``data`` is accepted; on, each publish kind (single,
  fan-out, broadcast, dynamic) is refused with a 400 naming the failing place in ``data``,
  while types without an entry or without a schema pass;
* the validator cache (:class:`hookcast.api.event_schemas.SchemaGate`): no catalog read
  when the setting is off, one read per type per TTL when on, a schema compiled once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hookcast.api.event_schemas import SchemaGate
from hookcast.domain.config import ProjectConfig
from hookcast.domain.errors import ValidationError
from hookcast.domain.event_types import MAX_IMPORT, EventType
from hookcast.domain.models import EventKind
from hookcast.domain.models import Project as ProjectRow
from hookcast.domain.ports import NewEvent
from hookcast.store import migrate
from pg_support import downgrade, fresh_database
from support import ADMIN_KEY, Gateway, Project, make_settings

MISSING = "01ARZ3NDEKTSV4RRFFQ69G5FAV"

INVOICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "amount"],
    "properties": {
        "id": {"type": "string"},
        "amount": {"type": "integer", "minimum": 0},
        "lines": {"type": "array", "items": {"type": "object", "required": ["sku"]}},
    },
}


@pytest.fixture(params=["sqlite", "postgres"])
def gw(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gateway]:
    if request.param == "sqlite":
        gateway = Gateway(make_settings(str(tmp_path / "hookcast.db")))
        try:
            yield gateway
        finally:
            gateway.stop()
    else:
        with fresh_database("hookcast_catalog") as url:
            gateway = Gateway(make_settings("unused", database_url=url))
            try:
                yield gateway
            finally:
                gateway.stop()


@pytest.fixture
def proj(gw: Gateway) -> Project:
    return gw.create_project("catalog")


def _create(p: Project, **body: Any) -> dict[str, Any]:
    return p.ok("POST", "/event-types", 201, json=body)  # type: ignore[no-any-return]


def _all(p: Project) -> list[dict[str, Any]]:
    return p.ok("GET", "/event-types", params={"perPage": 1000})["content"]  # type: ignore[no-any-return]


def _refused(p: Project, method: str, path: str, status: int = 400, **kw: Any) -> str:
    r = p.call(method, path, **kw)
    assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
    body = r.json()
    assert body["status"] is False and "data" not in body
    return str(body["message"])


# ------------------------------------------------------------------ CRUD and paging


def test_create_get_update_and_page_through_the_catalog(proj: Project) -> None:
    created = _create(
        proj,
        name="invoice.paid",
        category="billing",
        description="An invoice was paid",
        json_schema=INVOICE_SCHEMA,
        example={"id": "inv_1", "amount": 100},
    )
    assert created["name"] == "invoice.paid" and created["category"] == "billing"
    assert created["json_schema"] == INVOICE_SCHEMA
    assert created["example"] == {"id": "inv_1", "amount": 100}
    assert created["deprecated_at"] is None and created["project_id"] == proj.id
    assert created["created_at"].endswith("Z") and "T" in created["created_at"]
    uid = created["uid"]
    assert proj.ok("GET", f"/event-types/{uid}") == created

    # Convoy's update: empty strings keep the value, absent fields too; 202
    updated = proj.ok(
        "PUT", f"/event-types/{uid}", 202, json={"description": "Paid in full", "category": ""}
    )
    assert updated["description"] == "Paid in full" and updated["category"] == "billing"
    assert (
        updated["json_schema"] == INVOICE_SCHEMA and updated["updated_at"] > created["updated_at"]
    )
    # the same name is fine (a client sending the object back), another is refused
    assert proj.ok("PUT", f"/event-types/{uid}", 202, json={"name": "invoice.paid"})["uid"] == uid
    message = _refused(proj, "PUT", f"/event-types/{uid}", json={"name": "invoice.settled"})
    assert "cannot be changed" in message
    # json_schema {} removes the schema
    cleared = proj.ok("PUT", f"/event-types/{uid}", 202, json={"json_schema": {}})
    assert cleared["json_schema"] is None and cleared["example"] == {"id": "inv_1", "amount": 100}
    assert proj.ok("GET", f"/event-types/{uid}")["json_schema"] is None

    for i in range(4):
        _create(proj, name=f"user.e{i}", category="users" if i % 2 else "accounts")
    first = proj.ok("GET", "/event-types", params={"perPage": 2})
    assert len(first["content"]) == 2 and first["pagination"]["has_next_page"]
    second = proj.ok(
        "GET",
        "/event-types",
        params={"perPage": 2, "next_page_cursor": first["pagination"]["next_page_cursor"]},
    )
    third = proj.ok(
        "GET",
        "/event-types",
        params={"perPage": 2, "next_page_cursor": second["pagination"]["next_page_cursor"]},
    )
    names = [e["name"] for page in (first, second, third) for e in page["content"]]
    assert names == ["user.e3", "user.e2", "user.e1", "user.e0", "invoice.paid"]
    assert not third["pagination"]["has_next_page"]
    ascending = proj.ok("GET", "/event-types", params={"sort": "ASC", "perPage": 1})
    assert ascending["content"][0]["name"] == "invoice.paid"
    users = proj.ok("GET", "/event-types", params={"category": "users"})["content"]
    assert sorted(e["name"] for e in users) == ["user.e1", "user.e3"]

    assert _refused(proj, "GET", f"/event-types/{MISSING}", 404) == "Resource not found"
    _refused(proj, "PUT", f"/event-types/{MISSING}", 404, json={"description": "x"})
    _refused(proj, "POST", f"/event-types/{MISSING}/deprecate", 404)
    _refused(proj, "GET", "/event-types", params={"next_page_cursor": "nope"})


def test_a_duplicate_name_is_400_and_changes_nothing(gw: Gateway, proj: Project) -> None:
    first = _create(proj, name="order.created", description="first")
    message = _refused(proj, "POST", "/event-types", json={"name": "order.created"})
    assert message == "an event type named 'order.created' already exists"
    assert [e["uid"] for e in _all(proj)] == [first["uid"]]
    assert _all(proj)[0]["description"] == "first"
    # names are per project
    other = gw.create_project("other")
    assert _create(other, name="order.created")["project_id"] == other.id
    assert [e["uid"] for e in _all(proj)] == [first["uid"]]


def test_concurrent_creates_of_one_name_make_one(proj: Project) -> None:
    """The catalog lock: never two of a name, never a 5xx from the unique index."""
    from concurrent.futures import ThreadPoolExecutor

    def create(_: int) -> int:
        return proj.call("POST", "/event-types", json={"name": "race.won"}).status_code

    def imports(_: int) -> int:
        body = {"event_types": [{"name": "race.won", "description": "d"}, {"name": "race.2"}]}
        return proj.call("POST", "/event-types/import", json=body).status_code

    with ThreadPoolExecutor(8) as pool:
        creates = list(pool.map(create, range(8)))
        imported = list(pool.map(imports, range(8)))
    assert sorted(creates) == [201] + [400] * 7
    assert imported == [200] * 8
    assert sorted(e["name"] for e in _all(proj)) == ["race.2", "race.won"]


def test_deprecate_sets_deprecated_at_once(proj: Project) -> None:
    uid = _create(proj, name="legacy.thing")["uid"]
    deprecated = proj.ok("POST", f"/event-types/{uid}/deprecate")
    assert deprecated["deprecated_at"] is not None and deprecated["deprecated_at"].endswith("Z")
    again = proj.ok("POST", f"/event-types/{uid}/deprecate")
    assert again["deprecated_at"] == deprecated["deprecated_at"]
    assert proj.ok("GET", f"/event-types/{uid}")["deprecated_at"] == deprecated["deprecated_at"]


def test_bad_input_is_400_naming_the_field_and_writes_nothing(proj: Project) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "please provide a name for this event type"),
        ({"name": ""}, "please provide a name"),
        ({"name": "*"}, "name"),
        ({"name": " padded"}, "name"),
        ({"name": "bell\x07"}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": 5}, "name"),
        ({"name": "a", "category": "c" * 201}, "category"),
        ({"name": "a", "description": "d" * 4001}, "description"),
        ({"name": "a", "json_schema": {"type": "bogus"}}, "json_schema is not a valid JSON Schema"),
        ({"name": "a", "json_schema": {"minimum": "zero"}}, "at /minimum"),
        ({"name": "a", "json_schema": {"pattern": "("}}, "json_schema"),
        ({"name": "a", "json_schema": {"$ref": "http://127.0.0.1:9/x.json"}}, "json_schema"),
        ({"name": "a", "json_schema": {"$ref": "#/$defs/nothing"}}, "json_schema"),
        ({"name": "a", "json_schema": {"$schema": "http://example.com/s"}}, "json_schema"),
        ({"name": "a", "json_schema": True}, "json_schema"),
        ({"name": "a", "json_schema": [1]}, "json_schema"),
        ({"name": "a", "json_schema": {"enum": ["x" * 70_000]}}, "json_schema: at most"),
        ({"name": "a", "example": "x" * 70_000}, "example: at most"),
        (
            {"name": "a", "json_schema": INVOICE_SCHEMA, "example": {"id": "i", "amount": -1}},
            "does not match its json_schema: at /amount",
        ),
    ]
    for body, expected in cases:
        message = _refused(proj, "POST", "/event-types", json=body)
        assert expected in message, (body, message)
    raw = _refused(
        proj, "POST", "/event-types", data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert raw.startswith("malformed JSON")
    assert _all(proj) == []

    uid = _create(proj, name="kept", json_schema=INVOICE_SCHEMA)["uid"]
    before = proj.ok("GET", f"/event-types/{uid}")
    for body, _ in cases[9:]:
        _refused(proj, "PUT", f"/event-types/{uid}", json=body | {"name": "kept"})
    assert proj.ok("GET", f"/event-types/{uid}") == before


# ------------------------------------------------------------------ import

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Acme webhooks", "version": "1"},
    "webhooks": {
        "invoice.paid": {
            "post": {
                "tags": ["billing"],
                "summary": "An invoice was paid",
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/Invoice"},
                            "example": {"id": "inv_1", "amount": 5, "customer": {"id": "c1"}},
                        }
                    }
                },
            }
        },
        "user.deleted": {
            "post": {
                "description": "A user was deleted",
                "requestBody": {"$ref": "#/components/requestBodies/UserBody"},
            }
        },
        "ping": {"post": {"summary": "no body"}},
    },
    "components": {
        "schemas": {
            "Invoice": {
                "type": "object",
                "required": ["id", "amount", "customer"],
                "properties": {
                    "id": {"type": "string"},
                    "amount": {"type": "integer"},
                    "customer": {"$ref": "#/components/schemas/Customer"},
                },
            },
            "Customer": {
                "type": "object",
                "required": ["id"],
                "properties": {"id": {"type": "string"}},
            },
        },
        "requestBodies": {
            "UserBody": {
                "content": {
                    "application/json": {
                        "schema": {"type": "object", "required": ["user_id"]},
                    }
                }
            }
        },
    },
}


def _by_name(p: Project) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in _all(p)}


def test_import_an_openapi_document_is_an_idempotent_upsert(proj: Project) -> None:
    r = proj.call("POST", "/event-types/import", json=OPENAPI)
    assert r.status_code == 200, r.text
    assert r.json()["message"].endswith("3 created, 0 updated, 0 unchanged")
    imported = {e["name"]: e for e in r.json()["data"]}
    assert imported.keys() == {"invoice.paid", "user.deleted", "ping"}
    invoice = imported["invoice.paid"]
    assert invoice["category"] == "billing" and invoice["description"] == "An invoice was paid"
    assert invoice["example"] == {"id": "inv_1", "amount": 5, "customer": {"id": "c1"}}
    # the components it refers to travel with it, as $defs
    schema = invoice["json_schema"]
    assert schema["$ref"] == "#/$defs/Invoice"
    assert schema["$defs"]["Invoice"]["properties"]["customer"] == {"$ref": "#/$defs/Customer"}
    assert set(schema["$defs"]) == {"Invoice", "Customer"}
    assert imported["user.deleted"]["json_schema"] == {"type": "object", "required": ["user_id"]}
    assert imported["user.deleted"]["description"] == "A user was deleted"
    assert imported["ping"]["json_schema"] is None
    assert _by_name(proj) == imported

    # again, in Convoy's form (the document as JSON text): nothing changes
    again = proj.call("POST", "/event-types/import", json={"spec": json.dumps(OPENAPI)})
    assert again.status_code == 200, again.text
    assert again.json()["message"].endswith("0 created, 0 updated, 3 unchanged")
    assert _by_name(proj) == imported

    # a changed document updates what changed, and only that
    changed = json.loads(json.dumps(OPENAPI))
    changed["webhooks"]["ping"]["post"]["summary"] = "keep-alive"
    third = proj.call("POST", "/event-types/import", json={"spec": changed})
    assert third.json()["message"].endswith("0 created, 1 updated, 2 unchanged")
    now = _by_name(proj)
    assert now["ping"]["description"] == "keep-alive"
    assert now["ping"]["updated_at"] > imported["ping"]["updated_at"]
    assert now["invoice.paid"] == imported["invoice.paid"]


def test_import_a_plain_list_all_or_nothing(proj: Project) -> None:
    existing = _create(proj, name="a.one", category="keep", description="old")
    items = [
        {"name": "a.one", "description": "new"},
        {"name": "a.two", "json_schema": {"type": "object"}, "example": {}},
    ]
    r = proj.call("POST", "/event-types/import", json={"event_types": items})
    assert r.status_code == 200 and r.json()["message"].endswith(
        "1 created, 1 updated, 0 unchanged"
    )
    now = _by_name(proj)
    assert now["a.one"]["uid"] == existing["uid"]
    assert now["a.one"]["description"] == "new" and now["a.one"]["category"] == "keep"
    assert now["a.two"]["json_schema"] == {"type": "object"}
    again = proj.call("POST", "/event-types/import", json={"event_types": items})
    assert again.json()["message"].endswith("0 created, 0 updated, 2 unchanged")

    bad: list[tuple[Any, str]] = [
        ({}, "nothing to import"),
        ({"event_types": []}, "nothing to import"),
        ({"event_types": [{"name": "x"}, {"name": "x"}]}, "given twice"),
        ({"event_types": [{"description": "no name"}]}, "event_types[0].name"),
        (
            {"event_types": [{"name": "ok.new"}, {"name": "b", "json_schema": {"type": 1}}]},
            "event_types[1].json_schema is not a valid JSON Schema",
        ),
        ({"event_types": [{"name": f"n{i}"} for i in range(MAX_IMPORT + 1)]}, "event_types"),
        ({"event_types": [{"name": "x"}], "spec": {}}, "not both"),
        ({"spec": "openapi: 3.1.0"}, "YAML is not read"),
        ({"spec": "[1, 2]"}, "must be an OpenAPI document"),
        ({"spec": {"openapi": "3.1.0", "paths": {}}}, "no webhooks"),
        # NUL characters only a spec given as text can carry (PostgreSQL text cannot)
        ({"spec": json.dumps({"webhooks": {"a\x00": {"post": {}}}})}, "webhooks.a"),
        (
            {"spec": json.dumps({"webhooks": {"a": {"post": {"description": "\x00"}}}})},
            "webhooks.a.description: must not contain NUL",
        ),
        ({"spec": "[" * 100 + "]" * 100}, "nested too deeply"),
        ({"openapi": "3.1.0", "webhooks": {"x": {"get": {}}}}, "webhooks.x: no post operation"),
        (
            {"openapi": "3.1.0", "webhooks": {"x": {"post": {"requestBody": {"$ref": "#/nope"}}}}},
            "unsupported $ref",
        ),
        (
            {
                "openapi": "3.1.0",
                "webhooks": {
                    "x": {
                        "post": {
                            "requestBody": {
                                "content": {
                                    "application/json": {
                                        "schema": {"$ref": "#/components/schemas/Gone"}
                                    }
                                }
                            }
                        }
                    }
                },
            },
            "names no component",
        ),
        (
            {"openapi": "3.1.0", "webhooks": {f"w{i}": {} for i in range(MAX_IMPORT + 1)}},
            f"at most {MAX_IMPORT}",
        ),
    ]
    for body, expected in bad:
        message = _refused(proj, "POST", "/event-types/import", json=body)
        assert expected in message, (str(body)[:200], message)
    assert _by_name(proj) == now  # nothing written, not even ok.new


# ------------------------------------------------------------------ validation on publish


def _bodies(kind: str, endpoint_id: str, event_type: str, data: Any) -> tuple[str, dict[str, Any]]:
    event = {"event_type": event_type, "data": data}
    if kind == "single":
        return "/events", {**event, "endpoint_id": endpoint_id}
    if kind == "fanout":
        return "/events/fanout", {**event, "owner_id": "owner-1"}
    if kind == "broadcast":
        return "/events/broadcast", event
    return "/events/dynamic", {**event, "url": "http://127.0.0.1:9/dynamic"}


KINDS = ("single", "fanout", "broadcast", "dynamic")
BAD = {"id": "inv_1", "amount": "lots", "lines": [{"sku": "a"}, {"qty": 1}]}
GOOD = {"id": "inv_1", "amount": 10, "lines": [{"sku": "a"}]}


def _publisher(gw: Gateway, proj: Project) -> Project:
    """The project's own admin key with the broadcast grant."""
    key = proj.ok("POST", "/api-keys", 201, json={"role": "admin", "broadcast": True})["key"]
    return Project(gw, proj.id, key)


def test_with_validation_off_invalid_data_is_accepted(gw: Gateway, proj: Project) -> None:
    assert proj.ok("GET", "")["config"]["validate_event_schemas"] is False
    _create(proj, name="invoice.paid", json_schema=INVOICE_SCHEMA)
    ep = proj.endpoint("http://127.0.0.1:9/a", owner_id="owner-1")
    pub = _publisher(gw, proj)
    for kind in KINDS:
        path, body = _bodies(kind, ep["uid"], "invoice.paid", BAD)
        r = pub.call("POST", path, json=body)
        assert r.status_code == 201, (kind, r.text)


def test_with_validation_on_each_publish_kind_is_checked(gw: Gateway, proj: Project) -> None:
    updated = gw.admin(
        "PUT", f"/api/v1/projects/{proj.id}", json={"config": {"validate_event_schemas": True}}
    )
    assert updated.status_code == 202 and updated.json()["data"]["config"]["validate_event_schemas"]
    uid = _create(proj, name="invoice.paid", json_schema=INVOICE_SCHEMA)["uid"]
    _create(proj, name="free.form")  # an entry without a schema
    ep = proj.endpoint("http://127.0.0.1:9/a", owner_id="owner-1")
    pub = _publisher(gw, proj)
    for kind in KINDS:
        path, body = _bodies(kind, ep["uid"], "invoice.paid", BAD)
        message = _refused(pub, "POST", path, json=body)
        assert message.startswith(
            "data does not match the json_schema of event type 'invoice.paid'"
        )
        assert 'at /amount: "lots" is not of type "integer"' in message, message
        assert 'at /lines/1: "sku" is a required property' in message, message
        missing = _refused(pub, "POST", path, json={**body, "data": {"amount": 1}})
        assert 'at the root: "id" is a required property' in missing
        long = _refused(pub, "POST", path, json={**body, "data": {**GOOD, "amount": "x" * 5000}})
        assert 'at /amount: "xxx' in long and '(5002 characters) is not of type "integer"' in long
        assert len(long) < 500
        for event_type, data in (("invoice.paid", GOOD), ("free.form", BAD), ("unknown", BAD)):
            path, body = _bodies(kind, ep["uid"], event_type, data)
            r = pub.call("POST", path, json=body)
            assert r.status_code == 201, (kind, event_type, r.text)
    events = proj.ok("GET", "/events", params={"perPage": 100})["content"]
    assert len(events) == 3 * len(KINDS)  # no refused event was stored

    # a change of schema through this process applies at once (no wait for the cache)
    proj.ok("PUT", f"/event-types/{uid}", 202, json={"json_schema": {"type": "object"}})
    path, body = _bodies("single", ep["uid"], "invoice.paid", BAD)
    assert pub.call("POST", path, json=body).status_code == 201
    proj.ok("PUT", f"/event-types/{uid}", 202, json={"json_schema": {"type": "array"}})
    assert "at the root" in _refused(pub, "POST", path, json=body)
    # an import too
    proj.ok(
        "POST",
        "/event-types/import",
        json={"event_types": [{"name": "unknown", "json_schema": {"type": "string"}}]},
    )
    path, body = _bodies("fanout", ep["uid"], "unknown", BAD)
    assert 'is not of type "string"' in _refused(pub, "POST", path, json=body)
    # and switching the setting off
    gw.admin(
        "PUT", f"/api/v1/projects/{proj.id}", json={"config": {"validate_event_schemas": False}}
    )
    assert pub.call("POST", path, json=body).status_code == 201


def test_permissions_follow_the_roles(gw: Gateway, proj: Project) -> None:
    uid = _create(proj, name="a.b")["uid"]
    viewer = Project(gw, proj.id, proj.ok("POST", "/api-keys", 201, json={"role": "viewer"})["key"])
    publisher = Project(
        gw, proj.id, proj.ok("POST", "/api-keys", 201, json={"role": "publisher"})["key"]
    )
    for who in (viewer, publisher):
        assert who.ok("GET", "/event-types")["content"][0]["uid"] == uid
        assert who.ok("GET", f"/event-types/{uid}")["name"] == "a.b"
        for method, path, body in (
            ("POST", "/event-types", {"name": "c.d"}),
            ("PUT", f"/event-types/{uid}", {"description": "x"}),
            ("POST", f"/event-types/{uid}/deprecate", None),
            ("POST", "/event-types/import", {"event_types": [{"name": "c.d"}]}),
        ):
            assert who.call(method, path, json=body).status_code == 403, (method, path)
    assert [e["uid"] for e in _all(proj)] == [uid]
    assert _all(proj)[0]["deprecated_at"] is None
    # the instance admin may; another project's key sees nothing
    admin = Project(gw, proj.id, ADMIN_KEY)
    assert admin.ok("GET", f"/event-types/{uid}")["uid"] == uid
    other = gw.create_project("other")
    assert Project(gw, proj.id, other.key).call("GET", f"/event-types/{uid}").status_code == 404
    assert other.call("GET", f"/event-types/{uid}").status_code == 404


def test_a_deleted_projects_catalog_goes_with_it(gw: Gateway, proj: Project) -> None:
    _create(proj, name="a.b")
    assert gw.admin("DELETE", f"/api/v1/projects/{proj.id}").status_code == 200
    again = gw.create_project("again")
    assert _all(again) == []


# ------------------------------------------------------------------ the validator cache


class _Catalog:
    """A stand-in catalog that counts its reads."""

    def __init__(self) -> None:
        self.reads = 0
        self.entries: dict[tuple[str, str], EventType] = {}

    async def find_event_type(self, project_id: str, name: str) -> EventType | None:
        self.reads += 1
        return self.entries.get((project_id, name))

    def put(self, name: str, schema: dict[str, Any] | None, version: int) -> None:
        self.entries[("p", name)] = EventType(
            "01ARZ3NDEKTSV4RRFFQ69G5FAA", "p", name, "", "", schema, None, None, 1, version
        )


def _project(validate: bool) -> ProjectRow:
    return ProjectRow("p", "p", "outgoing", ProjectConfig(validate_event_schemas=validate), 1, 1)


def _event(event_type: str, data: Any) -> NewEvent:
    return NewEvent(
        id="e",
        project_id="p",
        kind=EventKind.SINGLE,
        event_type=event_type,
        data=b"",
        parsed=data,
        headers={},
        idempotency_key="",
        api_key_id=None,
        acknowledged_at_us=1,
        strategy=ProjectConfig().strategy,
        endpoint_id="x",
    )


async def test_the_gate_reads_nothing_when_off_and_once_per_ttl_when_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    catalog = _Catalog()
    catalog.put("t", {"type": "integer"}, version=1)
    now = [0.0]
    gate = SchemaGate(catalog, ttl_s=5.0, clock=lambda: now[0])  # type: ignore[arg-type]
    for _ in range(100):
        await gate.check(_project(False), _event("t", "not an integer"))
    assert catalog.reads == 0 and len(gate) == 0

    compiled: list[Any] = []
    import hookcast.api.event_schemas as gate_module

    real = gate_module.compile_schema

    def counting(schema: dict[str, Any], where: str = "json_schema") -> Any:
        compiled.append(schema)
        return real(schema, where)

    monkeypatch.setattr(gate_module, "compile_schema", counting)
    on = _project(True)
    for _ in range(50):
        await gate.check(on, _event("t", 5))
        await gate.check(on, _event("untyped", "anything"))
    assert catalog.reads == 2 and len(compiled) == 1
    with pytest.raises(ValidationError, match="at the root"):
        await gate.check(on, _event("t", "x"))
    now[0] = 6.0  # past the TTL: read again, the entry unchanged: not compiled again
    await gate.check(on, _event("t", 5))
    assert catalog.reads == 3 and len(compiled) == 1
    catalog.put("t", {"type": "string"}, version=2)
    await gate.check(on, _event("t", 5))  # within the TTL: still the old schema
    gate.forget("p", ["t"])
    with pytest.raises(ValidationError):
        await gate.check(on, _event("t", 5))
    assert catalog.reads == 4 and len(compiled) == 2


def test_migration_0004_goes_down_and_up_on_sqlite(tmp_path: Path) -> None:
    from sqlalchemy import inspect

    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate.upgrade(url)
    downgrade(url, "0003")
    engine = migrate.engine_for(url)
    try:
        with engine.connect() as conn:
            assert "event_types" not in inspect(conn).get_table_names()
    finally:
        engine.dispose()
    migrate.upgrade(url)
    assert migrate.current_revision(url) == migrate.head_revision()
