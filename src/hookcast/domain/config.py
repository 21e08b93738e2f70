"""Project settings (Convoy's ``ProjectConfig``), validated with pydantic.

Pydantic is pure (no I/O), so the domain may use it: one model gives validation, the JSON
form stored on the project row and the OpenAPI schema.
"""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from hookcast.domain.breaker import BreakerConfig
from hookcast.domain.errors import ValidationError
from hookcast.domain.urls import validate_endpoint_url


class StrategyType(enum.StrEnum):
    LINEAR = "linear"
    EXPONENTIAL = "exponential"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_assignment=True)


class StrategyConfig(_Model):
    """How failed deliveries are retried. ``retry_count`` counts every attempt, the first
    included (as Convoy does); ``duration`` is the linear interval or the exponential base,
    in seconds."""

    type: StrategyType = StrategyType.EXPONENTIAL
    duration: int = Field(default=10, ge=1, le=86_400)
    retry_count: int = Field(default=10, ge=1, le=100)
    max_retry_seconds: int = Field(default=7_200, ge=1, le=7 * 86_400)


class SignatureVersion(_Model):
    uid: str = ""
    hash: Literal["SHA256", "SHA512"] = "SHA256"
    encoding: Literal["hex", "base64"] = "hex"
    created_at: str | None = None


class SignatureConfig(_Model):
    header: str = Field(default="X-Convoy-Signature", min_length=1, max_length=100)
    versions: list[SignatureVersion] = Field(default_factory=lambda: [SignatureVersion()])


class SSLConfig(_Model):
    enforce_secure_endpoints: bool = False


class RateLimitConfig(_Model):
    count: int = Field(default=1000, ge=0)
    duration: int = Field(default=60, ge=0)


#: the operator webhooks hookcast sends about itself (``meta_event.event_types``)
META_EVENT_TYPES = (
    "endpoint.disabled",
    "endpoint.enabled",
    "delivery.failed",
    "broadcast.completed",
)


class MetaEventConfig(_Model):
    """Meta events: signed webhooks about hookcast itself, sent to one operator URL per
    project (Convoy's ``meta_event`` shape; ``event_type`` is accepted for
    ``event_types``). An empty ``event_types`` means all of them."""

    is_enabled: bool = False
    type: Literal["http"] = "http"
    url: str = ""
    secret: str = Field(default="", max_length=200)
    event_types: list[str] = Field(
        default_factory=lambda: list(META_EVENT_TYPES),
        validation_alias=AliasChoices("event_type", "event_types"),
    )

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t not in META_EVENT_TYPES and t != "*"]
        if unknown:
            raise ValueError(
                f"unknown meta event types {unknown}; use {', '.join(META_EVENT_TYPES)}"
            )
        return value

    @model_validator(mode="after")
    def _complete(self) -> MetaEventConfig:
        if not self.is_enabled:
            return self
        if not self.secret:
            raise ValueError("meta_event needs a secret to sign with when enabled")
        try:
            validate_endpoint_url(self.url, require_https=False)
        except ValidationError as exc:
            raise ValueError(f"meta_event.url: {exc.message}") from exc
        return self

    def wants(self, event_type: str) -> bool:
        if not self.is_enabled:
            return False
        types = self.event_types
        return not types or "*" in types or event_type in types


class ProjectConfig(_Model):
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    signature: SignatureConfig = Field(default_factory=SignatureConfig)
    ssl: SSLConfig = Field(default_factory=SSLConfig)
    ratelimit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    request_id_header: str = "X-Convoy-Idempotency-Key"
    add_event_id_trace_headers: bool = True
    disable_endpoint: bool = True
    multiple_endpoint_subscriptions: bool = False
    max_payload_read_size: int = Field(default=1_048_576, ge=1)
    #: deliveries per second a broadcast releases to the workers (0 = unlimited)
    broadcast_rate: int = Field(default=5_000, ge=0)
    #: how long events, deliveries and attempts are kept, in hours (0 = forever)
    retention_hours: int = Field(default=720, ge=0)
    #: per-endpoint circuit breaker thresholds
    circuit_breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    #: deliveries per second released to an endpoint that comes back after being disabled
    recovery_rate: float = Field(default=50.0, gt=0)
    #: operator webhooks about this project's endpoints, deliveries and broadcasts
    meta_event: MetaEventConfig = Field(default_factory=MetaEventConfig)
