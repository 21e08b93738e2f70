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
_MAX_ENTRIES = 50_000


@dataclass(slots=True)
class EndpointRuntime:
    in_flight: int = 0
    bucket: Bucket = field(default_factory=new_bucket)
    breaker: br.Breaker = field(default_factory=br.new_breaker)
    latency_us: float = 0.0  # moving average of attempt latency
    deferred_in_batch: int = 0


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
    ) -> None:
        self._default_cap = default_cap
        self._lease_margin_us = lease_margin_us
        self._rand = rand
        self._state: dict[str, EndpointRuntime] = {}

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
        for rt in self._state.values():
            rt.deferred_in_batch = 0

    def admit(
        self, endpoint: Endpoint, config: ProjectConfig, now_us: int, waiting: int = 0
    ) -> Verdict:
        """Send now, wait here for a slot, or defer. *waiting* is how many of this
        endpoint's deliveries already wait in this worker."""
        rt = self.runtime(endpoint)
        cap = endpoint.max_in_flight or self._default_cap
        if rt.in_flight >= cap:
            if waiting < self._local_room(rt, cap):
                return Verdict(False, wait=True)
            return self._defer(rt, endpoint, now_us, cap, "endpoint at its concurrency cap")
        if endpoint.rate_limit > 0 and endpoint.rate_limit_duration > 0:
            bucket, retry_at = take(
                rt.bucket, endpoint.rate_limit, endpoint.rate_limit_duration, now_us
            )
            if retry_at is not None:
                return self._spread(rt, retry_at, "endpoint rate limit")
            rt.bucket = bucket
        rt.breaker, admission = br.admit(rt.breaker, config.circuit_breaker, now_us)
        if not admission.allowed:
            return self._spread(rt, admission.retry_at_us or now_us, "circuit breaker open")
        rt.in_flight += 1
        return Verdict(True)

    def _local_room(self, rt: EndpointRuntime, cap: int) -> int:
        """How many may wait locally: as many waves of *cap* as finish well inside the
        lease margin at the endpoint's observed latency (at most four)."""
        latency = max(rt.latency_us, 1000.0)
        waves = min(4, int(self._lease_margin_us / latency) - 1)
        return max(waves, 0) * cap

    def _defer(
        self, rt: EndpointRuntime, endpoint: Endpoint, now_us: int, cap: int, why: str
    ) -> Verdict:
        """Push back by about when a slot frees up; later rows of one batch go further,
        so a saturated endpoint's backlog does not come back all at once."""
        rt.deferred_in_batch += 1
        expected = min(max(rt.latency_us, _MIN_WAIT_US), endpoint.http_timeout * 1_000_000)
        waves = 1 + rt.deferred_in_batch // max(cap, 1)
        return Verdict(False, int(now_us + expected * waves * (1 + self._rand() / 2)), why)

    def _spread(self, rt: EndpointRuntime, at_us: int, why: str) -> Verdict:
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
        rt.in_flight = max(rt.in_flight - 1, 0)
        rt.latency_us = latency_us if rt.latency_us == 0 else 0.8 * rt.latency_us + 0.2 * latency_us
        rt.breaker, transition = br.record(rt.breaker, config.circuit_breaker, now_us, success)
        if transition is None:
            return Outcome(None, False, "")
        return Outcome(br.to_json(rt.breaker), transition.disable, transition.kind.value)

    def breaker_states(self) -> dict[str, int]:
        """How many endpoints known to this worker are in each breaker state (metrics)."""
        counts = dict.fromkeys((s.value for s in br.BreakerState), 0)
        for rt in self._state.values():
            counts[rt.breaker.state.value] += 1
        return counts

    def forget(self, endpoint_id: str) -> None:
        self._state.pop(endpoint_id, None)

    def snapshot(self, endpoint: Endpoint, config: ProjectConfig, now_us: int) -> dict[str, object]:
        return br.snapshot(self.runtime(endpoint).breaker, now_us, config.circuit_breaker)
