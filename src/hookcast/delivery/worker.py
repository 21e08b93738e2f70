"""The delivery worker: it works in ticks.

A tick is one call to the queue: record what finished since the last tick, lease what is
due next. For each lease the worker admits it (per-endpoint caps, rate limits, breaker)
or gives it back (a deferral), builds its request from the endpoint's prepared entry,
sends it under a deadline, and judges the result (:func:`hookcast.domain.verdict.judge`)
into a :class:`Finish` that the next tick records. Polling alone is correct; the waker
only makes new work start sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from hookcast.delivery.directory import Directory, Entry
from hookcast.delivery.health import EndpointHealth
from hookcast.delivery.meta import MetaEvents
from hookcast.delivery.sender import Sender, SendResult
from hookcast.delivery.shared import HEARTBEAT_S, RateAsk, RateGrant, RedisRateLimiter
from hookcast.delivery.waker import Waker
from hookcast.domain.ids import new_id
from hookcast.domain.models import HELD_US, DeliveryMode, DeliveryStatus, EndpointStatus
from hookcast.domain.ports.queue import AttemptRow, Deferral, DeliveryQueue, Finish, Lease
from hookcast.domain.verdict import Verdict, judge, probe_delay_us
from hookcast.metrics import Metrics
from hookcast.tracing import Tracing

log = logging.getLogger("hookcast.worker")

_EMPTY_HEADERS = "{}"
#: results recorded per tick at most (a larger backlog takes several ticks)
_MAX_FINISHED = 1000


def now_us() -> int:
    return time.time_ns() // 1000


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    concurrency: int = 256
    claim_batch: int = 200
    poll_interval_s: float = 0.5
    lease_margin_s: float = 30.0
    completion_flush_ms: float = 5.0
    shutdown_grace_s: float = 10.0
    endpoint_max_in_flight: int = 64
    probe_base_s: float = 30.0
    probe_max_s: float = 3600.0


class Worker:
    def __init__(
        self,
        queue: DeliveryQueue,
        directory: Directory,
        sender: Sender,
        waker: Waker,
        options: WorkerOptions,
        *,
        metrics: Metrics,
        clock: Callable[[], int] = now_us,
        rand: Callable[[], float] = random.random,
        meta: MetaEvents | None = None,
        limiter: RedisRateLimiter | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._queue = queue
        self._directory = directory
        self._sender = sender
        self._waker = waker
        self._opt = options
        self._clock = clock
        self._rand = rand
        self._metrics = metrics
        self._meta = meta
        self._limiter = limiter
        self._tracing = tracing
        self._lease_us = int(options.lease_margin_s * 1_000_000)
        self._health = EndpointHealth(
            options.endpoint_max_in_flight,
            self._lease_us,
            rand,
            max_share=max(1, options.concurrency // 4),
        )
        #: results waiting for the next tick
        self._finished: list[Finish] = []
        self._result = asyncio.Event()
        # leased deliveries waiting in this worker for their endpoint's next free slot;
        # they hold no slot (only in-flight attempts count against the concurrency), and
        # at most ``concurrency`` of them wait at once
        self._waiting: dict[str, deque[Lease]] = {}
        self._waiting_count = 0
        self._inflight: dict[asyncio.Task[None], Lease] = {}
        self._stopping = asyncio.Event()
        self._token_prefix = new_id()[-10:]
        self._ticks = 0

    # ------------------------------------------------------------ the loop

    async def run(self) -> None:
        log.info("worker.started", extra={"concurrency": self._opt.concurrency})
        beat = asyncio.create_task(self._heartbeat()) if self._limiter is not None else None
        try:
            await self._loop()
        finally:
            if beat is not None:
                beat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beat
                if self._limiter is not None:
                    await self._limiter.leave(self._token_prefix)
        await self._drain()

    def request_stop(self) -> None:
        self._stopping.set()
        self._result.set()

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            # deliveries waiting here for a busy endpoint hold no slot (their room is
            # capped apart): hanging endpoints must not stop the claim for the others
            free = self._opt.concurrency - len(self._inflight)
            limit = max(0, min(free, self._opt.claim_batch))
            try:
                leases = await self._tick(limit)
            except Exception:
                log.exception("worker.tick_failed")
                await self._idle()
                continue
            if leases:
                await self._start_batch(leases)
            if limit and len(leases) == limit:
                continue  # more may be due: claim again at once
            await self._idle()

    async def _tick(self, limit: int) -> list[Lease]:
        finished = self._finished[:_MAX_FINISHED]
        del self._finished[:_MAX_FINISHED]
        self._ticks += 1
        started = time.perf_counter()
        leases = await self._queue.tick(
            finished,
            limit=limit,
            now_us=self._clock(),
            lease_us=self._lease_us,
            token=f"{self._token_prefix}-{self._ticks}",
        )
        self._metrics.queue_tick_seconds.observe(time.perf_counter() - started)
        return leases

    async def _idle(self) -> None:
        """Until the next tick: a short flush window when results wait to be recorded;
        else a result, a wake-up (new work), or the poll interval (with jitter, so many
        workers do not poll in lock-step)."""
        flush_s = self._opt.completion_flush_ms / 1000
        if self._finished:
            await asyncio.sleep(flush_s)
            return
        self._result.clear()
        if self._stopping.is_set():  # asked to stop during the tick: no wait
            return
        timeout = self._opt.poll_interval_s * (0.75 + self._rand() / 2)
        result = asyncio.ensure_future(self._result.wait())
        wake = asyncio.ensure_future(self._waker.wait(timeout))
        try:
            done, _ = await asyncio.wait({result, wake}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            result.cancel()
            wake.cancel()
        if result in done and not self._stopping.is_set():
            await asyncio.sleep(flush_s)  # let a few more results join this tick

    async def _heartbeat(self) -> None:
        """Count the live workers (Redis): each endpoint's cap is divided among them."""
        assert self._limiter is not None
        while not self._stopping.is_set():
            workers = await self._limiter.heartbeat(self._token_prefix)
            if workers != self._health.workers:
                log.info("worker.peers", extra={"workers": workers})
                self._health.workers = workers
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HEARTBEAT_S):
                    await self._stopping.wait()

    # ------------------------------------------------------------ shutdown

    async def _drain(self) -> None:
        """Let in-flight attempts finish up to the grace deadline, record them, and give
        back the leases of what is left and of what was still waiting for a slot."""
        leases = [(le.id, le.token) for q in self._waiting.values() for le in q]
        self._waiting.clear()
        self._waiting_count = 0
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=self._opt.shutdown_grace_s)
            leases += [(le.id, le.token) for t, le in self._inflight.items() if t in pending]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        with contextlib.suppress(Exception):
            while self._finished:
                await self._tick(0)
        if leases:
            with contextlib.suppress(Exception):
                await self._queue.release(leases, self._clock())
            log.info("worker.leases_released", extra={"count": len(leases)})
        log.info("worker.stopped")

    # ------------------------------------------------------------ admission

    async def _start_batch(self, leases: list[Lease]) -> None:
        await self._directory.refresh(leases)
        grants = await self._shared_rates(leases)
        deferrals = self._admit_and_start(leases, grants)
        if deferrals:
            await self._defer(deferrals)

    async def _shared_rates(self, leases: list[Lease]) -> dict[str, RateGrant] | None:
        """Tokens of the shared rate limits for the rate-limited endpoints of this batch (one
        Redis round trip); None without Redis, or when it is down (limits apply locally)."""
        if self._limiter is None:
            return None
        counts: dict[str, int] = {}
        limited: dict[str, Entry] = {}
        for lease in leases:
            entry = self._directory.get(lease.endpoint_id)
            if entry is None or entry.endpoint.rate_limit <= 0:
                continue
            if entry.endpoint.rate_limit_duration > 0:
                counts[lease.endpoint_id] = counts.get(lease.endpoint_id, 0) + 1
                limited[lease.endpoint_id] = entry
        if not counts:
            return {}
        asks = [
            RateAsk(
                eid, n, limited[eid].endpoint.rate_limit, limited[eid].endpoint.rate_limit_duration
            )
            for eid, n in counts.items()
        ]
        return await self._limiter.take(asks)

    def _admit_and_start(
        self, leases: list[Lease], grants: dict[str, RateGrant] | None
    ) -> list[Deferral]:
        """Start what may be sent now; the rest is finished (discarded) or deferred."""
        now = self._clock()
        deferrals: list[Deferral] = []
        self._health.new_batch()
        refused: dict[str, int] = {}
        for lease in leases:
            entry = self._directory.get(lease.endpoint_id)
            final = self._precheck(lease, entry, now)
            if final is not None or entry is None:
                self._finish(
                    lease, final or self._final(lease, DeliveryStatus.DISCARDED, "gone", now)
                )
                continue
            endpoint, config = entry.endpoint, entry.config
            if endpoint.status is EndpointStatus.INACTIVE:
                deferrals.append(self._deferral(lease, HELD_US, "held: the endpoint is disabled"))
                continue
            grant = grants.get(endpoint.id) if grants else None
            if grant is not None and grant.granted <= 0:
                # the shared limit is spent: come back when the next token is due, one
                # interval apart, so this batch's rest does not return all at once
                n = refused[endpoint.id] = refused.get(endpoint.id, 0) + 1
                due = now + grant.wait_us + (n - 1) * grant.interval_us
                deferrals.append(
                    self._deferral(lease, due + int(self._rand() * 5000), "endpoint rate limit")
                )
                continue
            queue = self._waiting.get(endpoint.id)
            verdict = self._health.admit(
                endpoint,
                config,
                now,
                len(queue) if queue else 0,
                # a shared token is spent at once: no waiting here for a slot with it
                may_wait=grant is None and self._waiting_count < self._opt.concurrency,
                rate_checked=grant is not None,
            )
            if grant is not None:
                grant.granted -= 1
            if verdict.wait:
                self._waiting.setdefault(endpoint.id, deque()).append(lease)
                self._waiting_count += 1
            elif not verdict.send:
                deferrals.append(self._deferral(lease, verdict.defer_until_us, verdict.reason))
            else:
                self._start(lease, entry)
        return deferrals

    def _start(self, lease: Lease, entry: Entry) -> None:
        task = asyncio.create_task(self._process(lease, entry))
        self._inflight[task] = lease
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery.crashed", exc_info=task.exception())

    def _next_waiting(self, endpoint_id: str) -> None:
        """A slot of this endpoint freed up: start the next delivery waiting for it."""
        if self._stopping.is_set():
            return
        queue = self._waiting.get(endpoint_id)
        while queue:
            lease = queue.popleft()
            self._waiting_count -= 1
            entry = self._directory.get(endpoint_id)
            if entry is None:
                self._finish(
                    lease,
                    self._final(
                        lease, DeliveryStatus.DISCARDED, "endpoint was deleted", self._clock()
                    ),
                )
                continue
            verdict = self._health.admit(entry.endpoint, entry.config, self._clock(), len(queue))
            if verdict.send:
                self._start(lease, entry)
                break
            if verdict.wait:  # still at the cap: back to the front
                queue.appendleft(lease)
                self._waiting_count += 1
                break
            deferral = self._deferral(lease, verdict.defer_until_us, verdict.reason)
            task = asyncio.create_task(self._defer([deferral]))
            self._inflight[task] = lease
            task.add_done_callback(self._done)
        if queue is not None and not queue:
            self._waiting.pop(endpoint_id, None)

    def _deferral(self, lease: Lease, until_us: int, reason: str) -> Deferral:
        self._metrics.deferred(reason)
        # a reclaimed lease (it was Processing) goes back as a retry
        status = "Retry" if lease.previous_status == "Processing" else lease.previous_status
        return Deferral(lease.id, lease.token, status, until_us, reason)

    async def _defer(self, deferrals: Sequence[Deferral]) -> None:
        try:
            await self._queue.defer(deferrals, self._clock())
        except Exception:
            # the leases expire and the deliveries come back: nothing is lost
            log.exception("delivery.defer_failed", extra={"count": len(deferrals)})

    def _precheck(self, lease: Lease, entry: Entry | None, now: int) -> Finish | None:
        """Deliveries that must not be sent: their final :class:`Finish`, else None."""
        if entry is None:
            return self._final(lease, DeliveryStatus.DISCARDED, "endpoint was deleted", now)
        if entry.endpoint.status is EndpointStatus.PAUSED:
            return self._final(lease, DeliveryStatus.DISCARDED, "endpoint is paused", now)
        reclaimed = lease.previous_status == DeliveryStatus.PROCESSING.value
        if reclaimed and lease.delivery_mode == DeliveryMode.AT_MOST_ONCE.value:
            return self._final(
                lease, DeliveryStatus.FAILURE, "lease expired during an at-most-once attempt", now
            )
        return None

    @staticmethod
    def _final(lease: Lease, status: DeliveryStatus, why: str, now: int) -> Finish:
        return Finish(lease.id, lease.token, lease.endpoint_id, status.value, now, None, why, None)

    # ------------------------------------------------------------ one delivery

    async def _process(self, lease: Lease, entry: Entry) -> None:
        """One attempt, recorded whatever happens: a request that cannot even be built is
        recorded as a failed attempt, and the endpoint's slot is always given back."""
        try:
            headers, result = await self._send(lease, entry)
            try:
                self._finish(lease, self._judge(lease, entry, headers, result))
            except Exception:
                log.exception("delivery.judge_failed", extra={"delivery_id": lease.id})
                self._finish(lease, self._fallback(lease, headers, result))
        finally:
            self._health.release(entry.endpoint)
        self._next_waiting(lease.endpoint_id)

    async def _send(self, lease: Lease, entry: Entry) -> tuple[str, SendResult]:
        """Build and send the request; the request headers as the attempt log keeps them
        (JSON) and what came back."""
        now = self._clock()
        prepared = entry.prepared
        try:
            if prepared is None:
                raise ValueError(entry.problem)
            custom = {} if lease.headers == _EMPTY_HEADERS else orjson.loads(lease.headers)
            body = prepared.body(lease.data)
            headers = prepared.headers(
                lease.id, lease.event_id, lease.idempotency_key, custom, body, now
            )
        except Exception as exc:
            error = (
                str(exc)
                if prepared is None
                else f"not sent: the request could not be built: {type(exc).__name__}: {exc}"
            )
            return "{}", SendResult(None, {}, "", error, "", now, self._clock())
        timeout = float(entry.endpoint.http_timeout)
        self._metrics.in_flight.inc()
        try:
            if self._tracing is not None and self._tracing.enabled:
                result = await self._traced_send(lease, entry, body, headers, timeout)
            else:
                result = await self._sender.send(
                    prepared.url, body, headers, timeout, static=entry.static, checked=True
                )
        finally:
            self._metrics.in_flight.dec()
        return _dumps(prepared.logged(headers)), result

    async def _traced_send(
        self, lease: Lease, entry: Entry, body: bytes, headers: dict[str, str], limit_s: float
    ) -> SendResult:
        """One attempt in a span that continues the publish's trace; the endpoint gets the
        attempt's own ``traceparent``."""
        assert self._tracing is not None
        assert entry.prepared is not None
        attributes: dict[str, str | int] = {
            "hookcast.delivery_id": lease.id,
            "hookcast.event_id": lease.event_id,
            "hookcast.endpoint_id": lease.endpoint_id,
            "hookcast.attempt": lease.attempts,  # counted at the claim
            "http.request.method": "POST",
        }
        event_headers = {} if lease.headers == _EMPTY_HEADERS else orjson.loads(lease.headers)
        with self._tracing.attempt(event_headers, attributes) as span:
            headers.update(span.headers)
            result = await self._sender.send(
                entry.prepared.url, body, headers, limit_s, static=entry.static, checked=True
            )
            span.result(result.status, result.error)
            return result

    def _judge(self, lease: Lease, entry: Entry, headers: str, result: SendResult) -> Finish:
        now = self._clock()
        latency = result.ended_us - result.started_us
        success = result.status is not None and 200 <= result.status < 300
        health = self._health.finished(entry.endpoint, entry.config, now, success, latency)
        if health.transition:
            self._metrics.breaker_transitions.labels(health.transition).inc()
            log.info(
                "endpoint.breaker",
                extra={"endpoint_id": lease.endpoint_id, "transition": health.transition},
            )
        verdict = judge(
            lease,
            result.status,
            result.error,
            result.headers,
            breaker_says_disable=health.disable,
            may_disable=entry.config.disable_endpoint,
            now_us=now,
            rand=self._rand,
            first_probe_delay_us=probe_delay_us(0, self._opt.probe_base_s, self._opt.probe_max_s),
        )
        self._metrics.attempt(result.status, latency / 1e6)
        if verdict.success:
            self._metrics.delivered_seconds.observe(max(now - lease.created_at_us, 0) / 1e6)
        if verdict.disable:
            self._disabled(entry, verdict)
        return Finish(
            lease.id,
            lease.token,
            lease.endpoint_id,
            verdict.status.value,
            verdict.due_at_us,
            latency,
            verdict.description,
            self._attempt(lease, entry, headers, result),
            None if health.breaker is None else _dumps(health.breaker),
            verdict.disable,
            verdict.probe_at_us,
        )

    def _fallback(self, lease: Lease, headers: str, result: SendResult) -> Finish:
        """The result of an attempt whose verdict could not be reached (a bug): tried again
        in a minute while attempts remain, so it is neither lost nor hammered."""
        now = self._clock()
        entry = self._directory.get(lease.endpoint_id)
        attempt = self._attempt(lease, entry, headers, result) if entry is not None else None
        if lease.attempts >= lease.retry_limit:
            return Finish(
                lease.id,
                lease.token,
                lease.endpoint_id,
                "Failure",
                now,
                None,
                "internal error judging the attempt",
                attempt,
            )
        return Finish(
            lease.id,
            lease.token,
            lease.endpoint_id,
            "Retry",
            now + 60_000_000,
            None,
            "internal error judging the attempt; retrying",
            attempt,
        )

    @staticmethod
    def _attempt(lease: Lease, entry: Entry, headers: str, result: SendResult) -> AttemptRow:
        ok = result.status is not None and 200 <= result.status < 300
        return AttemptRow(
            new_id(),
            lease.id,
            lease.project_id,
            lease.endpoint_id,
            entry.endpoint.url,
            "POST",
            result.ip_address,
            headers,
            _dumps(result.headers),
            result.status or 0,
            result.body_excerpt,
            result.error,
            ok,
            result.started_us,
            result.ended_us,
            result.ended_us,
        )

    def _finish(self, lease: Lease, fin: Finish) -> None:
        """Queue the result for the next tick; count it; a final failure becomes a
        ``delivery.failed`` meta event."""
        status = DeliveryStatus(fin.status)
        self._metrics.outcome(status)
        if status is DeliveryStatus.FAILURE and self._meta is not None:
            entry = self._directory.get(lease.endpoint_id)
            if entry is not None:
                self._meta.emit(
                    lease.project_id,
                    entry.config,
                    "delivery.failed",
                    {
                        "delivery_id": lease.id,
                        "event_id": lease.event_id,
                        "endpoint_id": lease.endpoint_id,
                        "event_type": lease.event_type,
                        "attempts": lease.attempts,
                        "http_status": fin.attempt.http_status if fin.attempt else None,
                        "error": fin.attempt.error if fin.attempt else "",
                        "description": fin.description,
                    },
                )
        self._finished.append(fin)
        self._result.set()

    def _disabled(self, entry: Entry, verdict: Verdict) -> None:
        endpoint = entry.endpoint
        self._health.forget(endpoint.id)
        self._metrics.endpoints_disabled.labels(verdict.disable).inc()
        log.warning(
            "endpoint.disabled", extra={"endpoint_id": endpoint.id, "reason": verdict.disable}
        )
        if self._meta is not None:
            self._meta.emit(
                endpoint.project_id,
                entry.config,
                "endpoint.disabled",
                {
                    "endpoint_id": endpoint.id,
                    "name": endpoint.name,
                    "owner_id": endpoint.owner_id,
                    "reason": verdict.disable,
                    "next_probe_at": (verdict.probe_at_us or 0) // 1_000_000,
                },
            )
