"""Self-healing: a disabled endpoint is probed with backoff, and re-enabled when it answers.

On success its held deliveries are released at the project's recovery rate, so what it
missed while disabled arrives without flooding it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable

from hookcast.delivery.meta import MetaEvents
from hookcast.delivery.sender import Sender
from hookcast.delivery.waker import Waker
from hookcast.domain.config import ProjectConfig
from hookcast.domain.ids import new_id
from hookcast.domain.models import Endpoint
from hookcast.domain.outbound import build_probe
from hookcast.domain.ports import EndpointHealth
from hookcast.domain.verdict import probe_delay_us
from hookcast.metrics import Metrics

log = logging.getLogger("hookcast.prober")

#: probes in flight at once; each is a short "are you back?" ping with its own deadline
MAX_CONCURRENT = 32
PROBE_TIMEOUT_S = 10.0


def _now_us() -> int:
    return time.time_ns() // 1000


class Prober:
    def __init__(
        self,
        store: EndpointHealth,
        sender: Sender,
        deliveries: Waker,
        poll_s: float,
        *,
        clock: Callable[[], int] = _now_us,
        metrics: Metrics | None = None,
        meta: MetaEvents | None = None,
        base_s: float = 30.0,
        max_s: float = 3600.0,
    ) -> None:
        self._base_s = base_s
        self._max_s = max_s
        self._store = store
        self._sender = sender
        self._deliveries = deliveries
        self._poll_s = poll_s
        self._clock = clock
        self._metrics = metrics or Metrics()
        self._meta = meta
        self._stopping = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        try:
            while not self._stopping.is_set():
                await self.tick()
                try:
                    async with asyncio.timeout(max(self._poll_s, 0.05) * 2):
                        await self._stopping.wait()
                except TimeoutError:
                    pass
        finally:
            for task in list(self._running.values()):
                task.cancel()
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def tick(self) -> int:
        """Start the probes that are due (as many as there are free slots); returns how
        many started. Each is rescheduled *before* it is sent, with the backoff of a failed
        probe: it is not due again while it runs, and a probe that hangs, raises or whose
        process dies comes back on time without holding back other endpoints' probes."""
        free = MAX_CONCURRENT - len(self._running)
        if free <= 0:
            return 0
        try:
            due = await self._store.due_probes(self._clock(), free)
        except Exception:
            log.exception("probe.poll_failed")
            return 0
        started = 0
        for endpoint, config in due:
            if endpoint.id in self._running:
                continue
            attempts = endpoint.probe_attempts + 1
            try:
                await self._store.reschedule_probe(
                    endpoint.id,
                    self._clock() + probe_delay_us(attempts, self._base_s, self._max_s),
                    attempts,
                )
            except Exception:
                log.exception("probe.reschedule_failed", extra={"endpoint_id": endpoint.id})
                continue
            task = asyncio.create_task(self._probe_safely(endpoint, config, attempts))
            self._running[endpoint.id] = task
            task.add_done_callback(functools.partial(self._ended, endpoint.id))
            started += 1
        return started

    def _ended(self, endpoint_id: str, _task: asyncio.Task[None]) -> None:
        self._running.pop(endpoint_id, None)

    async def _probe_safely(self, endpoint: Endpoint, config: ProjectConfig, attempts: int) -> None:
        try:
            await self.probe(endpoint, config, attempts)
        except Exception:
            # already rescheduled with backoff: it is tried again then
            self._metrics.probes.labels("failure").inc()
            log.exception("probe.crashed", extra={"endpoint_id": endpoint.id})

    async def probe(self, endpoint: Endpoint, config: ProjectConfig, attempts: int = 1) -> bool:
        """One signed ping; True when the endpoint answered 2xx and was re-enabled. The
        probe was rescheduled before (see :meth:`tick`); this only records its result."""
        request = build_probe(endpoint, config, new_id(), self._clock())
        result = await self._sender.send(
            request.url,
            request.body,
            request.headers,
            min(float(endpoint.http_timeout), PROBE_TIMEOUT_S),
        )
        if result.status is not None and 200 <= result.status < 300:
            released = await self._store.enable_endpoint(
                endpoint.id, self._clock(), config.recovery_rate
            )
            self._deliveries.notify()
            self._enabled(endpoint, config, released)
            return True
        self._metrics.probes.labels("failure").inc()
        log.info(
            "endpoint.probe_failed",
            extra={
                "endpoint_id": endpoint.id,
                "attempts": attempts,
                "status": result.status,
                "error": result.error,
            },
        )
        return False

    def _enabled(self, endpoint: Endpoint, config: ProjectConfig, released: int) -> None:
        self._metrics.probes.labels("success").inc()
        self._metrics.endpoints_enabled.inc()
        log.info(
            "endpoint.enabled",
            extra={"endpoint_id": endpoint.id, "released": released, "by": "probe"},
        )
        if self._meta is not None:
            self._meta.emit(
                endpoint.project_id,
                config,
                "endpoint.enabled",
                {
                    "endpoint_id": endpoint.id,
                    "name": endpoint.name,
                    "owner_id": endpoint.owner_id,
                    "by": "probe",
                    "probe_attempts": endpoint.probe_attempts + 1,
                    "released_deliveries": released,
                },
            )
