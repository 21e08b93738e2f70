"""Which ordering key a planned delivery gets (docs/ordering.md): pure planning."""

from __future__ import annotations

from hookcast.domain.config import StrategyConfig
from hookcast.domain.ids import new_id
from hookcast.domain.models import (
    DeliveryMode,
    EventKind,
    FilterConfig,
    Ordering,
    Subscription,
)
from hookcast.domain.planning import Broadcast, Snapshot, ordering_key, plan_chunk, plan_ingest
from hookcast.domain.ports import NewEvent
from hookcast.domain.routing import FilterCache
from unit.factories import make_endpoint


def _sub(endpoint_id: str) -> Subscription:
    return Subscription(
        "S" + endpoint_id, "P", endpoint_id, "s", "api", FilterConfig(), None, None, None,
        DeliveryMode.AT_LEAST_ONCE, "", 0, 0,
    )  # fmt: skip


def test_the_key_depends_on_the_endpoint_s_setting() -> None:
    assert ordering_key(Ordering.NONE, "k") is None
    assert ordering_key(Ordering.PER_KEY, "k") == "k"
    assert ordering_key(Ordering.PER_KEY, None) == ""  # the endpoint's one key
    assert ordering_key(Ordering.PER_KEY, "") == ""


def test_ingest_gives_ordered_endpoints_the_publish_s_key() -> None:
    ordered = make_endpoint(id="A", owner_id="o", ordering=Ordering.PER_KEY)
    plain = make_endpoint(id="B", owner_id="o")
    event = NewEvent(
        id=new_id(), project_id="P", kind=EventKind.FANOUT, event_type="t", data=b"{}",
        parsed={}, headers={}, idempotency_key="", api_key_id=None, acknowledged_at_us=1,
        strategy=StrategyConfig(), owner_id="o", ordering_key="inv-1",
    )  # fmt: skip
    snapshot = Snapshot(
        owners={("P", "o"): [ordered, plain]}, subscriptions={"A": [_sub("A")], "B": [_sub("B")]}
    )
    plan = plan_ingest([event], snapshot, new_id, FilterCache())
    keys = {d.endpoint_id: d.ordering_key for d in plan.deliveries}
    assert keys == {"A": "inv-1", "B": None}
    assert plan.events[0].ordering_key == "inv-1"


def test_a_broadcast_chunk_keys_the_ordered_endpoints_only() -> None:
    job = Broadcast("EV" + "0" * 24, "P", "t", {}, {}, "", StrategyConfig(), 0, "k")
    plan = plan_chunk(
        job,
        [("A", "active"), ("B", "active")],
        {"A": [_sub("A")], "B": [_sub("B")]},
        release_clock_us=0,
        now_us=1,
        filters=FilterCache(),
        ordered={"A"},
    )
    assert {d.endpoint_id: d.ordering_key for d in plan.deliveries} == {"A": "k", "B": None}
