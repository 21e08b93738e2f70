"""Broadcast fan-out: walks a project's endpoints in keyset chunks, one transaction each.

The event was stored (and acknowledged) first; each chunk writes its deliveries together
with the cursor, so a crash or restart resumes exactly where it stopped. Workers deliver
the first chunks while later ones are still being written: every chunk wakes them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from hookcast.delivery.waker import Waker
from hookcast.domain.errors import LeaseLostError
from hookcast.domain.ids import new_id
from hookcast.domain.ports import FanoutJob, Store

log = logging.getLogger("hookcast.fanout")


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class FanoutOptions:
    chunk: int = 2000
    lease_s: float = 30.0
    poll_interval_s: float = 0.5


class FanoutRunner:
    def __init__(
        self,
        store: Store,
        waker: Waker,
        deliveries: Waker,
        options: FanoutOptions,
        *,
        clock: Callable[[], int] = _now_us,
    ) -> None:
        self._store = store
        self._waker = waker
        self._deliveries = deliveries
        self._opt = options
        self._clock = clock
        self._stopping = asyncio.Event()

    def request_stop(self) -> None:
        self._stopping.set()
        self._waker.notify()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                job = await self._store.claim_fanout(
                    now_us=self._clock(), lease_us=self._lease_us(), lease_token=new_id()
                )
                if job is not None:
                    await self._fan_out(job)
                    continue
            except Exception:
                log.exception("broadcast.fanout_failed")
            await self._waker.wait(self._opt.poll_interval_s * (0.75 + random.random() / 2))

    def _lease_us(self) -> int:
        return int(self._opt.lease_s * 1_000_000)

    async def _fan_out(self, job: FanoutJob) -> None:
        started = time.monotonic()
        matched = skipped = scanned = chunks = 0
        log.info("broadcast.fanout_started", extra={"event_id": job.event_id})
        while not self._stopping.is_set():
            try:
                result = await self._store.write_fanout_chunk(
                    job, limit=self._opt.chunk, now_us=self._clock(), lease_us=self._lease_us()
                )
            except LeaseLostError:
                log.warning("broadcast.lease_lost", extra={"event_id": job.event_id})
                return
            chunks += 1
            matched, skipped = matched + result.matched, skipped + result.skipped
            scanned += result.scanned
            if result.matched:
                self._deliveries.notify()
            log.debug(
                "broadcast.chunk_written",
                extra={"event_id": job.event_id, "matched": result.matched, "chunk": chunks},
            )
            if result.done:
                log.info(
                    "broadcast.fanout_done",
                    extra={
                        "event_id": job.event_id,
                        "matched": matched,
                        "skipped": skipped,
                        "scanned": scanned,
                        "seconds": round(time.monotonic() - started, 3),
                    },
                )
                return
            await asyncio.sleep(0)  # let deliveries and requests run between chunks
