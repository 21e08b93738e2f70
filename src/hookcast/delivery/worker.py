"""The delivery worker: claim → build request → send under a deadline → classify → record.

Claims are leased batches from the deliveries table; completions are fenced by the lease
token and written in batches (group commit of attempt records). Polling alone is correct;
the waker only makes new work start sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from hookcast.delivery.health import EndpointHealth
from hookcast.delivery.health import Outcome as HealthOutcome
from hookcast.delivery.meta import MetaEvents
from hookcast.delivery.sender import Sender, SendResult
from hookcast.delivery.shared import HEARTBEAT_S, RateAsk, RateGrant, RedisRateLimiter
from hookcast.delivery.waker import Waker
from hookcast.domain.config import ProjectConfig, StrategyConfig, StrategyType
from hookcast.domain.ids import new_id
from hookcast.domain.models import (
    HELD_US,
    Attempt,
    Delivery,
    DeliveryMode,
    DeliveryStatus,
    Endpoint,
    EndpointStatus,
)
from hookcast.domain.outbound import OutboundRequest, build_request, loggable_headers
from hookcast.domain.outcome import Outcome, OutcomeKind, classify
from hookcast.domain.ports import ClaimedDelivery, Completion, Deferral, Store
from hookcast.domain.retry import decide_after_failure
from hookcast.metrics import Metrics
from hookcast.tracing import Tracing

log = logging.getLogger("hookcast.worker")


def now_us() -> int:
    return time.time_ns() // 1000


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


class Completer:
    """Collects completions and writes them in batches, one transaction per flush."""

    def __init__(self, store: Store, flush_ms: float, clock: Callable[[], int]) -> None:
        self._store = store
        self._flush_s = flush_ms / 1000
        self._clock = clock
        self._pending: list[Completion] = []
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, completion: Completion) -> None:
        self._pending.append(completion)
        if len(self._pending) >= 256:
            self._spawn_flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._flush_s, self._spawn_flush)

    def _spawn_flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task = asyncio.create_task(self.flush())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        async with self._lock:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    lost = len(batch) - await self._store.complete(batch, self._clock())
                except Exception:
                    log.exception("delivery.complete_failed", extra={"count": len(batch)})
                    # leases expire and the deliveries are retried: at-least-once holds
                    continue
                if lost:
                    log.warning("delivery.lease_lost", extra={"count": lost})

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.flush()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class Worker:
    def __init__(
        self,
        store: Store,
        sender: Sender,
        waker: Waker,
        options: WorkerOptions,
        *,
        clock: Callable[[], int] = now_us,
        rand: Callable[[], float] = random.random,
        metrics: Metrics | None = None,
        meta: MetaEvents | None = None,
        limiter: RedisRateLimiter | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._store = store
        self._tracing = tracing or Tracing()
        self._limiter = limiter
        self._sender = sender
        self._waker = waker
        self._opt = options
        self._clock = clock
        self._rand = rand
        self._completer = Completer(store, options.completion_flush_ms, clock)
        self._health = EndpointHealth(
            options.endpoint_max_in_flight,
            int(options.lease_margin_s * 1_000_000),
            rand,
            max_share=max(1, options.concurrency // 4),
        )
        # leased deliveries waiting in this worker for their endpoint's next free slot;
        # they hold no slot (only in-flight attempts count against the concurrency), and
        # at most ``concurrency`` of them wait at once
        self._waiting: dict[str, deque[ClaimedDelivery]] = {}
        self._waiting_count = 0
        self._inflight: dict[asyncio.Task[None], ClaimedDelivery] = {}
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._token_prefix = new_id()[-10:]
        self._claims = 0
        self._metrics = metrics or Metrics()
        self._meta = meta
        self._metrics.track_breakers(self._health.breaker_states)

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

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            free = self._opt.concurrency - len(self._inflight)
            if free <= 0:
                await self._wait_for_slot()
                continue
            want = min(free, self._opt.claim_batch)
            try:
                claimed = await self._claim(want)
            except Exception:
                log.exception("worker.claim_failed")
                await self._idle()
                continue
            grants = await self._shared_rates(claimed)
            deferrals = self._admit_and_start(claimed, grants)
            if deferrals:
                await self._defer(deferrals)
            if len(claimed) < want:
                await self._idle()

    async def _claim(self, limit: int) -> list[ClaimedDelivery]:
        self._claims += 1
        token = f"{self._token_prefix}-{self._claims}"
        return await self._store.claim_due(
            now_us=self._clock(),
            limit=limit,
            lease_us=int(self._opt.lease_margin_s * 1_000_000),
            lease_token=token,
        )

    async def _idle(self) -> None:
        # jitter keeps many workers from polling in lock-step
        timeout = self._opt.poll_interval_s * (0.75 + self._rand() / 2)
        stop = asyncio.ensure_future(self._stopping.wait())
        wake = asyncio.ensure_future(self._waker.wait(timeout))
        try:
            await asyncio.wait({stop, wake}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (stop, wake):
                fut.cancel()

    async def _wait_for_slot(self) -> None:
        self._slot_freed.clear()
        if len(self._inflight) >= self._opt.concurrency:
            stop = asyncio.ensure_future(self._stopping.wait())
            slot = asyncio.ensure_future(self._slot_freed.wait())
            try:
                await asyncio.wait({stop, slot}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
                slot.cancel()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self._slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery.crashed", exc_info=task.exception())

    # ------------------------------------------------------------ shutdown

    def request_stop(self) -> None:
        self._stopping.set()

    async def _drain(self) -> None:
        """Let in-flight attempts finish up to the grace deadline, then give back the leases
        of what is left, and of what was still waiting for a slot."""
        leases = [(cd.delivery.id, cd.lease_token) for q in self._waiting.values() for cd in q]
        self._waiting.clear()
        self._waiting_count = 0
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=self._opt.shutdown_grace_s)
            leases += [
                (cd.delivery.id, cd.lease_token) for t, cd in self._inflight.items() if t in pending
            ]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if leases:
            with contextlib.suppress(Exception):
                await self._store.release(leases, self._clock())
            log.info("worker.leases_released", extra={"count": len(leases)})
        await self._completer.close()
        self._metrics.untrack_breakers(self._health.breaker_states)
        log.info("worker.stopped")

    # ------------------------------------------------------------ one delivery

    async def _shared_rates(self, claimed: list[ClaimedDelivery]) -> dict[str, RateGrant] | None:
        """Tokens of the shared rate limits for the rate-limited endpoints of this batch (one
        Redis round trip); None without Redis, or when it is down (limits apply locally)."""
        if self._limiter is None:
            return None
        counts: dict[str, int] = {}
        limited: dict[str, Endpoint] = {}
        for cd in claimed:
            ep = cd.endpoint
            if ep is not None and ep.rate_limit > 0 and ep.rate_limit_duration > 0:
                counts[ep.id] = counts.get(ep.id, 0) + 1
                limited[ep.id] = ep
        if not counts:
            return {}
        asks = [
            RateAsk(eid, n, limited[eid].rate_limit, limited[eid].rate_limit_duration)
            for eid, n in counts.items()
        ]
        return await self._limiter.take(asks)

    def _admit_and_start(
        self, claimed: list[ClaimedDelivery], grants: dict[str, RateGrant] | None = None
    ) -> list[Deferral]:
        """Start what may be sent now; the rest is finished (discarded) or deferred."""
        now = self._clock()
        deferrals: list[Deferral] = []
        self._health.new_batch()
        refused: dict[str, int] = {}
        for cd in claimed:
            endpoint, config = cd.endpoint, cd.project_config
            final = self._precheck(cd, now)
            if final is not None or endpoint is None or config is None:
                self._complete(cd, final or self._final(cd, DeliveryStatus.DISCARDED, "gone", now))
                continue
            if endpoint.status is EndpointStatus.INACTIVE:
                deferrals.append(self._deferral(cd, HELD_US, "held: the endpoint is disabled"))
                continue
            grant = grants.get(endpoint.id) if grants else None
            if grant is not None and grant.granted <= 0:
                # the shared limit is spent: come back when the next token is due, one
                # interval apart, so this batch's rest does not return all at once
                n = refused[endpoint.id] = refused.get(endpoint.id, 0) + 1
                due = now + grant.wait_us + (n - 1) * grant.interval_us
                deferrals.append(
                    self._deferral(cd, due + int(self._rand() * 5000), "endpoint rate limit")
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
                self._waiting.setdefault(endpoint.id, deque()).append(cd)
                self._waiting_count += 1
                continue
            if not verdict.send:
                deferrals.append(self._deferral(cd, verdict.defer_until_us, verdict.reason))
                continue
            self._start(cd, endpoint, config)
        return deferrals

    def _start(self, cd: ClaimedDelivery, endpoint: Endpoint, config: ProjectConfig) -> None:
        task = asyncio.create_task(self._process(cd, endpoint, config))
        self._inflight[task] = cd
        task.add_done_callback(self._done)

    def _next_waiting(self, endpoint_id: str) -> None:
        """A slot of this endpoint freed up: start the next delivery waiting for it."""
        if self._stopping.is_set():
            return
        queue = self._waiting.get(endpoint_id)
        while queue:
            cd = queue.popleft()
            self._waiting_count -= 1
            endpoint, config = cd.endpoint, cd.project_config
            if endpoint is None or config is None:
                continue
            verdict = self._health.admit(endpoint, config, self._clock(), len(queue))
            if verdict.send:
                self._start(cd, endpoint, config)
                break
            if verdict.wait:  # still at the cap: back to the front
                queue.appendleft(cd)
                self._waiting_count += 1
                break
            deferral = self._deferral(cd, verdict.defer_until_us, verdict.reason)
            task = asyncio.create_task(self._defer([deferral]))
            self._inflight[task] = cd
            task.add_done_callback(self._done)
        if queue is not None and not queue:
            self._waiting.pop(endpoint_id, None)

    def _deferral(self, cd: ClaimedDelivery, until_us: int, reason: str) -> Deferral:
        self._metrics.deferred(reason)
        return Deferral(cd.delivery.id, cd.lease_token, cd.previous_status, until_us, reason)

    def _complete(self, cd: ClaimedDelivery, completion: Completion) -> None:
        """Queue the completion for the next group commit; count it; a final failure
        becomes a ``delivery.failed`` meta event."""
        self._metrics.outcome(completion.status)
        if completion.status is DeliveryStatus.FAILURE and self._meta is not None:
            attempt = completion.attempt
            d = cd.delivery
            self._meta.emit(
                d.project_id,
                cd.project_config,
                "delivery.failed",
                {
                    "delivery_id": d.id,
                    "event_id": d.event_id,
                    "endpoint_id": d.endpoint_id,
                    "event_type": d.event_type,
                    "attempts": d.attempts,
                    "http_status": attempt.http_status if attempt else None,
                    "error": attempt.error if attempt else "",
                    "description": completion.description,
                },
            )
        self._completer.add(completion)

    async def _defer(self, deferrals: list[Deferral]) -> None:
        try:
            await self._store.defer(deferrals, self._clock())
        except Exception:
            # the leases expire and the deliveries come back: nothing is lost
            log.exception("delivery.defer_failed", extra={"count": len(deferrals)})

    async def _process(
        self, cd: ClaimedDelivery, endpoint: Endpoint, config: ProjectConfig
    ) -> None:
        """One attempt, recorded whatever happens: a request that cannot even be built is
        recorded as a failed attempt, and the endpoint's slot is always given back."""
        try:
            url, headers, result = await self._send(cd, endpoint, config)
            attempt = self._attempt(cd, url, headers, result)
            try:
                completion = self._decide(cd, endpoint, config, result, attempt)
            except Exception:
                log.exception("delivery.decide_failed", extra={"delivery_id": cd.delivery.id})
                completion = self._fallback(cd, attempt)
            self._complete(cd, completion)
        finally:
            self._health.release(endpoint)
        self._next_waiting(endpoint.id)

    async def _send(
        self, cd: ClaimedDelivery, endpoint: Endpoint, config: ProjectConfig
    ) -> tuple[str, dict[str, str], SendResult]:
        now = self._clock()
        try:
            request = build_request(
                cd.delivery, endpoint, config, cd.event_data, cd.event_headers, now
            )
        except Exception as exc:
            log.exception("delivery.build_failed", extra={"delivery_id": cd.delivery.id})
            error = f"not sent: the request could not be built: {type(exc).__name__}: {exc}"
            return endpoint.url, {}, SendResult(None, {}, "", error, "", now, self._clock())
        self._metrics.in_flight.inc()
        try:
            if self._tracing.enabled:
                result = await self._traced_send(cd, endpoint, request)
            else:
                result = await self._sender.send(
                    request.url, request.body, request.headers, float(endpoint.http_timeout)
                )
        finally:
            self._metrics.in_flight.dec()
        return request.url, loggable_headers(request), result

    def _fallback(self, cd: ClaimedDelivery, attempt: Attempt) -> Completion:
        """The completion of an attempt whose verdict could not be reached (a bug): tried
        again in a minute while attempts remain, so it is neither lost nor hammered."""
        d, now = cd.delivery, self._clock()
        if d.attempts >= d.retry_limit:
            return Completion(
                d.id,
                cd.lease_token,
                DeliveryStatus.FAILURE,
                now,
                None,
                "internal error judging the attempt",
                attempt,
            )
        return Completion(
            d.id,
            cd.lease_token,
            DeliveryStatus.RETRY,
            now + 60_000_000,
            None,
            "internal error judging the attempt; retrying",
            attempt,
        )

    async def _traced_send(
        self, cd: ClaimedDelivery, endpoint: Endpoint, request: OutboundRequest
    ) -> SendResult:
        """One attempt in a span that continues the publish's trace; the endpoint gets the
        attempt's own ``traceparent``."""
        attributes: dict[str, str | int] = {
            "hookcast.delivery_id": cd.delivery.id,
            "hookcast.event_id": cd.delivery.event_id,
            "hookcast.endpoint_id": endpoint.id,
            "hookcast.attempt": cd.delivery.attempts,  # counted at the claim
            "http.request.method": "POST",
        }
        with self._tracing.attempt(cd.event_headers, attributes) as span:
            request.headers.update(span.headers)
            result = await self._sender.send(
                request.url, request.body, request.headers, float(endpoint.http_timeout)
            )
            span.result(result.status, result.error)
            return result

    def _precheck(self, cd: ClaimedDelivery, now: int) -> Completion | None:
        """Deliveries that must not be sent: a final Completion for them, else None."""
        if cd.endpoint is None or cd.project_config is None:
            return self._final(cd, DeliveryStatus.DISCARDED, "endpoint was deleted", now)
        if cd.endpoint.status is EndpointStatus.PAUSED:
            return self._final(cd, DeliveryStatus.DISCARDED, "endpoint is paused", now)
        if cd.reclaimed and cd.delivery.delivery_mode is DeliveryMode.AT_MOST_ONCE:
            return self._final(
                cd, DeliveryStatus.FAILURE, "lease expired during an at-most-once attempt", now
            )
        return None

    @staticmethod
    def _final(cd: ClaimedDelivery, status: DeliveryStatus, why: str, now: int) -> Completion:
        return Completion(cd.delivery.id, cd.lease_token, status, now, None, why, None)

    def _attempt(
        self, cd: ClaimedDelivery, url: str, headers: dict[str, str], result: SendResult
    ) -> Attempt:
        d = cd.delivery
        ok = result.status is not None and 200 <= result.status < 300
        return Attempt(
            new_id(),
            d.id,
            d.project_id,
            d.endpoint_id,
            url,
            "POST",
            result.ip_address,
            headers,
            result.headers,
            result.status or 0,
            result.body_excerpt,
            result.error,
            ok,
            result.started_us,
            result.ended_us,
            result.ended_us,
        )

    def _decide(
        self,
        cd: ClaimedDelivery,
        endpoint: Endpoint,
        config: ProjectConfig,
        result: SendResult,
        attempt: Attempt,
    ) -> Completion:
        d = cd.delivery
        now = self._clock()
        latency = result.ended_us - result.started_us
        outcome = classify(result.status, result.error or None, result.headers, now / 1e6)
        success = outcome.kind is OutcomeKind.SUCCESS
        health = self._health.finished(endpoint, config, now, success, latency)
        self._metrics.attempt(result.status, latency / 1e6)
        if success:
            self._metrics.delivered_seconds.observe(max(now - d.created_at_us, 0) / 1e6)
        disable, probe_at = self._disable_reason(endpoint, outcome, health, config), None
        if disable:
            probe_at = now + probe_delay_us(0, self._opt.probe_base_s, self._opt.probe_max_s)
            self._disabled(endpoint, config, disable, probe_at)
        status, due, why = self._next_status(d, outcome, result, now)
        return Completion(
            d.id,
            cd.lease_token,
            status,
            due,
            latency,
            why,
            attempt,
            disable_endpoint=disable,
            probe_at_us=probe_at,
            breaker=health.breaker,
        )

    def _disable_reason(
        self, endpoint: Endpoint, outcome: Outcome, health: HealthOutcome, config: ProjectConfig
    ) -> str:
        """Why this result disables the endpoint ("gone", "breaker"), or ""."""
        if health.transition:
            self._metrics.breaker_transitions.labels(health.transition).inc()
            log.info(
                "endpoint.breaker",
                extra={"endpoint_id": endpoint.id, "transition": health.transition},
            )
        if outcome.kind is OutcomeKind.DISABLE_ENDPOINT:
            return "gone"
        if health.disable and config.disable_endpoint:
            return "breaker"
        return ""

    def _disabled(
        self, endpoint: Endpoint, config: ProjectConfig, reason: str, probe_at_us: int
    ) -> None:
        self._health.forget(endpoint.id)
        self._metrics.endpoints_disabled.labels(reason).inc()
        log.warning("endpoint.disabled", extra={"endpoint_id": endpoint.id, "reason": reason})
        if self._meta is not None:
            self._meta.emit(
                endpoint.project_id,
                config,
                "endpoint.disabled",
                {
                    "endpoint_id": endpoint.id,
                    "name": endpoint.name,
                    "owner_id": endpoint.owner_id,
                    "reason": reason,
                    "next_probe_at": probe_at_us // 1_000_000,
                },
            )

    def _next_status(
        self, d: Delivery, outcome: Outcome, result: SendResult, now: int
    ) -> tuple[DeliveryStatus, int, str]:
        if outcome.kind is OutcomeKind.SUCCESS:
            return DeliveryStatus.SUCCESS, now, ""
        if d.delivery_mode is DeliveryMode.AT_MOST_ONCE and result.status is not None:
            return DeliveryStatus.FAILURE, now, outcome.reason
        strategy = StrategyConfig.model_construct(
            type=StrategyType(d.strategy),
            duration=d.interval_seconds,
            retry_count=d.retry_limit,
            max_retry_seconds=d.max_retry_seconds,
        )
        decision = decide_after_failure(
            attempts_made=d.attempts,
            retry_limit=d.retry_limit,
            strategy=strategy,
            now_us=now,
            rand=self._rand,
            retry_after_seconds=outcome.retry_after_seconds,
        )
        if outcome.kind is OutcomeKind.DISABLE_ENDPOINT:
            why = "endpoint answered 410 Gone: endpoint disabled"
            if decision.status is DeliveryStatus.RETRY:
                # held with the endpoint's other deliveries, released when it is back
                return DeliveryStatus.RETRY, HELD_US, why + "; held until it is enabled again"
            return DeliveryStatus.FAILURE, now, why
        why = f"{outcome.reason}; {decision.reason}" if decision.reason else outcome.reason
        return decision.status, decision.next_attempt_at_us or now, why


def probe_delay_us(attempts: int, base_s: float = 30.0, max_s: float = 3600.0) -> int:
    """Backoff between probes of a disabled endpoint: *base_s* doubling per failed probe,
    at most *max_s*."""
    return int(min(base_s * (1 << min(attempts, 20)), max_s) * 1_000_000)
