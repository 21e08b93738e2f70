"""The exact request sent to an endpoint for one attempt: body bytes and headers.

Pure: the time is passed in. The signature covers exactly the bytes returned as the body.
What does not change from one delivery to the next (content type, authentication, the
prepared signing keys, which custom headers may not override ours) is computed once per
endpoint and project version in a :class:`Prepared`; each delivery then adds its own
headers: the event's custom ones, the signatures, its ids and idempotency key.
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
from hookcast.domain.headers import check_wire
from hookcast.domain.models import Delivery, Endpoint, Secret
from hookcast.domain.signing import Signer

USER_AGENT = f"hookcast/{__version__} (Convoy-compatible)"
FORM = "application/x-www-form-urlencoded"
REDACTED = "[redacted]"
PROBE_EVENT_TYPE = "hookcast.probe"

#: headers the event's custom headers never set (ours, or the connection's)
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


class Prepared:
    """What sending to one endpoint needs, for every delivery alike."""

    __slots__ = (
        "_reserved",
        "form",
        "request_id_header",
        "sensitive",
        "signer",
        "static",
        "trace_ids",
        "url",
    )

    def __init__(self, endpoint: Endpoint, config: ProjectConfig) -> None:
        self.url = endpoint.url
        self.form = endpoint.content_type == FORM
        auth = _auth_headers(endpoint.authentication)
        #: sent with every delivery, in this order, before the delivery's own headers
        self.static: dict[str, str] = {
            "Content-Type": endpoint.content_type or "application/json",
            "User-Agent": USER_AGENT,
            **auth,
        }
        self.sensitive = frozenset(auth)
        self.request_id_header = config.request_id_header
        self.trace_ids = config.add_event_id_trace_headers
        versions = [(v.hash, v.encoding) for v in config.signature.versions] or [("SHA256", "hex")]
        self.signer = Signer(
            [(s.value, s.expires_at_us) for s in endpoint.secrets],
            header=config.signature.header,
            advanced=endpoint.advanced_signatures,
            versions=versions,
        )
        ours = {config.signature.header, config.request_id_header, *auth}
        if self.trace_ids:
            ours |= {"X-Convoy-Event-ID", "X-Convoy-EventDelivery-ID"}
        self._reserved = _RESERVED | {h.lower() for h in ours}

    def body(self, data: bytes) -> bytes:
        return form_body(data) if self.form else data

    def headers(
        self,
        delivery_id: str,
        event_id: str,
        idempotency_key: str,
        custom: Mapping[str, str],
        body: bytes,
        now_us: int,
    ) -> dict[str, str]:
        """This delivery's headers after :attr:`static`: the event's custom headers (never
        one of ours), the signatures over exactly *body*, its ids and idempotency key.
        What came from outside is checked for the wire here (UnsafeHeaderError, a
        ValueError); so is a secret that cannot sign (ValueError)."""
        out: dict[str, str] = {}
        if custom:
            reserved = self._reserved
            for name, value in custom.items():
                if name.lower() not in reserved:
                    check_wire(name, value)  # the rest is ours, made here
                    out[name] = value
        out.update(self.signer.sign(delivery_id, body, now_us))
        if idempotency_key:
            check_wire(self.request_id_header, idempotency_key)
            out[self.request_id_header] = idempotency_key
        if self.trace_ids:
            out["X-Convoy-Event-ID"] = event_id
            out["X-Convoy-EventDelivery-ID"] = delivery_id
        return out

    def logged(self, headers: Mapping[str, str]) -> dict[str, str]:
        """All the request's headers as the attempt log keeps them (secrets redacted)."""
        out = {k: (REDACTED if k in self.sensitive else v) for k, v in self.static.items()}
        out.update(headers)
        return out


def build_request(
    delivery: Delivery,
    endpoint: Endpoint,
    config: ProjectConfig,
    data: bytes,
    event_headers: Mapping[str, str],
    now_us: int,
) -> OutboundRequest:
    """One delivery's request, preparing the endpoint for it alone (the worker prepares
    each endpoint once and reuses it)."""
    prepared = Prepared(endpoint, config)
    body = prepared.body(data)
    own = prepared.headers(
        delivery.id, delivery.event_id, delivery.idempotency_key, event_headers, body, now_us
    )
    return OutboundRequest(endpoint.url, body, {**prepared.static, **own}, prepared.sensitive)


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
    prepared = Prepared(endpoint, config)
    headers = {**prepared.static, "Content-Type": "application/json", "X-Hookcast-Probe": "1"}
    headers.update(prepared.signer.sign(probe_id, body, now_us))
    return OutboundRequest(endpoint.url, body, headers, prepared.sensitive)


def loggable_headers(request: OutboundRequest) -> dict[str, str]:
    return {k: (REDACTED if k in request.sensitive else v) for k, v in request.headers.items()}
