"""The ordering settings and routes over HTTP (docs/ordering.md): endpoint fields, the
publish's ordering key, blocked keys listed with their delivery, resend and skip."""

from __future__ import annotations

from support import Behaviour, Gateway, Project, Receiver, wait_until

STRATEGY = {"strategy": {"type": "linear", "duration": 1, "retry_count": 1}}


def _blocked(project: Project, endpoint_id: str) -> list[dict[str, str]]:
    return project.ok("GET", f"/endpoints/{endpoint_id}/ordering/blocked")  # type: ignore[no-any-return]


def test_settings_are_validated_and_shown(project: Project, receiver: Receiver) -> None:
    ep = project.endpoint(receiver.url + "/a")
    assert (ep["ordering"], ep["ordering_on_failure"]) == ("none", "block")
    r = project.call("PUT", f"/endpoints/{ep['uid']}", json={"ordering": "strict"})
    assert r.status_code == 400 and "ordering" in r.json()["message"], r.text
    changed = project.ok("PUT", f"/endpoints/{ep['uid']}", 202, json={"ordering": "per_key"})
    assert (changed["ordering"], changed["ordering_on_failure"]) == ("per_key", "block")
    r = project.call(
        "POST",
        "/events",
        json={"endpoint_id": ep["uid"], "event_type": "a", "data": {}, "ordering_key": "k" * 201},
    )
    assert r.status_code == 400 and "ordering_key" in r.json()["message"], r.text
    event = project.publish(ep["uid"], ordering_key="inv-1")
    assert event["ordering_key"] == "inv-1"
    [d] = project.deliveries(eventId=event["uid"])
    assert d["ordering_key"] == "inv-1"


def test_a_blocked_key_is_listed_then_resent_or_skipped(
    gateway: Gateway, receiver: Receiver
) -> None:
    project = gateway.create_project("ordered", STRATEGY)
    ep = project.endpoint(receiver.url + "/o", ordering="per_key", http_timeout=2)
    receiver.behave("/o", Behaviour(status=500))
    first = project.publish(ep["uid"], data={"n": 0}, ordering_key="k")
    second = project.publish(ep["uid"], data={"n": 1}, ordering_key="k")
    assert wait_until(lambda: len(_blocked(project, ep["uid"])) == 1, timeout=15)
    [block] = _blocked(project, ep["uid"])
    [d1] = project.deliveries(eventId=first["uid"])
    assert block["ordering_key"] == "k" and block["delivery_id"] == d1["uid"]
    assert d1["status"] == "Failure" and "its key is blocked" in d1["description"]
    [d2] = project.deliveries(eventId=second["uid"])
    assert d2["status"] == "Scheduled"  # held behind its head
    assert len(receiver.at("/o")) == 1  # the second was never sent
    # skip a delivery that blocks nothing: 400 (a conflict, as Convoy answers them)
    r = project.call("POST", f"/eventdeliveries/{d2['uid']}/skip")
    assert r.status_code == 400 and "blocks no ordering key" in r.json()["message"], r.text
    # resend the head: it goes first again, fails again, blocks again
    project.ok("PUT", f"/eventdeliveries/{d1['uid']}/resend")
    assert wait_until(lambda: len(receiver.at("/o")) == 2, timeout=10)
    assert wait_until(lambda: len(_blocked(project, ep["uid"])) == 1, timeout=15)
    assert [r.body for r in receiver.at("/o")] == [b'{"n":0}', b'{"n":0}']
    # skip it: the second goes
    receiver.behave("/o", Behaviour(status=200))
    skipped = project.ok("POST", f"/eventdeliveries/{d1['uid']}/skip")
    assert skipped["status"] == "Failure" and "skipped by an operator" in skipped["description"]
    assert _blocked(project, ep["uid"]) == []
    assert wait_until(lambda: project.deliveries(eventId=second["uid"])[0]["status"] == "Success")
    assert receiver.at("/o")[-1].body == b'{"n":1}'
