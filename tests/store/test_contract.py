"""What every store must do: routing at ingest, the leased queue, fencing, paging."""

from __future__ import annotations

import asyncio

import pytest

from hookcast.api import admin
from hookcast.domain.config import StrategyConfig
from hookcast.domain.errors import ConflictError, ValidationError
from hookcast.domain.ids import new_id
from hookcast.domain.models import (
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
from hookcast.domain.ports import AttemptRow, DeliveryFilter, EventFilter, Finish, Lease, NewEvent
from hookcast.store import Store

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
    p, _, _ = await admin.create_project(store.records, "contract", clock=lambda: NOW)
    return p.id


async def claim(store: Store, token: str, now: int = NOW, limit: int = 100) -> list[Lease]:
    return await store.queue.tick([], limit=limit, now_us=now, lease_us=LEASE, token=token)


async def complete(store: Store, finished: list[Finish]) -> None:
    await store.queue.tick(finished, limit=0, now_us=NOW, lease_us=LEASE, token="recorder")


def done(
    lease: Lease,
    status: DeliveryStatus = DeliveryStatus.SUCCESS,
    token: str | None = None,
    due: int = NOW,
) -> Finish:
    attempt = AttemptRow(
        new_id(), lease.id, lease.project_id, lease.endpoint_id, "u", "POST", "127.0.0.1",
        "{}", "{}", 200, "", "", True, NOW, NOW, NOW,
    )  # fmt: skip
    return Finish(
        lease.id, token or lease.token, lease.endpoint_id, status.value, due, 10, "", attempt
    )


async def status_of(store: Store, lease: Lease) -> DeliveryStatus:
    d = await store.records.get_delivery(lease.project_id, lease.id)
    assert d is not None
    return d.status


# ------------------------------------------------------------------ ingest and routing


async def test_single_event_creates_catch_all_subscription_and_one_delivery(store: Store) -> None:
    pid = await project(store)
    ep = endpoint(pid)
    await store.records.create_endpoint(ep)
    [res] = await store.records.ingest([new_event(pid, endpoint_id=ep.id)])
    assert res.error is None and res.deliveries == 1
    page = await store.records.list_subscriptions(pid, [ep.id], None, PageRequest())
    assert [s.filter_config.event_types for s in page.items] == [("*",)]
    deliveries = await store.records.list_deliveries(pid, DeliveryFilter(), PageRequest())
    assert [d.status for d in deliveries.items] == [DeliveryStatus.SCHEDULED]


async def test_unknown_or_foreign_endpoint_is_rejected_and_nothing_written(store: Store) -> None:
    pid, other = await project(store), await project(store)
    foreign = endpoint(other)
    await store.records.create_endpoint(foreign)
    good = endpoint(pid)
    await store.records.create_endpoint(good)
    results = await store.records.ingest(
        [
            new_event(pid, endpoint_id="01ARZ3NDEKTSV4RRFFQ69G5FAV"),
            new_event(pid, endpoint_id=foreign.id),
            new_event(pid, endpoint_id=good.id),
        ]
    )
    assert isinstance(results[0].error, ValidationError)
    assert isinstance(results[1].error, ValidationError)
    assert results[2].error is None
    events = await store.records.list_events(pid, EventFilter(), PageRequest())
    assert [e.id for e in events.items] == [results[2].event_id]
    assert (await store.records.list_subscriptions(other, [], None, PageRequest())).items == []


async def test_event_type_filter_and_payload_filter_route(store: Store) -> None:
    pid = await project(store)
    ep = endpoint(pid)
    await store.records.create_endpoint(ep)
    await store.records.create_subscription(
        subscription(ep, ("invoice.paid",), {"amount": {"$gte": 10}}), allow_multiple=False
    )
    results = await store.records.ingest(
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
        await store.records.create_endpoint(ep)
    for ep in (a, b, other):
        await store.records.create_subscription(subscription(ep), allow_multiple=False)
    [res] = await store.records.ingest([new_event(pid, EventKind.FANOUT, owner_id="o1")])
    rows = (
        await store.records.list_deliveries(
            pid, DeliveryFilter(event_id=res.event_id), PageRequest()
        )
    ).items
    assert sorted(d.endpoint_id for d in rows) == sorted([a.id, b.id])


async def test_inactive_endpoint_gets_a_discarded_delivery(store: Store) -> None:
    pid = await project(store)
    ep = endpoint(pid, status=EndpointStatus.PAUSED)
    await store.records.create_endpoint(ep)
    await store.records.ingest([new_event(pid, endpoint_id=ep.id)])
    rows = (await store.records.list_deliveries(pid, DeliveryFilter(), PageRequest())).items
    assert [d.status for d in rows] == [DeliveryStatus.DISCARDED]
    assert await claim(store, "w1") == []


async def test_idempotency_key_repeat_is_recorded_as_duplicate_and_not_delivered(
    store: Store,
) -> None:
    pid = await project(store)
    ep = endpoint(pid)
    await store.records.create_endpoint(ep)
    first = await store.records.ingest([new_event(pid, endpoint_id=ep.id, key="k")])
    again = await store.records.ingest(
        [new_event(pid, endpoint_id=ep.id, key="k"), new_event(pid, endpoint_id=ep.id, key="k")]
    )
    assert not first[0].is_duplicate
    assert [r.is_duplicate for r in again] == [True, True]
    assert (
        len((await store.records.list_deliveries(pid, DeliveryFilter(), PageRequest())).items) == 1
    )


async def test_second_subscription_for_an_endpoint_needs_the_project_setting(store: Store) -> None:
    pid = await project(store)
    ep = endpoint(pid)
    await store.records.create_endpoint(ep)
    await store.records.create_subscription(subscription(ep), allow_multiple=False)
    with pytest.raises(ConflictError):
        await store.records.create_subscription(subscription(ep), allow_multiple=False)
    await store.records.create_subscription(subscription(ep), allow_multiple=True)


# ------------------------------------------------------------------ the queue


async def _one_delivery(store: Store) -> tuple[str, Endpoint]:
    pid = await project(store)
    ep = endpoint(pid, timeout=1)
    await store.records.create_endpoint(ep)
    await store.records.ingest([new_event(pid, endpoint_id=ep.id)])
    return pid, ep


async def test_claim_leases_and_a_second_claim_gets_nothing(store: Store) -> None:
    await _one_delivery(store)
    first = await claim(store, "w1")
    assert len(first) == 1 and first[0].attempts == 1
    assert first[0].previous_status == "Scheduled"
    assert first[0].data == b'{"amount":5}' and first[0].token == "w1"
    assert await claim(store, "w2") == []


async def test_two_workers_never_claim_the_same_delivery(store: Store) -> None:
    pid = await project(store)
    ep = endpoint(pid)
    await store.records.create_endpoint(ep)
    await store.records.ingest([new_event(pid, endpoint_id=ep.id) for _ in range(300)])
    batches = await asyncio.gather(*(claim(store, f"w{i}", limit=40) for i in range(10)))
    ids = [lease.id for batch in batches for lease in batch]
    assert len(ids) == 300 and len(set(ids)) == 300


async def test_expired_lease_is_reclaimed_and_fenced_completion_fails(store: Store) -> None:
    await _one_delivery(store)
    [old] = await claim(store, "w1")
    later = NOW + LEASE + 1_000_000 + 1  # past the margin plus the endpoint's 1 s timeout
    assert await claim(store, "w2", now=NOW + LEASE) == []  # not yet expired
    [new] = await claim(store, "w2", now=later)
    assert new.previous_status == "Processing" and new.id == old.id and new.attempts == 2
    await complete(store, [done(old)])  # w1 lost its lease: nothing changes
    assert await status_of(store, old) is DeliveryStatus.PROCESSING
    await complete(store, [done(new)])
    assert await status_of(store, old) is DeliveryStatus.SUCCESS
    # both tries are on record
    assert len(await store.records.list_attempts(old.project_id, old.id)) == 2


async def test_a_tick_records_and_claims_in_one_go(store: Store) -> None:
    pid = await project(store)
    ep = endpoint(pid)
    await store.records.create_endpoint(ep)
    await store.records.ingest([new_event(pid, endpoint_id=ep.id) for _ in range(3)])
    first = await claim(store, "w1", limit=2)
    second = await store.queue.tick(
        [done(lease) for lease in first], limit=10, now_us=NOW, lease_us=LEASE, token="w1b"
    )
    assert len(second) == 1 and second[0].id not in {lease.id for lease in first}
    assert [await status_of(store, lease) for lease in first] == [DeliveryStatus.SUCCESS] * 2


async def test_retry_is_not_claimable_before_it_is_due(store: Store) -> None:
    await _one_delivery(store)
    [lease] = await claim(store, "w1")
    due = NOW + 60_000_000
    await complete(store, [done(lease, DeliveryStatus.RETRY, due=due)])
    assert await status_of(store, lease) is DeliveryStatus.RETRY
    assert await claim(store, "w1", now=due - 1) == []
    [again] = await claim(store, "w1", now=due)
    assert again.attempts == 2 and again.previous_status == "Retry"


async def test_release_returns_the_lease_without_spending_an_attempt(store: Store) -> None:
    await _one_delivery(store)
    [lease] = await claim(store, "w1")
    assert await store.queue.release([(lease.id, "not-the-token")], NOW) == 0
    assert await store.queue.release([(lease.id, lease.token)], NOW) == 1
    [again] = await claim(store, "w2")
    assert again.attempts == 1


async def test_a_result_that_cannot_be_stored_does_not_hold_back_the_batch(store: Store) -> None:
    """A status no column holds and a NUL byte are cleaned; the whole batch is recorded."""
    pid = await project(store)
    ep = endpoint(pid)
    await store.records.create_endpoint(ep)
    await store.records.ingest([new_event(pid, endpoint_id=ep.id) for _ in range(3)])
    leases = await claim(store, "w1")
    bad = done(leases[0])
    assert bad.attempt is not None
    bad = bad._replace(attempt=bad.attempt._replace(http_status=10**20, response_data="a\x00b"))
    await complete(store, [bad, done(leases[1]), done(leases[2])])
    assert [await status_of(store, lease) for lease in leases] == [DeliveryStatus.SUCCESS] * 3
    [attempt] = await store.records.list_attempts(pid, leases[0].id)
    assert attempt.http_status == 0 and "\x00" not in attempt.response_data


async def test_requeue_only_from_expected_statuses(store: Store) -> None:
    pid, _ = await _one_delivery(store)
    [lease] = await claim(store, "w1")
    await complete(store, [done(lease, DeliveryStatus.FAILURE)])
    assert (
        await store.records.requeue_delivery(pid, lease.id, [DeliveryStatus.SUCCESS], NOW) is None
    )
    d = await store.records.requeue_delivery(pid, lease.id, [DeliveryStatus.FAILURE], NOW)
    assert d is not None and d.status is DeliveryStatus.SCHEDULED and d.attempts == 0
    assert len(await claim(store, "w1")) == 1


async def test_deleted_endpoint_delivery_is_claimed_with_no_endpoint(store: Store) -> None:
    pid, ep = await _one_delivery(store)
    assert await store.records.delete_endpoint(pid, ep.id)
    [lease] = await claim(store, "w1")
    assert lease.endpoint_version is None


# ------------------------------------------------------------------ pagination


async def test_cursor_pagination_walks_forward_and_back(store: Store) -> None:
    pid = await project(store)
    eps = [endpoint(pid) for _ in range(7)]
    for ep in eps:
        await store.records.create_endpoint(ep)
    newest_first = [e.id for e in reversed(eps)]
    p1 = await store.records.list_endpoints(pid, None, None, PageRequest(per_page=3))
    assert [e.id for e in p1.items] == newest_first[:3]
    assert p1.has_next_page and not p1.has_prev_page and p1.next_page_cursor == newest_first[3]
    p2 = await store.records.list_endpoints(
        pid, None, None, PageRequest(3, Direction.NEXT, p1.next_page_cursor)
    )
    assert [e.id for e in p2.items] == newest_first[3:6] and p2.has_prev_page
    p3 = await store.records.list_endpoints(
        pid, None, None, PageRequest(3, Direction.NEXT, p2.next_page_cursor)
    )
    assert [e.id for e in p3.items] == newest_first[6:] and not p3.has_next_page
    back = await store.records.list_endpoints(
        pid, None, None, PageRequest(3, Direction.PREV, None, p3.prev_page_cursor)
    )
    assert [e.id for e in back.items] == newest_first[3:6]
    assert back.has_next_page and back.has_prev_page
    first = await store.records.list_endpoints(
        pid, None, None, PageRequest(3, Direction.PREV, None, back.prev_page_cursor)
    )
    assert [e.id for e in first.items] == newest_first[:3] and not first.has_prev_page
    asc = await store.records.list_endpoints(
        pid, None, None, PageRequest(per_page=10, descending=False)
    )
    assert [e.id for e in asc.items] == [e.id for e in eps]
