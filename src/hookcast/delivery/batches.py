"""Background operator actions (batch retry, batch replay): leased, chunked, resumable."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from hookcast.delivery.waker import Waker
from hookcast.domain.errors import LeaseLostError
from hookcast.domain.ids import new_id
from hookcast.domain.models import BatchJob, BatchStatus
from hookcast.domain.ports import Operations

log = logging.getLogger("hookcast.batch")

CHUNK = 500
LEASE_US = 30_000_000


def _now_us() -> int:
    return time.time_ns() // 1000


async def run_job(
    store: Operations,
    job: BatchJob,
    token: str,
    *,
    deliveries: Waker | None = None,
    on_progress: Callable[[BatchJob], None] | None = None,
    clock: Callable[[], int] = _now_us,
) -> BatchJob:
    """Drive one claimed job to its end, chunk by chunk."""
    while job.status is not BatchStatus.DONE:
        try:
            job = await store.run_batch_chunk(
                job.id, token, limit=CHUNK, now_us=clock(), lease_us=LEASE_US
            )
        except LeaseLostError:
            log.warning("batch.lease_lost", extra={"job_id": job.id})
            return job
        if deliveries is not None and job.requeued:
            deliveries.notify()
        if on_progress is not None:
            on_progress(job)
        await asyncio.sleep(0)
    log.info(
        "batch.done",
        extra={
            "job_id": job.id,
            "kind": job.kind.value,
            "processed": job.processed,
            "requeued": job.requeued,
        },
    )
    return job


class BatchRunner:
    def __init__(self, store: Operations, waker: Waker, deliveries: Waker, poll_s: float) -> None:
        self._store = store
        self._waker = waker
        self._deliveries = deliveries
        self._poll_s = poll_s
        self._stopping = asyncio.Event()

    def request_stop(self) -> None:
        self._stopping.set()
        self._waker.notify()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                claimed = await self._store.claim_batch_job(
                    now_us=_now_us(), lease_us=LEASE_US, lease_token=new_id()
                )
                if claimed is not None:
                    await run_job(self._store, claimed[0], claimed[1], deliveries=self._deliveries)
                    continue
            except Exception:
                log.exception("batch.failed")
            await self._waker.wait(self._poll_s * (0.75 + random.random() / 2))
