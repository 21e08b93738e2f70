"""The delivery queue, one small module per dialect (the claim is where they differ), and
what both do the same way: isolating one result that cannot be stored from the others.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from hookcast.domain import storable
from hookcast.domain.errors import StoreError
from hookcast.domain.ports.queue import Finish, Lease

log = logging.getLogger("hookcast.store")

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
