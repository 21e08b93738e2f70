"""Who may do what: every route of the OpenAPI document walked with the wrong keys, and with
portal tokens of another owner and of the same owner; roles; the per-key rate limit;
hostile input (deep JSON, many or huge headers)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from support import ADMIN_KEY, Gateway, Project, Receiver, make_settings, wait_until

MISSING = "01ARZ3NDEKTSV4RRFFQ69G5FAV"

#: POSTs that only read (the viewer may call them)
READ_ONLY_POSTS = {"test_filter"}
#: GETs that change something (the viewer may not call them)
MUTATING_GETS = {"refresh_portal_link_token"}

#: what a portal token may do (by operationId): read its owner's share, and manage it when
#: its link has can_manage_endpoint; every other route must refuse it (403)
PORTAL_READS = {
    "list_endpoints",
    "get_endpoint",
    "list_subscriptions",
    "get_subscription",
    "list_events",
    "get_event",
    "list_deliveries",
    "get_delivery",
    "list_attempts",
    "get_attempt",
    "list_event_types",
    "get_event_type",
}
PORTAL_MANAGES = {
    "create_endpoint",
    "update_endpoint",
    "delete_endpoint",
    "pause_endpoint",
    "activate_endpoint",
    "expire_secret",
    "create_subscription",
    "update_subscription",
    "toggle_subscription_status",
    "delete_subscription",
    "test_filter",
    "resend_delivery",
    "force_resend",
}
#: the path parameters that name a resource of an owner
OWNED_IDS = ("endpoint_id", "subscription_id", "event_id", "delivery_id", "attempt_id")


@dataclass
class World:
    """Project A with one of everything (of owner-a; and an endpoint of owner-b), project
    B, keys of each role of A, and portal tokens of A: owner-a's read-only
    (``portal_same``) and managing (``portal_manage``), owner-b's managing
    (``portal_other``)."""

    gateway: Gateway
    a: Project
    b: Project
    viewer: Project
    publisher: Project
    ids: dict[str, str]
    receiver_url: str
    portal_same: Project
    portal_manage: Project
    portal_other: Project
    #: what owner-b has in project A: its endpoint's id and secret
    other_owned: tuple[str, str]
    #: owner-a's endpoint secret
    secret: str


def _key(project: Project, **body: Any) -> Project:
    data = project.ok("POST", "/api-keys", 201, json=body)
    return Project(project.gateway, project.id, data["key"])


def _portal(project: Project, owner: str, manage: bool) -> tuple[str, Project]:
    body = {"name": owner, "owner_id": owner, "can_manage_endpoint": manage}
    data = project.ok("POST", "/portal-links", 201, json=body)
    return data["uid"], Project(project.gateway, project.id, data["token"])


@pytest.fixture
def world(gateway: Gateway, receiver: Receiver) -> World:
    a = gateway.create_project("a")
    b = gateway.create_project("b")
    ep = a.endpoint(receiver.url + "/a", owner_id="owner-a")
    sub = a.ok("POST", "/subscriptions", 201, json={"name": "s", "endpoint_id": ep["uid"]})
    event = a.publish(ep["uid"])
    receiver.wait_for("/a", 1)

    def delivered() -> bool:
        ds = a.deliveries()
        return len(ds) == 1 and ds[0]["status"] == "Success"

    assert wait_until(delivered)
    delivery = a.deliveries()[0]
    attempts = a.ok("GET", f"/eventdeliveries/{delivery['uid']}/deliveryattempts")
    job = a.ok("POST", "/eventdeliveries/batchretry")
    assert wait_until(
        lambda: a.ok("GET", f"/batch-jobs/{job['uid']}")["status"] in ("done", "failed")
    )
    victim = a.ok("POST", "/api-keys", 201, json={"name": "victim", "role": "admin"})
    event_type = a.ok(
        "POST",
        "/event-types",
        201,
        json={"name": "invoice.paid", "json_schema": {"type": "object"}, "example": {}},
    )
    source = a.ok(
        "POST",
        "/sources",
        201,
        json={"name": "mq", "type": "pub_sub", "pub_sub": _AMQP},
    )
    other = a.endpoint(receiver.url + "/b", owner_id="owner-b")
    link_id, portal_same = _portal(a, "owner-a", manage=False)
    _, portal_manage = _portal(a, "owner-a", manage=True)
    _, portal_other = _portal(a, "owner-b", manage=True)
    ids = {
        "project_id": a.id,
        "endpoint_id": ep["uid"],
        "subscription_id": sub["uid"],
        "event_id": event["uid"],
        "delivery_id": delivery["uid"],
        "attempt_id": attempts[0]["uid"],
        "job_id": job["uid"],
        "key_id": victim["uid"],
        "event_type_id": event_type["uid"],
        "portal_link_id": link_id,
        "source_id": source["uid"],
    }
    return World(
        gateway,
        a,
        b,
        _key(a, role="viewer", broadcast=True),
        _key(a, role="publisher"),
        ids,
        receiver.url,
        portal_same,
        portal_manage,
        portal_other,
        (other["uid"], other["secrets"][0]["value"]),
        ep["secrets"][0]["value"],
    )


#: a broker source on a port nothing listens on (the gateway's broker runner backs off)
_AMQP = {"type": "amqp", "amqp": {"host": "127.0.0.1", "port": 1, "queue": "q"}}


def _bodies(w: World) -> dict[str, Any]:
    """Bodies that would succeed for an authorized caller, so a missing check shows."""
    i, url = w.ids, w.receiver_url + "/evil"
    event = {"event_type": "evil", "data": {"x": 1}}
    return {
        "create_project": {"name": "evil"},
        "update_project": {"name": "evil", "config": {"strategy": {"retry_count": 1}}},
        "create_endpoint": {"url": url, "name": "evil"},
        "update_endpoint": {"name": "evil", "url": url},
        "expire_secret": {"expiration": 0},
        "create_subscription": {"name": "evil", "endpoint_id": i["endpoint_id"]},
        "update_subscription": {"name": "evil"},
        "test_filter": {"request": {"body": {"a": 1}}, "schema": {"body": {"a": 1}}},
        "create_event": {**event, "endpoint_id": i["endpoint_id"]},
        "create_fanout_event": {**event, "owner_id": "owner-a"},
        "create_broadcast_event": event,
        "create_dynamic_event": {**event, "url": url},
        "force_resend": {"ids": [i["delivery_id"]]},
        "create_api_key": {"role": "admin", "broadcast": True},
        "create_event_type": {"name": "evil.type", "json_schema": {"type": "string"}},
        "update_event_type": {"description": "evil", "json_schema": {"type": "string"}},
        "import_event_types": {
            "event_types": [{"name": "invoice.paid", "description": "evil"}, {"name": "evil.new"}]
        },
        "create_portal_link": {"name": "evil", "owner_id": "owner-a", "can_manage_endpoint": True},
        "update_portal_link": {"owner_id": "owner-b", "can_manage_endpoint": True},
        "create_source": {"name": "evil", "type": "pub_sub", "pub_sub": _AMQP},
        "update_source": {"name": "evil", "is_disabled": True},
    }


_VOLATILE = {"circuit_breaker", "failure_rate"}  # the breaker's window slides with time


def _stable(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _stable(v) for k, v in doc.items() if k not in _VOLATILE}
    if isinstance(doc, list):
        return [_stable(v) for v in doc]
    return doc


def _snapshot(w: World, owner: str | None = None) -> dict[str, Any]:
    """Everything of project A (and the project list), read with A's admin key; with
    *owner*, only that owner's endpoints are listed (another owner may add its own)."""
    i = w.ids
    paths = [
        "",
        "/endpoints" if owner is None else f"/endpoints?ownerId={owner}",
        f"/endpoints/{i['endpoint_id']}",
        "/subscriptions",
        f"/subscriptions/{i['subscription_id']}",
        "/events",
        f"/events/{i['event_id']}",
        "/eventdeliveries",
        f"/eventdeliveries/{i['delivery_id']}",
        f"/eventdeliveries/{i['delivery_id']}/deliveryattempts",
        f"/batch-jobs/{i['job_id']}",
        "/api-keys",
        "/event-types",
        f"/event-types/{i['event_type_id']}",
        "/portal-links",
        f"/portal-links/{i['portal_link_id']}",
        "/sources",
        f"/sources/{i['source_id']}",
    ]
    out = {path: _stable(w.a.ok("GET", path)) for path in paths}
    if owner is not None:  # what links show of another owner's endpoints may change
        for link in out["/portal-links"]["content"]:
            if link["owner_id"] != owner:
                del link["endpoints_metadata"], link["endpoint_count"]
    projects = w.gateway.admin("GET", "/api/v1/projects").json()["data"]
    out["projects"] = sorted(p["uid"] for p in projects)
    return out


def _operations(gateway: Gateway) -> Iterator[tuple[str, str, dict[str, Any]]]:
    doc = requests.get(gateway.base + "/openapi.json", timeout=5).json()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield method.upper(), path, op


def _fill(path: str, ids: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        assert name in ids, f"the route walk has no id for {{{name}}}: add one to world()"
        return ids[name]

    return re.sub(r"{(\w+)}", sub, path)


def _assert_refused(r: requests.Response, allowed: set[int], what: str) -> None:
    assert r.status_code in allowed, f"{what}: {r.status_code} {r.text[:300]}"
    assert r.headers["Content-Type"].startswith("application/json"), what
    body = r.json()
    assert body["status"] is False and isinstance(body["message"], str), what
    assert "data" not in body, f"{what} leaked data: {r.text[:300]}"


def test_route_walk_with_the_wrong_keys(world: World) -> None:
    w = world
    before = _snapshot(w)
    bodies = _bodies(w)
    secrets = [w.a.key, w.viewer.key, w.publisher.key, w.portal_same.key, w.portal_other.key]
    callers: list[tuple[str, dict[str, str]]] = [
        ("project B's admin key", {"Authorization": f"Bearer {w.b.key}"}),
        ("A's viewer key", {"Authorization": f"Bearer {w.viewer.key}"}),
        ("no key", {}),
        ("a malformed key", {"Authorization": "Bearer CO.x.y"}),
    ]
    walked = 0
    for method, path, op in _operations(w.gateway):
        url = w.gateway.base + _fill(path, w.ids)
        body = bodies.get(op["operationId"], {}) if "requestBody" in op else None
        scoped = "{project_id}" in path
        for who, headers in callers:
            what = f"{who}: {method} {path}"
            reads = (method == "GET" and op["operationId"] not in MUTATING_GETS) or op[
                "operationId"
            ] in READ_ONLY_POSTS
            if who == "A's viewer key" and reads:
                continue  # a viewer may read
            r = requests.request(method, url, headers=headers, json=body, timeout=10)
            for secret in secrets:
                assert secret not in r.text, what
            if who in ("no key", "a malformed key"):
                _assert_refused(r, {401}, what)
            elif who == "A's viewer key":
                _assert_refused(r, {403}, what)
            elif scoped:
                # another project's key learns nothing, not even that A exists (404);
                # instance-admin routes may say 403 first
                _assert_refused(r, {403, 404}, what)
            elif method == "GET":  # the project list: only B's own project
                assert r.status_code == 200, what
                assert [p["uid"] for p in r.json()["data"]] == [w.b.id], what
            else:
                _assert_refused(r, {403}, what)
            walked += 1
    assert walked >= 4 * 30  # every route of the document, not a few
    time.sleep(0.3)  # anything wrongly accepted would have reached the store by now
    assert _snapshot(w) == before


# ------------------------------------------------------------------ portal tokens


def _twin(value: Any, ids: dict[str, str]) -> Any:
    """*value* (a path or a body) with every owned id of the world made up."""
    text = json.dumps(value)
    for name in OWNED_IDS:
        text = text.replace(ids[name], MISSING)
    return json.loads(text)


def _names_owned(value: Any, ids: dict[str, str]) -> bool:
    text = json.dumps(value)
    return any(ids[name] in text for name in OWNED_IDS)


def _project_level(w: World) -> dict[str, Any]:
    """What no portal token may change: the project, its keys, catalog, batch jobs and
    portal links (less the owners' endpoints they show), and owner-b's endpoints."""
    i = w.ids
    out = {
        path: _stable(w.a.ok("GET", path))
        for path in (
            "",
            "/api-keys",
            "/event-types",
            f"/event-types/{i['event_type_id']}",
            f"/batch-jobs/{i['job_id']}",
            "/endpoints?ownerId=owner-b",
        )
    }
    links = w.a.ok("GET", "/portal-links")["content"]
    out["/portal-links"] = [
        {k: v for k, v in link.items() if k not in ("endpoints_metadata", "endpoint_count")}
        for link in links
    ]
    return out


_PORTAL_REFUSALS = {
    "a portal token may not use this route",
    "this route needs an instance admin key",  # creating and deleting projects
}


def _portal_walk(
    w: World, who: str, portal: Project, bodies: dict[str, Any]
) -> Iterator[tuple[str, str, dict[str, Any], requests.Response]]:
    """Every route of the document with the portal token: (operationId, what, the request's
    body, the answer); routes a portal token may never use are checked here (403)."""
    forbidden = [w.a.key, w.viewer.key, w.publisher.key, ADMIN_KEY]
    headers = {"Authorization": f"Bearer {portal.key}"}
    for method, path, op in _operations(w.gateway):
        op_id = op["operationId"]
        filled = _fill(path, w.ids)
        body = bodies.get(op_id, {}) if "requestBody" in op else None
        r = requests.request(
            method, w.gateway.base + filled, headers=headers, json=body, timeout=10
        )
        what = f"{who}: {method} {path}"
        for secret in forbidden:
            assert secret not in r.text, what
        if op_id not in PORTAL_READS | PORTAL_MANAGES:
            _assert_refused(r, {403}, what)
            assert r.json()["message"] in _PORTAL_REFUSALS, what
            continue
        assert r.status_code < 500, f"{what}: {r.status_code} {r.text[:300]}"
        yield op_id, what, body, r


def test_route_walk_with_portal_tokens(world: World) -> None:
    """A portal token of another owner (allowed to manage) sees and changes nothing of
    owner-a: every answer about owner-a's resources is the answer about missing ones. One
    of owner-a, read-only, reads only owner-a's share and changes nothing. One of owner-a
    that manages is refused all but its routes and leaves the rest of the project alone."""
    w, i = world, world.ids
    bodies = _bodies(w)
    other_ep, other_secret = w.other_owned

    # owner-a's read-only token: reads its share, is refused the rest, changes nothing
    before = _snapshot(w)
    walked = 0
    for op_id, what, _, r in _portal_walk(
        w, "owner-a's read-only portal token", w.portal_same, bodies
    ):
        walked += 1
        if op_id in PORTAL_MANAGES:
            _assert_refused(r, {403}, what)
            assert r.json()["message"] == "this portal link may not manage endpoints", what
            continue
        assert r.status_code == 200, f"{what}: {r.status_code} {r.text[:300]}"
        assert other_ep not in r.text and other_secret not in r.text, what
        if op_id == "list_endpoints":
            assert [e["uid"] for e in r.json()["data"]["content"]] == [i["endpoint_id"]]
        if op_id in ("list_attempts", "get_attempt"):
            data = r.json()["data"]
            for attempt in data if isinstance(data, list) else [data]:
                assert set(attempt["request_http_header"].values()) == {"[redacted]"}, what
    assert walked == len(PORTAL_READS | PORTAL_MANAGES)  # each is a route of the document
    time.sleep(0.3)
    assert _snapshot(w) == before

    # owner-b's managing token: owner-a's things answer as missing ones; its lists hold
    # none of them; whatever it does, owner-a's share is as it was
    before = _snapshot(w, owner="owner-a")
    owner_a = [i[name] for name in OWNED_IDS] + [w.secret]
    evil = {
        **bodies,
        "create_endpoint": {"url": w.receiver_url + "/evil", "name": "evil", "owner_id": "owner-a"},
    }
    headers = {"Authorization": f"Bearer {w.portal_other.key}"}
    for op_id, what, body, r in _portal_walk(w, "owner-b's portal token", w.portal_other, evil):
        method, path = what.split(": ", 1)[1].split(" ", 1)
        filled = _fill(path, i)
        if _names_owned(filled, i) or _names_owned(body, i):
            twin = requests.request(
                method,
                w.gateway.base + _twin(filled, i),
                headers=headers,
                json=_twin(body, i),
                timeout=10,
            )
            assert r.status_code == twin.status_code, f"{what}: {r.text} vs {twin.text}"
            assert _twin(r.text, i) == twin.text, what
        else:
            assert r.status_code < 300, f"{what}: {r.status_code} {r.text[:300]}"
        for value in owner_a:
            assert value not in r.text, what
        if op_id == "create_endpoint":
            assert r.json()["data"]["owner_id"] == "owner-b", what
        listed = op_id.startswith("list_") and op_id != "list_event_types"
        if method == "GET" and listed and not _names_owned(filled, i):
            named = {
                "ownerId": "owner-a",
                "endpointId": i["endpoint_id"],
                "eventId": i["event_id"],
                "subscriptionId": i["subscription_id"],
            }
            found = requests.get(w.gateway.base + filled, params=named, headers=headers, timeout=10)
            assert found.status_code == 200 and found.json()["data"]["content"] == [], what
    time.sleep(0.3)
    assert _snapshot(w, owner="owner-a") == before

    # owner-a's managing token: its routes answer (not 403), the rest are refused, and
    # nothing beyond owner-a's share changes
    before = _project_level(w)
    bodies["create_endpoint"] = {**bodies["create_endpoint"], "owner_id": "owner-b"}
    for _, what, _, r in _portal_walk(
        w, "owner-a's managing portal token", w.portal_manage, bodies
    ):
        assert r.status_code != 403, f"{what}: {r.text[:300]}"
        assert other_ep not in r.text and other_secret not in r.text, what
    time.sleep(0.3)
    assert _project_level(w) == before


def _status(p: Project, method: str, path: str, **kw: Any) -> int:
    return p.call(method, path, **kw).status_code


def test_publishers_cannot_manage(world: World) -> None:
    w, i = world, world.ids
    pub = w.publisher
    e, s, k, t = i["endpoint_id"], i["subscription_id"], i["key_id"], i["event_type_id"]
    denied = [
        ("POST", "/endpoints", {"url": w.receiver_url + "/x", "name": "x"}),
        ("PUT", f"/endpoints/{e}", {"name": "x"}),
        ("DELETE", f"/endpoints/{e}", None),
        ("PUT", f"/endpoints/{e}/pause", None),
        ("PUT", f"/endpoints/{e}/expire_secret", {}),
        ("POST", "/subscriptions", {"name": "x", "endpoint_id": e}),
        ("PUT", f"/subscriptions/{s}", {"name": "x"}),
        ("PUT", f"/subscriptions/{s}/toggle_status", None),
        ("DELETE", f"/subscriptions/{s}", None),
        ("GET", "/api-keys", None),
        ("POST", "/api-keys", {"role": "admin"}),
        ("DELETE", f"/api-keys/{k}", None),
        ("PUT", "", {"name": "x"}),
        ("POST", "/events/broadcast", {"event_type": "a", "data": 1}),  # no grant
        ("POST", "/event-types", {"name": "x"}),
        ("PUT", f"/event-types/{t}", {"description": "x"}),
        ("POST", f"/event-types/{t}/deprecate", None),
        ("POST", "/event-types/import", {"event_types": [{"name": "x"}]}),
    ]
    for method, path, body in denied:
        assert _status(pub, method, path, json=body) == 403, (method, path)
    # but a publisher publishes and reads
    assert pub.publish(e)["uid"]
    assert _status(pub, "GET", f"/endpoints/{e}") == 200
    assert _status(pub, "GET", "/eventdeliveries") == 200
    assert _status(pub, "GET", f"/event-types/{t}") == 200


def test_viewers_cannot_publish(world: World) -> None:
    w, i = world, world.ids
    v = w.viewer  # holds the broadcast grant, on a role that may not publish
    event = {"event_type": "a", "data": {"n": 1}}
    denied = [
        ("POST", "/events", {**event, "endpoint_id": i["endpoint_id"]}),
        ("POST", "/events/fanout", {**event, "owner_id": "owner-a"}),
        ("POST", "/events/broadcast", event),
        ("POST", "/events/dynamic", {**event, "url": w.receiver_url + "/x"}),
        ("PUT", f"/events/{i['event_id']}/replay", None),
        ("POST", "/events/batchreplay", None),
        ("PUT", f"/eventdeliveries/{i['delivery_id']}/resend", None),
        ("POST", "/eventdeliveries/forceresend", {"ids": [i["delivery_id"]]}),
        ("POST", "/eventdeliveries/batchretry", None),
    ]
    for method, path, body in denied:
        r = v.call(method, path, json=body)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["message"].startswith("this key")
    assert len(w.a.ok("GET", "/events")["content"]) == 1
    assert _status(v, "GET", "/events") == 200


def test_only_instance_admins_create_and_delete_projects(world: World) -> None:
    w = world
    for p in (w.a, w.publisher, w.viewer, w.b):
        r = requests.post(
            w.gateway.base + "/api/v1/projects",
            json={"name": "x"},
            headers={"Authorization": f"Bearer {p.key}"},
            timeout=5,
        )
        assert r.status_code == 403
        assert _status(p, "DELETE", "") in (403, 404)
    assert _status(w.a, "GET", "") == 200 and _status(w.b, "GET", "") == 200
    names = {p["name"] for p in w.gateway.admin("GET", "/api/v1/projects").json()["data"]}
    assert names == {"a", "b"}
    # an instance admin key made with the CLI's --admin can
    r = w.gateway.admin("POST", "/api/v1/projects", json={"name": "c"})
    assert r.status_code == 201


# ------------------------------------------------------------------ rate limit


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(make_settings(str(tmp_path / "hookcast.db"), api_rate_limit=2))
    yield gw
    gw.stop()


def test_rate_limit_per_key(limited: Gateway) -> None:
    a = limited.create_project("a")
    b = _key(a, role="viewer")
    codes = []
    for _ in range(25):
        r = a.call("GET", "/endpoints")
        codes.append(r.status_code)
        if r.status_code == 429:
            limited_response = r
    # a burst of twice the rate (4; the key's first call counted), then refusals
    assert codes[:3] == [200] * 3 and codes.count(429) >= 10, codes
    assert limited_response.json() == {"status": False, "message": "exceeded rate limit"}
    retry_after = int(limited_response.headers["Retry-After"])
    assert 1 <= retry_after <= 2
    assert limited_response.headers["Content-Type"].startswith("application/json")
    # per key: another key of the same project is not held back
    assert b.call("GET", "/endpoints").status_code == 200
    # a refused key is answered 401 as usual, never 429
    bad = {"Authorization": "Bearer CO.nope.nope"}
    assert all(
        requests.get(a.base + "/endpoints", headers=bad, timeout=5).status_code == 401
        for _ in range(15)
    )
    time.sleep(retry_after)
    assert a.call("GET", "/endpoints").status_code == 200


# ------------------------------------------------------------------ hostile input


def _nested(levels: int) -> Any:
    doc: Any = 1
    for _ in range(levels):
        doc = [doc]
    return doc


def test_json_nesting_is_limited(project: Project) -> None:
    ep = project.endpoint("http://127.0.0.1:9/x")
    event = {"endpoint_id": ep["uid"], "event_type": "deep"}
    # the body object is level 1: 63 more levels are allowed, 64 are one too many
    assert project.call("POST", "/events", json={**event, "data": _nested(63)}).status_code == 201
    r = project.call("POST", "/events", json={**event, "data": _nested(64)})
    assert r.status_code == 400 and "nested too deeply" in r.json()["message"]
    raw = b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = project.call("POST", "/events", data=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["status"] is False
    deep_config = {"name": "x", "config": {"a": _nested(70)}}
    assert project.call("PUT", "", json=deep_config).status_code == 400
    assert len(project.ok("GET", "/events")["content"]) == 1


def test_header_limits(project: Project) -> None:
    # requests adds six of its own (Host, User-Agent, Accept, Accept-Encoding, Connection,
    # Authorization)
    many = {f"X-Filler-{n}": "x" for n in range(94)}
    assert project.call("GET", "/endpoints", headers=many).status_code == 200
    many["X-One-Too-Many"] = "x"
    r = project.call("GET", "/endpoints", headers=many)
    assert r.status_code == 431
    assert r.json() == {"status": False, "message": "too many request headers: the limit is 100"}

    assert project.call("GET", "/endpoints", headers={"X-Big": "x" * 8000}).status_code == 200
    r = project.call("GET", "/endpoints", headers={"X-Big": "x" * 8200})
    assert r.status_code == 431 and "X-Big" in r.json()["message"]
    # far past the limits the HTTP parser refuses before the app runs (a plain 4xx)
    for headers in ({"X-Huge": "x" * 40_000}, {f"X-F-{n}": "x" for n in range(300)}):
        try:
            r = project.call("GET", "/endpoints", headers=headers)
        except requests.ConnectionError:
            continue  # the server may close the connection as it answers
        assert 400 <= r.status_code < 500
    # unauthenticated routes are guarded too
    many["X-And-Another"] = "x"  # for the Authorization header not sent here
    r = requests.get(project.gateway.base + "/health", headers=many, timeout=5)
    assert r.status_code == 431


def test_admin_key_is_rate_limited_like_any_key(limited: Gateway) -> None:
    codes = [limited.admin("GET", "/api/v1/projects").status_code for _ in range(20)]
    assert 429 in codes and codes[0] == 200
    assert ADMIN_KEY not in limited.admin("GET", "/api/v1/projects").text


async def test_a_5xx_tells_the_request_id_and_keeps_the_database_words_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from hookcast.api.app import front
    from hookcast.domain.errors import StoreError

    async def broken(request: web.Request) -> web.Response:
        raise StoreError('relation "deliveries" does not exist; host db.internal user admin')

    app = web.Application(middlewares=[front(None)])
    app.router.add_get("/api/v1/broken", broken)
    async with TestClient(TestServer(app)) as client:
        r = await client.get("/api/v1/broken", headers={"X-Request-ID": "req-500"})
        body = await r.json()
    assert r.status == 500 and body["status"] is False
    assert body["message"] == "internal error: see the server log for request req-500"
    assert "db.internal" not in str(body)
    logged = [rec for rec in caplog.records if rec.msg == "api.error"]
    assert logged and logged[0].exc_info is not None
