"""Per-endpoint admission in one worker (EndpointHealth): caps, local waiting, deferral pace.

Pure in-memory state with the clock and randomness passed in; no I/O.
"""

from __future__ import annotations

from typing import Any

from hookcast.delivery.health import EndpointHealth
from hookcast.domain.config import ProjectConfig
from hookcast.domain.models import Endpoint
from unit.factories import make_endpoint

S = 1_000_000
CONFIG = ProjectConfig()


def endpoint(eid: str = "E", **kw: Any) -> Endpoint:
    return make_endpoint(id=eid, name=eid, url="https://example.com/hook", **kw)


def health(cap: int = 4, share: int = 0) -> EndpointHealth:
    return EndpointHealth(cap, 30 * S, lambda: 0.0, max_share=share)


def fill(h: EndpointHealth, ep: Endpoint, now: int) -> None:
    while h.admit(ep, CONFIG, now).send:
        pass


def test_an_endpoint_takes_at_most_its_share_of_the_worker() -> None:
    h = health(cap=64, share=16)
    ep = endpoint(max_in_flight=100)
    sent = sum(h.admit(ep, CONFIG, 0, may_wait=False).send for _ in range(100))
    assert sent == 16
    assert h.cap(endpoint("F", max_in_flight=3)) == 3  # a lower cap of its own still holds


def test_an_unmeasured_endpoint_may_queue_one_wave_locally() -> None:
    h = health(cap=4)
    ep = endpoint()
    fill(h, ep, 0)
    assert h.admit(ep, CONFIG, 0, waiting=3).wait
    assert not h.admit(ep, CONFIG, 0, waiting=4).wait  # a second wave is deferred
    assert not h.admit(ep, CONFIG, 0, waiting=0, may_wait=False).wait  # worker's room full


def test_a_slow_endpoint_gets_no_local_waiting_room() -> None:
    h = health(cap=2)
    ep = endpoint()
    fill(h, ep, 0)
    h.finished(ep, CONFIG, 3 * S, True, 3 * S)  # one attempt took 3 s
    fill(h, ep, 3 * S)
    verdict = h.admit(ep, CONFIG, 3 * S, waiting=0)
    assert not verdict.send and not verdict.wait
    assert verdict.defer_until_us >= 6 * S  # about one attempt time later


def test_a_hanging_endpoint_is_deferred_further_the_longer_it_stalls() -> None:
    h = health(cap=2)
    ep = endpoint(http_timeout=10)
    fill(h, ep, 0)  # two attempts start at 0 and never finish
    early = h.admit(ep, CONFIG, S // 2, may_wait=False)
    later = h.admit(ep, CONFIG, 4 * S, may_wait=False)
    assert early.defer_until_us - S // 2 < S
    assert later.defer_until_us - 4 * S >= 4 * S  # it has hung for 4 s: come back ≥ 4 s on
    capped = h.admit(ep, CONFIG, 60 * S, may_wait=False)
    assert capped.defer_until_us - 60 * S <= 10 * S + 2 * S  # never past the timeout pace


def test_a_backlog_deferred_at_the_cap_comes_back_at_the_service_rate() -> None:
    h = health(cap=4)
    ep = endpoint()
    fill(h, ep, 0)
    h.finished(ep, CONFIG, S // 5, True, S // 5)  # 200 ms per attempt, 4 at a time
    fill(h, ep, S // 5)
    dues = [h.admit(ep, CONFIG, S // 5, may_wait=False).defer_until_us for _ in range(40)]
    assert dues == sorted(dues)
    # 40 deliveries at 4 per 200 ms take about 2 s to come back, not all at once
    assert 1.8 * S <= dues[-1] - dues[0] <= 2.2 * S


def test_a_breaker_opened_by_another_worker_is_honoured_here() -> None:
    from hookcast.domain.breaker import BreakerConfig

    config = ProjectConfig(
        circuit_breaker=BreakerConfig(minimum_request_count=2, failure_threshold=50)
    )
    ep = endpoint()
    a, b = health(cap=8), health(cap=8)
    persisted = None
    for _ in range(2):  # worker A sees the endpoint fail and trips its breaker
        assert a.admit(ep, config, S).send
    for _ in range(2):
        outcome = a.finished(ep, config, S, False, 1000)
        persisted = outcome.breaker or persisted
    assert persisted is not None and persisted["state"] == "open"
    # worker B claims a delivery: the endpoint row carries the persisted breaker
    verdict = b.admit(endpoint(breaker=persisted), config, 2 * S)
    assert not verdict.send and verdict.reason == "circuit breaker open"
    assert verdict.defer_until_us >= persisted["opened_until_us"]
    # and a stale open breaker (already past) is not adopted
    c = health(cap=8)
    assert c.admit(endpoint(breaker=persisted), config, persisted["opened_until_us"] + S).send


def test_a_breaker_closed_by_another_workers_probe_lets_this_one_send_again() -> None:
    from hookcast.domain.breaker import BreakerConfig

    config = ProjectConfig(
        circuit_breaker=BreakerConfig(minimum_request_count=2, failure_threshold=50)
    )
    ep = endpoint()
    a, b = health(cap=8), health(cap=8)
    opened = None
    for _ in range(2):
        assert a.admit(ep, config, S).send
    for _ in range(2):
        opened = a.finished(ep, config, S, False, 1000).breaker or opened
    assert opened is not None
    assert not b.admit(endpoint(breaker=opened), config, 2 * S).send  # b follows a: open
    # later, a's half-open probe succeeds and a persists the closed breaker
    due = opened["opened_until_us"]
    assert a.admit(ep, config, due).send
    closed = a.finished(ep, config, due, True, 1000).breaker
    assert closed is not None and closed["state"] == "closed"
    # b sends again at once, freely: not one half-open probe at a time
    assert all(b.admit(endpoint(breaker=closed), config, due + 1).send for _ in range(3))
    # (without a's close, b would be half-open and let only its one probe through)
    c = health(cap=8)
    assert not c.admit(endpoint(breaker=opened), config, 2 * S).send
    assert [c.admit(endpoint(breaker=opened), config, due + 1).send for _ in range(3)] == [
        True,
        False,
        False,
    ]
