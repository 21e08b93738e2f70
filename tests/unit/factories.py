"""Domain objects for the pure unit tests, with plain defaults overridable per test."""

from __future__ import annotations

from typing import Any

from hookcast.domain.models import (
    Delivery,
    DeliveryMode,
    DeliveryStatus,
    Endpoint,
    EndpointStatus,
)


def make_endpoint(**kw: Any) -> Endpoint:
    fields: dict[str, Any] = dict(
        id="E",
        project_id="P",
        owner_id="",
        name="n",
        url="https://h/x",
        description="",
        status=EndpointStatus.ACTIVE,
        secrets=(),
        advanced_signatures=True,
        http_timeout=10,
        rate_limit=0,
        rate_limit_duration=0,
        content_type="application/json",
        authentication=None,
        support_email="",
        slack_webhook_url="",
        teams_webhook_url="",
        created_at_us=0,
        updated_at_us=0,
    )
    fields.update(kw)
    return Endpoint(**fields)


def make_delivery(**kw: Any) -> Delivery:
    fields: dict[str, Any] = dict(
        id="D",
        project_id="P",
        event_id="EV",
        endpoint_id="E",
        subscription_id="SUB",
        event_type="t",
        status=DeliveryStatus.PROCESSING,
        delivery_mode=DeliveryMode.AT_LEAST_ONCE,
        idempotency_key="",
        attempts=1,
        retry_limit=10,
        strategy="linear",
        interval_seconds=10,
        max_retry_seconds=100,
        next_attempt_at_us=0,
        latency_us=None,
        description="",
        created_at_us=0,
        updated_at_us=0,
    )
    fields.update(kw)
    return Delivery(**fields)
