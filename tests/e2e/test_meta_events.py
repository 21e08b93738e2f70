"""Meta events: signed operator webhooks about hookcast itself, to a real local receiver."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from standardwebhooks import Webhook

from support import Behaviour, Gateway, Project, Received, Receiver, make_settings, wait_until

SECRET = "whsec_" + base64.b64encode(b"meta-events-secret-0123456789abc").decode()


def meta_config(receiver: Receiver, **overrides: Any) -> dict[str, Any]:
    return {
        "is_enabled": True,
        "url": receiver.url + "/meta",
        "secret": SECRET,
        **overrides,
    }


@pytest.fixture
def fast_gateway(tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(make_settings(str(tmp_path / "meta.db"), meta_event_backoff_s=0.05))
    yield gw
    gw.stop()


def meta_events(receiver: Receiver, event_type: str | None = None) -> list[dict[str, Any]]:
    docs = [orjson.loads(r.body) for r in receiver.at("/meta")]
    return [d for d in docs if event_type is None or d["event_type"] == event_type]


def wait_for_meta(receiver: Receiver, event_type: str, count: int = 1) -> list[dict[str, Any]]:
    assert wait_until(lambda: len(meta_events(receiver, event_type)) >= count, 15), [
        d["event_type"] for d in meta_events(receiver)
    ]
    return meta_events(receiver, event_type)


def assert_signed(received: Received) -> None:
    """Convoy's header (hex HMAC-SHA256 of the body, the secret's bytes as key) and the
    Standard Webhooks headers, checked with the reference library."""
    want = hmac.new(SECRET.encode(), received.body, hashlib.sha256).hexdigest()
    assert received.headers["X-Convoy-Signature"] == want
    Webhook(SECRET).verify(received.body, received.headers)
    assert received.headers["X-Hookcast-Meta-Event"] == orjson.loads(received.body)["event_type"]


def test_endpoint_disabled_and_final_failure_are_reported_signed(
    fast_gateway: Gateway, receiver: Receiver
) -> None:
    project = fast_gateway.create_project(
        "meta", {"strategy": {"retry_count": 1}, "meta_event": meta_config(receiver)}
    )
    receiver.behave("/gone", Behaviour(status=410))
    receiver.behave("/fail", Behaviour(status=500))
    gone = project.endpoint(receiver.url + "/gone", name="gone one")
    fail = project.endpoint(receiver.url + "/fail")
    project.publish(gone["uid"], "order.created")
    published = project.publish(fail["uid"], "order.paid")

    (disabled,) = wait_for_meta(receiver, "endpoint.disabled")
    assert disabled["project_id"] == project.id
    assert disabled["data"]["endpoint_id"] == gone["uid"]
    assert disabled["data"]["reason"] == "gone"
    assert disabled["data"]["name"] == "gone one"

    failed = wait_for_meta(receiver, "delivery.failed", 2)
    by_endpoint = {d["data"]["endpoint_id"]: d["data"] for d in failed}
    assert by_endpoint[fail["uid"]]["http_status"] == 500
    assert by_endpoint[fail["uid"]]["event_id"] == published["uid"]
    assert by_endpoint[fail["uid"]]["event_type"] == "order.paid"
    assert by_endpoint[fail["uid"]]["attempts"] == 1
    assert by_endpoint[gone["uid"]]["http_status"] == 410
    for received in receiver.at("/meta"):
        assert_signed(received)
    uids = [d["uid"] for d in meta_events(receiver)]
    assert len(set(uids)) == len(uids) == 3


def test_only_the_chosen_types_are_sent_and_nothing_when_disabled(
    fast_gateway: Gateway, receiver: Receiver
) -> None:
    chosen = fast_gateway.create_project(
        "chosen",
        {
            "strategy": {"retry_count": 1},
            # Convoy's spelling of the list is accepted too
            "meta_event": meta_config(receiver, event_type=["endpoint.disabled"]),
        },
    )
    off = fast_gateway.create_project(
        "off", {"meta_event": {**meta_config(receiver), "is_enabled": False}}
    )
    receiver.behave("/gone", Behaviour(status=410))
    receiver.behave("/gone-too", Behaviour(status=410))
    chosen.publish(chosen.endpoint(receiver.url + "/gone")["uid"])
    off.publish(off.endpoint(receiver.url + "/gone-too")["uid"])
    wait_for_meta(receiver, "endpoint.disabled")
    receiver.wait_for("/gone-too", 1)
    time.sleep(0.3)  # let anything that should not come have its chance to
    assert [d["event_type"] for d in meta_events(receiver)] == ["endpoint.disabled"]
    assert meta_events(receiver)[0]["project_id"] == chosen.id


def test_endpoint_enabled_after_a_successful_probe(
    fast_gateway: Gateway, receiver: Receiver
) -> None:
    project = fast_gateway.create_project("probe", {"meta_event": meta_config(receiver)})
    receiver.behave("/flaky", Behaviour(status=410), Behaviour(status=200))
    ep = project.endpoint(receiver.url + "/flaky")
    project.publish(ep["uid"])
    wait_for_meta(receiver, "endpoint.disabled")
    # the first probe is 30 s away: bring it forward instead of waiting
    store = fast_gateway._running.store.records
    fast_gateway._thread.run(store.reschedule_probe(ep["uid"], time.time_ns() // 1000, 0))
    (enabled,) = wait_for_meta(receiver, "endpoint.enabled")
    assert enabled["data"]["endpoint_id"] == ep["uid"]
    assert enabled["data"]["by"] == "probe"
    assert_signed(receiver.at("/meta")[-1])
    assert project.ok("GET", f"/endpoints/{ep['uid']}")["status"] == "active"


def test_broadcast_completed_carries_its_summary(fast_gateway: Gateway, receiver: Receiver) -> None:
    project = fast_gateway.create_project(
        "bc", {"strategy": {"retry_count": 1}, "meta_event": meta_config(receiver)}
    )
    receiver.behave("/b2", Behaviour(status=400))
    for i in range(4):
        ep = project.endpoint(f"{receiver.url}/b{i}")
        body = {"name": "all", "endpoint_id": ep["uid"], "filter_config": {"event_types": ["*"]}}
        project.ok("POST", "/subscriptions", 201, json=body)
    key = project.ok("POST", "/api-keys", 201, json={"name": "b", "broadcast": True})["key"]
    broadcaster = Project(fast_gateway, project.id, key)
    event = broadcaster.ok(
        "POST", "/events/broadcast", 201, json={"event_type": "news", "data": {"n": 1}}
    )
    (completed,) = wait_for_meta(receiver, "broadcast.completed")
    summary = completed["data"]
    assert summary["event_id"] == event["uid"]
    assert summary["event_type"] == "news"
    assert summary["matched"] == 4 and summary["skipped"] == 0
    # complete means final, failures included
    assert summary["statuses"] == {"Success": 3, "Failure": 1}
    assert summary["latency_ms"]["p50"] is not None
    assert_signed(receiver.at("/meta")[-1])


def test_a_failing_operator_receiver_gets_a_bounded_number_of_tries(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(
        str(tmp_path / "tries.db"), meta_event_attempts=3, meta_event_backoff_s=0.02
    )
    gateway = Gateway(settings)
    try:
        project = gateway.create_project(
            "tries", {"strategy": {"retry_count": 1}, "meta_event": meta_config(receiver)}
        )
        receiver.behave("/meta", Behaviour(status=503))
        receiver.behave("/fail", Behaviour(status=500))
        project.publish(project.endpoint(receiver.url + "/fail")["uid"])
        receiver.wait_for("/meta", 3)
        time.sleep(0.4)
        tries = receiver.at("/meta")
        assert len(tries) == 3
        assert len({orjson.loads(r.body)["uid"] for r in tries}) == 1  # one event, retried
        text = requests.get(gateway.base + "/metrics", timeout=10).text
        assert (
            'hookcast_meta_events_total{event_type="delivery.failed",result="failed"} 1.0' in text
        )
    finally:
        gateway.stop()


@pytest.mark.parametrize(
    ("meta", "problem"),
    [
        ({"is_enabled": True, "secret": "s"}, "please provide the endpoint url"),
        ({"is_enabled": True, "url": "ftp://x/y", "secret": "s"}, "http or https"),
        ({"is_enabled": True, "url": "http://x/y"}, "needs a secret"),
        ({"event_types": ["endpoint.exploded"]}, "unknown meta event types"),
    ],
)
def test_meta_event_settings_are_validated(
    gateway: Gateway, project: Project, meta: dict[str, Any], problem: str
) -> None:
    r = project.call("PUT", "", json={"config": {"meta_event": meta}})
    assert r.status_code == 400, r.text
    assert problem in r.json()["message"]


def test_meta_event_settings_round_trip(project: Project, receiver: Receiver) -> None:
    config = meta_config(receiver, event_types=["delivery.failed", "broadcast.completed"])
    project.ok("PUT", "", 202, json={"config": {"meta_event": config}})
    got = project.ok("GET", "")["config"]["meta_event"]
    # the secret is write-only: read back redacted, and sending it back keeps it
    assert got == {**config, "type": "http", "secret": "[redacted]"}
    project.ok("PUT", "", 202, json={"config": {"meta_event": got}})
