"""/sources (Convoy's) through the real gateway over HTTP, on a SQLite file and on
PostgreSQL: create (201, a mask and the ingest URL), list with paging and the ``type`` /
``provider`` filters, get, update (202), delete (and the subscriptions routing the
source with it), validation 4xx naming the field; the store's ``list_pub_sub_sources``
(the broker consumers' contract); projects of type ``incoming`` and their
subscriptions' ``source_id``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hookcast.domain.models import SourceType
from hookcast.store import open_store
from hookcast.store.sources import SourceStore
from pg_support import fresh_database
from support import Gateway, LoopThread, Project, make_settings

MISSING = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
#: broker configs on ports nothing listens on: the gateway's broker runner (started with
#: it) tries them and backs off, touching no real queue or stream
AMQP = {"type": "amqp", "workers": 1, "amqp": {"host": "127.0.0.1", "port": 1, "queue": "q"}}
REDIS = {"type": "redis_stream", "redis_stream": {"url": "redis://127.0.0.1:1/0", "stream": "s"}}
GITHUB = {
    "name": "github",
    "type": "http",
    "provider": "github",
    "verifier": {"type": "hmac", "hmac": {"secret": "gh-secret"}},
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
        with fresh_database("hookcast_sources") as url:
            gateway = Gateway(make_settings("unused", database_url=url))
            try:
                yield gateway
            finally:
                gateway.stop()


def incoming_project(gw: Gateway, name: str = "in") -> Project:
    r = gw.admin("POST", "/api/v1/projects", json={"name": name, "type": "incoming"})
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    assert data["project"]["type"] == "incoming"
    return Project(gw, data["project"]["uid"], data["api_key"]["key"])


@pytest.fixture
def proj(gw: Gateway) -> Project:
    return incoming_project(gw)


def refused(p: Project, method: str, path: str, status: int = 400, **kw: Any) -> str:
    r = p.call(method, path, **kw)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] is False
    return str(body["message"])


def test_create_get_list_update_delete(gw: Gateway, proj: Project) -> None:
    body = GITHUB | {
        "idempotency_keys": ["request.header.X-GitHub-Delivery"],
        "event_type_location": "request.header.X-GitHub-Event",
    }
    created = proj.ok("POST", "/sources", 201, json=body)
    assert created["type"] == "http" and created["provider"] == "github"
    assert len(created["mask_id"]) == 22
    assert created["url"] == f"{gw.base}/ingest/{created['mask_id']}"
    assert created["verifier"]["hmac"]["secret"] == "gh-secret"  # returned, as Convoy
    assert created["is_disabled"] is False
    assert created["idempotency_keys"] == ["request.header.X-GitHub-Delivery"]
    assert created["pub_sub"] is None and created["project_id"] == proj.id
    got = proj.ok("GET", f"/sources/{created['uid']}")
    assert got == created
    updated = proj.ok(
        "PUT", f"/sources/{created['uid']}", 202, json={"is_disabled": True, "name": "gh2"}
    )
    assert updated["is_disabled"] is True and updated["name"] == "gh2"
    assert updated["mask_id"] == created["mask_id"]
    assert updated["verifier"] == created["verifier"]  # absent fields keep their values
    again = proj.ok("PUT", f"/sources/{created['uid']}", 202, json={"is_disabled": False})
    assert again["is_disabled"] is False and again["name"] == "gh2"
    assert proj.ok("DELETE", f"/sources/{created['uid']}") is None
    assert refused(proj, "GET", f"/sources/{created['uid']}", 404) == "Resource not found"
    refused(proj, "DELETE", f"/sources/{created['uid']}", 404)


def test_list_pages_and_filters(proj: Project) -> None:
    ids = []
    for i in range(5):
        body = GITHUB | {"name": f"s{i}"} if i % 2 else {"name": f"s{i}", "type": "http"}
        ids.append(proj.ok("POST", "/sources", 201, json=body)["uid"])
    page1 = proj.ok("GET", "/sources", params={"perPage": 2})
    assert [s["uid"] for s in page1["content"]] == ids[::-1][:2]
    assert page1["pagination"]["has_next_page"] is True
    page2 = proj.ok(
        "GET",
        "/sources",
        params={"perPage": 2, "next_page_cursor": page1["pagination"]["next_page_cursor"]},
    )
    assert [s["uid"] for s in page2["content"]] == ids[::-1][2:4]
    github = proj.ok("GET", "/sources", params={"provider": "github", "perPage": 10})
    assert sorted(s["uid"] for s in github["content"]) == sorted([ids[1], ids[3]])
    http = proj.ok("GET", "/sources", params={"type": "http", "perPage": 10, "provider": ""})
    assert len(http["content"]) == 5
    assert proj.ok("GET", "/sources", params={"type": "pub_sub"})["content"] == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"type": "http"}, "name"),
        ({"name": "x", "type": "rest_api"}, "not supported yet"),
        ({"name": "x", "type": "db_change_stream"}, "not supported yet"),
        ({"name": "x", "type": "carrier-pigeon"}, "type"),
        ({"name": "x", "type": "http", "provider": "twitter"}, "provider"),
        ({"name": "x", "type": "http", "provider": "github"}, "verifier.hmac"),
        (
            {
                "name": "x",
                "type": "http",
                "verifier": {
                    "type": "hmac",
                    "hmac": {"header": "X", "hash": "MD5", "secret": "s", "encoding": "hex"},
                },
            },
            "verifier.hmac.hash",
        ),
        ({"name": "x", "type": "http", "idempotency_keys": ["body.id"]}, "idempotency_keys"),
        ({"name": "x", "type": "http", "verifier": "hmac"}, "verifier"),
        ({"name": "x", "type": "pub_sub", "pub_sub": {"type": "kafka"}}, "pub_sub.type"),
        # the broker's own fields, checked by the broker consumers' check
        (
            {"name": "x", "type": "pub_sub", "pub_sub": {"type": "amqp", "amqp": {"queue": "q"}}},
            "pub_sub.amqp.host",
        ),
    ],
)
def test_bad_sources_are_refused_with_the_field(
    proj: Project, body: dict[str, Any], message: str
) -> None:
    assert message in refused(proj, "POST", "/sources", json=body)
    assert proj.ok("GET", "/sources")["content"] == []


def test_http_sources_belong_to_incoming_projects(gw: Gateway) -> None:
    outgoing = gw.create_project("out")
    assert "incoming" in refused(outgoing, "POST", "/sources", json=GITHUB)
    # a broker source is fine in an outgoing project (as Convoy's pub_sub sources)
    doc = {"type": "amqp", "workers": 2, "amqp": AMQP["amqp"] | {"auth": {"user": "u"}}}
    created = outgoing.ok(
        "POST", "/sources", 201, json={"name": "mq", "type": "pub_sub", "pub_sub": doc}
    )
    assert created["pub_sub"] == doc and created["url"] == ""


def test_list_pub_sub_sources_for_the_broker_workers(gw: Gateway, proj: Project) -> None:
    other = gw.create_project("other")
    amqp, redis = AMQP, REDIS
    a = proj.ok("POST", "/sources", 201, json={"name": "a", "type": "pub_sub", "pub_sub": amqp})
    b = other.ok("POST", "/sources", 201, json={"name": "b", "type": "pub_sub", "pub_sub": redis})
    off = other.ok("POST", "/sources", 201, json={"name": "c", "type": "pub_sub", "pub_sub": amqp})
    other.ok("PUT", f"/sources/{off['uid']}", 202, json={"is_disabled": True})
    proj.ok("POST", "/sources", 201, json=GITHUB)
    loop = LoopThread("store")
    try:

        async def listed() -> list[Any]:
            store = open_store(gw.settings.database_url)
            await store.open()
            try:
                return await SourceStore(store.db).list_pub_sub_sources()
            finally:
                await store.close()

        found = loop.run(listed())
    finally:
        loop.close()
    assert [(s.id, s.project_id, s.name, s.pub_sub) for s in found] == [
        (a["uid"], proj.id, "a", amqp),
        (b["uid"], other.id, "b", redis),
    ]
    assert all(s.type is SourceType.PUB_SUB for s in found)


def test_incoming_subscriptions_need_a_source_of_the_project(gw: Gateway, proj: Project) -> None:
    endpoint = proj.endpoint("http://127.0.0.1:9/hook")
    source = proj.ok("POST", "/sources", 201, json=GITHUB)
    body: dict[str, Any] = {"name": "s", "endpoint_id": endpoint["uid"]}
    assert "source_id" in refused(proj, "POST", "/subscriptions", json=body)
    assert "source_id" in refused(
        proj, "POST", "/subscriptions", json=body | {"source_id": MISSING}
    )
    sub = proj.ok("POST", "/subscriptions", 201, json=body | {"source_id": source["uid"]})
    # deleting the source deletes the subscriptions that route it
    proj.ok("DELETE", f"/sources/{source['uid']}")
    refused(proj, "GET", f"/subscriptions/{sub['uid']}", 404)


def test_ingest_urls_are_not_api_routes(gw: Gateway) -> None:
    import requests

    r = requests.post(f"{gw.base}/ingest/{'x' * 22}", json={}, timeout=10)
    assert r.status_code == 404 and r.json() == {"status": False, "message": "Source not found"}
    r = requests.get(f"{gw.base}/ingest/{'x' * 22}", timeout=10)
    assert r.status_code == 405 and r.json()["status"] is False
    r = requests.post(f"{gw.base}/api/v1/projects/{MISSING}/sources", json={}, timeout=10)
    assert r.status_code == 401
