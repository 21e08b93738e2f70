"""The delivery queue, one small module per dialect (the claim is where they differ), and
what both do the same way: isolating one result that cannot be stored from the others.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from hookcast.domain import storable
from hookcast.domain.errors import StoreError
from hookcast.domain.models import PARKED_US
from hookcast.domain.ports.queue import Finish, Lease

log = logging.getLogger("hookcast.store")

_LIVE = "('Scheduled', 'Retry', 'Processing')"
_FINAL = "('Success', 'Failure', 'Discarded')"
#: an ordered delivery (alias ``q``) waits: a live delivery of the same endpoint and key
#: has an earlier event (event ids are ULIDs, increasing in each process: publish order),
#: or its key is blocked. The statuses are named so that PostgreSQL reads the queue
#: partition alone; SQLite and PostgreSQL answer it from ``ix_deliveries_ordering``.
_WAITS = (
    "(EXISTS (SELECT 1 FROM deliveries h WHERE h.endpoint_id = q.endpoint_id"
    " AND h.ordering_key = q.ordering_key AND h.ordering_key IS NOT NULL"
    f" AND h.status IN {_LIVE} AND h.event_id < q.event_id)"
    " OR EXISTS (SELECT 1 FROM ordering_blocks b WHERE b.endpoint_id = q.endpoint_id"
    " AND b.ordering_key = q.ordering_key))"
)


def head_of_key(behind_fanout: str) -> str:
    """The claim's test (alias ``q``; docs/ordering.md): unordered, or the head of its key
    and no older broadcast of its project still writing its deliveries (one of them may
    come before it); *behind_fanout*: the SQL that finds such a broadcast."""
    return f"(q.ordering_key IS NULL OR (NOT {_WAITS} AND NOT EXISTS ({behind_fanout})))"


#: SQLite: through the small partial index of fan-outs in progress (the `|| ''` keep the
#: planner off the project's index, which would walk every event of the project)
HEAD_OF_KEY = head_of_key(
    "SELECT 1 FROM events v WHERE v.fanout_due_at_us IS NOT NULL"
    " AND v.project_id || '' = q.project_id AND v.id || '' < q.event_id"
)
#: PostgreSQL: the fan-outs in progress are found once per statement (``FANNING``, CTEs),
#: not once per candidate, through their partial index whatever the statistics say (the
#: ORDER BY … LIMIT holds the planner to it; a partition not analyzed yet would otherwise
#: be scanned whole). Past FANNING_CAP fan-outs in progress at once, ordered deliveries
#: wait until fewer are: never claimed out of order.
FANNING_CAP = 10_000
FANNING = (
    "fanning_rows AS MATERIALIZED (SELECT v.project_id, v.id FROM events v"
    f" WHERE v.fanout_due_at_us IS NOT NULL ORDER BY v.fanout_due_at_us LIMIT {FANNING_CAP}),"
    " fanning AS MATERIALIZED (SELECT project_id, min(id) AS first_id FROM fanning_rows"
    " GROUP BY project_id)"
)
HEAD_OF_KEY_FANNING = head_of_key(
    "SELECT 1 FROM fanning w WHERE w.project_id = q.project_id AND w.first_id < q.event_id"
    f" UNION ALL SELECT 1 WHERE (SELECT count(*) FROM fanning_rows) >= {FANNING_CAP}"
)
#: a waiting delivery found due is parked: due at PARKED_US (where the claim never looks,
#: apart from the held deliveries at HELD_US) with ``lease_token`` 'parked'. The end of the
#: delivery before it (or a skip) unparks it in the same transaction; a sweep every SWEEP_US
#: unparks any whose wait ended unseen (a park and an end racing in two workers)
SWEEP_US = 5_000_000
PARK_BATCH = 1000
#: the waiting, due, Scheduled deliveries to park (``{limit}``: how many at most)
PARKABLE = (
    f"SELECT q.id FROM deliveries q WHERE q.status IN {_LIVE} AND q.due_at_us <= {{now}}"
    f" AND q.status = 'Scheduled' AND q.ordering_key IS NOT NULL AND {_WAITS}"
    " ORDER BY q.due_at_us LIMIT {limit}"
)


class SweepClock:
    """When a queue sweeps its parked deliveries: once every SWEEP_US, on a tick that
    claims (one that only records has no room for what the sweep frees)."""

    def __init__(self) -> None:
        self._at_us = 0

    def due(self, now_us: int, limit: int) -> bool:
        if limit <= 0 or now_us < self._at_us:
            return False
        self._at_us = now_us + SWEEP_US
        return True


#: parked deliveries that no longer wait go now (the sweep; ``{table}``: the deliveries, or
#: their queue partition)
UNPARK_SWEEP = (
    "UPDATE {table} SET due_at_us = {now}, lease_token = NULL WHERE id IN ("
    f"SELECT q.id FROM deliveries q WHERE q.status IN {_LIVE} AND q.due_at_us = {PARKED_US}"
    f" AND q.status = 'Scheduled' AND NOT {_WAITS})"
)


def next_of_key(finished: str, exclude: str = "") -> str:
    """The id of the first live delivery of the key of *finished*'s row ``f``, when ``f``
    ended (*exclude*: more SQL conditions on the candidate ``n``)."""
    return (
        f"SELECT (SELECT n.id FROM deliveries n WHERE n.endpoint_id = f.endpoint_id"
        f" AND n.ordering_key = f.ordering_key AND n.status IN {_LIVE}{exclude}"
        f" ORDER BY n.event_id LIMIT 1) FROM {finished} f"
        f" WHERE f.ordering_key IS NOT NULL AND f.status IN {_FINAL}"
    )


def ordering_note(status: str, alias: str) -> str:
    """What a delivery's description gains when it fails for good with an ordering key
    (*status*: the SQL of its new status; *alias*: the delivery's table alias)."""
    return (
        f"CASE WHEN {status} = 'Failure' AND {alias}.ordering_key IS NOT NULL THEN COALESCE(("
        "SELECT CASE e.ordering_on_failure WHEN 'skip' THEN"
        " '; ordering: skipped, the next delivery of its key goes'"
        " ELSE '; ordering: its key is blocked until this delivery is retried or skipped' END"
        f" FROM endpoints e WHERE e.id = {alias}.endpoint_id), '') ELSE '' END"
    )


#: the block a delivery failed for good writes on its key (``f``: the finished rows with
#: their endpoint, project, key and new status)
BLOCK_KEY = (
    "INSERT INTO ordering_blocks (endpoint_id, ordering_key, project_id, delivery_id,"
    " blocked_at_us) SELECT f.endpoint_id, f.ordering_key, f.project_id, f.id, {now}"
    " FROM {finished} f JOIN endpoints e ON e.id = f.endpoint_id WHERE f.status = 'Failure'"
    " AND f.ordering_key IS NOT NULL AND e.ordering_on_failure = 'block'"
    " ON CONFLICT DO NOTHING"
)

Claim = Callable[[Sequence[Finish]], Awaitable[list[Lease]]]
Record = Callable[[Sequence[Finish]], Awaitable[object]]


async def tick_isolated(claim: Claim, record: Record, finished: Sequence[Finish]) -> list[Lease]:
    """One tick (record *finished* and claim) in one transaction. When it fails and there
    were results to record, they are recorded row by row apart (so one result that cannot
    be stored never holds back the others: they would stay leased, be sent again at lease
    expiry and come back in the same failing batch), then the claim runs alone."""
    try:
        return await claim(finished)
    except StoreError:
        if not finished:
            raise
        log.warning("delivery.tick_failed", extra={"finished": len(finished)})
    for fin in finished:
        try:
            await record([fin])
        except StoreError as exc:
            await _record_bare(record, fin, exc)
    return await claim([])


async def _record_bare(record: Record, fin: Finish, exc: StoreError) -> None:
    """A result that fails on its own is recorded once more without the response (body,
    headers); if even that fails, its lease expires and the delivery is tried again."""
    log.error(
        "delivery.complete_row_failed",
        extra={"delivery_id": fin.delivery_id, "error": exc.message[:300]},
    )
    why = f"the attempt's response could not be stored ({exc.message[:200]})"
    bare = fin._replace(
        description=storable.text(fin.description, 200),
        attempt=None if fin.attempt is None else storable.bare_row(fin.attempt, why),
    )
    try:
        await record([bare])
    except StoreError:
        log.exception("delivery.complete_row_lost", extra={"delivery_id": fin.delivery_id})
