"""Ordered delivery per key (docs/ordering.md), on every store: the claim takes only the
head of each ordered key; a failure blocks or skips the key; operators unblock it."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from hookcast.domain.models import (
    DeliveryStatus,
    Endpoint,
    EventKind,
    Ordering,
    OrderingOnFailure,
)
from hookcast.domain.ports import Lease
from hookcast.store import Store
from hookcast.store.queue import SWEEP_US
from store.test_contract import (
    NOW,
    claim,
    complete,
    done,
    endpoint,
    new_event,
    project,
    subscription,
)


async def _ordered(
    store: Store, on_failure: OrderingOnFailure = OrderingOnFailure.BLOCK
) -> tuple[str, Endpoint]:
    pid = await project(store)
    ep = replace(endpoint(pid), ordering=Ordering.PER_KEY, ordering_on_failure=on_failure)
    await store.records.create_endpoint(ep)
    return pid, ep


async def _publish(store: Store, pid: str, ep: Endpoint, keys: list[str | None]) -> list[str]:
    """One event per key, in this order (one group commit): their ids, in publish order."""
    events = [new_event(pid, endpoint_id=ep.id, ordering_key=k) for k in keys]
    results = await store.records.ingest(events)
    assert all(r.error is None and r.deliveries == 1 for r in results)
    return [e.id for e in events]


def _events(leases: list[Lease]) -> list[str]:
    return [lease.event_id for lease in leases]


async def test_only_the_head_of_a_key_is_claimed_and_keys_go_in_parallel(store: Store) -> None:
    pid, ep = await _ordered(store)
    a1, b1, a2, b2, a3 = await _publish(store, pid, ep, ["a", "b", "a", "b", "a"])
    first = await claim(store, "w1")
    assert sorted(_events(first)) == sorted([a1, b1])  # one per key, both keys at once
    assert await claim(store, "w2") == []  # the rest wait behind their heads
    await complete(store, [done(lease) for lease in first])
    second = await claim(store, "w1")
    assert sorted(_events(second)) == sorted([a2, b2])
    await complete(store, [done(lease) for lease in second])
    assert _events(await claim(store, "w1")) == [a3]
    d = await store.records.get_delivery(pid, first[0].id)
    assert d is not None and d.ordering_key in ("a", "b")


async def test_a_publish_without_a_key_uses_the_endpoint_s_one_key(store: Store) -> None:
    pid, ep = await _ordered(store)
    e1, e2 = await _publish(store, pid, ep, [None, None])
    [lease] = await claim(store, "w1")
    assert lease.event_id == e1
    d = await store.records.get_delivery(pid, lease.id)
    assert d is not None and d.ordering_key == ""
    await complete(store, [done(lease)])
    assert _events(await claim(store, "w1")) == [e2]


async def test_an_unordered_endpoint_is_unchanged(store: Store) -> None:
    pid = await project(store)
    ep = endpoint(pid)
    await store.records.create_endpoint(ep)
    ids = await _publish(store, pid, ep, ["a", "a", "a"])
    leases = await claim(store, "w1")
    assert sorted(_events(leases)) == sorted(ids)  # all at once: the key is ignored
    for lease in leases:
        d = await store.records.get_delivery(pid, lease.id)
        assert d is not None and d.ordering_key is None


async def test_a_retry_keeps_its_place(store: Store) -> None:
    pid, ep = await _ordered(store)
    e1, e2 = await _publish(store, pid, ep, ["k", "k"])
    [lease] = await claim(store, "w1")
    due = NOW + 60_000_000
    await complete(store, [done(lease, DeliveryStatus.RETRY, due=due)])
    assert await claim(store, "w1", now=due - 1) == []  # the second waits for the retry
    [again] = await claim(store, "w1", now=due)
    assert again.event_id == e1 and again.previous_status == "Retry"
    await complete(store, [done(again)])
    assert _events(await claim(store, "w1", now=due)) == [e2]


async def test_an_expired_lease_is_still_the_head(store: Store) -> None:
    pid, ep = await _ordered(store)
    e1, _ = await _publish(store, pid, ep, ["k", "k"])
    [_lease] = await claim(store, "w1")
    later = NOW + 60_000_000
    [again] = await claim(store, "w2", now=later)  # the head again, not the next
    assert again.event_id == e1 and again.previous_status == "Processing"


async def test_a_failure_blocks_its_key_until_it_is_resent(store: Store) -> None:
    pid, ep = await _ordered(store)
    e1, e2 = await _publish(store, pid, ep, ["k", "k"])
    _, other = await _publish(store, pid, ep, ["k", "free"])
    [head, free] = sorted(await claim(store, "w1"), key=lambda le: le.event_id)
    assert head.event_id == e1 and free.event_id == other
    await complete(store, [done(head, DeliveryStatus.FAILURE), done(free)])
    [block] = await store.records.list_ordering_blocks(pid, ep.id)
    assert (block.ordering_key, block.delivery_id) == ("k", head.id)
    assert (await store.records.queue_stats(NOW)).blocked_keys == 1
    d = await store.records.get_delivery(pid, head.id)
    assert d is not None and "its key is blocked" in d.description
    assert await claim(store, "w1") == []  # blocked: nothing of "k" goes
    requeued = await store.records.requeue_delivery(
        pid, head.id, (DeliveryStatus.FAILURE,), NOW + 1
    )
    assert requeued is not None
    assert await store.records.list_ordering_blocks(pid, ep.id) == []
    [again] = await claim(store, "w1", now=NOW + 1)
    assert again.id == head.id  # the resent head goes first, then the rest
    await complete(store, [done(again)])
    assert _events(await claim(store, "w1", now=NOW + 1)) == [e2]


async def test_an_operator_skip_lets_the_key_go_on(store: Store) -> None:
    pid, ep = await _ordered(store)
    _, e2 = await _publish(store, pid, ep, ["k", "k"])
    [head] = await claim(store, "w1")
    assert await store.records.skip_blocked_delivery(pid, head.id, NOW) is None  # not blocked
    await complete(store, [done(head, DeliveryStatus.FAILURE)])
    skipped = await store.records.skip_blocked_delivery(pid, head.id, NOW)
    assert skipped is not None and skipped.status is DeliveryStatus.FAILURE
    assert "skipped by an operator" in skipped.description
    assert await store.records.skip_blocked_delivery(pid, head.id, NOW) is None  # once
    assert (await store.records.queue_stats(NOW)).blocked_keys == 0
    assert _events(await claim(store, "w1")) == [e2]


async def test_the_skip_policy_moves_on_and_records_it(store: Store) -> None:
    pid, ep = await _ordered(store, OrderingOnFailure.SKIP)
    _, e2 = await _publish(store, pid, ep, ["k", "k"])
    [head] = await claim(store, "w1")
    await complete(store, [done(head, DeliveryStatus.FAILURE)])
    assert await store.records.list_ordering_blocks(pid, ep.id) == []
    d = await store.records.get_delivery(pid, head.id)
    assert d is not None and "skipped, the next delivery of its key goes" in d.description
    assert _events(await claim(store, "w1")) == [e2]


async def test_a_replay_unblocks_the_key(store: Store) -> None:
    pid, ep = await _ordered(store)
    e1, _ = await _publish(store, pid, ep, ["k", "k"])
    [head] = await claim(store, "w1")
    await complete(store, [done(head, DeliveryStatus.FAILURE)])
    assert await store.records.replay_event(pid, e1, NOW) == 1  # the batch requeue path
    assert await store.records.list_ordering_blocks(pid, ep.id) == []
    assert _events(await claim(store, "w1")) == [e1]


async def test_a_broadcast_still_fanning_out_comes_first(store: Store) -> None:
    """A broadcast's deliveries are written after it is stored, with its place in the
    order: later ordered deliveries of the project wait until they are written."""
    pid, ep = await _ordered(store)
    await store.records.create_subscription(subscription(ep), allow_multiple=False)
    broadcast = new_event(pid, EventKind.BROADCAST, ordering_key="k")
    await store.records.ingest([broadcast])
    [later] = await _publish(store, pid, ep, ["k"])
    assert await claim(store, "w1") == []
    job = await store.records.claim_fanout(now_us=NOW, lease_us=5_000_000, lease_token="f")
    assert job is not None
    await store.records.write_fanout_chunk(job, limit=100, now_us=NOW, lease_us=5_000_000)
    [head] = await claim(store, "w1")
    assert head.event_id == broadcast.id
    d = await store.records.get_delivery(pid, head.id)
    assert d is not None and d.ordering_key == "k"
    await complete(store, [done(head)])
    assert _events(await claim(store, "w1")) == [later]


async def test_concurrent_claims_take_one_delivery_per_key(store: Store) -> None:
    pid, ep = await _ordered(store)
    keys = [f"k{i % 20}" for i in range(200)]
    await _publish(store, pid, ep, list(keys))
    seen: dict[str, list[str]] = {}
    for _ in range(12):  # bounded: 10 deliveries per key
        batches = await asyncio.gather(*(claim(store, f"w{i}", limit=7) for i in range(6)))
        leases = [lease for batch in batches for lease in batch]
        keys_now = []
        for lease in leases:
            d = await store.records.get_delivery(pid, lease.id)
            assert d is not None and d.ordering_key is not None
            keys_now.append(d.ordering_key)
            seen.setdefault(d.ordering_key, []).append(lease.event_id)
        assert len(keys_now) == len(set(keys_now))  # never two of one key at once
        await complete(store, [done(lease) for lease in leases])
    assert sum(len(v) for v in seen.values()) == 200
    assert all(v == sorted(v) for v in seen.values())  # each key in publish order


async def test_a_parked_delivery_whose_wait_ended_unseen_is_swept(store: Store) -> None:
    """Parked deliveries are never claimed as such; one whose head ended without the queue
    seeing it (on PostgreSQL, a park and an end racing in two workers) is unparked by the
    sweep that runs once per SWEEP_US, so its key never stalls for good."""
    pid, ep = await _ordered(store)
    e1, e2 = await _publish(store, pid, ep, ["k", "k"])
    [head] = await claim(store, "w1")  # e2 is parked behind it by this tick
    assert head.event_id == e1
    # the head ends behind the queue's back: nothing unparks e2
    await store.db.write(
        lambda tx: tx.run(
            "UPDATE deliveries SET status = 'Success', lease_token = NULL WHERE id = :id",
            id=head.id,
        )
    )
    assert await claim(store, "w1", now=NOW + 1) == []  # parked: not due, whatever the clock
    later = NOW + SWEEP_US
    assert _events(await claim(store, "w1", now=later)) == [e2]
