"""Broadcast fan-out: walks a project's endpoints in keyset chunks, one transaction each.

The event was stored (and acknowledged) first; each chunk writes its deliveries together
with the cursor, so a crash or restart resumes exactly where it stopped. Workers deliver
the first chunks while later ones are still being written: every chunk wakes them.

When the fan-out is done, the :class:`BroadcastWatcher` follows the broadcast until every
delivery has a final status, then counts it, logs ``broadcast.completed`` with its summary
and sends the ``broadcast.completed`` meta event. The watch lives in the memory of the
process that fanned the broadcast out (best effort: a restart forgets it).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hookcast.delivery.meta import MetaEvents
from hookcast.delivery.waker import Waker
from hookcast.domain.errors import LeaseLostError
from hookcast.domain.ids import new_id
from hookcast.domain.models import DeliveryStatus
from hookcast.domain.ports import BroadcastProgress, FanoutJob, Operations, Records
from hookcast.metrics import Metrics

log = logging.getLogger("hookcast.fanout")


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class FanoutOptions:
    chunk: int = 2000
    lease_s: float = 30.0
    poll_interval_s: float = 0.5


@dataclass(frozen=True, slots=True)
class FanoutSummary:
    matched: int
    skipped: int
    scanned: int
    chunks: int
    seconds: float


#: the size of a fan-out's first chunk (then doubling up to FanoutOptions.chunk)
FIRST_CHUNK = 100


class FanoutRunner:
    def __init__(
        self,
        store: Operations,
        waker: Waker,
        deliveries: Waker,
        options: FanoutOptions,
        *,
        clock: Callable[[], int] = _now_us,
        metrics: Metrics | None = None,
        on_done: Callable[[FanoutJob, FanoutSummary], None] | None = None,
    ) -> None:
        self._store = store
        self._waker = waker
        self._deliveries = deliveries
        self._opt = options
        self._clock = clock
        self._metrics = metrics or Metrics()
        self._on_done = on_done
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
                    self._metrics.fanouts_in_progress.inc()
                    try:
                        await self._fan_out(job)
                    finally:
                        self._metrics.fanouts_in_progress.dec()
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
            # slow start: small first chunks get the first deliveries going at once, then
            # chunks double up to the configured size (fewer, larger transactions)
            limit = min(self._opt.chunk, FIRST_CHUNK << min(chunks, 16))
            try:
                result = await self._store.write_fanout_chunk(
                    job, limit=limit, now_us=self._clock(), lease_us=self._lease_us()
                )
            except LeaseLostError:
                log.warning("broadcast.lease_lost", extra={"event_id": job.event_id})
                return
            chunks += 1
            matched, skipped = matched + result.matched, skipped + result.skipped
            scanned += result.scanned
            self._metrics.broadcast_written.inc(result.matched)
            self._metrics.broadcast_skipped.inc(result.skipped)
            if result.matched:
                self._deliveries.notify()
            log.debug(
                "broadcast.chunk_written",
                extra={"event_id": job.event_id, "matched": result.matched, "chunk": chunks},
            )
            if result.done:
                summary = FanoutSummary(
                    matched, skipped, scanned, chunks, round(time.monotonic() - started, 3)
                )
                self._finished(job, summary)
                return
            await asyncio.sleep(0)  # let deliveries and requests run between chunks

    def _finished(self, job: FanoutJob, summary: FanoutSummary) -> None:
        self._metrics.fanout_seconds.observe(summary.seconds)
        log.info(
            "broadcast.fanout_done",
            extra={
                "event_id": job.event_id,
                "matched": summary.matched,
                "skipped": summary.skipped,
                "scanned": summary.scanned,
                "seconds": summary.seconds,
            },
        )
        if self._on_done is not None:
            self._on_done(job, summary)


_PENDING = tuple(
    s.value for s in (DeliveryStatus.SCHEDULED, DeliveryStatus.RETRY, DeliveryStatus.PROCESSING)
)
_MAX_CHECK_INTERVAL_S = 30.0


@dataclass(slots=True)
class _Watch:
    project_id: str
    event_id: str
    event_type: str
    fanout: FanoutSummary
    give_up_at: float  # monotonic seconds
    check_at: float
    interval: float


class BroadcastWatcher:
    """Follows fanned-out broadcasts until all their deliveries are final (then
    ``broadcast.completed``). A broadcast still unfinished after *max_watch_s* (held
    deliveries of a disabled endpoint, say) is let go with ``broadcast.watch_expired``."""

    def __init__(
        self,
        store: Records,
        poll_interval_s: float,
        *,
        metrics: Metrics | None = None,
        meta: MetaEvents | None = None,
        max_watch_s: float = 86_400.0,
        max_watched: int = 10_000,
    ) -> None:
        self._store = store
        self._tick = max(poll_interval_s * 2, 0.05)
        self._metrics = metrics or Metrics()
        self._meta = meta
        self._max_watch_s = max_watch_s
        self._max_watched = max_watched
        self._watched: dict[str, _Watch] = {}
        self._stopping = asyncio.Event()

    def watch(self, job: FanoutJob, summary: FanoutSummary) -> None:
        if len(self._watched) >= self._max_watched:
            log.warning("broadcast.watch_dropped", extra={"event_id": job.event_id})
            return
        now = time.monotonic()
        self._watched[job.event_id] = _Watch(
            job.project_id,
            job.event_id,
            job.event_type,
            summary,
            now + self._max_watch_s,
            now,
            self._tick,
        )

    @property
    def watching(self) -> int:
        return len(self._watched)

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            now = time.monotonic()
            for w in [w for w in self._watched.values() if w.check_at <= now]:
                try:
                    await self._check(w, now)
                except Exception:
                    log.exception("broadcast.watch_failed", extra={"event_id": w.event_id})
                    self._later(w, now)
            try:
                async with asyncio.timeout(self._tick):
                    await self._stopping.wait()
            except TimeoutError:
                pass

    def _later(self, w: _Watch, now: float) -> None:
        w.interval = min(w.interval * 2, _MAX_CHECK_INTERVAL_S)
        w.check_at = now + w.interval

    async def _check(self, w: _Watch, now: float) -> None:
        progress = await self._store.broadcast_progress(w.project_id, w.event_id)
        if progress is None:  # deleted (retention, or its project)
            self._watched.pop(w.event_id, None)
            return
        if progress.fanout_done and not any(progress.statuses.get(s) for s in _PENDING):
            self._watched.pop(w.event_id, None)
            await self._completed(w, progress)
            return
        if now >= w.give_up_at:
            self._watched.pop(w.event_id, None)
            log.warning("broadcast.watch_expired", extra={"event_id": w.event_id})
            return
        self._later(w, now)

    async def _completed(self, w: _Watch, progress: BroadcastProgress) -> None:
        summary = broadcast_summary(w, progress)
        self._metrics.broadcasts_completed.inc()
        log.info("broadcast.completed", extra=summary)
        if self._meta is None:
            return
        project = await self._store.get_project(w.project_id)
        if project is not None:
            self._meta.emit(w.project_id, project.config, "broadcast.completed", summary)


def broadcast_summary(w: _Watch, progress: BroadcastProgress) -> dict[str, Any]:
    def seconds(us: int | None) -> int | None:
        return None if us is None else us // 1_000_000

    return {
        "event_id": w.event_id,
        "event_type": w.event_type,
        "matched": progress.matched,
        "skipped": progress.skipped,
        "statuses": dict(progress.statuses),
        "first_success_at": seconds(progress.first_success_us),
        "last_success_at": seconds(progress.last_success_us),
        "latency_ms": dict(progress.latency_ms),
        "fanout_seconds": w.fanout.seconds,
        "chunks": w.fanout.chunks,
    }
