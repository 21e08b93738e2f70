"""What one attempt means for its delivery and its endpoint, as one value.

:func:`judge` takes the lease (attempts made, retry budget, strategy, delivery mode), what
came back (a status or an error, the response headers), what the endpoint's circuit
breaker made of it, and the time and randomness; it gives back the delivery's next status
and due time, the reason shown to users, and whether the endpoint is to be disabled (and
when it is probed first). The worker records the value; it decides nothing itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from hookcast.domain.config import StrategyConfig, StrategyType
from hookcast.domain.models import HELD_US, DeliveryMode, DeliveryStatus
from hookcast.domain.outcome import Outcome, OutcomeKind, classify
from hookcast.domain.ports.queue import Lease
from hookcast.domain.retry import decide_after_failure


@dataclass(frozen=True, slots=True)
class Verdict:
    success: bool
    status: DeliveryStatus
    due_at_us: int
    description: str
    #: disable the endpoint: "gone" (410) or "breaker" (tripped too often); "" = leave it
    disable: str = ""
    probe_at_us: int | None = None


def judge(
    lease: Lease,
    status_code: int | None,
    error: str,
    headers: Mapping[str, str],
    *,
    breaker_says_disable: bool,
    may_disable: bool,
    now_us: int,
    rand: Callable[[], float],
    first_probe_delay_us: int,
) -> Verdict:
    """The verdict on one attempt of *lease*. *breaker_says_disable*: the breaker tripped
    often enough that the endpoint should go; *may_disable*: the project lets it (its
    ``disable_endpoint`` setting); a 410 disables it whatever the setting."""
    outcome = classify(status_code, error or None, headers, now_us / 1e6)
    disable = ""
    if outcome.kind is OutcomeKind.DISABLE_ENDPOINT:
        disable = "gone"
    elif breaker_says_disable and may_disable:
        disable = "breaker"
    probe_at = now_us + first_probe_delay_us if disable else None
    status, due, why = _next(lease, outcome, status_code is not None, now_us, rand)
    return Verdict(outcome.kind is OutcomeKind.SUCCESS, status, due, why, disable, probe_at)


def _next(
    lease: Lease, outcome: Outcome, answered: bool, now_us: int, rand: Callable[[], float]
) -> tuple[DeliveryStatus, int, str]:
    if outcome.kind is OutcomeKind.SUCCESS:
        return DeliveryStatus.SUCCESS, now_us, ""
    if lease.delivery_mode == DeliveryMode.AT_MOST_ONCE.value and answered:
        return DeliveryStatus.FAILURE, now_us, outcome.reason
    strategy = StrategyConfig.model_construct(
        type=StrategyType(lease.strategy),
        duration=lease.interval_seconds,
        retry_count=lease.retry_limit,
        max_retry_seconds=lease.max_retry_seconds,
    )
    decision = decide_after_failure(
        attempts_made=lease.attempts,
        retry_limit=lease.retry_limit,
        strategy=strategy,
        now_us=now_us,
        rand=rand,
        retry_after_seconds=outcome.retry_after_seconds,
    )
    if outcome.kind is OutcomeKind.DISABLE_ENDPOINT:
        why = "endpoint answered 410 Gone: endpoint disabled"
        if decision.status is DeliveryStatus.RETRY:
            # held with the endpoint's other deliveries, released when it is back
            return DeliveryStatus.RETRY, HELD_US, why + "; held until it is enabled again"
        return DeliveryStatus.FAILURE, now_us, why
    why = f"{outcome.reason}; {decision.reason}" if decision.reason else outcome.reason
    return decision.status, decision.next_attempt_at_us or now_us, why


def probe_delay_us(attempts: int, base_s: float = 30.0, max_s: float = 3600.0) -> int:
    """Backoff between probes of a disabled endpoint: *base_s* doubling per failed probe,
    at most *max_s*."""
    return int(min(base_s * (1 << min(attempts, 20)), max_s) * 1_000_000)
