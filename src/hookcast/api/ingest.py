"""Group commit for publishing: concurrent requests share one transaction.

Each request waits for the commit of the batch it joined, so a 201 is only ever sent for
an event that is durably stored with its deliveries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from hookcast.domain.ports import EventLog, IngestResult, NewEvent
from hookcast.metrics import Metrics

log = logging.getLogger("hookcast.ingest")


class IngestQueue:
    def __init__(
        self,
        store: EventLog,
        *,
        max_batch: int,
        wait_ms: float,
        on_commit: Callable[[], None],
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._max = max_batch
        self._wait_s = wait_ms / 1000
        self._on_commit = on_commit
        self._pending: list[tuple[NewEvent, asyncio.Future[IngestResult]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._full = asyncio.Event()

    async def submit(self, event: NewEvent) -> IngestResult:
        fut: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        self._pending.append((event, fut))
        if len(self._pending) >= self._max:
            self._full.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop())
        return await fut

    async def _flush_loop(self) -> None:
        while self._pending:
            if len(self._pending) < self._max and self._wait_s > 0:
                # give concurrent requests a moment to join this batch
                self._full.clear()
                try:
                    async with asyncio.timeout(self._wait_s):
                        await self._full.wait()
                except TimeoutError:
                    pass
            batch, self._pending = self._pending[: self._max], self._pending[self._max :]
            await self._commit(batch)

    async def _commit(self, batch: list[tuple[NewEvent, asyncio.Future[IngestResult]]]) -> None:
        try:
            results = await self._store.ingest([ev for ev, _ in batch])
        except Exception as exc:
            log.exception("ingest.commit_failed", extra={"count": len(batch)})
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), result in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(result)
        self._on_commit()
        if self._metrics is not None:
            _count(self._metrics, batch, results)

    def notify(self) -> None:
        """Wake the workers after a write outside of a publish (e.g. a resend)."""
        self._on_commit()

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)


def _count(
    metrics: Metrics,
    batch: list[tuple[NewEvent, asyncio.Future[IngestResult]]],
    results: list[IngestResult],
) -> None:
    metrics.ingest_batch_size.observe(len(batch))
    for (ev, _), result in zip(batch, results, strict=True):
        if result.error is None and not result.is_duplicate:
            metrics.ingested(ev.project_id, ev.kind)
