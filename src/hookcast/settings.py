"""Process settings, from ``HOOKCAST_*`` environment variables and CLI flags.

Built once in :func:`hookcast.cli.main` and passed down; nothing reads the environment
at import time.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
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
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    #: API requests per second per key (bursts of twice that), then 429; 0 = no limit.
    #: Each API process keeps its own buckets, so N processes allow up to N times this.
    api_rate_limit: int = Field(default=10_000, ge=0)

    # group commit of ingest: a batch closes at this many events or after this wait
    ingest_batch_max: int = Field(default=500, ge=1)
    ingest_batch_wait_ms: float = Field(default=1.0, ge=0)

    # the delivery worker
    worker_concurrency: int = Field(default=256, ge=1)
    claim_batch: int = Field(default=200, ge=1)
    poll_interval_s: float = Field(default=0.5, gt=0)
    lease_margin_s: float = Field(default=30.0, gt=0)
    completion_flush_ms: float = Field(default=5.0, ge=0)
    response_capture_bytes: int = Field(default=4096, ge=0)
    response_read_bytes: int = Field(default=65_536, ge=0)
    shutdown_grace_s: float = Field(default=10.0, ge=0)

    #: deliveries in flight to one endpoint at once, unless the endpoint sets max_in_flight
    endpoint_max_in_flight: int = Field(default=64, ge=1)
    #: connections per process in the PostgreSQL pool (worker processes open one more, to
    #: LISTEN)
    pg_pool_max: int = Field(default=10, ge=2, le=500)
    #: Redis for what worker processes share: per-endpoint rate limits (optional; without
    #: it each worker process enforces an endpoint's rate limit on its own)
    redis_url: str = ""
    #: a disabled endpoint is probed this long after it was disabled, then with the delay
    #: doubling up to probe_max_s, and re-enabled when a probe gets a 2xx
    probe_base_s: float = Field(default=30.0, gt=0)
    probe_max_s: float = Field(default=3600.0, gt=0)
    #: how often old events, deliveries and attempts are swept (project retention_hours)
    retention_interval_s: float = Field(default=600.0, gt=0)

    # broadcast fan-out: endpoints routed per transaction
    fanout_chunk: int = Field(default=2000, ge=1, le=20_000)

    #: SQLite durability: FULL syncs every group commit (cheap when batched)
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"

    #: serve Prometheus metrics at GET /metrics on the API port
    metrics_enabled: bool = True
    #: processes without the API (``hookcast worker``) serve /metrics on this port (0 = off);
    #: ``serve --workers N`` gives its worker children this port + 0 … N-1
    metrics_port: int = Field(default=0, ge=0, le=65535)

    # meta events (operator webhooks): attempts per event, and the first retry's delay
    meta_event_attempts: int = Field(default=3, ge=1, le=10)
    meta_event_backoff_s: float = Field(default=1.0, ge=0)

    #: what ``hookcast send`` and ``hookcast tail`` talk to, and the key they send
    api_url: str = ""
    api_key: str = ""

    #: OpenTelemetry tracing from each publish to every attempt (needs the ``otel`` extra);
    #: ``otlp`` exports with the standard ``OTEL_EXPORTER_OTLP_*`` variables
    otel_enabled: bool = False
    otel_exporter: Literal["otlp", "console"] = "otlp"

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

    def allowed_network_list(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [
            ipaddress.ip_network(p.strip(), strict=False)
            for p in self.allowed_networks.split(",")
            if p.strip()
        ]
