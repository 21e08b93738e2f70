"""Operator controls: batch retry with progress, replay, retention."""

from __future__ import annotations

import asyncio

from hookcast.delivery.retention import RetentionRunner
from hookcast.store import open_store
from support import Behaviour, Gateway, Receiver, wait_until

ONE_TRY = {"strategy": {"type": "linear", "duration": 1, "retry_count": 1}}


def test_batch_retry_runs_in_the_background_with_progress(
    gateway: Gateway, receiver: Receiver
) -> None:
    project = gateway.create_project("batch", ONE_TRY)
    receiver.behave("/b", Behaviour(500))
    ep = project.endpoint(receiver.url + "/b")
    for i in range(5):
        project.publish(ep["uid"], data={"i": i})
    assert wait_until(lambda: [d["status"] for d in project.deliveries()] == ["Failure"] * 5, 10)
    receiver.behave("/b", Behaviour(200))
    job = project.ok("POST", "/eventdeliveries/batchretry", params={"status": "Failure"})
    assert job["total"] == 5 and job["kind"] == "retry"

    def progress() -> dict:  # type: ignore[type-arg]
        return project.ok("GET", f"/batch-jobs/{job['uid']}")  # type: ignore[no-any-return]

    assert wait_until(lambda: progress()["status"] == "done", 10), progress()
    assert progress()["requeued"] == 5 and progress()["progress"] == 1.0
    assert wait_until(lambda: len(receiver.at("/b")) == 10, 10)
    assert wait_until(lambda: [d["status"] for d in project.deliveries()] == ["Success"] * 5, 10)
    # safe to call twice: nothing is left to retry
    again = project.ok("POST", "/eventdeliveries/batchretry", params={"status": "Failure"})
    assert wait_until(lambda: project.ok("GET", f"/batch-jobs/{again['uid']}")["status"] == "done")
    assert project.ok("GET", f"/batch-jobs/{again['uid']}")["requeued"] == 0
    assert len(receiver.at("/b")) == 10


def test_replay_resends_and_a_second_call_while_pending_is_a_no_op(
    gateway: Gateway, receiver: Receiver
) -> None:
    project = gateway.create_project("replay")
    ep = project.endpoint(receiver.url + "/r")
    event = project.publish(ep["uid"])
    receiver.wait_for("/r", 1)
    assert wait_until(lambda: project.deliveries()[0]["status"] == "Success", 5)
    r = project.call("PUT", f"/events/{event['uid']}/replay")
    assert r.status_code == 200 and r.json()["message"].endswith(": 1 delivery requeued"), r.text
    receiver.wait_for("/r", 2)
    assert wait_until(lambda: project.deliveries()[0]["status"] == "Success", 5)
    assert len(project.deliveries()) == 1  # the same delivery (and webhook-id) again
    got = receiver.at("/r")
    assert got[0].headers["webhook-id"] == got[1].headers["webhook-id"]


def test_replay_says_when_nothing_was_requeued(gateway: Gateway, receiver: Receiver) -> None:
    project = gateway.create_project("replay-held")
    receiver.behave("/held", Behaviour(delay_s=2.0))  # the delivery stays in Processing
    ep = project.endpoint(receiver.url + "/held")
    event = project.publish(ep["uid"])
    assert wait_until(lambda: project.deliveries()[0]["status"] == "Processing", 5)
    r = project.call("PUT", f"/events/{event['uid']}/replay")
    assert r.status_code == 200, r.text
    assert "nothing requeued, its deliveries are still queued" in r.json()["message"], r.text


def test_retention_removes_old_rows_in_batches(gateway: Gateway, receiver: Receiver) -> None:
    project = gateway.create_project("old", {"retention_hours": 1})
    ep = project.endpoint(receiver.url + "/old")
    for _ in range(3):
        project.publish(ep["uid"])
    receiver.wait_for("/old", 3)
    assert wait_until(lambda: all(d["status"] == "Success" for d in project.deliveries()), 5)
    db = gateway.settings.database_url

    async def sweep(hours_later: float) -> int:
        store = open_store(db)
        await store.open()
        try:
            import time

            now = time.time_ns() // 1000 + int(hours_later * 3_600_000_000)
            return await RetentionRunner(store.records, 60).pass_once(now_us=now)
        finally:
            await store.close()

    assert asyncio.run(sweep(0.5)) == 0  # younger than the retention: kept
    assert asyncio.run(sweep(2)) >= 9  # 3 events, 3 deliveries, 3 attempts
    assert project.ok("GET", "/events")["content"] == []
    assert project.deliveries() == []
    assert project.ok("GET", "/endpoints")["content"]  # configuration is not history
