"""Portal links (issue 16): Convoy's ``/portal-links`` and the ``PRT.`` tokens they give a
project's customers, through the real gateway over HTTP, on a SQLite file and on
PostgreSQL.

* CRUD, paging and filters of links; the token's format, shown once and stored hashed
  (as API keys are); masked everywhere else;
* ``refresh_token`` links: tokens expire an hour after they are made (the gateway's clock
  is moved, not waited for); ``refresh_token`` issues the next and voids the last at once;
  revoking a link refuses its token at once; changing ``auth_type`` voids the token;
* only keys with the manage permission manage links, never a portal token;
* a portal token sees only its owner: endpoints, subscriptions, events, deliveries and
  attempts (request headers redacted); another owner's resource answers exactly as a
  missing one; lists and pages count only the owner's; it may manage (only with
  ``can_manage_endpoint``) its own endpoints and subscriptions and resend their deliveries,
  and is refused everything else (publishing of every kind, batches, keys, links, project
  settings, catalog writes).

The route walk over every route with portal tokens of the same and of another owner is in
``test_security.py``.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hookcast.api.context import CTX
from hookcast.domain.errors import ValidationError
from hookcast.domain.keys import PORTAL_PREFIX, mask_of, matches
from hookcast.domain.portal_links import (
    REFRESH_TOKEN_TTL_US,
    AuthType,
    PortalLinkFields,
    apply_update,
    new_portal_link,
    token_problem,
)
from pg_support import fresh_database
from support import ADMIN_KEY, Gateway, Project, Receiver, make_settings, wait_until

MISSING = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
TOKEN = re.compile(r"^PRT\.[a-z2-7]{16}\.[A-Za-z0-9_-]{43}$")
HOUR_US = 3600 * 1_000_000
FIELDS = {
    "uid",
    "name",
    "owner_id",
    "project_id",
    "endpoints",
    "endpoint_count",
    "endpoints_metadata",
    "can_manage_endpoint",
    "auth_type",
    "token",
    "auth_key",
    "url",
    "created_at",
    "updated_at",
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
        with fresh_database("hookcast_portal") as url:
            gateway = Gateway(make_settings("unused", database_url=url))
            try:
                yield gateway
            finally:
                gateway.stop()


@pytest.fixture
def proj(gw: Gateway) -> Project:
    return gw.create_project("portal")


def _link(p: Project, owner: str = "acme", **body: Any) -> dict[str, Any]:
    return p.ok(
        "POST", "/portal-links", 201, json={"name": f"{owner} portal", "owner_id": owner, **body}
    )  # type: ignore[no-any-return]


def _as(p: Project, token: str) -> Project:
    """The same project, called with another bearer token."""
    return Project(p.gateway, p.id, token)


def _refused(p: Project, method: str, path: str, status: int, **kw: Any) -> str:
    r = p.call(method, path, **kw)
    assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
    body = r.json()
    assert body["status"] is False and "data" not in body
    return str(body["message"])


def _same_as_missing(p: Project, method: str, path: str, real: str, body: Any = None) -> None:
    """*real* (another owner's id) must answer exactly as an id that does not exist."""
    r = p.call(method, path, json=body)
    twin_body = None if body is None else json.loads(json.dumps(body).replace(real, MISSING))
    twin = p.call(method, path.replace(real, MISSING), json=twin_body)
    assert r.status_code == twin.status_code, f"{method} {path}: {r.text} vs {twin.text}"
    assert r.text.replace(real, MISSING) == twin.text, f"{method} {path}"
    assert r.status_code in (400, 404) or r.json()["message"] == "0 successful, 1 failed"


class Clock:
    """The gateway's clock (microseconds), moved on at will."""

    def __init__(self) -> None:
        self.offset_us = 0

    def __call__(self) -> int:
        return time.time_ns() // 1000 + self.offset_us


def _clock(gw: Gateway) -> Clock:
    clock = Clock()
    running = gw._running
    assert running.runner is not None
    context = running.runner.app[CTX]
    context.clock = clock
    context.auth.clock = clock
    return clock


def _stored(gw: Gateway, link_id: str) -> dict[str, Any]:
    """The link's row, read from the database itself."""
    url = gw.settings.database_url
    query = "SELECT * FROM portal_links WHERE id = "
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            cur = conn.execute(query + "?", (link_id,))
            names = [d[0] for d in cur.description]
            return dict(zip(names, cur.fetchone(), strict=True))
    with psycopg.connect(url) as pg:
        pcur = pg.execute(query + "%s", (link_id,))
        assert pcur.description is not None
        names = [d.name for d in pcur.description]
        row = pcur.fetchone()
        assert row is not None
        return dict(zip(names, row, strict=True))


# ------------------------------------------------------------------ the links


def test_tokens_updates_and_expiry_are_pure_decisions() -> None:
    counter = iter(range(1, 1000))

    def randbytes(n: int) -> bytes:
        return bytes([next(counter)]) * n

    fields = PortalLinkFields(name="n", owner_id="o", auth_type=AuthType.REFRESH_TOKEN)
    link, issued = new_portal_link("p", fields, "id", 1_000, randbytes)
    assert TOKEN.match(issued.token) and mask_of(issued.token, PORTAL_PREFIX) == link.token_mask
    assert mask_of(issued.token) is None  # not an API key
    assert matches(issued.token, link.token_hash) and issued.token not in repr(link)
    expires = 1_000 + REFRESH_TOKEN_TTL_US
    assert link.token_expires_at_us == expires
    assert token_problem(link, expires - 1) is None
    assert token_problem(link, expires) == "the portal token has expired"
    renamed, void = apply_update(link, PortalLinkFields(name="m"), 2_000)
    assert not void and renamed.token_hash == link.token_hash
    assert (renamed.name, renamed.owner_id, renamed.updated_at_us) == ("m", "o", 2_000)
    retyped, void = apply_update(link, PortalLinkFields(auth_type=AuthType.STATIC_TOKEN), 3_000)
    assert void and retyped.token_hash == "" and not matches(issued.token, retyped.token_hash)
    static, _ = new_portal_link("p", PortalLinkFields(name="n", owner_id="o"), "id", 0, randbytes)
    assert static.auth_type is AuthType.STATIC_TOKEN and static.token_expires_at_us is None
    for bad in (PortalLinkFields(name=" ", owner_id="o"), PortalLinkFields(name="n")):
        with pytest.raises(ValidationError):
            new_portal_link("p", bad, "id", 0, randbytes)


def test_create_get_list_update_and_the_token_shown_once(proj: Project) -> None:
    ep = proj.endpoint("http://127.0.0.1:9/a", owner_id="acme")
    created = _link(proj, endpoints=["legacy-id"], can_manage_endpoint=True)
    assert set(created) >= FIELDS
    assert created["owner_id"] == "acme" and created["project_id"] == proj.id
    assert created["auth_type"] == "static_token" and created["can_manage_endpoint"] is True
    assert created["endpoints"] == ["legacy-id"]  # Convoy's deprecated list: stored, echoed
    assert created["endpoint_count"] == 1
    assert [e["uid"] for e in created["endpoints_metadata"]] == [ep["uid"]]
    token = created["token"]
    assert TOKEN.match(token) and created["auth_key"] == token
    assert created["url"].endswith(f"/portal?token={token}")
    assert created["token_expires_at"] is None

    # never again in full: masked, the same mask
    mask = token.split(".")[1]
    got = proj.ok("GET", f"/portal-links/{created['uid']}")
    assert got["token"] == got["auth_key"] == f"PRT.{mask}.********" and got["url"] == ""
    assert token not in json.dumps(got)
    assert {k: v for k, v in got.items() if k not in ("token", "auth_key", "url")} == {
        k: v for k, v in created.items() if k not in ("token", "auth_key", "url")
    }

    # lists: never null, filters, paging
    bare = _link(proj, "globex")
    assert bare["endpoints"] == [] and bare["endpoints_metadata"] == []
    assert bare["endpoint_count"] == 0 and bare["can_manage_endpoint"] is False
    _link(proj, "initech", auth_type="refresh_token")
    listed = proj.ok("GET", "/portal-links")
    assert len(listed["content"]) == 3 and token not in json.dumps(listed)
    assert all(item["token"].endswith(".********") for item in listed["content"])
    assert [
        i["owner_id"]
        for i in proj.ok("GET", "/portal-links", params={"ownerId": "acme"})["content"]
    ] == ["acme"]
    assert [
        i["name"] for i in proj.ok("GET", "/portal-links", params={"q": "glob"})["content"]
    ] == ["globex portal"]
    first = proj.ok("GET", "/portal-links", params={"perPage": 2})
    assert len(first["content"]) == 2 and first["pagination"]["has_next_page"] is True
    rest = proj.ok(
        "GET",
        "/portal-links",
        params={"perPage": 2, "next_page_cursor": first["pagination"]["next_page_cursor"]},
    )
    assert [i["owner_id"] for i in rest["content"]] == ["acme"]
    assert rest["pagination"]["has_next_page"] is False

    # PUT: 202, absent fields keep their values
    updated = proj.ok(
        "PUT",
        f"/portal-links/{created['uid']}",
        202,
        json={"name": "Acme Corp", "can_manage_endpoint": False},
    )
    assert updated["name"] == "Acme Corp" and updated["owner_id"] == "acme"
    assert updated["can_manage_endpoint"] is False and updated["endpoints"] == ["legacy-id"]
    assert updated["token"] == f"PRT.{mask}.********"
    assert updated["updated_at"] > created["updated_at"]


def test_bad_input_and_missing_links(proj: Project) -> None:
    assert "name" in _refused(proj, "POST", "/portal-links", 400, json={"owner_id": "acme"})
    assert "owner_id" in _refused(proj, "POST", "/portal-links", 400, json={"name": "x"})
    assert "owner_id" in _refused(
        proj, "POST", "/portal-links", 400, json={"name": "x", "owner_id": "  "}
    )
    _refused(
        proj, "POST", "/portal-links", 400, json={"name": "x", "owner_id": "a", "auth_type": "jwt"}
    )
    _refused(proj, "POST", "/portal-links", 400, json={"name": "x" * 201, "owner_id": "a"})
    _refused(proj, "POST", "/portal-links", 400, json={"name": "x", "owner_id": "a\x01"})
    _refused(proj, "POST", "/portal-links", 400)
    for method, path in (
        ("GET", f"/portal-links/{MISSING}"),
        ("PUT", f"/portal-links/{MISSING}"),
        ("PUT", f"/portal-links/{MISSING}/revoke"),
        ("GET", f"/portal-links/{MISSING}/refresh_token"),
    ):
        assert _refused(proj, method, path, 404, json={"name": "x"}) == "Resource not found"
    assert proj.ok("GET", "/portal-links")["content"] == []


def test_tokens_are_stored_hashed_as_api_keys_are(gw: Gateway, proj: Project) -> None:
    created = _link(proj)
    token = created["token"]
    row = _stored(gw, created["uid"])
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert row["token_mask"] == token.split(".")[1]
    secret = token.split(".")[2]
    assert not any(secret in str(value) for value in row.values())
    refreshed = proj.ok("GET", f"/portal-links/{created['uid']}/refresh_token")
    row = _stored(gw, created["uid"])
    assert row["token_hash"] == hashlib.sha256(refreshed.encode()).hexdigest()


def test_refresh_token_links_expire_after_an_hour(gw: Gateway, proj: Project) -> None:
    clock = _clock(gw)
    proj.endpoint("http://127.0.0.1:9/a", owner_id="acme")
    link = _link(proj, auth_type="refresh_token")
    static = _link(proj, "globex")
    portal, other = _as(proj, link["token"]), _as(proj, static["token"])
    assert link["token_expires_at"] is not None
    assert len(portal.ok("GET", "/endpoints")["content"]) == 1  # now in the auth cache

    clock.offset_us = HOUR_US - 5_000_000
    assert portal.call("GET", "/endpoints").status_code == 200
    clock.offset_us = HOUR_US + 1
    # refused at once, though verified less than a second ago
    assert "expired" in _refused(portal, "GET", "/endpoints", 401)
    time.sleep(1.1)  # and once the cache has forgotten it
    assert "expired" in _refused(portal, "GET", "/endpoints", 401)
    # static tokens do not expire
    clock.offset_us = 10 * HOUR_US
    assert other.call("GET", "/endpoints").status_code == 200

    fresh = proj.ok("GET", f"/portal-links/{link['uid']}/refresh_token")
    assert TOKEN.match(fresh) and fresh != link["token"]
    assert len(_as(proj, fresh).ok("GET", "/endpoints")["content"]) == 1
    got = proj.ok("GET", f"/portal-links/{link['uid']}")
    assert got["token"] == f"PRT.{fresh.split('.')[1]}.********"
    clock.offset_us += HOUR_US
    assert "expired" in _refused(_as(proj, fresh), "GET", "/endpoints", 401)


def test_refresh_and_revoke_refuse_the_old_token_at_once(proj: Project) -> None:
    link = _link(proj)
    old = _as(proj, link["token"])
    assert old.call("GET", "/endpoints").status_code == 200  # cached as good
    new_token = proj.ok("GET", f"/portal-links/{link['uid']}/refresh_token")
    assert _refused(old, "GET", "/endpoints", 401) == "authorization failed"
    new = _as(proj, new_token)
    assert new.call("GET", "/endpoints").status_code == 200

    assert proj.ok("PUT", f"/portal-links/{link['uid']}/revoke") is None
    assert "revoked" in _refused(new, "GET", "/endpoints", 401)
    assert _refused(proj, "GET", f"/portal-links/{link['uid']}", 404) == "Resource not found"
    assert proj.ok("GET", "/portal-links")["content"] == []
    _refused(proj, "PUT", f"/portal-links/{link['uid']}/revoke", 404)
    _refused(proj, "GET", f"/portal-links/{link['uid']}/refresh_token", 404)
    _refused(proj, "PUT", f"/portal-links/{link['uid']}", 404, json={"name": "back"})
    assert "revoked" in _refused(new, "GET", "/endpoints", 401)
    # made-up and malformed portal tokens
    for token in ("PRT.nope.nope", "PRT.x", f"PRT.{new_token.split('.')[1]}.wrong"):
        assert _refused(_as(proj, token), "GET", "/endpoints", 401) == "authorization failed"


def test_changing_auth_type_voids_the_token(gw: Gateway, proj: Project) -> None:
    link = _link(proj)
    portal = _as(proj, link["token"])
    assert portal.call("GET", "/endpoints").status_code == 200
    changed = proj.ok(
        "PUT", f"/portal-links/{link['uid']}", 202, json={"auth_type": "refresh_token"}
    )
    assert changed["auth_type"] == "refresh_token"
    assert _refused(portal, "GET", "/endpoints", 401) == "authorization failed"
    fresh = proj.ok("GET", f"/portal-links/{link['uid']}/refresh_token")
    assert _as(proj, fresh).call("GET", "/endpoints").status_code == 200
    assert proj.ok("GET", f"/portal-links/{link['uid']}")["token_expires_at"] is not None
    # the same auth_type again changes nothing
    proj.ok("PUT", f"/portal-links/{link['uid']}", 202, json={"auth_type": "refresh_token"})
    assert _as(proj, fresh).call("GET", "/endpoints").status_code == 200


def test_only_keys_that_manage_manage_portal_links(gw: Gateway, proj: Project) -> None:
    link = _link(proj, can_manage_endpoint=True)
    other = gw.create_project("other")
    viewer = _as(proj, proj.ok("POST", "/api-keys", 201, json={"role": "viewer"})["key"])
    publisher = _as(proj, proj.ok("POST", "/api-keys", 201, json={"role": "publisher"})["key"])
    portal = _as(proj, link["token"])
    calls = [
        ("POST", "/portal-links", {"name": "x", "owner_id": "acme"}),
        ("GET", "/portal-links", None),
        ("GET", f"/portal-links/{link['uid']}", None),
        ("PUT", f"/portal-links/{link['uid']}", {"owner_id": "globex"}),
        ("PUT", f"/portal-links/{link['uid']}/revoke", None),
        ("GET", f"/portal-links/{link['uid']}/refresh_token", None),
    ]
    for method, path, body in calls:
        for caller in (viewer, publisher, portal):
            _refused(caller, method, path, 403, json=body)
        _refused(_as(proj, other.key), method, path, 404, json=body)
    assert proj.ok("GET", f"/portal-links/{link['uid']}")["owner_id"] == "acme"
    assert portal.call("GET", "/endpoints").status_code == 200
    # the instance admin key may
    r = gw.admin("GET", f"/api/v1/projects/{proj.id}/portal-links")
    assert r.status_code == 200 and len(r.json()["data"]["content"]) == 1
    assert ADMIN_KEY not in r.text


# ------------------------------------------------------------------ what a token sees


def _two_owners(proj: Project, receiver: Receiver) -> dict[str, Any]:
    """Owners acme and globex, each an endpoint with a subscription, an event delivered
    (so an attempt), and a broadcast that went to both."""
    out: dict[str, Any] = {}
    for owner in ("acme", "globex"):
        ep = proj.endpoint(f"{receiver.url}/{owner}", owner_id=owner, name=f"{owner}-hook")
        sub = proj.ok("POST", "/subscriptions", 201, json={"name": owner, "endpoint_id": ep["uid"]})
        event = proj.publish(ep["uid"], "order.paid")
        out[owner] = {"endpoint": ep, "subscription": sub, "event": event}
    caster = proj.ok("POST", "/api-keys", 201, json={"role": "publisher", "broadcast": True})
    broadcast = _as(proj, caster["key"]).ok(
        "POST", "/events/broadcast", 201, json={"event_type": "order.paid", "data": {"b": 1}}
    )
    out["broadcast"] = broadcast
    receiver.wait_for("/acme", 2)
    receiver.wait_for("/globex", 2)

    def delivered() -> bool:
        ds = proj.deliveries()
        return len(ds) == 4 and all(d["status"] == "Success" for d in ds)

    assert wait_until(delivered)
    for owner in ("acme", "globex"):
        ep_id = out[owner]["endpoint"]["uid"]
        [single] = proj.deliveries(endpointId=ep_id, eventId=out[owner]["event"]["uid"])
        out[owner]["delivery"] = single
        out[owner]["attempt"] = proj.ok(
            "GET", f"/eventdeliveries/{single['uid']}/deliveryattempts"
        )[0]
    return out


def _ids(doc: Any) -> str:
    return json.dumps(doc)


def test_a_token_sees_only_its_owner(proj: Project, receiver: Receiver) -> None:
    world = _two_owners(proj, receiver)
    mine, theirs = world["acme"], world["globex"]
    portal = _as(proj, _link(proj, "acme")["token"])
    their_ids = [
        theirs["endpoint"]["uid"],
        theirs["subscription"]["uid"],
        theirs["event"]["uid"],
        theirs["delivery"]["uid"],
        theirs["attempt"]["uid"],
        theirs["endpoint"]["secrets"][0]["value"],
    ]

    def clean(doc: Any) -> Any:
        text = _ids(doc)
        for value in their_ids:
            assert value not in text
        return doc

    endpoints = clean(portal.ok("GET", "/endpoints"))["content"]
    assert [e["uid"] for e in endpoints] == [mine["endpoint"]["uid"]]
    assert endpoints[0]["secrets"][0]["value"] == mine["endpoint"]["secrets"][0]["value"]
    subs = clean(portal.ok("GET", "/subscriptions"))["content"]
    assert [s["uid"] for s in subs] == [mine["subscription"]["uid"]]
    events = clean(portal.ok("GET", "/events"))["content"]
    assert {e["uid"] for e in events} == {mine["event"]["uid"], world["broadcast"]["uid"]}
    assert all(e["api_key_id"] is None for e in events)
    for e in events:
        assert set(e["endpoints"]) <= {mine["endpoint"]["uid"]}
    deliveries = clean(portal.ok("GET", "/eventdeliveries", params={"perPage": 100}))["content"]
    assert {d["endpoint_id"] for d in deliveries} == {mine["endpoint"]["uid"]}
    assert len(deliveries) == 2

    # by id: another owner's answers as a missing one, in every kind
    their_d, their_a = theirs["delivery"]["uid"], theirs["attempt"]["uid"]
    for path, real in (
        (f"/endpoints/{theirs['endpoint']['uid']}", theirs["endpoint"]["uid"]),
        (f"/subscriptions/{theirs['subscription']['uid']}", theirs["subscription"]["uid"]),
        (f"/events/{theirs['event']['uid']}", theirs["event"]["uid"]),
        (f"/eventdeliveries/{their_d}", their_d),
        (f"/eventdeliveries/{their_d}/deliveryattempts", their_d),
        (f"/eventdeliveries/{their_d}/deliveryattempts/{their_a}", their_d),
        (f"/eventdeliveries/{their_d}/deliveryattempts/{their_a}", their_a),
        (f"/eventdeliveries/{mine['delivery']['uid']}/deliveryattempts/{their_a}", their_a),
    ):
        _same_as_missing(portal, "GET", path, real)
    # its own, fine; the broadcast shows no progress (it counts every owner)
    assert portal.ok("GET", f"/endpoints/{mine['endpoint']['uid']}")["owner_id"] == "acme"
    assert portal.ok("GET", f"/subscriptions/{mine['subscription']['uid']}")["uid"]
    assert portal.ok("GET", f"/events/{mine['event']['uid']}")["endpoints"] == [
        mine["endpoint"]["uid"]
    ]
    assert "broadcast" not in portal.ok("GET", f"/events/{world['broadcast']['uid']}")
    assert "broadcast" in proj.ok("GET", f"/events/{world['broadcast']['uid']}")

    # attempts: request header values redacted (signatures, credentials); the response's kept
    attempts = portal.ok("GET", f"/eventdeliveries/{mine['delivery']['uid']}/deliveryattempts")
    full = proj.ok("GET", f"/eventdeliveries/{mine['delivery']['uid']}/deliveryattempts")
    assert len(attempts) == len(full) == 1
    assert set(attempts[0]["request_http_header"]) == set(full[0]["request_http_header"])
    assert set(attempts[0]["request_http_header"].values()) == {"[redacted]"}
    assert any("signature" in name.lower() for name in full[0]["request_http_header"])
    assert attempts[0]["response_http_header"] == full[0]["response_http_header"]
    one = portal.ok(
        "GET",
        f"/eventdeliveries/{mine['delivery']['uid']}/deliveryattempts/{mine['attempt']['uid']}",
    )
    assert set(one["request_http_header"].values()) == {"[redacted]"}

    # filters naming the other owner's things find nothing; pages count only the owner's
    for path, query in (
        ("/endpoints", {"ownerId": "globex"}),
        ("/endpoints", {"q": "globex"}),
        ("/subscriptions", {"endpointId": theirs["endpoint"]["uid"]}),
        ("/events", {"endpointId": theirs["endpoint"]["uid"]}),
        ("/events", {"query": theirs["event"]["uid"]}),
        ("/eventdeliveries", {"endpointId": theirs["endpoint"]["uid"]}),
        ("/eventdeliveries", {"eventId": theirs["event"]["uid"]}),
    ):
        page = portal.ok("GET", path, params=query)
        assert page["content"] == [], (path, query)
        assert page["pagination"]["has_next_page"] is False
    for path in ("/endpoints", "/subscriptions"):
        page = portal.ok("GET", path, params={"perPage": 1})
        assert len(page["content"]) == 1 and page["pagination"]["has_next_page"] is False
    page = portal.ok("GET", "/eventdeliveries", params={"perPage": 1})
    assert page["pagination"]["has_next_page"] is True
    last = portal.ok(
        "GET",
        "/eventdeliveries",
        params={"perPage": 1, "next_page_cursor": page["pagination"]["next_page_cursor"]},
    )
    assert last["pagination"]["has_next_page"] is False and len(last["content"]) == 1
    # the catalog is readable
    assert portal.call("GET", "/event-types").status_code == 200


def test_a_token_is_refused_everything_else(gw: Gateway, proj: Project, receiver: Receiver) -> None:
    world = _two_owners(proj, receiver)
    mine = world["acme"]
    portal = _as(proj, _link(proj, "acme", can_manage_endpoint=True)["token"])
    event_type = proj.ok("POST", "/event-types", 201, json={"name": "order.paid"})
    job = proj.ok("POST", "/eventdeliveries/batchretry")
    key = proj.ok("POST", "/api-keys", 201, json={"role": "viewer"})
    event = {"event_type": "order.paid", "data": {"x": 1}}
    ep_id = mine["endpoint"]["uid"]
    refused = [
        ("POST", "/events", {**event, "endpoint_id": ep_id}),
        ("POST", "/events/fanout", {**event, "owner_id": "acme"}),
        ("POST", "/events/broadcast", event),
        ("POST", "/events/dynamic", {**event, "url": receiver.url + "/x"}),
        ("PUT", f"/events/{mine['event']['uid']}/replay", None),
        ("POST", "/events/batchreplay", None),
        ("POST", "/eventdeliveries/batchretry", None),
        ("GET", f"/batch-jobs/{job['uid']}", None),
        ("GET", "", None),
        ("PUT", "", {"name": "x"}),
        ("GET", "/api-keys", None),
        ("POST", "/api-keys", {"role": "admin"}),
        ("DELETE", f"/api-keys/{key['uid']}", None),
        ("POST", "/event-types", {"name": "x"}),
        ("PUT", f"/event-types/{event_type['uid']}", {"description": "x"}),
        ("POST", f"/event-types/{event_type['uid']}/deprecate", None),
        ("POST", "/event-types/import", {"event_types": [{"name": "x"}]}),
        ("GET", "/portal-links", None),
    ]
    for method, path, body in refused:
        assert _refused(portal, method, path, 403, json=body) == (
            "a portal token may not use this route"
        ), (method, path)
    for method in ("GET", "POST"):
        r = gw.admin(method, "/api/v1/projects", headers={"Authorization": f"Bearer {portal.key}"})
        assert r.status_code == 403, r.text
    assert portal.call("DELETE", "").status_code == 403
    # another project's URL: as for keys, that project does not exist
    other = gw.create_project("other")
    assert _refused(_as(other, portal.key), "GET", "/endpoints", 404) == "project not found"
    assert len(proj.ok("GET", "/events")["content"]) == 3  # nothing published
    assert portal.ok("GET", f"/event-types/{event_type['uid']}")["name"] == "order.paid"


def test_a_read_only_link_manages_nothing(proj: Project, receiver: Receiver) -> None:
    world = _two_owners(proj, receiver)
    mine = world["acme"]
    portal = _as(proj, _link(proj, "acme")["token"])
    ep, sub, delivery = (
        mine["endpoint"]["uid"],
        mine["subscription"]["uid"],
        mine["delivery"]["uid"],
    )
    before = proj.ok("GET", f"/endpoints/{ep}")
    for method, path, body in (
        ("POST", "/endpoints", {"url": receiver.url + "/new"}),
        ("PUT", f"/endpoints/{ep}", {"name": "x"}),
        ("DELETE", f"/endpoints/{ep}", None),
        ("PUT", f"/endpoints/{ep}/pause", None),
        ("POST", f"/endpoints/{ep}/activate", None),
        ("PUT", f"/endpoints/{ep}/expire_secret", {}),
        ("POST", "/subscriptions", {"name": "x", "endpoint_id": ep}),
        ("PUT", f"/subscriptions/{sub}", {"name": "x"}),
        ("PUT", f"/subscriptions/{sub}/toggle_status", None),
        ("DELETE", f"/subscriptions/{sub}", None),
        ("POST", "/subscriptions/test_filter", {"request": {"body": {}}, "schema": {"body": {}}}),
        ("PUT", f"/eventdeliveries/{delivery}/resend", None),
        ("POST", "/eventdeliveries/forceresend", {"ids": [delivery]}),
    ):
        message = _refused(portal, method, path, 403, json=body)
        assert message == "this portal link may not manage endpoints", (method, path)
    after = proj.ok("GET", f"/endpoints/{ep}")
    assert {k: v for k, v in after.items() if k != "circuit_breaker"} == {
        k: v for k, v in before.items() if k != "circuit_breaker"
    }
    assert len(portal.ok("GET", "/subscriptions")["content"]) == 1


def test_a_managing_link_manages_its_own_endpoints_only(
    gw: Gateway, proj: Project, receiver: Receiver
) -> None:
    world = _two_owners(proj, receiver)
    mine, theirs = world["acme"], world["globex"]
    portal = _as(proj, _link(proj, "acme", can_manage_endpoint=True)["token"])
    their_ep = theirs["endpoint"]["uid"]
    their_before = proj.ok("GET", f"/endpoints/{their_ep}")

    # create: the owner is the link's, whatever the body says
    made = portal.ok(
        "POST", "/endpoints", 201, json={"url": receiver.url + "/new", "owner_id": "globex"}
    )
    assert made["owner_id"] == "acme"
    # update: owner_id cannot move it to another owner
    moved = portal.ok(
        "PUT", f"/endpoints/{made['uid']}", 202, json={"name": "n", "owner_id": "globex"}
    )
    assert moved["owner_id"] == "acme" and moved["name"] == "n"
    assert portal.ok("PUT", f"/endpoints/{made['uid']}/pause", 202)["status"] == "paused"
    assert portal.ok("POST", f"/endpoints/{made['uid']}/activate", 202)["status"] == "active"
    rolled = portal.ok("PUT", f"/endpoints/{made['uid']}/expire_secret", json={"expiration": 0})
    assert len(rolled["secrets"]) == 2

    # subscriptions: on its endpoints only; another owner's endpoint is a missing one
    sub = portal.ok("POST", "/subscriptions", 201, json={"name": "s", "endpoint_id": made["uid"]})
    _same_as_missing(
        portal, "POST", "/subscriptions", their_ep, {"name": "s", "endpoint_id": their_ep}
    )
    _same_as_missing(
        portal, "PUT", f"/subscriptions/{sub['uid']}", their_ep, {"endpoint_id": their_ep}
    )
    assert portal.ok("PUT", f"/subscriptions/{sub['uid']}", 202, json={"name": "t"})["name"] == "t"
    portal.ok("PUT", f"/subscriptions/{sub['uid']}/toggle_status", 202)
    assert (
        portal.ok(
            "POST",
            "/subscriptions/test_filter",
            json={"request": {"body": {"a": 1}}, "schema": {"body": {"a": 1}}},
        )
        is True
    )
    portal.ok("DELETE", f"/subscriptions/{sub['uid']}")

    # every change to another owner's endpoint, subscription or delivery: as a missing one
    their_sub, their_d = theirs["subscription"]["uid"], theirs["delivery"]["uid"]
    for method, path, real, body in (
        ("PUT", f"/endpoints/{their_ep}", their_ep, {"name": "evil"}),
        ("DELETE", f"/endpoints/{their_ep}", their_ep, None),
        ("PUT", f"/endpoints/{their_ep}/pause", their_ep, None),
        ("POST", f"/endpoints/{their_ep}/activate", their_ep, None),
        ("PUT", f"/endpoints/{their_ep}/expire_secret", their_ep, {}),
        ("PUT", f"/subscriptions/{their_sub}", their_sub, {"name": "evil"}),
        ("PUT", f"/subscriptions/{their_sub}/toggle_status", their_sub, None),
        ("DELETE", f"/subscriptions/{their_sub}", their_sub, None),
        ("PUT", f"/eventdeliveries/{their_d}/resend", their_d, None),
        ("POST", "/eventdeliveries/forceresend", their_d, {"ids": [their_d]}),
    ):
        _same_as_missing(portal, method, path, real, body)
    their_after = proj.ok("GET", f"/endpoints/{their_ep}")
    assert their_after["secrets"] == their_before["secrets"]
    assert their_after["name"] == their_before["name"] and their_after["status"] == "active"
    assert proj.ok("GET", f"/subscriptions/{their_sub}")["status"] == "active"
    assert proj.ok("GET", f"/eventdeliveries/{their_d}")["status"] == "Success"

    # resend its own: a delivery discarded while the endpoint was paused, and a success
    my_ep = mine["endpoint"]["uid"]
    portal.ok("PUT", f"/endpoints/{my_ep}/pause", 202)
    proj.publish(my_ep, "order.paid", {"n": 2})
    assert wait_until(
        lambda: any(d["status"] == "Discarded" for d in proj.deliveries(endpointId=my_ep))
    )
    [discarded] = [d for d in proj.deliveries(endpointId=my_ep) if d["status"] == "Discarded"]
    portal.ok("POST", f"/endpoints/{my_ep}/activate", 202)
    assert portal.ok("PUT", f"/eventdeliveries/{discarded['uid']}/resend")["status"] == "Scheduled"
    forced = portal.call(
        "POST", "/eventdeliveries/forceresend", json={"ids": [mine["delivery"]["uid"]]}
    )
    assert forced.json()["message"] == "1 successful, 0 failed"
    receiver.wait_for("/acme", 4)

    # delete its own
    portal.ok("DELETE", f"/endpoints/{made['uid']}")
    _refused(portal, "GET", f"/endpoints/{made['uid']}", 404)
    assert [e["owner_id"] for e in proj.ok("GET", "/endpoints")["content"]].count("globex") == 1


def test_changing_the_owner_changes_what_the_token_sees_at_once(
    proj: Project, receiver: Receiver
) -> None:
    acme = proj.endpoint(receiver.url + "/acme", owner_id="acme")
    globex = proj.endpoint(receiver.url + "/globex", owner_id="globex")
    link = _link(proj, "acme", can_manage_endpoint=True)
    portal = _as(proj, link["token"])
    assert [e["uid"] for e in portal.ok("GET", "/endpoints")["content"]] == [acme["uid"]]
    proj.ok("PUT", f"/portal-links/{link['uid']}", 202, json={"owner_id": "globex"})
    assert [e["uid"] for e in portal.ok("GET", "/endpoints")["content"]] == [globex["uid"]]
    proj.ok("PUT", f"/portal-links/{link['uid']}", 202, json={"can_manage_endpoint": False})
    assert portal.call("PUT", f"/endpoints/{globex['uid']}/pause").status_code == 403
