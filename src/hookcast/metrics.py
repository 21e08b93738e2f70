"""Prometheus metrics (``GET /metrics``), one registry per process.

Where the numbers come from:

- **Counters and histograms live in the process that does the work.** Ingest counts in
  API processes; delivery, breaker, broadcast and meta-event counts in worker processes.
  ``hookcast serve`` (one process) shows them all at ``/metrics``. With
  ``hookcast serve --workers N`` or separate ``hookcast worker`` processes, each worker
  serves its own registry on ``HOOKCAST_METRICS_PORT`` (``serve --workers N`` gives its
  children that port + 0 … N-1); scrape every process and sum in Prometheus.
- **Queue gauges are read from the database when scraped** (one cheap query, see
  :meth:`hookcast.domain.ports.Operations.queue_stats`), so every process reports the same
  whole-queue numbers: take ``max`` across processes, not ``sum``.
- **Circuit breakers** (``hookcast_circuit_breakers``) count every endpoint by the breaker
  state stored on it, read with the queue gauges: the same in every process (take ``max``),
  deleted endpoints gone from it, and right after a restart.
- **Blocked ordering keys** (``hookcast_ordering_blocked_keys``): keys held by a delivery
  that failed for good (docs/ordering.md), read with the queue gauges the same way.

Cardinality is bounded: no per-event, per-delivery or per-endpoint labels. ``project_id``
appears on one counter (projects are few and made by operators); every other label takes
values from a short fixed list, written next to each metric below.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import cast

import orjson
from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from hookcast.domain.breaker import TransitionKind
from hookcast.domain.config import META_EVENT_TYPES
from hookcast.domain.models import DeliveryStatus, EventKind
from hookcast.domain.ports import Operations, QueueStats

log = logging.getLogger("hookcast.metrics")

_TICK_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1)
_ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_DELIVERED_BUCKETS = (
    *(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    *(300, 900, 3600, 7200, 21_600, 86_400),
)
_BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)
_FANOUT_BUCKETS = (0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900)

OUTCOMES = ("success", "retry", "failure", "discarded")
DEFERRAL_REASONS = ("concurrency", "rate_limit", "circuit_breaker", "endpoint_disabled", "other")
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "1xx", "error")
DISABLE_REASONS = ("gone", "breaker", "manual", "other")
META_RESULTS = ("sent", "failed", "dropped")

_OUTCOME_OF = {
    DeliveryStatus.SUCCESS: "success",
    DeliveryStatus.RETRY: "retry",
    DeliveryStatus.FAILURE: "failure",
    DeliveryStatus.DISCARDED: "discarded",
}


def deferral_reason(text: str) -> str:
    """A bounded label for a deferral's free-text reason."""
    if "concurrency" in text:
        return "concurrency"
    if "rate limit" in text:
        return "rate_limit"
    if "breaker" in text:
        return "circuit_breaker"
    if "disabled" in text:
        return "endpoint_disabled"
    return "other"


def status_class(status: int | None) -> str:
    if status is None or not 100 <= status <= 599:
        return "error"
    return f"{status // 100}xx"


def disable_reason(reason: str) -> str:
    if reason == "":
        return "manual"
    return reason if reason in DISABLE_REASONS else "other"


@dataclass
class _QueueSnapshot:
    stats: QueueStats | None
    now_us: int


class _QueueCollector(Collector):
    """The queue gauges, from the last :meth:`Operations.queue_stats` read (at scrape time)."""

    def __init__(self) -> None:
        self.snapshot = _QueueSnapshot(None, 0)

    def collect(self) -> Iterable[Metric]:
        snap = self.snapshot
        up = GaugeMetricFamily(
            "hookcast_store_up", "1 when the last queue read at scrape time succeeded"
        )
        up.add_metric([], 1.0 if snap.stats is not None else 0.0)
        yield up
        stats = snap.stats
        if stats is None:
            return
        yield GaugeMetricFamily(
            "hookcast_queue_due_deliveries",
            "Deliveries due now and not yet claimed (expired leases included), whole queue",
            value=stats.due,
        )
        age = 0.0
        if stats.oldest_due_at_us is not None:
            age = max(snap.now_us - stats.oldest_due_at_us, 0) / 1e6
        yield GaugeMetricFamily(
            "hookcast_queue_oldest_due_age_seconds",
            "How long the longest-waiting due delivery has been due (queue lag)",
            value=age,
        )
        yield GaugeMetricFamily(
            "hookcast_queue_scheduled_deliveries",
            "Deliveries waiting for a later attempt time, or leased to a worker",
            value=stats.scheduled,
        )
        yield GaugeMetricFamily(
            "hookcast_queue_held_deliveries",
            "Deliveries held for disabled endpoints",
            value=stats.held,
        )
        inactive = GaugeMetricFamily(
            "hookcast_endpoints_inactive",
            "Disabled endpoints by reason (manual, gone, breaker, other)",
            labels=["reason"],
        )
        counts = dict.fromkeys(DISABLE_REASONS, 0)
        for reason, n in stats.disabled_endpoints.items():
            counts[disable_reason(reason)] += n
        for reason, n in counts.items():
            inactive.add_metric([reason], n)
        yield inactive
        yield GaugeMetricFamily(
            "hookcast_ordering_blocked_keys",
            "Ordering keys held by a delivery that failed for good, until an operator resends"
            " or skips it (docs/ordering.md), whole gateway",
            value=stats.blocked_keys,
        )


class _BreakerCollector(Collector):
    """Endpoints by circuit-breaker state, from the last queue read (at scrape time)."""

    def __init__(self, queue: _QueueCollector) -> None:
        self._queue = queue

    def collect(self) -> Iterable[Metric]:
        stats = self._queue.snapshot.stats
        if stats is None:
            return
        family = GaugeMetricFamily(
            "hookcast_circuit_breakers",
            "Endpoints by circuit-breaker state (stored on each endpoint), whole gateway",
            labels=["state"],
        )
        for state, n in stats.breakers.items():
            family.add_metric([state], n)
        yield family


class Metrics:
    """Every metric hookcast exports, on a registry of its own (one per process, or per
    gateway in tests)."""

    def __init__(self) -> None:
        # no ``*_created`` series: they double the output (the library's switch is global)
        cast(Callable[[], None], disable_created_metrics)()
        r = self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=r)
        GCCollector(registry=r)
        self._queue = _QueueCollector()
        self._breakers = _BreakerCollector(self._queue)
        r.register(self._queue)
        r.register(self._breakers)

        # ingest (API processes)
        self.events_ingested = Counter(
            "hookcast_events_ingested_total",
            "Events stored, by project and kind (single, fanout, broadcast, dynamic); "
            "duplicates not counted",
            ["project_id", "kind"],
            registry=r,
        )
        self.ingest_batch_size = Histogram(
            "hookcast_ingest_batch_size",
            "Events per group commit",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.api_in_flight = Gauge(
            "hookcast_api_requests_in_flight", "HTTP requests being handled", registry=r
        )

        # delivery (worker processes)
        self.deliveries = Counter(
            "hookcast_deliveries_total",
            "Delivery outcomes decided by the worker: success, retry (another attempt "
            "scheduled), failure (final), discarded",
            ["outcome"],
            registry=r,
        )
        self.attempt_seconds = Histogram(
            "hookcast_delivery_attempt_duration_seconds",
            "One HTTP attempt, connect to last byte, by status class (2xx … 5xx, error)",
            ["status_class"],
            buckets=_ATTEMPT_BUCKETS,
            registry=r,
        )
        self.delivered_seconds = Histogram(
            "hookcast_delivery_latency_seconds",
            "From the delivery's creation (the publish; a broadcast's chunk write) to its "
            "successful attempt, retries included",
            buckets=_DELIVERED_BUCKETS,
            registry=r,
        )
        self.queue_tick_seconds = Histogram(
            "hookcast_queue_tick_seconds",
            "One worker tick against the queue: the previous batch finished and the next "
            "claimed, in one transaction (one round trip on PostgreSQL)",
            buckets=_TICK_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "hookcast_deliveries_in_flight",
            "Delivery attempts in flight in this process",
            registry=r,
        )
        self.deferrals = Counter(
            "hookcast_delivery_deferrals_total",
            "Deliveries put back without an attempt (throttles): concurrency, rate_limit, "
            "circuit_breaker, endpoint_disabled, other",
            ["reason"],
            registry=r,
        )
        self.breaker_transitions = Counter(
            "hookcast_circuit_breaker_transitions_total",
            "Circuit-breaker transitions: opened, half_opened, closed, reopened",
            ["transition"],
            registry=r,
        )
        self.endpoints_disabled = Counter(
            "hookcast_endpoints_disabled_total",
            "Endpoints disabled automatically: gone (410) or breaker",
            ["reason"],
            registry=r,
        )
        self.endpoints_enabled = Counter(
            "hookcast_endpoints_enabled_total",
            "Disabled endpoints re-enabled by a successful probe",
            registry=r,
        )
        self.probes = Counter(
            "hookcast_endpoint_probes_total",
            "Probes of disabled endpoints: success, failure",
            ["result"],
            registry=r,
        )

        # broadcast (worker processes)
        self.fanouts_in_progress = Gauge(
            "hookcast_broadcast_fanouts_in_progress",
            "Broadcasts whose deliveries this process is writing now",
            registry=r,
        )
        self.broadcast_written = Counter(
            "hookcast_broadcast_deliveries_written_total",
            "Deliveries written by broadcast fan-out",
            registry=r,
        )
        self.broadcast_skipped = Counter(
            "hookcast_broadcast_endpoints_skipped_total",
            "Matching endpoints a broadcast skipped (paused or disabled)",
            registry=r,
        )
        self.fanout_seconds = Histogram(
            "hookcast_broadcast_fanout_duration_seconds",
            "Time to write all deliveries of one broadcast",
            buckets=_FANOUT_BUCKETS,
            registry=r,
        )
        self.broadcasts_completed = Counter(
            "hookcast_broadcasts_completed_total",
            "Broadcasts all of whose deliveries reached a final status",
            registry=r,
        )

        # meta events (worker processes)
        self.meta_events = Counter(
            "hookcast_meta_events_total",
            "Operator webhooks (meta events) by type and result: sent, failed, dropped",
            ["event_type", "result"],
            registry=r,
        )

        # incoming webhooks (API processes): requests a source's verifier refused
        self.source_verification_failures = Counter(
            "hookcast_source_verification_failures_total",
            "Requests to a source's ingest URL refused by its verifier (401), never stored",
            ["project", "source"],
            registry=r,
        )

        # bound children for the hot path: a label lookup per delivery adds up
        self._outcomes = {status: self.deliveries.labels(o) for status, o in _OUTCOME_OF.items()}
        self._classes = {c: self.attempt_seconds.labels(c) for c in STATUS_CLASSES}
        self._ingested: dict[tuple[str, EventKind], Counter] = {}
        # every fixed label value shows up from the start, at zero
        self._deferrals = {reason: self.deferrals.labels(reason) for reason in DEFERRAL_REASONS}
        for kind in TransitionKind:
            self.breaker_transitions.labels(kind.value)
        for reason in ("gone", "breaker"):
            self.endpoints_disabled.labels(reason)
        for result in ("success", "failure"):
            self.probes.labels(result)
        for event_type in META_EVENT_TYPES:
            for result in META_RESULTS:
                self.meta_events.labels(event_type, result)

    # ------------------------------------------------------------ recording

    def ingested(self, project_id: str, kind: EventKind) -> None:
        child = self._ingested.get((project_id, kind))
        if child is None:
            child = self.events_ingested.labels(project_id, kind.value)
            self._ingested[(project_id, kind)] = child
        child.inc()

    def outcome(self, status: DeliveryStatus) -> None:
        child = self._outcomes.get(status)
        if child is not None:
            child.inc()

    def attempt(self, status: int | None, seconds: float) -> None:
        self._classes[status_class(status)].observe(seconds)

    def deferred(self, reason: str) -> None:
        self._deferrals[deferral_reason(reason)].inc()

    # ------------------------------------------------------------ exposition

    async def refresh_queue(self, store: Operations, timeout_s: float = 5.0) -> None:
        now = time.time_ns() // 1000
        try:
            async with asyncio.timeout(timeout_s):
                stats = await store.queue_stats(now)
        except Exception:
            log.warning("metrics.queue_stats_failed", exc_info=True)
            self._queue.snapshot = _QueueSnapshot(None, now)
            return
        self._queue.snapshot = _QueueSnapshot(stats, now)

    def render(self, accept: str) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _refused(message: str) -> web.Response:
    """The 401 in Convoy's error envelope (written here: metrics sits below the API)."""
    body = orjson.dumps({"status": False, "message": message})
    headers = {"WWW-Authenticate": 'Bearer realm="metrics"'}
    return web.Response(body=body, status=401, content_type="application/json", headers=headers)


def metrics_handler(metrics: Metrics, store: Operations, token: str = "") -> Handler:
    """``GET /metrics``: reads the queue from *store*, then renders the registry. With a
    *token* (``HOOKCAST_METRICS_TOKEN``), only for ``Authorization: Bearer <token>``."""
    expected = token.encode()

    async def handle(request: web.Request) -> web.Response:
        if expected and not _bearer_matches(request.headers.get("Authorization", ""), expected):
            return _refused(
                "unauthorized: /metrics needs the header 'Authorization: Bearer <token>' "
                "with the token set in HOOKCAST_METRICS_TOKEN"
            )
        await metrics.refresh_queue(store)
        body, content_type = metrics.render(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    return handle


def _bearer_matches(header: str, expected: bytes) -> bool:
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # header values may hold any byte (as surrogates): compare bytes, in constant time
    given = credentials.strip().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given, expected)


def is_loopback(host: str) -> bool:
    """Whether a listener on *host* is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: assume it resolves to an outside address


async def start_listener(
    metrics: Metrics, store: Operations, host: str, port: int, token: str = ""
) -> web.AppRunner | None:
    """A tiny HTTP server with ``/metrics`` only: for processes without the API
    (``hookcast worker``), and for an API process given ``HOOKCAST_METRICS_ADDRESS``.
    Delivery matters more than metrics: when the port is taken, this logs
    ``metrics.listen_failed`` and the process runs on without it."""
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(metrics, store, token))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        log.error("metrics.listen_failed", extra={"port": port, "error": str(exc)})
        await runner.cleanup()
        return None
    log.info("metrics.listening", extra={"url": f"http://{host}:{port}/metrics"})
    return runner
