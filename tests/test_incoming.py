"""Incoming webhooks end to end: a third party POSTs to a source's ingest URL
(``/ingest/{mask_id}``), hookcast verifies, stores durably, and delivers to a real local
receiver through a subscription naming that source. On a SQLite file and on PostgreSQL.

The signatures are made here with GitHub's and Stripe's documented algorithms. Covered:
the raw body kept and delivered byte for byte, headers/path/query on the event, the
event type from a location, filters, bad signatures and replays (401, counted, nothing
stored), duplicates by idempotency key (stored, delivered once), custom responses, 413,
unknown and disabled masks (404), the per-source rate limit (429).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from pg_support import fresh_database
from support import Gateway, Project, Receiver, make_settings, wait_until

GH_SECRET = b"gh-secret"
STRIPE_SECRET = b"whsec_test_stripe"
#: a body whose spacing, key order and escapes a re-serialisation would change
RAW = b'{ "zen":"Keep it logically awesome.",\n  "hook_id" : 1, "x":"\\u00e9\xc3\xa9", "n":1.50}'


@pytest.fixture(params=["sqlite", "postgres"])
def gw(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gateway]:
    overrides = {"max_body_bytes": 4096}
    if request.param == "sqlite":
        gateway = Gateway(make_settings(str(tmp_path / "hookcast.db"), **overrides))
        try:
            yield gateway
        finally:
            gateway.stop()
    else:
        with fresh_database("hookcast_incoming") as url:
            gateway = Gateway(make_settings("unused", database_url=url, **overrides))
            try:
                yield gateway
            finally:
                gateway.stop()


def incoming_project(gw: Gateway) -> Project:
    r = gw.admin("POST", "/api/v1/projects", json={"name": "in", "type": "incoming"})
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    return Project(gw, data["project"]["uid"], data["api_key"]["key"])


@pytest.fixture
def proj(gw: Gateway) -> Project:
    return incoming_project(gw)


def github_source(p: Project, **extra: Any) -> dict[str, Any]:
    body = {
        "name": "github",
        "type": "http",
        "provider": "github",
        "verifier": {"type": "hmac", "hmac": {"secret": GH_SECRET.decode()}},
        "idempotency_keys": ["request.header.X-GitHub-Delivery"],
        "event_type_location": "request.header.X-GitHub-Event",
        **extra,
    }
    return p.ok("POST", "/sources", 201, json=body)  # type: ignore[no-any-return]


def subscribe(p: Project, source: dict[str, Any], url: str, **filters: Any) -> dict[str, Any]:
    endpoint = p.endpoint(url)
    body: dict[str, Any] = {"name": url, "endpoint_id": endpoint["uid"], "source_id": source["uid"]}
    if filters:
        body["filter_config"] = filters
    return p.ok("POST", "/subscriptions", 201, json=body)  # type: ignore[no-any-return]


def github_post(
    source: dict[str, Any], body: bytes, *, event: str = "push", delivery: str = "d-1", **kw: Any
) -> requests.Response:
    # docs.github.com, "Validating webhook deliveries": X-Hub-Signature-256 is
    # "sha256=" + the hex HMAC-SHA256 of the payload with the webhook's secret
    signature = "sha256=" + hmac.new(GH_SECRET, body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": signature,
        **kw.pop("headers", {}),
    }
    return requests.post(source["url"], data=body, headers=headers, timeout=10, **kw)


def stripe_post(source: dict[str, Any], body: bytes, t: int) -> requests.Response:
    # stripe.com/docs/webhooks#verify-manually: v1 = hex HMAC-SHA256 of "{t}.{payload}"
    v1 = hmac.new(STRIPE_SECRET, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "Stripe-Signature": f"t={t},v1={v1}"}
    return requests.post(source["url"], data=body, headers=headers, timeout=10)


def events(p: Project, **query: Any) -> list[dict[str, Any]]:
    return p.ok("GET", "/events", params={"perPage": 100, **query})["content"]  # type: ignore[no-any-return]


def failures(gw: Gateway, source_id: str) -> float:
    text = requests.get(f"{gw.base}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("hookcast_source_verification_failures_total{") and source_id in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_github_push_is_stored_and_delivered_byte_for_byte(
    gw: Gateway, proj: Project, receiver: Receiver
) -> None:
    source = github_source(proj)
    subscribe(proj, source, receiver.url + "/gh")
    r = github_post(source, RAW, params={"tenant": "a b"})
    assert r.status_code == 200, r.text
    assert r.json() == {"status": True, "message": "Event received", "data": len(RAW)}
    got = receiver.wait_for("/gh", 1)
    assert len(got) == 1
    assert got[0].body == RAW  # byte for byte
    assert got[0].headers["X-GitHub-Event"] == "push"  # incoming headers go along (as Convoy)
    [event] = events(proj, sourceId=source["uid"])
    assert event["source_id"] == source["uid"]
    assert event["event_type"] == "push"
    assert event["url_path"] == f"/ingest/{source['mask_id']}"
    assert event["url_query_params"] == "tenant=a+b"
    assert event["headers"]["X-GitHub-Delivery"] == ["d-1"]
    assert "Host" not in event["headers"] and "Content-Length" not in event["headers"]
    assert event["is_duplicate_event"] is False and event["status"] == "Success"
    raw_event = proj.call("GET", f"/events/{event['uid']}").content
    assert RAW in raw_event  # the stored data is the raw body itself
    assert events(proj, sourceId="01ARZ3NDEKTSV4RRFFQ69G5FAV") == []


def test_stripe_signed_request_replay_and_bad_signatures(
    gw: Gateway, proj: Project, receiver: Receiver
) -> None:
    source = proj.ok(
        "POST",
        "/sources",
        201,
        json={
            "name": "stripe",
            "type": "http",
            "provider": "stripe",
            "verifier": {"type": "hmac", "hmac": {"secret": STRIPE_SECRET.decode()}},
            "idempotency_keys": ["request.body.id"],
            "event_type_location": "request.body.type",
        },
    )
    subscribe(proj, source, receiver.url + "/stripe")
    body = b'{"id":"evt_1","type":"invoice.paid","data":{"object":{"id":"in_1"}}}'
    now = int(time.time())
    ok = stripe_post(source, body, now)
    assert ok.status_code == 200, ok.text
    [got] = receiver.wait_for("/stripe", 1)
    assert got.body == body
    [event] = events(proj)
    assert event["event_type"] == "invoice.paid"
    # the same request replayed 10 minutes later, its signature intact: refused
    replay = stripe_post(source, b'{"id":"evt_2","type":"x"}', now - 600)
    assert replay.status_code == 401
    assert "replayed" in replay.json()["message"] and replay.json()["status"] is False
    # a signature made with another secret, and a tampered body
    v1 = hmac.new(b"other", f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    forged = requests.post(
        source["url"], data=body, headers={"Stripe-Signature": f"t={now},v1={v1}"}, timeout=10
    )
    assert forged.status_code == 401
    unsigned = requests.post(source["url"], data=body, timeout=10)
    assert unsigned.status_code == 401
    assert len(events(proj)) == 1  # nothing refused was stored
    assert failures(gw, source["uid"]) == 3


def test_bad_github_signature_is_refused_and_counted(gw: Gateway, proj: Project) -> None:
    source = github_source(proj)
    before = failures(gw, source["uid"])
    r = github_post(source, RAW, headers={"X-Hub-Signature-256": "sha256=" + "0" * 64})
    assert r.status_code == 401 and r.json()["status"] is False
    assert "does not match" in r.json()["message"]
    assert GH_SECRET.decode() not in r.text
    assert events(proj) == []
    assert failures(gw, source["uid"]) == before + 1


def test_duplicates_by_idempotency_key_are_stored_once_as_delivered(
    gw: Gateway, proj: Project, receiver: Receiver
) -> None:
    source = github_source(proj)
    subscribe(proj, source, receiver.url + "/dup")
    for _ in range(3):  # GitHub redelivers with the same X-GitHub-Delivery
        assert github_post(source, RAW, delivery="same").status_code == 200
    assert github_post(source, RAW, delivery="other").status_code == 200
    stored = events(proj)
    assert len(stored) == 4
    duplicates = [e for e in stored if e["is_duplicate_event"]]
    assert len(duplicates) == 2
    keys = {e["idempotency_key"] for e in stored}
    assert len(keys) == 2 and all(len(k) == 64 for k in keys)  # SHA-256 hex
    receiver.wait_for("/dup", 2)
    assert wait_until(lambda: len(proj.deliveries()) == 2, 10)
    assert len(receiver.at("/dup")) == 2  # the duplicates were never sent


def test_routing_by_source_and_filters(gw: Gateway, proj: Project, receiver: Receiver) -> None:
    github = github_source(proj)
    plain = proj.ok("POST", "/sources", 201, json={"name": "plain", "type": "http"})
    subscribe(proj, github, receiver.url + "/push", event_types=["push"])
    subscribe(
        proj,
        github,
        receiver.url + "/big",
        filter={"body": {"hook_id": {"$gte": 1}}},
    )
    subscribe(proj, plain, receiver.url + "/plain")
    assert github_post(source=github, body=RAW, event="issues", delivery="1").status_code == 200
    assert github_post(source=github, body=RAW, event="push", delivery="2").status_code == 200
    r = requests.post(plain["url"], data=b'{"hook_id":0}', timeout=10)
    assert r.status_code == 200, r.text
    assert len(receiver.wait_for("/big", 2)) == 2
    assert len(receiver.wait_for("/push", 1)) == 1
    [got] = receiver.wait_for("/plain", 1)
    assert got.body == b'{"hook_id":0}'
    assert wait_until(lambda: len(proj.deliveries()) == 4, 10)
    assert len(receiver.at("/push")) == 1 and len(receiver.at("/plain")) == 1


def test_custom_response_and_refusals(gw: Gateway, proj: Project) -> None:
    source = proj.ok(
        "POST",
        "/sources",
        201,
        json={
            "name": "custom",
            "type": "http",
            "custom_response": {"body": "thanks", "content_type": "text/plain"},
        },
    )
    r = requests.post(source["url"], data=b'{"a":1}', timeout=10)
    assert r.status_code == 200 and r.text == "thanks"
    assert r.headers["Content-Type"].startswith("text/plain")
    too_big = b'{"a":"' + b"x" * 5000 + b'"}'
    r = requests.post(source["url"], data=too_big, timeout=10)
    assert r.status_code == 413 and r.json()["status"] is False
    r = requests.post(source["url"], data=b"not json", timeout=10)
    assert r.status_code == 400 and "JSON" in r.json()["message"]
    unknown = requests.post(f"{gw.base}/ingest/nobody-has-this-mask", data=b"{}", timeout=10)
    assert unknown.status_code == 404
    assert unknown.json() == {"status": False, "message": "Source not found"}
    assert len(events(proj)) == 1
    proj.ok("PUT", f"/sources/{source['uid']}", 202, json={"is_disabled": True})
    # other processes and this one's cache follow within a second
    # (polled without a body: refused with 400 while the cache still holds the source)
    gone = f"{gw.base}/ingest/{source['mask_id']}"
    assert wait_until(lambda: requests.post(gone, timeout=10).status_code == 404, 5)
    stored = len(events(proj))
    refused = requests.post(source["url"], data=b'{"a":2}', timeout=10)
    assert refused.status_code == 404 and refused.json()["message"] == "Source not found"
    assert len(events(proj)) == stored


def test_per_source_rate_limit(tmp_path: Path) -> None:
    gw = Gateway(make_settings(str(tmp_path / "rl.db"), api_rate_limit=5))
    try:
        proj = incoming_project(gw)
        source = proj.ok("POST", "/sources", 201, json={"name": "noisy", "type": "http"})
        codes = [
            requests.post(source["url"], data=b'{"n":1}', timeout=10).status_code for _ in range(40)
        ]
        limited = [c for c in codes if c == 429]
        assert codes[0] == 200 and limited, codes
        assert set(codes) == {200, 429}
        r = requests.post(source["url"], data=b'{"n":1}', timeout=10)
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1
            assert r.json() == {"status": False, "message": "exceeded rate limit"}
    finally:
        gw.stop()
