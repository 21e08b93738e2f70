"""Project settings (Convoy's ``ProjectConfig``), validated with pydantic.

Pydantic is pure (no I/O), so the domain may use it: one model gives validation, the JSON
form stored on the project row and the OpenAPI schema.
"""

from __future__ import annotations

import copy
import enum
from typing import Any, Literal

import orjson
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from hookcast.domain import headers
from hookcast.domain.breaker import BreakerConfig
from hookcast.domain.errors import ValidationError
from hookcast.domain.urls import validate_endpoint_url

#: the largest value the stores' integer columns hold (PostgreSQL's ``integer``)
MAX_INT32 = 2**31 - 1


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


def _header_name(value: str) -> str:
    problem = headers.name_problem(value)
    if problem is not None:
        raise ValueError(f"the header name {problem}")
    return value


class SignatureConfig(_Model):
    header: str = Field(default="X-Convoy-Signature", min_length=1, max_length=100)
    versions: list[SignatureVersion] = Field(default_factory=lambda: [SignatureVersion()])

    _header = field_validator("header")(_header_name)


class SSLConfig(_Model):
    enforce_secure_endpoints: bool = False


class RateLimitConfig(_Model):
    """Convoy's project rate limit: ``count`` requests per ``duration`` seconds (the same
    bounds as an endpoint's ``rate_limit`` and ``rate_limit_duration``)."""

    count: int = Field(default=1000, ge=0, le=MAX_INT32)
    duration: int = Field(default=60, ge=0, le=MAX_INT32)


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


#: pydantic error types of a number outside its bounds, and the bound each one names
_AT_BOUND = {"greater_than_equal": "ge", "less_than_equal": "le"}
_PAST_BOUND = {"greater_than", "less_than", "finite_number"}


def _into_bounds(doc: dict[str, Any], exc: PydanticValidationError) -> dict[str, Any] | None:
    """*doc* with every number that *exc* finds out of bounds moved to the bound it
    crossed (``ge``/``le``) or dropped for its default (``gt``/``lt``, not finite);
    None when *exc* reports anything else."""
    fixed = copy.deepcopy(doc)
    for err in exc.errors():
        *path, name = err["loc"]
        parent: Any = fixed
        for part in path:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or name not in parent:
            return None
        bound = _AT_BOUND.get(err["type"])
        if bound is not None:
            parent[name] = err.get("ctx", {})[bound]
        elif err["type"] in _PAST_BOUND:
            del parent[name]
        else:
            return None
    return fixed


class ProjectConfig(_Model):
    """Every number has both bounds, for its meaning and for the arithmetic done with it
    (times in integer microseconds stay far within int64; counts fit an int32 column).

    Values from API callers out of bounds are refused (400). JSON text is the form the
    stores keep (the API validates parsed objects), so ``model_validate_json`` reads a row
    written under older, looser bounds with its numbers moved into today's bounds instead
    of refusing the whole project: one project's stale row must not break the others'
    delivery, retention or probes."""

    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    signature: SignatureConfig = Field(default_factory=SignatureConfig)
    ssl: SSLConfig = Field(default_factory=SSLConfig)
    ratelimit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    #: the header that carries an event's idempotency key to endpoints
    request_id_header: str = Field(default="X-Convoy-Idempotency-Key", min_length=1, max_length=100)
    add_event_id_trace_headers: bool = True
    disable_endpoint: bool = True
    multiple_endpoint_subscriptions: bool = False
    #: bytes of a payload read (Convoy's setting), at most 100 MiB
    max_payload_read_size: int = Field(default=1_048_576, ge=1, le=100 * 1_048_576)
    #: deliveries per second a broadcast releases to the workers (0 = unlimited); at most
    #: one per microsecond
    broadcast_rate: int = Field(default=5_000, ge=0, le=1_000_000)
    #: how long events, deliveries and attempts are kept, in hours (0 = forever), at most
    #: ten years
    retention_hours: int = Field(default=720, ge=0, le=87_600)
    #: per-endpoint circuit breaker thresholds
    circuit_breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    #: deliveries per second released to an endpoint that comes back after being disabled
    #: (from one per 100 s to 100,000 per second)
    recovery_rate: float = Field(default=50.0, ge=0.01, le=100_000, allow_inf_nan=False)
    #: operator webhooks about this project's endpoints, deliveries and broadcasts
    meta_event: MetaEventConfig = Field(default_factory=MetaEventConfig)
    #: publishing checks each event's ``data`` against the ``json_schema`` of its type in
    #: the event catalog (``/event-types``): 400 naming the failing place when it does not
    #: match; a type without a catalog entry or without a schema passes. Off (the
    #: default), publishing does not look at the catalog at all.
    validate_event_schemas: bool = False

    _request_id_header = field_validator("request_id_header")(_header_name)

    @model_validator(mode="wrap")
    @classmethod
    def _stored_into_bounds(
        cls, data: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        try:
            return handler(data)
        except PydanticValidationError as exc:
            if info.mode != "json" or not isinstance(data, dict):
                raise
            fixed = _into_bounds(data, exc)
            if fixed is None:
                raise
            return handler(fixed)


def stored_config(text: str | bytes) -> ProjectConfig:
    """A project's config as a store keeps it. Numbers out of today's bounds are moved into
    them (see ProjectConfig); any other value today's rules refuse (written by an older
    version, or by hand) falls back to its default, rather than failing every read of the
    project and with it every batch its deliveries are in. The API refuses such values
    when they are written."""
    try:
        return ProjectConfig.model_validate_json(text)
    except PydanticValidationError:
        pass
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return ProjectConfig()
    kept: dict[str, Any] = {}
    for name, value in doc.items() if isinstance(doc, dict) else ():
        try:
            ProjectConfig.model_validate_json(orjson.dumps({name: value}))
        except PydanticValidationError:
            continue
        kept[name] = value
    return ProjectConfig.model_validate_json(orjson.dumps(kept))
