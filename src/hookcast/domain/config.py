"""Project settings (Convoy's ``ProjectConfig``), validated with pydantic.

Pydantic is pure (no I/O), so the domain may use it: one model gives validation, the JSON
form stored on the project row and the OpenAPI schema.
"""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hookcast.domain.breaker import BreakerConfig


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
