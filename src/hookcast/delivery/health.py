"""Per-endpoint admission in one worker: a concurrency cap, the endpoint's rate limit and
its circuit breaker. Throttled deliveries are deferred without spending an attempt.

The state lives in this process's memory (the breaker is persisted on each transition);
with several workers on PostgreSQL each holds its own share of the limits.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from hookcast.domain import breaker as br
from hookcast.domain.config import ProjectConfig
from hookcast.domain.limits import Bucket, new_bucket, take
from hookcast.domain.models import Endpoint

_MIN_WAIT_US = 100_000
_MAX_ENTRIES = 20_000
_SLOW_US = 1_000_000


@dataclass(slots=True)
class EndpointRuntime:
    in_flight: int = 0
    bucket: Bucket = field(default_factory=new_bucket)
    breaker: br.Breaker = field(default_factory=br.new_breaker)
    latency_us: float = 0.0  # moving average of attempt latency
    #: when an attempt last finished, or when the first of those in flight started
    progress_us: int = 0
    #: the due time after the last one handed to a delivery deferred at the cap
    next_slot_us: float = 0.0
    #: the persisted breaker last looked at (state, opened until)
    seen_breaker: tuple[object, object] | None = None
    deferred_in_batch: int = 0
    #: the claimed batch deferred_in_batch counts for
    batch: int = 0


@dataclass(frozen=True, slots=True)
class Verdict:
    send: bool
    defer_until_us: int = 0
    reason: str = ""
    #: keep it leased and waiting in this worker for the endpoint's next free slot
    wait: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    breaker: dict[str, object] | None  # persist this breaker (it changed state)
    disable: bool  # the breaker tripped often enough to disable the endpoint
    transition: str


class EndpointHealth:
    def __init__(
        self,
        default_cap: int,
        lease_margin_us: int = 30_000_000,
        rand: Callable[[], float] = random.random,
        max_share: int = 0,
    ) -> None:
        self._default_cap = default_cap
        #: no endpoint holds more than this many of the worker's slots, whatever its own
        #: cap says, so a few hanging endpoints cannot occupy all of them (0: no bound)
        self._max_share = max_share
        self._lease_margin_us = lease_margin_us
        self._rand = rand
        self._state: dict[str, EndpointRuntime] = {}
        self._batch = 0

    def runtime(self, endpoint: Endpoint) -> EndpointRuntime:
        rt = self._state.get(endpoint.id)
        if rt is None:
            if len(self._state) >= _MAX_ENTRIES:
                self._trim()
            rt = EndpointRuntime(breaker=br.from_json(endpoint.breaker or {}))
            self._state[endpoint.id] = rt
        return rt

    def _trim(self) -> None:
        idle = [k for k, v in self._state.items() if v.in_flight == 0]
        for key in idle[: len(idle) // 2 + 1]:
            del self._state[key]

    def new_batch(self) -> None:
        """A new claimed batch: per-batch counts start again (lazily, per endpoint seen)."""
        self._batch += 1

    #: live worker processes sharing every endpoint's cap (from the Redis heartbeat)
    workers: int = 1

    def cap(self, endpoint: Endpoint) -> int:
        cap = endpoint.max_in_flight or self._default_cap
        if self.workers > 1:
            cap = -(-cap // self.workers)
        return min(cap, self._max_share) if self._max_share > 0 else cap

    def admit(
        self,
        endpoint: Endpoint,
        config: ProjectConfig,
        now_us: int,
        waiting: int = 0,
        may_wait: bool = True,
        rate_checked: bool = False,
    ) -> Verdict:
        """Send now, wait here for a slot, or defer. *waiting* is how many of this
        endpoint's deliveries already wait in this worker; *may_wait* is false when the
        worker's room for waiting deliveries is full; *rate_checked* when the delivery
        already holds a token of the shared (Redis) rate limit."""
        rt = self.runtime(endpoint)
        cap = self.cap(endpoint)
        if rt.in_flight >= cap:
            if may_wait and waiting < self._local_room(rt, cap, now_us):
                return Verdict(False, wait=True)
            return self._defer(rt, endpoint, now_us, cap, "endpoint at its concurrency cap")
        if not rate_checked and endpoint.rate_limit > 0 and endpoint.rate_limit_duration > 0:
            bucket, retry_at = take(
                rt.bucket, endpoint.rate_limit, endpoint.rate_limit_duration, now_us
            )
            if retry_at is not None:
                return self._spread(rt, retry_at, "endpoint rate limit")
            rt.bucket = bucket
        self._adopt_shared_breaker(rt, endpoint, now_us)
        rt.breaker, admission = br.admit(rt.breaker, config.circuit_breaker, now_us)
        if not admission.allowed:
            return self._spread(rt, admission.retry_at_us or now_us, "circuit breaker open")
        if rt.in_flight == 0:
            rt.progress_us = now_us
        rt.in_flight += 1
        return Verdict(True)

    @staticmethod
    def _adopt_shared_breaker(rt: EndpointRuntime, endpoint: Endpoint, now_us: int) -> None:
        """Follow what other worker processes decided about this endpoint's breaker (it is
        persisted on every transition and read with each claim): one that opened it stops
        sending here too, until it is due again; one whose probe closed it lets this
        worker send again at once."""
        persisted = endpoint.breaker
        if not persisted:
            return
        key = (persisted.get("state"), persisted.get("opened_until_us"))
        if key == rt.seen_breaker:
            return
        first_sight, rt.seen_breaker = rt.seen_breaker is None, key
        shared = br.from_json(persisted)
        if (
            shared.state is br.BreakerState.CLOSED
            and rt.breaker.state is not br.BreakerState.CLOSED
            and not first_sight  # a change seen since: someone closed it after we looked
        ):
            rt.breaker = shared
            return
        until = shared.opened_until_us or 0
        if (
            shared.state is br.BreakerState.OPEN
            and until > now_us
            and (
                rt.breaker.state is not br.BreakerState.OPEN
                or (rt.breaker.opened_until_us or 0) < until
            )
        ):
            rt.breaker = shared

    @staticmethod
    def _pace_us(rt: EndpointRuntime, now_us: int) -> float:
        """How long an attempt to this endpoint takes: the moving average, or longer when
        those in flight have not finished for longer than that (a hanging endpoint shows
        up before its first timeout)."""
        stalled = now_us - rt.progress_us if rt.in_flight else 0
        return max(rt.latency_us, float(stalled))

    def _local_room(self, rt: EndpointRuntime, cap: int, now_us: int) -> int:
        """How many may wait locally: as many waves of *cap* as finish well inside the
        lease margin at the endpoint's observed latency (at most four). An endpoint not
        yet measured gets one wave; a slow one (a second or more per attempt) none: its
        deliveries are deferred to the database instead of holding leases here."""
        pace = self._pace_us(rt, now_us)
        if pace <= 0:
            return cap
        if pace >= _SLOW_US:
            return 0
        waves = min(4, int(self._lease_margin_us / pace) - 1)
        return max(waves, 0) * cap

    def _defer(
        self, rt: EndpointRuntime, endpoint: Endpoint, now_us: int, cap: int, why: str
    ) -> Verdict:
        """Push back to when a slot should be free: deliveries deferred at the cap queue up
        behind each other at the endpoint's service rate (*cap* attempts per attempt time),
        so a saturated endpoint's backlog comes back spread out, not all at once. A stalled
        endpoint's attempt time is how long it has stalled, so its deliveries go further
        back the longer it hangs instead of being claimed and deferred again and again."""
        pace = min(max(self._pace_us(rt, now_us), _MIN_WAIT_US), endpoint.http_timeout * 1e6)
        due = max(now_us + pace, rt.next_slot_us)
        rt.next_slot_us = due + pace / max(cap, 1)
        return Verdict(False, int(due + self._rand() * pace / 4), why)

    def _spread(self, rt: EndpointRuntime, at_us: int, why: str) -> Verdict:
        if rt.batch != self._batch:
            rt.batch, rt.deferred_in_batch = self._batch, 0
        rt.deferred_in_batch += 1
        return Verdict(False, at_us + rt.deferred_in_batch * 1000 + int(self._rand() * 5000), why)

    def finished(
        self,
        endpoint: Endpoint,
        config: ProjectConfig,
        now_us: int,
        success: bool,
        latency_us: int,
    ) -> Outcome:
        rt = self.runtime(endpoint)
        rt.progress_us = now_us
        rt.latency_us = latency_us if rt.latency_us == 0 else 0.8 * rt.latency_us + 0.2 * latency_us
        rt.breaker, transition = br.record(rt.breaker, config.circuit_breaker, now_us, success)
        if transition is None:
            return Outcome(None, False, "")
        return Outcome(br.to_json(rt.breaker), transition.disable, transition.kind.value)

    def release(self, endpoint: Endpoint) -> None:
        """An attempt admitted by :meth:`admit` is over (whatever its result): its slot is
        free again."""
        rt = self._state.get(endpoint.id)
        if rt is not None:
            rt.in_flight = max(rt.in_flight - 1, 0)

    def forget(self, endpoint_id: str) -> None:
        self._state.pop(endpoint_id, None)

    def snapshot(self, endpoint: Endpoint, config: ProjectConfig, now_us: int) -> dict[str, object]:
        return br.snapshot(self.runtime(endpoint).breaker, now_us, config.circuit_breaker)
