"""HTTP etiquette and endpoint health against a real receiver that misbehaves on purpose."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from support import Behaviour, Gateway, Project, Receiver, make_settings, wait_until

LINEAR_1S = {"strategy": {"type": "linear", "duration": 1, "retry_count": 5}}


def _attempts(project: Project, delivery_id: str) -> list[dict]:  # type: ignore[type-arg]
    return project.ok("GET", f"/eventdeliveries/{delivery_id}/deliveryattempts")  # type: ignore[no-any-return]


def test_retry_after_on_429_is_honoured(gateway: Gateway, receiver: Receiver) -> None:
    project = gateway.create_project("ra", LINEAR_1S)
    receiver.behave("/busy", Behaviour(429, headers={"Retry-After": "3"}), Behaviour(200))
    ep = project.endpoint(receiver.url + "/busy")
    project.publish(ep["uid"])
    got = receiver.wait_for("/busy", 2, timeout=15)
    assert len(got) == 2
    assert got[1].at - got[0].at >= 2.8  # the receiver's 3 s, not the strategy's 1 s


def test_rate_limit_spreads_deliveries_without_spending_attempts(
    project: Project, receiver: Receiver
) -> None:
    ep = project.endpoint(receiver.url + "/limited", rate_limit=4, rate_limit_duration=1)
    for i in range(12):
        project.publish(ep["uid"], data={"i": i})
    got = receiver.wait_for("/limited", 12, timeout=20)
    assert len(got) == 12
    times = sorted(r.at for r in got)
    # a burst of 4, then 4 per second: the last of 12 comes about 2 s after the first
    assert times[-1] - times[0] >= 1.5
    # GCRA with a burst of one period (as Convoy): by time t at most 4 + 4 * t deliveries
    for n, t in enumerate(times, start=1):
        assert n <= 4 + 4 * (t - times[0]) + 1, (n, t - times[0])
    assert wait_until(lambda: all(d["status"] == "Success" for d in project.deliveries()), 10)
    assert all(d["metadata"]["num_trials"] == 1 for d in project.deliveries())


def test_per_endpoint_concurrency_cap(gateway: Gateway, receiver: Receiver) -> None:
    project = gateway.create_project("cap")
    receiver.behave("/slow", Behaviour(delay_s=0.3))
    ep = project.endpoint(receiver.url + "/slow", max_in_flight=2)
    for i in range(8):
        project.publish(ep["uid"], data={"i": i})
    got = receiver.wait_for("/slow", 8, timeout=20)
    starts = sorted(r.at for r in got)
    busiest = max(sum(1 for t in starts if s <= t < s + 0.3) for s in starts)
    assert busiest <= 2
    assert starts[-1] - starts[0] >= 0.8  # 8 at 2 at a time, 0.3 s each


def test_breaker_opens_on_a_failing_endpoint_and_spares_it(
    tmp_path: Path, receiver: Receiver
) -> None:
    gateway = Gateway(make_settings(str(tmp_path / "b.db")))
    try:
        project = gateway.create_project(
            "cb",
            {
                "strategy": {"type": "linear", "duration": 1, "retry_count": 20},
                "circuit_breaker": {
                    "minimum_request_count": 4,
                    "failure_threshold": 50,
                    "error_timeout_s": 30,
                    "disable_after_trips": 0,
                },
            },
        )
        receiver.behave("/down", Behaviour(500))
        ep = project.endpoint(receiver.url + "/down")
        for i in range(20):
            project.publish(ep["uid"], data={"i": i})
        assert wait_until(
            lambda: project.ok("GET", f"/endpoints/{ep['uid']}")["cb_state"] == "open", 15
        )
        seen = len(receiver.at("/down"))
        time.sleep(2.5)  # retries are due every second, but the breaker holds them back
        assert len(receiver.at("/down")) - seen <= 1
        endpoint = project.ok("GET", f"/endpoints/{ep['uid']}")
        assert endpoint["circuit_breaker"]["failures"] >= 4
        assert endpoint["status"] == "active"  # disable_after_trips=0: never disabled
        # when it lets a probe through: an ISO 8601 time, as every time in the API
        until = datetime.fromisoformat(endpoint["circuit_breaker"]["opened_until"])
        assert until.tzinfo is not None
        assert 0 < (until - datetime.now(UTC)).total_seconds() <= 30
        assert breakers(gateway) == {"closed": 0, "open": 1, "half_open": 0}
    finally:
        gateway.stop()
    # the gauge is the endpoints' stored state: the same after a restart, before any
    # delivery, and a deleted endpoint leaves it
    gateway = Gateway(make_settings(str(tmp_path / "b.db")))
    try:
        assert breakers(gateway) == {"closed": 0, "open": 1, "half_open": 0}
        again = Project(gateway, project.id, project.key)
        again.ok("DELETE", f"/endpoints/{ep['uid']}")
        again.endpoint(receiver.url + "/fine")
        assert breakers(gateway) == {"closed": 1, "open": 0, "half_open": 0}
    finally:
        gateway.stop()


def breakers(gateway: Gateway) -> dict[str, float]:
    """``hookcast_circuit_breakers`` by state, scraped from the gateway's /metrics."""
    text = requests.get(gateway.base + "/metrics", timeout=10).text
    return {
        s.labels["state"]: s.value
        for family in text_string_to_metric_families(text)
        if family.name == "hookcast_circuit_breakers"
        for s in family.samples
    }


def test_connection_reset_is_recorded_and_retried(gateway: Gateway, receiver: Receiver) -> None:
    project = gateway.create_project("rst", LINEAR_1S)
    receiver.behave("/rst", Behaviour(reset=True), Behaviour(200))
    ep = project.endpoint(receiver.url + "/rst")
    project.publish(ep["uid"])
    assert wait_until(lambda: project.deliveries()[0]["status"] == "Success", 10)
    first, second = _attempts(project, project.deliveries()[0]["uid"])
    assert first["http_status"] == "" and first["error"]  # no response, an error recorded
    assert second["http_status"] == "200 OK"


def test_disabled_endpoint_is_probed_re_enabled_and_gets_what_it_missed(
    tmp_path: Path, receiver: Receiver
) -> None:
    gateway = Gateway(make_settings(str(tmp_path / "heal.db"), probe_base_s=0.5))
    try:
        project = gateway.create_project("heal", {"recovery_rate": 20})
        # 410 disables the endpoint at once; from then on it answers (probe included)
        receiver.behave("/heal", Behaviour(410), Behaviour(200))
        ep = project.endpoint(receiver.url + "/heal")
        gone_id = project.publish(ep["uid"], data={"i": "gone"})["uid"]
        assert wait_until(
            lambda: project.ok("GET", f"/endpoints/{ep['uid']}")["status"] == "inactive", 10
        )
        for i in range(5):  # published while it is disabled: held, not dropped
            project.publish(ep["uid"], data={"i": i})
        assert wait_until(
            lambda: project.ok("GET", f"/endpoints/{ep['uid']}")["status"] == "active", 15
        )

        def missed_delivered() -> bool:
            held = [d for d in project.deliveries() if d["event_id"] != gone_id]
            return len(held) == 5 and all(d["status"] == "Success" for d in held)

        assert wait_until(missed_delivered, 15)
        bodies = [r.body for r in receiver.at("/heal")]
        for i in range(5):
            assert any(f'"i":{i}'.encode() in b.replace(b" ", b"") for b in bodies)
        # the delivery that met the 410 was held with the rest, and went out with them
        gone = [d for d in project.deliveries() if d["event_id"] == gone_id]
        assert wait_until(
            lambda: project.ok("GET", f"/eventdeliveries/{gone[0]['uid']}")["status"] == "Success",
            10,
        )
    finally:
        gateway.stop()
