"""The exact request sent to an endpoint for one attempt: body bytes and headers.

Pure: the time is passed in. The signature covers exactly the bytes returned as the body.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson

from hookcast import __version__
from hookcast.domain.config import ProjectConfig
from hookcast.domain.models import Delivery, Endpoint, Secret
from hookcast.domain.signing import (
    convoy_signature,
    is_ed25519_secret,
    standard_webhooks_headers,
    standard_webhooks_key,
    standard_webhooks_v1a,
)

USER_AGENT = f"hookcast/{__version__} (Convoy-compatible)"
FORM = "application/x-www-form-urlencoded"
_REDACTED = "[redacted]"


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    url: str
    body: bytes
    headers: dict[str, str]
    #: header names whose values must not be stored in the attempt log
    sensitive: frozenset[str]


def live_secrets(secrets: tuple[Secret, ...], now_us: int) -> list[str]:
    """Secrets that still sign: not expired. Oldest first, newest last."""
    return [s.value for s in secrets if s.expires_at_us is None or s.expires_at_us > now_us]


def form_body(data: bytes) -> bytes:
    """Convoy's form encoding: top-level fields; nested values as compact JSON."""
    doc: Any = orjson.loads(data)
    if not isinstance(doc, dict):
        return urlencode({"data": data.decode()}).encode()
    pairs = {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in doc.items()}
    return urlencode(pairs).encode()


def _auth_headers(auth: Mapping[str, Any] | None) -> dict[str, str]:
    if not auth:
        return {}
    kind = auth.get("type")
    if kind == "api_key" and isinstance(auth.get("api_key"), Mapping):
        key = auth["api_key"]
        return {str(key.get("header_name")): str(key.get("header_value"))}
    if kind == "basic_auth" and isinstance(auth.get("basic_auth"), Mapping):
        basic = auth["basic_auth"]
        token = base64.b64encode(f"{basic.get('username')}:{basic.get('password')}".encode())
        return {"Authorization": "Basic " + token.decode()}
    return {}


def _signed(
    msg_id: str,
    body: bytes,
    endpoint: Endpoint,
    config: ProjectConfig,
    now_us: int,
    headers: dict[str, str],
) -> None:
    """Add both signatures (Convoy's and Standard Webhooks') over exactly *body*."""
    now_s = now_us // 1_000_000
    live = live_secrets(endpoint.secrets, now_us)
    hmac_secrets = [s for s in live if not is_ed25519_secret(s)]
    signatures = [
        standard_webhooks_v1a(msg_id, now_s, body, s) for s in live if is_ed25519_secret(s)
    ]
    if hmac_secrets:
        versions = [(v.hash, v.encoding) for v in config.signature.versions] or [("SHA256", "hex")]
        headers[config.signature.header] = convoy_signature(
            body,
            hmac_secrets,
            timestamp=now_s,
            advanced=endpoint.advanced_signatures,
            versions=versions,
        )
        std = standard_webhooks_headers(
            msg_id, now_s, body, [standard_webhooks_key(s) for s in hmac_secrets]
        )
        signatures.insert(0, std["webhook-signature"])
    if signatures:
        headers["webhook-id"] = msg_id
        headers["webhook-timestamp"] = str(now_s)
        headers["webhook-signature"] = " ".join(signatures)


def build_request(
    delivery: Delivery,
    endpoint: Endpoint,
    config: ProjectConfig,
    data: bytes,
    event_headers: Mapping[str, str],
    now_us: int,
) -> OutboundRequest:
    body = form_body(data) if endpoint.content_type == FORM else data
    # the event's custom headers first, so ours (signatures above all) always win
    headers: dict[str, str] = {k: v for k, v in event_headers.items() if k.lower() not in _RESERVED}
    headers["Content-Type"] = endpoint.content_type or "application/json"
    headers["User-Agent"] = USER_AGENT
    _signed(delivery.id, body, endpoint, config, now_us, headers)
    if delivery.idempotency_key:
        headers[config.request_id_header] = delivery.idempotency_key
    if config.add_event_id_trace_headers:
        headers["X-Convoy-Event-ID"] = delivery.event_id
        headers["X-Convoy-EventDelivery-ID"] = delivery.id
    auth = _auth_headers(endpoint.authentication)
    headers.update(auth)
    return OutboundRequest(endpoint.url, body, headers, frozenset(auth))


PROBE_EVENT_TYPE = "hookcast.probe"


def build_probe(
    endpoint: Endpoint, config: ProjectConfig, probe_id: str, now_us: int
) -> OutboundRequest:
    """A signed ping that asks a disabled endpoint whether it is back."""
    body = orjson.dumps(
        {
            "event_type": PROBE_EVENT_TYPE,
            "endpoint_id": endpoint.id,
            "timestamp": now_us // 1_000_000,
        }
    )
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Hookcast-Probe": "1",
    }
    _signed(probe_id, body, endpoint, config, now_us, headers)
    auth = _auth_headers(endpoint.authentication)
    headers.update(auth)
    return OutboundRequest(endpoint.url, body, headers, frozenset(auth))


def loggable_headers(request: OutboundRequest) -> dict[str, str]:
    return {k: (_REDACTED if k in request.sensitive else v) for k, v in request.headers.items()}


_RESERVED = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "user-agent",
        "x-convoy-signature",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "transfer-encoding",
        "connection",
    }
)
