"""convoy-python 0.2.0 (the default ``pip install convoy-python``) as a real client.

Every SDK method returns ``(response.json(), status_code)`` and never looks at either, so
these tests check both: the exact status code the contract gives (convoy-api.md §2, §4)
and the ``{status, message, data}`` envelope (errors carry no ``data`` key). The SDK's
own bugs (convoy-api.md §10.1) are not papered over: ``endpoint.find`` builds a wrong URL,
so all we can ask of the server is that it answers JSON; the signature helper only works
for simple signatures, so that is all it is asked to verify.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest
from convoy import Convoy
from convoy.utils.webhook import Webhook

from support import Behaviour, Gateway, Project, Receiver, wait_until

RETRY_ONCE = {"strategy": {"type": "linear", "duration": 1, "retry_count": 1}}
PAGE = {"perPage": 10, "page": 1}  # the README's query; "page" is legacy and ignored
UNKNOWN_ID = "01J00000000000000000000000"


def sdk_for(gateway: Gateway, project: Project, key: str | None = None) -> Convoy:
    return Convoy(
        {
            "api_key": key or project.key,
            "uri": f"{gateway.base}/api/v1/projects/{project.id}",
            "project_id": project.id,
        }
    )


@pytest.fixture
def sdk(gateway: Gateway, project: Project) -> Convoy:
    return sdk_for(gateway, project)


def ok(result: Any, code: int) -> Any:
    """The SDK's ``(json, status)``: a success envelope with exactly ``code``; returns data."""
    assert isinstance(result, tuple) and len(result) == 2, result
    body, status = result
    assert status == code, f"expected HTTP {code}, got {status}: {body}"
    assert isinstance(body, dict) and set(body) == {"status", "message", "data"}, body
    assert body["status"] is True, body
    assert isinstance(body["message"], str) and body["message"], body
    return body["data"]


def err(result: Any, code: int) -> str:
    """An error envelope ``{status: false, message}`` (no ``data`` key); returns message."""
    assert isinstance(result, tuple) and len(result) == 2, result
    body, status = result
    assert status == code, f"expected HTTP {code}, got {status}: {body}"
    assert isinstance(body, dict) and set(body) == {"status", "message"}, body
    assert body["status"] is False, body
    assert isinstance(body["message"], str) and body["message"], body
    return body["message"]


def no_raise(call: Callable[[], Any]) -> Any:
    """The SDK wraps any failure (a non-JSON body included) in a bare ``Exception``."""
    try:
        return call()
    except Exception as exc:
        pytest.fail(f"the SDK raised {exc!r}: the server must always answer JSON")


def new_endpoint(sdk: Convoy, receiver: Receiver, path: str, **fields: Any) -> dict[str, Any]:
    body = {"url": f"{receiver.url}{path}", "name": path, **fields}
    data: dict[str, Any] = ok(sdk.endpoint.create({}, body), 201)
    return data


def publish(
    sdk: Convoy, endpoint_id: str, event_type: str = "invoice.paid", data: Any = None
) -> Any:
    body = {
        "endpoint_id": endpoint_id,
        "event_type": event_type,
        "data": {"amount": 100} if data is None else data,
    }
    return ok(sdk.event.create({}, body), 201)


def deliveries(sdk: Convoy, **query: Any) -> list[dict[str, Any]]:
    data = ok(sdk.event_delivery.all({**PAGE, **query}), 200)
    content: list[dict[str, Any]] = data["content"]
    return content


def wait_delivery(sdk: Convoy, status: str, timeout: float = 15.0, **query: Any) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def reached() -> bool:
        found[:] = [d for d in deliveries(sdk, **query) if d["status"] == status]
        return bool(found)

    assert wait_until(reached, timeout), (
        f"no delivery reached {status} within {timeout}s: {deliveries(sdk, **query)}"
    )
    return found[0]


# ---- endpoints -----------------------------------------------------------------------------


def test_endpoint_create_readme_style_then_deliver(sdk: Convoy, receiver: Receiver) -> None:
    """The README: no name, ``events: ["*"]``; an event to it is delivered."""
    body = {
        "url": f"{receiver.url}/readme",
        "description": "Default Endpoint",
        "secret": "endpoint-secret",
        "events": ["*"],
    }
    ep = ok(sdk.endpoint.create({}, body), 201)
    assert isinstance(ep["uid"], str) and ep["uid"]
    assert ep["url"] == f"{receiver.url}/readme"
    assert isinstance(ep["name"], str) and ep["name"], "a missing name is defaulted"
    assert ep["description"] == "Default Endpoint"
    assert ep["status"] == "active"
    assert [s["value"] for s in ep["secrets"]] == ["endpoint-secret"]
    assert ep["advanced_signatures"] is True, "advanced signatures default to true"

    readme_data = {
        "event": "payment.success",
        "data": {
            "status": "Completed",
            "description": "Transaction Successful",
            "userID": "test_user_id808",
        },
    }
    publish(sdk, ep["uid"], "payment.success", readme_data)
    got = receiver.wait_for("/readme", 1)
    assert len(got) == 1, "the README endpoint received nothing"
    assert json.loads(got[0].body) == readme_data
    # with no subscription, a single event creates the catch-all one (§7)
    subs = ok(sdk.subscription.all(PAGE), 200)["content"]
    assert len(subs) == 1
    assert subs[0]["endpoint_metadata"]["uid"] == ep["uid"]
    assert subs[0]["filter_config"]["event_types"] == ["*"]
    assert subs[0]["name"] == f"{ep['name']}-subscription"


def test_endpoint_create_with_name_all_update_delete(sdk: Convoy, receiver: Receiver) -> None:
    ep = new_endpoint(sdk, receiver, "/named", description="one", owner_id="owner-1")
    assert ep["name"] == "/named" and ep["owner_id"] == "owner-1"
    others = [new_endpoint(sdk, receiver, f"/bulk/{i}")["uid"] for i in range(11)]

    page = ok(sdk.endpoint.all(PAGE), 200)
    assert len(page["content"]) == 10
    assert page["pagination"]["per_page"] == 10
    assert page["pagination"]["has_next_page"] is True
    listed = ok(sdk.endpoint.all({"perPage": 20, "page": 1}), 200)["content"]
    assert {e["uid"] for e in listed} == {ep["uid"], *others}
    newest_first = [ep["uid"], *others][::-1]
    assert [e["uid"] for e in page["content"]] == newest_first[:10]
    # cursor paging (§3): next_page_cursor is the first item of the next page
    cursor = page["pagination"]["next_page_cursor"]
    assert cursor == newest_first[10]
    page2 = ok(sdk.endpoint.all({**PAGE, "next_page_cursor": cursor, "direction": "next"}), 200)
    assert [e["uid"] for e in page2["content"]] == newest_first[10:]
    assert page2["pagination"]["has_next_page"] is False
    assert page2["pagination"]["has_prev_page"] is True

    # the SDK docstring's update body: url, description, secret, events (no name)
    upd = {
        "url": f"{receiver.url}/named2",
        "description": "two",
        "secret": "new-secret",
        "events": ["*"],
    }
    updated = ok(sdk.endpoint.update(ep["uid"], {}, upd), 202)
    assert updated["uid"] == ep["uid"]
    assert updated["url"] == f"{receiver.url}/named2"
    assert updated["description"] == "two"
    assert updated["name"] == "/named", "an update without a name keeps the name"
    assert "new-secret" in [s["value"] for s in updated["secrets"]]

    # DELETE sends a JSON body: "{}" with data={}, "null" with data=None
    assert ok(sdk.endpoint.delete(ep["uid"], {}, {}), 200) is None
    assert ok(sdk.endpoint.delete(others[0], {}, None), 200) is None
    remaining = ok(sdk.endpoint.all({"perPage": 20, "page": 1}), 200)["content"]
    assert {e["uid"] for e in remaining} == set(others[1:])


def test_endpoint_find_is_broken_in_the_sdk_but_the_server_answers_json(
    sdk: Convoy, receiver: Receiver
) -> None:
    """0.2.0 builds ``<uri>endpoints/<id>`` (no slash): a route that does not exist. The
    server must answer a JSON 404 so the SDK hands it back instead of raising."""
    ep = new_endpoint(sdk, receiver, "/find")
    message = err(no_raise(lambda: sdk.endpoint.find(ep["uid"], {})), 404)
    assert message
    # the pre-"projects" /groups API (the README's first example) is gone upstream too
    err(no_raise(lambda: sdk.group.all(PAGE)), 404)
    err(no_raise(lambda: sdk.group.find(UNKNOWN_ID, {})), 404)


# ---- subscriptions ---------------------------------------------------------------------------


def test_subscription_create_all_find_update_delete(sdk: Convoy, receiver: Receiver) -> None:
    ep = new_endpoint(sdk, receiver, "/subs")
    other = new_endpoint(sdk, receiver, "/subs-other")
    body = {  # the SDK docstring's shape, retry_config included (ignored on create)
        "name": "user-events",
        "endpoint_id": ep["uid"],
        "filter_config": {"event_types": ["user.created", "user.deleted"]},
        "alert_config": {"count": 10, "threshold": "1h"},
        "retry_config": {"duration": "10s", "retry_count": 3, "type": "linear"},
    }
    sub = ok(sdk.subscription.create({}, body), 201)
    assert sub["name"] == "user-events"
    assert sub["type"] == "api"
    assert sub["filter_config"]["event_types"] == ["user.created", "user.deleted"]
    assert sub["endpoint_metadata"]["uid"] == ep["uid"]
    ok(sdk.subscription.create({}, {"name": "other", "endpoint_id": other["uid"]}), 201)

    found = ok(sdk.subscription.find(sub["uid"], {}), 200)
    assert found["uid"] == sub["uid"] and found["endpoint_metadata"]["uid"] == ep["uid"]
    assert len(ok(sdk.subscription.all(PAGE), 200)["content"]) == 2
    mine = ok(sdk.subscription.all({**PAGE, "endpointId": ep["uid"]}), 200)["content"]
    assert [s["uid"] for s in mine] == [sub["uid"]]

    upd = {"name": "all-events", "filter_config": {"event_types": ["*"]}}
    updated = ok(sdk.subscription.update(sub["uid"], {}, upd), 202)
    assert updated["name"] == "all-events"
    assert updated["filter_config"]["event_types"] == ["*"]
    assert updated["endpoint_metadata"]["uid"] == ep["uid"]

    # retry_config (update only): "duration" is sent as a Go duration string, returned as
    # the spec's DatastoreRetryConfiguration {type, duration: int seconds, retry_count}
    retry = {"retry_config": {"duration": "10s", "retry_count": 3, "type": "linear"}}
    rc = ok(sdk.subscription.update(sub["uid"], {}, retry), 202)["retry_config"]
    assert rc is not None
    assert (rc.get("type"), rc.get("duration"), rc.get("retry_count")) == ("linear", 10, 3), rc
    bogus = {"retry_config": {"type": "sometimes", "duration": "soon", "retry_count": 3}}
    err(sdk.subscription.update(sub["uid"], {}, bogus), 400)

    assert ok(sdk.subscription.delete(sub["uid"], {}, {}), 200) is None
    err(sdk.subscription.find(sub["uid"], {}), 404)


def test_subscription_rules(sdk: Convoy, receiver: Receiver) -> None:
    """One subscription per endpoint by default; deleting an endpoint deletes its
    subscriptions; the endpoint must belong to the project."""
    ep = new_endpoint(sdk, receiver, "/rules")
    sub = ok(sdk.subscription.create({}, {"name": "first", "endpoint_id": ep["uid"]}), 201)
    assert (
        err(sdk.subscription.create({}, {"name": "second", "endpoint_id": ep["uid"]}), 400)
        == "a subscription for this endpoint already exists"
    )
    err(sdk.subscription.create({}, {"name": "nowhere", "endpoint_id": UNKNOWN_ID}), 400)
    err(sdk.subscription.create({}, {"endpoint_id": ep["uid"]}), 400)  # no name

    ok(sdk.endpoint.delete(ep["uid"], {}, {}), 200)
    err(sdk.subscription.find(sub["uid"], {}), 404)
    assert ok(sdk.subscription.all(PAGE), 200)["content"] == []


def test_subscription_filter_decides_delivery(sdk: Convoy, receiver: Receiver) -> None:
    ep = new_endpoint(sdk, receiver, "/filtered")
    body = {
        "name": "only-created",
        "endpoint_id": ep["uid"],
        "filter_config": {"event_types": ["user.created"]},
    }
    ok(sdk.subscription.create({}, body), 201)
    publish(sdk, ep["uid"], "user.deleted", {"n": 1})
    publish(sdk, ep["uid"], "user.created", {"n": 2})
    got = receiver.wait_for("/filtered", 1)
    assert [json.loads(r.body) for r in got] == [{"n": 2}]
    assert [d["event_type"] for d in deliveries(sdk, endpointId=ep["uid"])] == ["user.created"]


# ---- events, deliveries, attempts --------------------------------------------------------------


def test_event_create_all_find(sdk: Convoy, receiver: Receiver) -> None:
    ep = new_endpoint(sdk, receiver, "/events")
    data = {"invoice": "inv_1", "amount": 4200, "lines": [{"sku": "a", "qty": 2}]}
    publish(sdk, ep["uid"], "invoice.paid", data)
    got = receiver.wait_for("/events", 1)
    assert len(got) == 1 and json.loads(got[0].body) == data

    events = ok(sdk.event.all({**PAGE, "endpointId": ep["uid"]}), 200)
    assert isinstance(events["content"], list) and len(events["content"]) == 1
    listed = events["content"][0]
    assert listed["event_type"] == "invoice.paid"
    assert events["pagination"]["per_page"] == 10

    assert listed["is_duplicate_event"] is False
    ev = ok(sdk.event.find(listed["uid"], {}), 200)
    assert ev["uid"] == listed["uid"]
    assert ev["event_type"] == "invoice.paid"
    assert ev["data"] == data
    assert ep["uid"] in ev["endpoints"]
    assert ev["project_id"] == ep["project_id"]


def test_event_idempotency_key(sdk: Convoy, receiver: Receiver) -> None:
    """A repeated idempotency key is stored as a duplicate and not delivered."""
    ep = new_endpoint(sdk, receiver, "/idem")
    body = {
        "endpoint_id": ep["uid"],
        "event_type": "idem",
        "data": {"n": 1},
        "idempotency_key": "key-1",
    }
    ok(sdk.event.create({}, body), 201)
    assert len(receiver.wait_for("/idem", 1)) == 1
    ok(sdk.event.create({}, {**body, "data": {"n": 2}}), 201)
    events = ok(sdk.event.all({**PAGE, "idempotencyKey": "key-1"}), 200)["content"]
    assert sorted(e["is_duplicate_event"] for e in events) == [False, True]
    wait_delivery(sdk, "Success", endpointId=ep["uid"])
    assert len(deliveries(sdk, endpointId=ep["uid"])) == 1
    assert [json.loads(r.body) for r in receiver.at("/idem")] == [{"n": 1}]


def test_event_delivery_all_find_and_attempts(sdk: Convoy, receiver: Receiver) -> None:
    ep = new_endpoint(sdk, receiver, "/attempts")
    publish(sdk, ep["uid"], "ping", {"ping": True})
    done = wait_delivery(sdk, "Success", endpointId=ep["uid"])
    assert done["endpoint_id"] == ep["uid"] and done["event_type"] == "ping"

    by_status = deliveries(sdk, status="Success", eventId=done["event_id"])
    assert [d["uid"] for d in by_status] == [done["uid"]]
    found = ok(sdk.event_delivery.find(done["uid"], {}), 200)
    assert found["uid"] == done["uid"] and found["status"] == "Success"

    attempts = ok(sdk.delivery_attempt.all(done["uid"], {}), 200)
    assert isinstance(attempts, list) and len(attempts) == 1, "a plain list, not a page"
    attempt = ok(sdk.delivery_attempt.find(done["uid"], attempts[0]["uid"], {}), 200)
    assert attempt["uid"] == attempts[0]["uid"]
    assert attempt["msg_id"] == done["uid"]
    assert attempt["http_status"] == "200 OK"
    assert attempt["status"] is True
    assert attempt["url"] == f"{receiver.url}/attempts"
    assert attempt["method"] == "POST"
    err(sdk.delivery_attempt.find(done["uid"], UNKNOWN_ID, {}), 404)


def test_failed_delivery_then_resend(gateway: Gateway, receiver: Receiver) -> None:
    project = gateway.create_project("retry-once", config=RETRY_ONCE)
    sdk = sdk_for(gateway, project)
    receiver.behave("/flaky", Behaviour(status=500), Behaviour(status=200))
    ep = new_endpoint(sdk, receiver, "/flaky")
    publish(sdk, ep["uid"], "flaky.event", {"try": 1})

    failed = wait_delivery(sdk, "Failure", endpointId=ep["uid"])
    attempts = ok(sdk.delivery_attempt.all(failed["uid"], {}), 200)
    assert [a["http_status"] for a in attempts] == ["500 Internal Server Error"]
    assert attempts[0]["status"] is not True

    resent = ok(sdk.event_delivery.resend(failed["uid"], {}), 200)
    assert resent["uid"] == failed["uid"]
    assert resent["status"] in ("Scheduled", "Processing", "Success")
    done = wait_delivery(sdk, "Success", endpointId=ep["uid"])
    assert done["uid"] == failed["uid"]
    assert len(receiver.at("/flaky")) == 2
    attempts = ok(sdk.delivery_attempt.all(done["uid"], {}), 200)
    assert [a["http_status"] for a in attempts] == ["500 Internal Server Error", "200 OK"]

    assert err(sdk.event_delivery.resend(done["uid"], {}), 400) == "event already sent"


# ---- fan-out through the SDK transport --------------------------------------------------------


def test_fanout_through_the_sdk_transport(sdk: Convoy, receiver: Receiver) -> None:
    """0.2.0 has no fanout method; users call ``<resource>.client.http_post``."""
    a = new_endpoint(sdk, receiver, "/fan/a", owner_id="owner-fan")
    b = new_endpoint(sdk, receiver, "/fan/b", owner_id="owner-fan")
    c = new_endpoint(sdk, receiver, "/fan/c", owner_id="owner-fan")  # no subscription
    new_endpoint(sdk, receiver, "/fan/other", owner_id="someone-else")
    for ep in (a, b):
        ok(sdk.subscription.create({}, {"name": ep["name"], "endpoint_id": ep["uid"]}), 201)

    body = {
        "owner_id": "owner-fan",
        "event_type": "fan.out",
        "data": {"fan": 1},
        "idempotency_key": "fan-1",
    }
    ok(sdk.event.client.http_post("/events/fanout", {}, body), 201)
    assert len(receiver.wait_for("/fan/a", 1)) == 1
    assert len(receiver.wait_for("/fan/b", 1)) == 1
    assert json.loads(receiver.at("/fan/a")[0].body) == {"fan": 1}
    assert {d["endpoint_id"] for d in deliveries(sdk)} == {a["uid"], b["uid"]}
    assert receiver.at("/fan/c") == [] and receiver.at("/fan/other") == []
    assert c["uid"] not in {d["endpoint_id"] for d in deliveries(sdk)}

    repeat = sdk.event.client.http_post("/events/fanout", {}, body)
    ok(repeat, 201)
    assert repeat[0]["message"] == "Duplicate event received, but will not be sent"
    nobody = {"owner_id": "no-such-owner", "event_type": "fan.out", "data": {"fan": 2}}
    ok(sdk.event.client.http_post("/events/fanout", {}, nobody), 201)  # not an error
    missing_owner = {"event_type": "fan.out", "data": {"fan": 1}}
    assert err(sdk.event.client.http_post("/events/fanout", {}, missing_owner), 400) == (
        "please provide an owner id"
    )


# ---- signatures ------------------------------------------------------------------------------


def test_simple_signature_verifies_with_the_sdk_helper(sdk: Convoy, receiver: Receiver) -> None:
    """0.2.0's ``Webhook.verify_signature`` only works for simple signatures, and returns a
    truthy string on a mismatch, so compare with ``is True``."""
    secret = "simple-secret-0123"
    ep = new_endpoint(sdk, receiver, "/signed", secret=secret, advanced_signatures=False)
    assert ep["advanced_signatures"] is False
    publish(sdk, ep["uid"], "signed.event", {"amount": 7, "note": "<b>&</b>"})
    got = receiver.wait_for("/signed", 1)
    assert len(got) == 1
    payload = got[0].body.decode()
    signature = got[0].headers["X-Convoy-Signature"]

    expected = hmac.new(secret.encode(), got[0].body, hashlib.sha256).hexdigest()
    assert signature == expected
    assert (
        Webhook(secret=secret, encoding="hex", hash="sha256").verify_signature(payload, signature)
        is True
    )
    tampered = payload.replace("7", "8")
    assert Webhook(secret=secret).verify_signature(tampered, signature) is not True
    assert Webhook(secret="wrong").verify_signature(payload, signature) is not True


def test_advanced_signature_is_convoys(sdk: Convoy, receiver: Receiver) -> None:
    """The default header ``t=<unix>,v1=<hex HMAC(secret, "<t>," + body)>``, checked by
    hand: the 0.2.0 helper cannot verify advanced signatures (it omits the timestamp)."""
    secret = "advanced-secret-0123"
    ep = new_endpoint(sdk, receiver, "/advanced", secret=secret)
    publish(sdk, ep["uid"], "signed.event", {"amount": 9})
    got = receiver.wait_for("/advanced", 1)
    assert len(got) == 1
    parts = dict(p.split("=", 1) for p in got[0].headers["X-Convoy-Signature"].split(","))
    assert set(parts) == {"t", "v1"}
    message = parts["t"].encode() + b"," + got[0].body
    assert parts["v1"] == hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    assert abs(int(parts["t"]) - got[0].at) < 60


# ---- errors ----------------------------------------------------------------------------------


def test_errors_are_json_envelopes(
    gateway: Gateway, project: Project, sdk: Convoy, receiver: Receiver
) -> None:
    ep = new_endpoint(sdk, receiver, "/errors")
    missing_type = {"endpoint_id": ep["uid"], "data": {"a": 1}}
    assert err(sdk.event.create({}, missing_type), 400) == "please provide an event type"
    missing_data = {"endpoint_id": ep["uid"], "event_type": "x"}
    assert err(sdk.event.create({}, missing_data), 400) == "please provide your data"
    missing_endpoint = {"event_type": "x", "data": {"a": 1}}
    assert err(sdk.event.create({}, missing_endpoint), 400) == "please provide an endpoint ID"
    err(sdk.endpoint.create({}, {"description": "no url"}), 400)
    err(sdk.event.create({}, None), 400)  # body "null"

    err(sdk.event.find(UNKNOWN_ID, {}), 404)
    err(sdk.event_delivery.find(UNKNOWN_ID, {}), 404)
    err(sdk.delivery_attempt.all(UNKNOWN_ID, {}), 404)
    err(sdk.subscription.find(UNKNOWN_ID, {}), 404)
    err(sdk.endpoint.update(UNKNOWN_ID, {}, {"url": f"{receiver.url}/x"}), 404)
    err(sdk.endpoint.delete(UNKNOWN_ID, {}, {}), 404)

    wrong = sdk_for(gateway, project, key="CO.not-a-real-key.0123456789")
    assert err(wrong.endpoint.all(PAGE), 401).startswith("authorization failed")
    assert receiver.at("/errors") == []
