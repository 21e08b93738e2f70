"""Domain values → Convoy's JSON objects (field names as upstream returns them).

Lists are always lists, never null: the generated 1.x client iterates them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson

from hookcast.domain import breaker as br
from hookcast.domain.event_types import EventType
from hookcast.domain.models import (
    HELD_US,
    Attempt,
    Delivery,
    Endpoint,
    Event,
    Project,
    Subscription,
)
from hookcast.domain.paging import Page
from hookcast.domain.portal_links import PortalLink, masked
from hookcast.domain.ports import BroadcastProgress
from hookcast.domain.signing import ed25519_public_key, is_ed25519_secret

_second_cache: tuple[int, str] = (-1, "")


def ts(us: int | None) -> str | None:
    """RFC 3339 with microseconds, UTC (the seconds part is formatted once per second)."""
    global _second_cache
    if us is None:
        return None
    sec, frac = divmod(us, 1_000_000)
    cached_sec, prefix = _second_cache
    if sec != cached_sec:
        prefix = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second_cache = (sec, prefix)
    return f"{prefix}.{frac:06d}Z"


def page(p: Page[Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "content": items,
        "pagination": {
            "per_page": p.per_page,
            "has_next_page": p.has_next_page,
            "has_prev_page": p.has_prev_page,
            "next_page_cursor": p.next_page_cursor,
            "prev_page_cursor": p.prev_page_cursor,
        },
    }


REDACTED = "[redacted]"


def project(p: Project) -> dict[str, Any]:
    config = p.config.model_dump(mode="json")
    meta = config.get("meta_event")
    if isinstance(meta, dict) and meta.get("secret"):
        meta["secret"] = REDACTED  # write-only: set it, never read it back
    return {
        "uid": p.id,
        "name": p.name,
        "type": p.type,
        "logo_url": "",
        "organisation_id": "",
        "config": config,
        "statistics": None,
        "retained_events": 0,
        "created_at": ts(p.created_at_us),
        "updated_at": ts(p.updated_at_us),
    }


def endpoint(e: Endpoint) -> dict[str, Any]:
    breaker = br.snapshot(br.from_json(e.breaker or {}), time.time_ns() // 1000)
    auth = e.authentication
    if auth and isinstance(auth.get("basic_auth"), dict):
        auth = {**auth, "basic_auth": {**auth["basic_auth"], "password": "[redacted]"}}
    return {
        "uid": e.id,
        "project_id": e.project_id,
        "owner_id": e.owner_id,
        "url": e.url,
        "target_url": e.url,
        "name": e.name,
        "title": e.name,
        "description": e.description,
        "status": e.status.value,
        "secrets": [
            {
                "uid": s.id,
                "value": s.value,
                "created_at": ts(s.created_at_us),
                "updated_at": ts(s.created_at_us),
                "expires_at": ts(s.expires_at_us),
            }
            for s in e.secrets
        ],
        "advanced_signatures": e.advanced_signatures,
        # Standard Webhooks v1a: what receivers verify with (never the private key's half)
        "public_keys": [
            ed25519_public_key(s.value) for s in e.secrets if is_ed25519_secret(s.value)
        ],
        "http_timeout": e.http_timeout,
        "rate_limit": e.rate_limit,
        "rate_limit_duration": e.rate_limit_duration,
        "content_type": e.content_type,
        "authentication": auth,
        "support_email": e.support_email,
        "slack_webhook_url": e.slack_webhook_url,
        "teams_webhook_url": e.teams_webhook_url,
        "events": 0,
        "failure_rate": breaker["failure_rate"],
        "cb_state": None if breaker["state"] == "closed" and not e.breaker else breaker["state"],
        # times are ISO 8601 here as everywhere else in the API
        "circuit_breaker": {**breaker, "opened_until": ts(breaker["opened_until"])},
        "max_in_flight": e.max_in_flight,
        "disabled_reason": e.disabled_reason,
        "ordering": e.ordering.value,
        "ordering_on_failure": e.ordering_on_failure.value,
        "probe_at": ts(e.probe_at_us),
        "created_at": ts(e.created_at_us),
        "updated_at": ts(e.updated_at_us),
    }


def subscription(s: Subscription, ep: Endpoint | None) -> dict[str, Any]:
    flt = s.filter_config.filter or {}
    return {
        "uid": s.id,
        "name": s.name,
        "type": s.type,
        "project_id": s.project_id,
        "endpoint_id": s.endpoint_id,
        "function": s.function,
        "status": s.status,
        "delivery_mode": s.delivery_mode.value,
        "endpoint_metadata": None if ep is None else endpoint(ep),
        "source_metadata": None,
        "device_metadata": None,
        "filter_config": {
            "event_types": list(s.filter_config.event_types),
            "filter": {
                "headers": flt.get("headers") or {},
                "body": flt.get("body") or {},
                "query": flt.get("query") or {},
                "path": flt.get("path") or {},
                "is_flattened": False,
            },
        },
        "retry_config": s.retry_config,
        "alert_config": s.alert_config,
        "rate_limit_config": s.rate_limit_config,
        "created_at": ts(s.created_at_us),
        "updated_at": ts(s.updated_at_us),
    }


def event(e: Event) -> dict[str, Any]:
    return {
        "uid": e.id,
        "event_type": e.event_type,
        "project_id": e.project_id,
        "kind": e.kind.value,
        "endpoints": list(e.endpoints),
        "data": orjson.Fragment(e.data),
        "headers": {k: [v] for k, v in e.headers.items()},
        "idempotency_key": e.idempotency_key,
        "is_duplicate_event": e.is_duplicate_event,
        "source_id": e.source_id,
        "url_path": e.url_path,
        "url_query_params": e.url_query_params,
        "status": e.status.value,
        "api_key_id": e.api_key_id,
        "acknowledged_at": ts(e.acknowledged_at_us),
        "created_at": ts(e.created_at_us),
        "updated_at": ts(e.updated_at_us),
    }


def delivery(d: Delivery) -> dict[str, Any]:
    latency_s = None if d.latency_us is None else d.latency_us / 1_000_000
    return {
        "uid": d.id,
        "project_id": d.project_id,
        "event_id": d.event_id,
        "endpoint_id": d.endpoint_id,
        "subscription_id": d.subscription_id,
        "device_id": "",
        "event_type": d.event_type,
        "status": d.status.value,
        "delivery_mode": d.delivery_mode.value,
        "headers": None,
        "target_url": "",
        "url_query_params": "",
        "idempotency_key": d.idempotency_key,
        "latency": "" if latency_s is None else f"{latency_s:.6f}s",
        "latency_seconds": latency_s or 0.0,
        "description": d.description,
        "ordering_key": d.ordering_key,
        "held": d.next_attempt_at_us == HELD_US and d.status.value in ("Scheduled", "Retry"),
        "metadata": {
            "data": None,
            "raw": "",
            "strategy": d.strategy,
            # held for a disabled endpoint (or parked behind its ordering key's head): no
            # send time until it is back (until that one ends)
            "next_send_time": None if d.next_attempt_at_us >= HELD_US else ts(d.next_attempt_at_us),
            "num_trials": d.attempts,
            "interval_seconds": d.interval_seconds,
            "retry_limit": d.retry_limit,
            "max_retry_seconds": d.max_retry_seconds,
        },
        "cli_metadata": None,
        "acknowledged_at": ts(d.created_at_us),
        "created_at": ts(d.created_at_us),
        "updated_at": ts(d.updated_at_us),
    }


def _status_line(code: int) -> str:
    from http import HTTPStatus

    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def attempt(a: Attempt) -> dict[str, Any]:
    return {
        "uid": a.id,
        "msg_id": a.delivery_id,
        "url": a.url,
        "method": a.method,
        "endpoint_id": a.endpoint_id,
        "project_id": a.project_id,
        "api_version": "2025-11-24",
        "ip_address": a.ip_address,
        "request_http_header": a.request_headers,
        "response_http_header": a.response_headers,
        "http_status": _status_line(a.http_status) if a.http_status else "",
        "response_data": a.response_data,
        "error": a.error,
        "status": a.success,
        "requested_at": ts(a.requested_at_us),
        "responded_at": ts(a.responded_at_us),
        "created_at": ts(a.created_at_us),
        "updated_at": ts(a.created_at_us),
    }


def broadcast_progress(p: BroadcastProgress) -> dict[str, Any]:
    st = p.statuses
    succeeded = st.get("Success", 0)
    span_s = (
        (p.last_success_us - p.first_success_us) / 1_000_000
        if p.first_success_us is not None and p.last_success_us is not None
        else 0.0
    )
    return {
        "targets_matched": p.matched + p.skipped,
        "deliveries_written": sum(st.values()),
        "succeeded": succeeded,
        "failed": st.get("Failure", 0),
        "retrying": st.get("Retry", 0),
        "pending": st.get("Scheduled", 0) + st.get("Processing", 0),
        "discarded": st.get("Discarded", 0),
        "skipped": p.skipped,
        "fanout_done": p.fanout_done,
        "first_delivery_at": ts(p.first_success_us),
        "last_delivery_at": ts(p.last_success_us),
        "delivery_rate_per_s": round(succeeded / span_s, 1) if span_s > 0 else None,
        "latency_ms": p.latency_ms,
    }


def event_type(e: EventType) -> dict[str, Any]:
    """Convoy's ``ProjectEventType``, with hookcast's ``example``."""
    return {
        "uid": e.id,
        "project_id": e.project_id,
        "name": e.name,
        "category": e.category,
        "description": e.description,
        "json_schema": e.json_schema,
        "example": e.example,
        "deprecated_at": ts(e.deprecated_at_us),
        "created_at": ts(e.created_at_us),
        "updated_at": ts(e.updated_at_us),
    }


def portal_link(
    link: PortalLink,
    *,
    token: str | None,
    base_url: str,
    endpoint_count: int,
    endpoints: list[Endpoint],
) -> dict[str, Any]:
    """Convoy's ``PortalLink``. The token (``token``, and ``auth_key`` alike) is shown in
    full only when it is made (*token*); otherwise masked (``PRT.<mask>.********``): only
    its hash is stored. ``url`` (the portal, token included) likewise, else empty."""
    shown = token if token is not None else masked(link)
    return {
        "uid": link.id,
        "name": link.name,
        "owner_id": link.owner_id,
        "project_id": link.project_id,
        "endpoints": list(link.endpoints),
        "endpoint_count": endpoint_count,
        "endpoints_metadata": [endpoint(e) for e in endpoints],
        "can_manage_endpoint": link.can_manage_endpoint,
        "auth_type": link.auth_type.value,
        "token": shown,
        "auth_key": shown,
        "url": f"{base_url}/portal?token={token}" if token is not None else "",
        "token_expires_at": ts(link.token_expires_at_us),
        "created_at": ts(link.created_at_us),
        "updated_at": ts(link.updated_at_us),
    }
