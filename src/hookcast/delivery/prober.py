"""Self-healing: a disabled endpoint is probed with backoff, and re-enabled when it answers.

On success its held deliveries are released at the project's recovery rate, so what it
missed while disabled arrives without flooding it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from hookcast.delivery.meta import MetaEvents
from hookcast.delivery.sender import Sender
from hookcast.delivery.waker import Waker
from hookcast.delivery.worker import probe_delay_us
from hookcast.domain.config import ProjectConfig
from hookcast.domain.ids import new_id
from hookcast.domain.models import Endpoint
from hookcast.domain.outbound import build_probe
from hookcast.domain.ports import Store
from hookcast.metrics import Metrics

log = logging.getLogger("hookcast.prober")


def _now_us() -> int:
    return time.time_ns() // 1000


class Prober:
    def __init__(
        self,
        store: Store,
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

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                due = await self._store.due_probes(self._clock(), 20)
                await asyncio.gather(*(self.probe(e, c) for e, c in due))
            except Exception:
                log.exception("probe.failed")
            try:
                async with asyncio.timeout(max(self._poll_s, 0.05) * 2):
                    await self._stopping.wait()
            except TimeoutError:
                pass

    async def probe(self, endpoint: Endpoint, config: ProjectConfig) -> bool:
        """One signed ping; True when the endpoint answered 2xx and was re-enabled."""
        request = build_probe(endpoint, config, new_id(), self._clock())
        result = await self._sender.send(
            request.url, request.body, request.headers, float(endpoint.http_timeout)
        )
        if result.status is not None and 200 <= result.status < 300:
            released = await self._store.enable_endpoint(
                endpoint.id, self._clock(), config.recovery_rate
            )
            self._deliveries.notify()
            self._enabled(endpoint, config, released)
            return True
        self._metrics.probes.labels("failure").inc()
        attempts = endpoint.probe_attempts + 1
        await self._store.reschedule_probe(
            endpoint.id,
            self._clock() + probe_delay_us(attempts, self._base_s, self._max_s),
            attempts,
        )
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
