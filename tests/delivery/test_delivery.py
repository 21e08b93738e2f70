"""Delivery against a real local receiver: signatures, retries, deadlines, etiquette."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import orjson
from standardwebhooks.webhooks import Webhook

from support import Behaviour, Gateway, Project, Receiver, wait_until

FAST_RETRY = {"strategy": {"type": "linear", "duration": 1, "retry_count": 3}}


def statuses(project: Project, **query: str) -> list[str]:
    return [d["status"] for d in project.deliveries(**query)]


def wait_status(project: Project, want: str, timeout: float = 15.0, **query: str) -> list[dict]:
    assert wait_until(
        lambda: statuses(project, **query) and all(s == want for s in statuses(project, **query)),
        timeout,
    ), statuses(project, **query)
    return project.deliveries(**query)


def test_delivery_is_signed_both_ways_over_the_exact_bytes(
    project: Project, receiver: Receiver
) -> None:
    ep = project.endpoint(receiver.url + "/signed")
    secret = ep["secrets"][0]["value"]
    data = {"amount": 12.5, "currency": "EUR", "items": [1, 2, 3], "note": "héllo <b>"}
    event = project.publish(
        ep["uid"],
        "invoice.paid",
        data,
        idempotency_key="idem-1",
        custom_headers={"X-Tenant": "acme"},
    )
    [got] = receiver.wait_for("/signed", 1)
    assert orjson.loads(got.body) == data
    # Standard Webhooks, checked by the official library
    Webhook(secret).verify(got.body, {k.lower(): v for k, v in got.headers.items()})
    [delivery] = wait_status(project, "Success")
    assert got.headers["webhook-id"] == delivery["uid"]
    # Convoy advanced: t=<unix>,v1=hex(HMAC(secret, "<unix>," + body))
    sig = got.headers["X-Convoy-Signature"]
    parts = dict(p.split("=", 1) for p in sig.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']},".encode() + got.body, hashlib.sha256)
    assert hmac.compare_digest(parts["v1"], expected.hexdigest())
    assert abs(int(parts["t"]) - time.time()) < 60
    assert got.headers["X-Convoy-Idempotency-Key"] == "idem-1"
    assert got.headers["X-Convoy-Event-ID"] == event["uid"]
    assert got.headers["X-Tenant"] == "acme"
    assert got.headers["Content-Type"] == "application/json"


def test_simple_signature_and_rolled_secret(project: Project, receiver: Receiver) -> None:
    ep = project.endpoint(receiver.url + "/simple", advanced_signatures=False, secret="s3cret")
    project.publish(ep["uid"])
    [got] = receiver.wait_for("/simple", 1)
    want = hmac.new(b"s3cret", got.body, hashlib.sha256).hexdigest()
    assert got.headers["X-Convoy-Signature"] == want
    # roll the secret with an overlap: advanced signatures then carry both
    project.ok("PUT", f"/endpoints/{ep['uid']}", 202, json={"advanced_signatures": True})
    rolled = project.ok(
        "PUT", f"/endpoints/{ep['uid']}/expire_secret", json={"secret": "n3w", "expiration": 3600}
    )
    assert [s["value"] for s in rolled["secrets"]] == ["s3cret", "n3w"]
    project.publish(ep["uid"])
    got2 = receiver.wait_for("/simple", 2)[1]
    sig = got2.headers["X-Convoy-Signature"]
    t = sig.split(",")[0].removeprefix("t=")
    v1s = [p.removeprefix("v1=") for p in sig.split(",")[1:]]
    for secret in (b"s3cret", b"n3w"):
        mac = hmac.new(secret, f"{t},".encode() + got2.body, hashlib.sha256).hexdigest()
        assert mac in v1s
    assert len(got2.headers["webhook-signature"].split(" ")) == 2


def test_retries_with_backoff_until_success(gateway: Gateway, receiver: Receiver) -> None:
    project = gateway.create_project("retry", FAST_RETRY)
    receiver.behave("/flaky", Behaviour(500), Behaviour(503), Behaviour(200))
    ep = project.endpoint(receiver.url + "/flaky")
    project.publish(ep["uid"])
    [d] = wait_status(project, "Success")
    got = receiver.at("/flaky")
    assert len(got) == 3
    assert len({r.headers["webhook-id"] for r in got}) == 1  # stable id across retries
    assert got[1].at - got[0].at >= 0.9  # linear backoff of 1 s
    attempts = project.ok("GET", f"/eventdeliveries/{d['uid']}/deliveryattempts")
    assert [a["http_status"] for a in attempts] == [
        "500 Internal Server Error",
        "503 Service Unavailable",
        "200 OK",
    ]
    assert [a.get("status", False) for a in attempts] == [False, False, True]
    one = project.ok("GET", f"/eventdeliveries/{d['uid']}/deliveryattempts/{attempts[0]['uid']}")
    assert one["uid"] == attempts[0]["uid"] and one["response_data"] == '{"ok":true}'
    assert d["metadata"]["num_trials"] == 3


def test_exhausted_retries_fail_then_resend_delivers(gateway: Gateway, receiver: Receiver) -> None:
    project = gateway.create_project("fail", FAST_RETRY)
    receiver.behave("/down", Behaviour(500))
    ep = project.endpoint(receiver.url + "/down")
    project.publish(ep["uid"])
    [d] = wait_status(project, "Failure")
    assert len(receiver.at("/down")) == 3
    not_again = project.call("PUT", f"/eventdeliveries/{d['uid']}/resend")
    receiver.behave("/down", Behaviour(200))
    assert not_again.status_code == 200
    wait_status(project, "Success")
    assert len(receiver.at("/down")) == 4
    again = project.call("PUT", f"/eventdeliveries/{d['uid']}/resend")
    assert again.status_code == 400 and again.json()["message"] == "event already sent"
    forced = project.call("POST", "/eventdeliveries/forceresend", json={"ids": [d["uid"]]})
    assert forced.status_code == 200 and forced.json()["message"] == "1 successful, 0 failed"
    receiver.wait_for("/down", 5)


def test_redirects_are_failures_and_never_followed(gateway: Gateway, receiver: Receiver) -> None:
    project = gateway.create_project("redirect", {"strategy": {"retry_count": 1}})
    receiver.behave("/moved", Behaviour(302, headers={"Location": receiver.url + "/elsewhere"}))
    ep = project.endpoint(receiver.url + "/moved")
    project.publish(ep["uid"])
    [d] = wait_status(project, "Failure")
    assert receiver.at("/elsewhere") == []
    [a] = project.ok("GET", f"/eventdeliveries/{d['uid']}/deliveryattempts")
    assert a["http_status"] == "302 Found"


def test_attempt_deadline_covers_a_hang_and_a_slow_drip(
    gateway: Gateway, receiver: Receiver
) -> None:
    project = gateway.create_project("slow", {"strategy": {"retry_count": 1}})
    receiver.behave("/hang", Behaviour(delay_s=4))
    receiver.behave("/drip", Behaviour(body=b"x" * 50, drip_s=0.1))
    hang = project.endpoint(receiver.url + "/hang", http_timeout=1)
    drip = project.endpoint(receiver.url + "/drip", http_timeout=1)
    project.publish(hang["uid"])
    project.publish(drip["uid"])
    wait_status(project, "Failure", timeout=10)
    for d in project.deliveries():
        [a] = project.ok("GET", f"/eventdeliveries/{d['uid']}/deliveryattempts")
        assert a["error"].startswith("timeout"), a
        took = _parse(a["responded_at"]) - _parse(a["requested_at"])
        assert took < 3.0, a  # bounded by the 1 s deadline, not the 4 s the receiver wanted


def test_response_bytes_are_capped(gateway: Gateway, project: Project, receiver: Receiver) -> None:
    receiver.behave("/huge", Behaviour(body=b"y" * 5_000_000))
    ep = project.endpoint(receiver.url + "/huge")
    project.publish(ep["uid"])
    [d] = wait_status(project, "Success")
    [a] = project.ok("GET", f"/eventdeliveries/{d['uid']}/deliveryattempts")
    assert len(a["response_data"]) == gateway.settings.response_capture_bytes


def test_gone_disables_the_endpoint_and_holds_what_follows(
    gateway: Gateway, project: Project, receiver: Receiver
) -> None:
    receiver.behave("/gone", Behaviour(410))
    ep = project.endpoint(receiver.url + "/gone")
    project.publish(ep["uid"])
    # the delivery that met the 410 is held too (attempts remain), not failed
    [gone] = wait_status(project, "Retry")
    assert gone["held"] is True and "410" in gone["description"]
    endpoint = project.ok("GET", f"/endpoints/{ep['uid']}")
    assert endpoint["status"] == "inactive" and endpoint["disabled_reason"] == "gone"
    assert endpoint["probe_at"] is not None  # it will be probed: self-healing
    project.publish(ep["uid"])
    time.sleep(0.5)
    held = [d for d in project.deliveries() if d["status"] == "Scheduled"]
    assert len(held) == 1 and held[0]["held"] is True
    assert held[0]["metadata"]["next_send_time"] is None
    assert len(receiver.at("/gone")) == 1  # nothing sent while disabled
    # an operator re-enables it: both held deliveries go out
    receiver.behave("/gone", Behaviour(200))
    project.ok("POST", f"/endpoints/{ep['uid']}/activate", 202)
    receiver.wait_for("/gone", 3)
    wait_status(project, "Success")


def test_paused_endpoint_gets_discarded_deliveries(project: Project, receiver: Receiver) -> None:
    ep = project.endpoint(receiver.url + "/paused")
    project.ok("PUT", f"/endpoints/{ep['uid']}/pause", 202)
    project.publish(ep["uid"])
    [d] = project.deliveries()
    assert d["status"] == "Discarded"
    r = project.call("PUT", f"/eventdeliveries/{d['uid']}/resend")
    assert r.status_code == 400  # the endpoint must be active first
    project.ok("POST", f"/endpoints/{ep['uid']}/activate", 202)
    project.ok("PUT", f"/eventdeliveries/{d['uid']}/resend")
    receiver.wait_for("/paused", 1)
    wait_status(project, "Success")


def test_form_encoded_endpoint_gets_form_body_signed(project: Project, receiver: Receiver) -> None:
    ep = project.endpoint(receiver.url + "/form", content_type="application/x-www-form-urlencoded")
    project.publish(ep["uid"], data={"a": "1", "b": {"c": 2}})
    [got] = receiver.wait_for("/form", 1)
    assert got.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert got.body == b"a=1&b=%7B%22c%22%3A2%7D"
    # the official library insists on JSON bodies, so check the v1 signature by hand
    key = base64.b64decode(ep["secrets"][0]["value"].removeprefix("whsec_"))
    signed = f"{got.headers['webhook-id']}.{got.headers['webhook-timestamp']}.".encode() + got.body
    want = "v1," + _b64(hmac.new(key, signed, hashlib.sha256).digest())
    assert got.headers["webhook-signature"] == want


def test_endpoint_auth_header_is_sent_and_not_logged(project: Project, receiver: Receiver) -> None:
    ep = project.endpoint(
        receiver.url + "/auth",
        authentication={
            "type": "api_key",
            "api_key": {"header_name": "X-Api-Key", "header_value": "topsecret"},
        },
    )
    project.publish(ep["uid"])
    [got] = receiver.wait_for("/auth", 1)
    assert got.headers["X-Api-Key"] == "topsecret"
    [d] = wait_status(project, "Success")
    [a] = project.ok("GET", f"/eventdeliveries/{d['uid']}/deliveryattempts")
    assert a["request_http_header"]["X-Api-Key"] == "[redacted]"


def test_duplicate_idempotency_key_is_not_delivered(project: Project, receiver: Receiver) -> None:
    ep = project.endpoint(receiver.url + "/idem")
    first = project.publish(ep["uid"], idempotency_key="once")
    second = project.call(
        "POST",
        "/events",
        json={"endpoint_id": ep["uid"], "event_type": "x", "data": {}, "idempotency_key": "once"},
    )
    assert second.status_code == 201 and second.json()["data"]["is_duplicate_event"] is True
    receiver.wait_for("/idem", 1)
    time.sleep(0.3)
    assert len(receiver.at("/idem")) == 1
    events = project.ok("GET", "/events")["content"]
    assert sorted(e["is_duplicate_event"] for e in events) == [False, True]
    assert first["is_duplicate_event"] is False


def _parse(stamp: str) -> float:
    from datetime import datetime

    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_ed25519_endpoint_signs_v1a_with_a_retrievable_public_key(
    project: Project, receiver: Receiver
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    ep = project.endpoint(receiver.url + "/v1a", signature_scheme="ed25519")
    assert ep["secrets"][0]["value"].startswith("whsk_")
    [public] = project.ok("GET", f"/endpoints/{ep['uid']}")["public_keys"]
    project.publish(ep["uid"], data={"hello": "world"})
    [got] = receiver.wait_for("/v1a", 1)
    kind, sig = got.headers["webhook-signature"].split(",", 1)
    assert kind == "v1a"
    signed = f"{got.headers['webhook-id']}.{got.headers['webhook-timestamp']}.".encode() + got.body
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public.removeprefix("whpk_")))
    key.verify(base64.b64decode(sig), signed)  # raises if the signature is wrong
    assert "X-Convoy-Signature" not in got.headers  # no HMAC secret to sign with
