"""Global broadcast: authorization, exact routing across owners, chunking, progress."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import requests

from support import Gateway, Project, Receiver, make_settings, wait_until

EVENT = {"event_type": "invoice.paid", "data": {"amount": 50, "currency": "EUR"}}


def broadcaster(project: Project) -> Project:
    key = project.ok("POST", "/api-keys", 201, json={"name": "b", "broadcast": True})["key"]
    return Project(project.gateway, project.id, key)


def test_only_keys_granted_broadcast_may_broadcast(project: Project) -> None:
    r = project.call("POST", "/events/broadcast", json=EVENT)
    assert r.status_code == 403
    assert "broadcast permission" in r.json()["message"]
    # the refusal names the command that makes a key that may broadcast
    assert f"hookcast apikey create --project {project.id} --broadcast" in r.json()["message"]
    publisher = project.ok("POST", "/api-keys", 201, json={"role": "publisher"})["key"]
    r = Project(project.gateway, project.id, publisher).call(
        "POST", "/events/broadcast", json=EVENT
    )
    assert r.status_code == 403
    viewer = project.ok("POST", "/api-keys", 201, json={"role": "viewer", "broadcast": True})
    r = Project(project.gateway, project.id, viewer["key"]).call(
        "POST", "/events/broadcast", json=EVENT
    )
    assert r.status_code == 403  # the grant rides on a role that may publish
    assert project.ok("GET", "/events")["content"] == []
    b = broadcaster(project)
    created = b.ok("POST", "/events/broadcast", 201, json=EVENT)
    assert created["uid"] and created["kind"] == "broadcast"
    event = b.ok("GET", f"/events/{created['uid']}")
    assert event["api_key_id"] == created["api_key_id"] and event["api_key_id"]


def _expected_targets(project: Project, receiver: Receiver, n: int) -> set[str]:
    """Endpoints across many owners with a mix of subscriptions; returns the paths that
    the broadcast of EVENT must reach."""
    want: set[str] = set()
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {project.key}"

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = s.post(project.base + path, json=body, timeout=10)
        assert r.status_code == 201, r.text
        return r.json()["data"]  # type: ignore[no-any-return]

    def sub(endpoint_id: str, types: list[str], body: dict[str, Any] | None = None) -> None:
        fc: dict[str, Any] = {"event_types": types}
        if body:
            fc["filter"] = {"body": body}
        post("/subscriptions", {"name": "s", "endpoint_id": endpoint_id, "filter_config": fc})

    for i in range(n):
        path = f"/b/{i}"
        ep = post(
            "/endpoints", {"url": receiver.url + path, "name": path, "owner_id": f"o{i % 150}"}
        )
        kind = i % 8
        if kind == 0:
            sub(ep["uid"], ["*"])
            want.add(path)
        elif kind == 1:
            sub(ep["uid"], ["invoice.*"])
            want.add(path)
        elif kind == 2:
            sub(ep["uid"], ["user.created"])
        elif kind == 3:
            sub(ep["uid"], ["invoice.paid"], {"amount": {"$gte": 100}})
        elif kind == 4:
            sub(ep["uid"], ["invoice.paid"], {"amount": {"$lt": 100}, "currency": {"$in": ["EUR"]}})
            want.add(path)
        elif kind == 5:  # two matching subscriptions: still one delivery
            sub(ep["uid"], ["*"])
            sub(ep["uid"], ["invoice.paid"])
            want.add(path)
        elif kind == 6:  # matching but paused: skipped
            sub(ep["uid"], ["*"])
            s.put(f"{project.base}/endpoints/{ep['uid']}/pause", timeout=10)
        # kind 7: no subscription at all: nothing
    return want


def test_broadcast_reaches_exactly_the_matching_endpoints_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    gateway = Gateway(make_settings(str(tmp_path / "b.db"), fanout_chunk=64))
    try:
        project = gateway.create_project("bc", {"multiple_endpoint_subscriptions": True})
        want = _expected_targets(project, receiver, 1200)
        b = broadcaster(project)
        created = b.ok("POST", "/events/broadcast", 201, json=EVENT)
        assert wait_until(lambda: sum(len(receiver.at(p)) for p in want) >= len(want), 60)

        def progress() -> dict[str, Any]:
            return b.ok("GET", f"/events/{created['uid']}")["broadcast"]  # type: ignore[no-any-return]

        assert wait_until(lambda: progress()["succeeded"] == len(want), 20), progress()
        time.sleep(0.3)
        got = [r.path for r in receiver.received]
        assert sorted(got) == sorted(want)  # everyone who should, once; nobody else
        p = progress()
        assert p["fanout_done"] is True
        assert p["deliveries_written"] == len(want) and p["skipped"] == 150
        assert p["targets_matched"] == len(want) + 150
        assert p["failed"] == 0 and p["pending"] == 0
        assert (
            p["latency_ms"]["p50"] is not None and p["latency_ms"]["p99"] >= p["latency_ms"]["p50"]
        )
        assert p["delivery_rate_per_s"] is None or p["delivery_rate_per_s"] > 0
        event = b.ok("GET", f"/events/{created['uid']}")
        assert event["status"] == "Success"
    finally:
        gateway.stop()


def test_subscription_changes_are_honoured_at_once(project: Project, receiver: Receiver) -> None:
    b = broadcaster(project)
    ep = project.endpoint(receiver.url + "/late")
    sub = project.ok(
        "POST",
        "/subscriptions",
        201,
        json={"name": "s", "endpoint_id": ep["uid"], "filter_config": {"event_types": ["other"]}},
    )
    project.ok(
        "PUT",
        f"/subscriptions/{sub['uid']}",
        202,
        json={"filter_config": {"event_types": ["invoice.paid"]}},
    )
    b.ok("POST", "/events/broadcast", 201, json=EVENT)  # immediately after the change
    assert len(receiver.wait_for("/late", 1)) == 1
    project.ok("DELETE", f"/subscriptions/{sub['uid']}")
    created = b.ok("POST", "/events/broadcast", 201, json=EVENT)
    assert wait_until(lambda: b.ok("GET", f"/events/{created['uid']}")["status"] == "Failure", 10)
    assert len(receiver.at("/late")) == 1


def test_broadcast_idempotency_key(project: Project, receiver: Receiver) -> None:
    b = broadcaster(project)
    ep = project.endpoint(receiver.url + "/once")
    project.ok("POST", "/subscriptions", 201, json={"name": "s", "endpoint_id": ep["uid"]})
    first = b.ok("POST", "/events/broadcast", 201, json={**EVENT, "idempotency_key": "k"})
    again = b.call("POST", "/events/broadcast", json={**EVENT, "idempotency_key": "k"})
    assert again.status_code == 201 and again.json()["data"]["is_duplicate_event"] is True
    assert first["is_duplicate_event"] is False
    receiver.wait_for("/once", 1)
    time.sleep(0.5)
    assert len(receiver.at("/once")) == 1


def test_broadcast_rate_spreads_releases(gateway: Gateway, receiver: Receiver) -> None:
    project = gateway.create_project("rate", {"broadcast_rate": 50})
    b = broadcaster(project)
    for i in range(20):
        ep = project.endpoint(f"{receiver.url}/r/{i}")
        project.ok("POST", "/subscriptions", 201, json={"name": "s", "endpoint_id": ep["uid"]})
    b.ok("POST", "/events/broadcast", 201, json=EVENT)
    assert wait_until(lambda: len(receiver.received) >= 20, 10)
    times = sorted(r.at for r in receiver.received)
    # 20 deliveries at 50/s take about 0.38 s from first to last; unthrottled they take ms
    assert times[-1] - times[0] >= 0.3
