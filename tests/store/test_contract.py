"""What every store must do: routing at ingest, the leased queue, fencing, paging."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from hookcast import admin
from hookcast.domain.config import StrategyConfig
from hookcast.domain.errors import ConflictError, ValidationError
from hookcast.domain.ids import new_id
from hookcast.domain.models import (
    Attempt,
    DeliveryMode,
    DeliveryStatus,
    Endpoint,
    EndpointStatus,
    EventKind,
    FilterConfig,
    Secret,
    Subscription,
)
from hookcast.domain.paging import Direction, PageRequest
from hookcast.domain.ports import Completion, DeliveryFilter, EventFilter, NewEvent, Store

NOW = 1_800_000_000_000_000  # a fixed clock, in microseconds
LEASE = 5_000_000


def endpoint(
    project_id: str,
    owner: str = "",
    status: EndpointStatus = EndpointStatus.ACTIVE,
    timeout: int = 10,
) -> Endpoint:
    return Endpoint(
        new_id(),
        project_id,
        owner,
        "ep",
        "http://127.0.0.1:9/x",
        "",
        status,
        (Secret(new_id(), "whsec_c2VjcmV0", NOW),),
        True,
        timeout,
        0,
        0,
        "application/json",
        None,
        "",
        "",
        "",
        NOW,
        NOW,
    )


def subscription(
    ep: Endpoint, types: tuple[str, ...] = ("*",), body: dict | None = None
) -> Subscription:
    flt = {"body": body} if body else {}
    return Subscription(
        new_id(),
        ep.project_id,
        ep.id,
        "sub",
        "api",
        FilterConfig(types, flt),
        None,
        None,
        None,
        DeliveryMode.AT_LEAST_ONCE,
        "",
        NOW,
        NOW,
    )


def new_event(project_id: str, kind: EventKind = EventKind.SINGLE, **kw: object) -> NewEvent:
    data = kw.pop("parsed", {"amount": 5})
    import orjson

    return NewEvent(
        id=new_id(),
        project_id=project_id,
        kind=kind,
        event_type=str(kw.pop("event_type", "a.b")),
        data=orjson.dumps(data),
        parsed=data,
        headers={},
        idempotency_key=str(kw.pop("key", "")),
        api_key_id=None,
        acknowledged_at_us=NOW,
        strategy=StrategyConfig(),
        **kw,  # type: ignore[arg-type]
    )


async def project(store: Store) -> str:
    p, _, _ = await admin.create_project(store, "contract", clock=lambda: NOW)
    return p.id


async def claim(store: Store, token: str, now: int = NOW, limit: int = 100) -> list:
    return await store.claim_due(now_us=now, limit=limit, lease_us=LEASE, lease_token=token)


def done(
    cd, status: DeliveryStatus = DeliveryStatus.SUCCESS, token: str | None = None
) -> Completion:
    d = cd.delivery
    attempt = Attempt(
        new_id(),
        d.id,
        d.project_id,
        d.endpoint_id,
        "u",
        "POST",
        "127.0.0.1",
        {},
        {},
        200,
        "",
        "",
        True,
        NOW,
        NOW,
        NOW,
    )
    return Completion(d.id, token or cd.lease_token, status, NOW, 10, "", attempt)


# ------------------------------------------------------------------ ingest and routing


async def test_single_event_creates_catch_all_subscription_and_one_delivery(store: Store) -> None:
    pid = await project(store)
    ep = endpoint(pid)
    await store.create_endpoint(ep)
    [res] = await store.ingest([new_event(pid, endpoint_id=ep.id)])
    assert res.error is None and res.deliveries == 1
    page = await store.list_subscriptions(pid, [ep.id], None, PageRequest())
    assert [s.filter_config.event_types for s in page.items] == [("*",)]
    deliveries = await store.list_deliveries(pid, DeliveryFilter(), PageRequest())
    assert [d.status for d in deliveries.items] == [DeliveryStatus.SCHEDULED]


async def test_unknown_or_foreign_endpoint_is_rejected_and_nothing_written(store: Store) -> None:
    pid, other = await project(store), await project(store)
    foreign = endpoint(other)
    await store.create_endpoint(foreign)
    good = endpoint(pid)
    await store.create_endpoint(good)
    results = await store.ingest(
        [
            new_event(pid, endpoint_id="01ARZ3NDEKTSV4RRFFQ69G5FAV"),
            new_event(pid, endpoint_id=foreign.id),
            new_event(pid, endpoint_id=good.id),
        ]
    )
    assert isinstance(results[0].error, ValidationError)
    assert isinstance(results[1].error, ValidationError)
    assert results[2].error is None
    events = await store.list_events(pid, EventFilter(), PageRequest())
    assert [e.id for e in events.items] == [results[2].event_id]
    assert (await store.list_subscriptions(other, [], None, PageRequest())).items == []


async def test_event_type_filter_and_payload_filter_route(store: Store) -> None:
    pid = await project(store)
    ep = endpoint(pid)
    await store.create_endpoint(ep)
    await store.create_subscription(
        subscription(ep, ("invoice.paid",), {"amount": {"$gte": 10}}), allow_multiple=False
    )
    results = await store.ingest(
        [
            new_event(pid, endpoint_id=ep.id, event_type="invoice.paid", parsed={"amount": 50}),
            new_event(pid, endpoint_id=ep.id, event_type="invoice.paid", parsed={"amount": 5}),
            new_event(pid, endpoint_id=ep.id, event_type="invoice.void", parsed={"amount": 50}),
        ]
    )
    assert [r.deliveries for r in results] == [1, 0, 0]


async def test_fanout_reaches_owner_endpoints_with_subscriptions_only(store: Store) -> None:
    pid = await project(store)
    a, b, c, other = (
        endpoint(pid, "o1"),
        endpoint(pid, "o1"),
        endpoint(pid, "o1"),
        endpoint(pid, "o2"),
    )
    for ep in (a, b, c, other):
        await store.create_endpoint(ep)
    for ep in (a, b, other):
        await store.create_subscription(subscription(ep), allow_multiple=False)
    [res] = await store.ingest([new_event(pid, EventKind.FANOUT, owner_id="o1")])
    rows = (
        await store.list_deliveries(pid, DeliveryFilter(event_id=res.event_id), PageRequest())
    ).items
    assert sorted(d.endpoint_id for d in rows) == sorted([a.id, b.id])


async def test_inactive_endpoint_gets_a_discarded_delivery(store: Store) -> None:
    pid = await project(store)
    ep = endpoint(pid, status=EndpointStatus.PAUSED)
    await store.create_endpoint(ep)
    await store.ingest([new_event(pid, endpoint_id=ep.id)])
    rows = (await store.list_deliveries(pid, DeliveryFilter(), PageRequest())).items
    assert [d.status for d in rows] == [DeliveryStatus.DISCARDED]
    assert await claim(store, "w1") == []


async def test_idempotency_key_repeat_is_recorded_as_duplicate_and_not_delivered(
    store: Store,
) -> None:
    pid = await project(store)
    ep = endpoint(pid)
    await store.create_endpoint(ep)
    first = await store.ingest([new_event(pid, endpoint_id=ep.id, key="k")])
    again = await store.ingest(
        [new_event(pid, endpoint_id=ep.id, key="k"), new_event(pid, endpoint_id=ep.id, key="k")]
    )
    assert not first[0].is_duplicate
    assert [r.is_duplicate for r in again] == [True, True]
    assert len((await store.list_deliveries(pid, DeliveryFilter(), PageRequest())).items) == 1


async def test_second_subscription_for_an_endpoint_needs_the_project_setting(store: Store) -> None:
    pid = await project(store)
    ep = endpoint(pid)
    await store.create_endpoint(ep)
    await store.create_subscription(subscription(ep), allow_multiple=False)
    with pytest.raises(ConflictError):
        await store.create_subscription(subscription(ep), allow_multiple=False)
    await store.create_subscription(subscription(ep), allow_multiple=True)


# ------------------------------------------------------------------ the queue


async def _one_delivery(store: Store) -> tuple[str, Endpoint]:
    pid = await project(store)
    ep = endpoint(pid, timeout=1)
    await store.create_endpoint(ep)
    await store.ingest([new_event(pid, endpoint_id=ep.id)])
    return pid, ep


async def test_claim_leases_and_a_second_claim_gets_nothing(store: Store) -> None:
    await _one_delivery(store)
    first = await claim(store, "w1")
    assert len(first) == 1 and first[0].delivery.attempts == 1 and not first[0].reclaimed
    assert first[0].event_data == b'{"amount":5}'
    assert await claim(store, "w2") == []


async def test_two_workers_never_claim_the_same_delivery(store: Store) -> None:
    pid = await project(store)
    ep = endpoint(pid)
    await store.create_endpoint(ep)
    await store.ingest([new_event(pid, endpoint_id=ep.id) for _ in range(300)])
    batches = await asyncio.gather(*(claim(store, f"w{i}", limit=40) for i in range(10)))
    ids = [cd.delivery.id for batch in batches for cd in batch]
    assert len(ids) == 300 and len(set(ids)) == 300


async def test_expired_lease_is_reclaimed_and_fenced_completion_fails(store: Store) -> None:
    await _one_delivery(store)
    [old] = await claim(store, "w1")
    later = NOW + LEASE + 1_000_000 + 1  # past the margin plus the endpoint's 1 s timeout
    assert await claim(store, "w2", now=NOW + LEASE) == []  # not yet expired
    [new] = await claim(store, "w2", now=later)
    assert new.reclaimed and new.delivery.id == old.delivery.id and new.delivery.attempts == 2
    assert await store.complete([done(old)], NOW) == 0  # w1 lost its lease
    assert await store.complete([done(new)], NOW) == 1
    d = await store.get_delivery(old.delivery.project_id, old.delivery.id)
    assert d is not None and d.status is DeliveryStatus.SUCCESS
    assert len(await store.list_attempts(d.project_id, d.id)) == 2  # both tries are on record


async def test_retry_is_not_claimable_before_it_is_due(store: Store) -> None:
    await _one_delivery(store)
    [cd] = await claim(store, "w1")
    due = NOW + 60_000_000
    retry = replace(done(cd, DeliveryStatus.RETRY), due_at_us=due)
    assert await store.complete([retry], NOW) == 1
    assert await claim(store, "w1", now=due - 1) == []
    [again] = await claim(store, "w1", now=due)
    assert again.delivery.attempts == 2 and not again.reclaimed


async def test_release_returns_the_lease_without_spending_an_attempt(store: Store) -> None:
    await _one_delivery(store)
    [cd] = await claim(store, "w1")
    assert await store.release([(cd.delivery.id, "not-the-token")], NOW) == 0
    assert await store.release([(cd.delivery.id, cd.lease_token)], NOW) == 1
    [again] = await claim(store, "w2")
    assert again.delivery.attempts == 1


async def test_requeue_only_from_expected_statuses(store: Store) -> None:
    pid, _ = await _one_delivery(store)
    [cd] = await claim(store, "w1")
    await store.complete([done(cd, DeliveryStatus.FAILURE)], NOW)
    assert await store.requeue_delivery(pid, cd.delivery.id, [DeliveryStatus.SUCCESS], NOW) is None
    d = await store.requeue_delivery(pid, cd.delivery.id, [DeliveryStatus.FAILURE], NOW)
    assert d is not None and d.status is DeliveryStatus.SCHEDULED and d.attempts == 0
    assert len(await claim(store, "w1")) == 1


async def test_deleted_endpoint_delivery_is_claimed_with_no_endpoint(store: Store) -> None:
    pid, ep = await _one_delivery(store)
    assert await store.delete_endpoint(pid, ep.id)
    [cd] = await claim(store, "w1")
    assert cd.endpoint is None


# ------------------------------------------------------------------ pagination


async def test_cursor_pagination_walks_forward_and_back(store: Store) -> None:
    pid = await project(store)
    eps = [endpoint(pid) for _ in range(7)]
    for ep in eps:
        await store.create_endpoint(ep)
    newest_first = [e.id for e in reversed(eps)]
    p1 = await store.list_endpoints(pid, None, None, PageRequest(per_page=3))
    assert [e.id for e in p1.items] == newest_first[:3]
    assert p1.has_next_page and not p1.has_prev_page and p1.next_page_cursor == newest_first[3]
    p2 = await store.list_endpoints(
        pid, None, None, PageRequest(3, Direction.NEXT, p1.next_page_cursor)
    )
    assert [e.id for e in p2.items] == newest_first[3:6] and p2.has_prev_page
    p3 = await store.list_endpoints(
        pid, None, None, PageRequest(3, Direction.NEXT, p2.next_page_cursor)
    )
    assert [e.id for e in p3.items] == newest_first[6:] and not p3.has_next_page
    back = await store.list_endpoints(
        pid, None, None, PageRequest(3, Direction.PREV, None, p3.prev_page_cursor)
    )
    assert [e.id for e in back.items] == newest_first[3:6]
    assert back.has_next_page and back.has_prev_page
    first = await store.list_endpoints(
        pid, None, None, PageRequest(3, Direction.PREV, None, back.prev_page_cursor)
    )
    assert [e.id for e in first.items] == newest_first[:3] and not first.has_prev_page
    asc = await store.list_endpoints(pid, None, None, PageRequest(per_page=10, descending=False))
    assert [e.id for e in asc.items] == [e.id for e in eps]
