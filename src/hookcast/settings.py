"""Process settings, from ``HOOKCAST_*`` environment variables and CLI flags.

Built once in :func:`hookcast.cli.main` and passed down; nothing reads the environment
at import time.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_MIB = 1_048_576


class Settings(BaseSettings):
    """Every number has both bounds: a typo in the environment fails at start-up, not
    as a busy loop, an overflow or an exhausted machine later."""

    model_config = SettingsConfigDict(env_prefix="HOOKCAST_", extra="ignore")

    database_url: str = "sqlite:///hookcast.db"
    host: str = "127.0.0.1"
    port: int = Field(default=5005, ge=0, le=65535)

    #: an instance admin key, accepted besides those from ``hookcast apikey create --admin``
    admin_api_key: str = ""

    #: the SSRF guard: deliveries never connect to loopback, private, link-local, CGNAT,
    #: multicast, reserved or metadata addresses (checked on the resolved address used)
    ssrf_guard: bool = True
    #: networks deliveries may reach even when the SSRF guard would refuse them
    allowed_networks: str = ""

    #: request bodies above this many bytes get 413
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=_MIB * 256)
    #: API requests per second per key (bursts of twice that), then 429; 0 = no limit.
    #: Each API process keeps its own buckets, so N processes allow up to N times this.
    api_rate_limit: int = Field(default=10_000, ge=0, le=1_000_000)

    # group commit of ingest: a batch closes at this many events or after this wait
    ingest_batch_max: int = Field(default=500, ge=1, le=10_000)
    ingest_batch_wait_ms: float = Field(default=1.0, ge=0, le=1_000, allow_inf_nan=False)

    # the delivery worker
    worker_concurrency: int = Field(default=256, ge=1, le=10_000)
    claim_batch: int = Field(default=200, ge=1, le=10_000)
    poll_interval_s: float = Field(default=0.5, ge=0.001, le=300, allow_inf_nan=False)
    lease_margin_s: float = Field(default=30.0, ge=0.1, le=3_600, allow_inf_nan=False)
    completion_flush_ms: float = Field(default=5.0, ge=0, le=1_000, allow_inf_nan=False)
    response_capture_bytes: int = Field(default=4096, ge=0, le=_MIB)
    response_read_bytes: int = Field(default=65_536, ge=0, le=_MIB * 16)
    shutdown_grace_s: float = Field(default=10.0, ge=0, le=3_600, allow_inf_nan=False)

    #: deliveries in flight to one endpoint at once, unless the endpoint sets max_in_flight
    endpoint_max_in_flight: int = Field(default=64, ge=1, le=10_000)
    #: connections per process in the PostgreSQL pool (worker processes open one more, to
    #: LISTEN)
    pg_pool_max: int = Field(default=10, ge=2, le=500)
    #: Redis for what worker processes share: per-endpoint rate limits (optional; without
    #: it each worker process enforces an endpoint's rate limit on its own)
    redis_url: str = ""
    #: a disabled endpoint is probed this long after it was disabled, then with the delay
    #: doubling up to probe_max_s, and re-enabled when a probe gets a 2xx
    probe_base_s: float = Field(default=30.0, ge=0.1, le=86_400, allow_inf_nan=False)
    probe_max_s: float = Field(default=3600.0, ge=0.1, le=7 * 86_400, allow_inf_nan=False)
    #: how often old events, deliveries and attempts are swept (project retention_hours)
    retention_interval_s: float = Field(default=600.0, ge=1, le=86_400, allow_inf_nan=False)

    # broadcast fan-out: endpoints routed per transaction
    fanout_chunk: int = Field(default=2000, ge=1, le=20_000)

    #: SQLite durability: FULL syncs every group commit (cheap when batched)
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"

    #: serve Prometheus metrics at GET /metrics on the API port
    metrics_enabled: bool = True
    #: processes without the API (``hookcast worker``) serve /metrics on this port (0 = off);
    #: ``serve --workers N`` gives its worker children this port + 0 … N-1
    metrics_port: int = Field(default=0, ge=0, le=65535)
    #: when set, every /metrics answers only ``Authorization: Bearer <this token>`` (401
    #: otherwise), on the API port and on the separate listeners alike
    metrics_token: str = ""
    #: ``host:port``: the API process serves /metrics there instead of on the API port
    metrics_address: str = ""

    # meta events (operator webhooks): attempts per event, and the first retry's delay
    meta_event_attempts: int = Field(default=3, ge=1, le=10)
    meta_event_backoff_s: float = Field(default=1.0, ge=0, le=3_600, allow_inf_nan=False)

    #: what ``hookcast send`` and ``hookcast tail`` talk to, and the key they send
    api_url: str = ""
    api_key: str = ""

    #: OpenTelemetry tracing from each publish to every attempt (needs the ``otel`` extra);
    #: ``otlp`` exports with the standard ``OTEL_EXPORTER_OTLP_*`` variables
    otel_enabled: bool = False
    otel_exporter: Literal["otlp", "console"] = "otlp"

    #: who may show the customer portal (``/portal``) in a frame: the Content-Security-Policy
    #: ``frame-ancestors`` sources, space-separated: ``'none'`` (the default: nobody),
    #: ``'self'``, origins such as ``https://app.example.com`` or ``https://*.example.com``,
    #: or a scheme (``https:``)
    portal_frame_ancestors: str = "'none'"

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        for part in filter(None, (p.strip() for p in value.split(","))):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError as exc:
                raise ValueError(f"HOOKCAST_ALLOWED_NETWORKS: {part!r} is not a CIDR") from exc
        return value

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token(cls, value: str) -> str:
        if value and not all(c.isprintable() and not c.isspace() for c in value):
            raise ValueError(
                "HOOKCAST_METRICS_TOKEN: no spaces or control characters (a stray newline?): "
                "it is sent as 'Authorization: Bearer <token>'"
            )
        return value

    @field_validator("portal_frame_ancestors")
    @classmethod
    def _frame_ancestors(cls, value: str) -> str:
        return frame_ancestors(value)

    @field_validator("metrics_address")
    @classmethod
    def _metrics_address(cls, value: str) -> str:
        if value:
            split_host_port(value)  # raises ValueError with the reason
        return value

    def metrics_listen_address(self) -> tuple[str, int] | None:
        """Where the API process serves /metrics instead of its own port, if anywhere."""
        return split_host_port(self.metrics_address) if self.metrics_address else None

    def allowed_network_list(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [
            ipaddress.ip_network(p.strip(), strict=False)
            for p in self.allowed_networks.split(",")
            if p.strip()
        ]


#: a CSP host-source: an optional scheme, a host (its leftmost label may be ``*``), an
#: optional port (or ``*``); no path, no quotes, no separators
_HOST_SOURCE = re.compile(
    r"^(?:https?://)?(?:\*\.)?[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
    r"(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::(?:[0-9]{1,5}|\*))?/?$"
)
_SCHEME_SOURCE = re.compile(r"^https?:$")


def frame_ancestors(value: str) -> str:
    """HOOKCAST_PORTAL_FRAME_ANCESTORS checked and normalised into CSP source expressions:
    ``'none'``, ``'self'``, the schemes ``https:`` and ``http:`` and host sources
    (``https://app.example.com``, ``https://*.example.com:8443``). ``none`` and ``self``
    may be written without their quotes. Anything else (a ``;`` or ``,``, a path, a bare
    ``*``, another keyword) is refused: the value goes into a response header."""
    name = "HOOKCAST_PORTAL_FRAME_ANCESTORS"
    sources: list[str] = []
    for part in value.split():
        word = part.lower()
        keyword = word.strip("'")
        if keyword in ("none", "self"):
            sources.append(f"'{keyword}'")
        elif word == "*" or not (_SCHEME_SOURCE.match(word) or _HOST_SOURCE.match(word)):
            raise ValueError(
                f"{name}: {part!r} is not an origin: give space-separated origins such as "
                "https://app.example.com or https://*.example.com, 'self', or 'none'"
            )
        else:
            sources.append(word)
    if not sources:
        return "'none'"
    if "'none'" in sources and len(sources) > 1:
        raise ValueError(f"{name}: 'none' cannot be combined with other sources")
    return " ".join(dict.fromkeys(sources))


def split_host_port(value: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) as a pair, or ValueError saying what is wrong."""
    example = "e.g. 127.0.0.1:9464, 0.0.0.0:9464 or [::1]:9464"
    host, sep, port = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(
            f"HOOKCAST_METRICS_ADDRESS: {value!r}: put an IPv6 address in brackets ({example})"
        )
    if not sep or not host:
        raise ValueError(f"HOOKCAST_METRICS_ADDRESS: {value!r} is not host:port ({example})")
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError(
            f"HOOKCAST_METRICS_ADDRESS: {value!r}: the port must be a number from 1 to 65535"
        )
    return host, int(port)
