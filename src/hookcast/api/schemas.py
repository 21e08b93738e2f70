"""Request bodies (pydantic). Unknown fields are ignored, as upstream Convoy does; the
OpenAPI document is generated from these same models."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from hookcast.domain import headers
from hookcast.domain.config import MAX_INT32
from hookcast.domain.durations import parse_duration
from hookcast.domain.errors import ValidationError
from hookcast.domain.event_types import (
    MAX_CATEGORY_CHARS,
    MAX_DESCRIPTION_CHARS,
    MAX_IMPORT,
    MAX_NAME_CHARS,
    MAX_SPEC_CHARS,
)
from hookcast.domain.portal_links import MAX_ENDPOINTS, MAX_OWNER_CHARS
from hookcast.domain.portal_links import MAX_NAME_CHARS as MAX_LINK_NAME_CHARS

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_TIMEOUT_S = 300
#: the longest retry interval a subscription may set, in seconds
MAX_RETRY_INTERVAL_S = 86_400


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _header_check(problem: str | None, what: str) -> None:
    if problem is not None:
        raise ValueError(f"the header {what} {problem}")


class ApiKeyAuth(_Body):
    header_name: str = Field(min_length=1, max_length=headers.MAX_NAME_CHARS)
    header_value: str = Field(min_length=1, max_length=headers.MAX_VALUE_CHARS)

    @field_validator("header_name")
    @classmethod
    def _name(cls, value: str) -> str:
        _header_check(headers.name_problem(value), "name")
        return value

    @field_validator("header_value")
    @classmethod
    def _value(cls, value: str) -> str:
        _header_check(headers.value_problem(value), "value")
        return value


class BasicAuth(_Body):
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)

    @field_validator("username", "password")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable():
            raise ValueError("must not contain control characters")
        return value

    @field_validator("username")
    @classmethod
    def _no_colon(cls, value: str) -> str:
        if ":" in value:
            raise ValueError("must not contain ':' (it separates the password)")
        return value


class EndpointAuthentication(_Body):
    type: Literal["api_key", "basic_auth"]
    api_key: ApiKeyAuth | None = None
    basic_auth: BasicAuth | None = None


class EndpointBody(_Body):
    """CreateEndpoint / UpdateEndpoint. On update, absent fields keep their values."""

    url: str | None = Field(default=None, max_length=2048)
    name: str | None = Field(default=None, max_length=200)
    secret: str | None = Field(default=None, max_length=512)
    owner_id: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    advanced_signatures: bool | None = None
    support_email: str | None = Field(default=None, max_length=320)
    slack_webhook_url: str | None = Field(default=None, max_length=2048)
    teams_webhook_url: str | None = Field(default=None, max_length=2048)
    is_disabled: bool | None = None
    http_timeout: int | None = Field(default=None, ge=0, le=MAX_TIMEOUT_S)
    rate_limit: int | None = Field(default=None, ge=0, le=MAX_INT32)
    rate_limit_duration: int | None = Field(default=None, ge=0, le=MAX_INT32)
    content_type: Literal["application/json", "application/x-www-form-urlencoded", ""] | None = None
    authentication: EndpointAuthentication | None = None
    #: hookcast: deliveries in flight to this endpoint at once (0 = the server default)
    max_in_flight: int | None = Field(default=None, ge=0, le=10_000)
    #: hookcast: "ed25519" generates a Standard Webhooks v1a key pair instead of an HMAC
    #: secret (a supplied ``whsk_`` secret does the same)
    signature_scheme: Literal["hmac", "ed25519"] | None = None
    #: hookcast (docs/ordering.md): "per_key" sends one delivery at a time per ordering
    #: key, in publish order; what a delivery failed for good does to its key
    ordering: Literal["none", "per_key"] | None = None
    ordering_on_failure: Literal["block", "skip"] | None = None

    @field_validator("support_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value and not _EMAIL.match(value):
            raise ValueError("support_email must be an email address")
        return value


class ExpireSecretBody(_Body):
    secret: str | None = Field(default=None, max_length=512)
    expiration: int | None = Field(default=None, ge=0, le=30 * 86_400)


class FilterDocs(_Body):
    headers: dict[str, Any] | None = None
    body: dict[str, Any] | None = None
    query: dict[str, Any] | None = None
    path: dict[str, Any] | None = None
    is_flattened: bool | None = None


class FilterConfigBody(_Body):
    event_types: list[str] | None = None
    filter: FilterDocs | None = None


def _duration_seconds(value: Any) -> Any:
    """Seconds, or a Go duration string ("10s", "1m30s"), as whole seconds."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float | str):
        return value  # the int validation reports it
    try:
        seconds = parse_duration(value)
    except ValidationError as exc:
        raise ValueError(exc.message) from exc
    if not 1 <= seconds <= MAX_RETRY_INTERVAL_S:
        raise ValueError("duration must be between 1s and 24h")
    return int(seconds)


class RetryConfigBody(_Body):
    """A subscription's own retry strategy (overrides the project's for its deliveries)."""

    type: Literal["linear", "exponential"] | None = None
    #: seconds, or a Go duration string; whole seconds once validated
    duration: Annotated[
        int | None, BeforeValidator(_duration_seconds, json_schema_input_type=int | str | None)
    ] = Field(default=None, ge=1, le=MAX_RETRY_INTERVAL_S)
    interval_seconds: int | None = Field(default=None, ge=1, le=MAX_RETRY_INTERVAL_S)
    retry_count: int | None = Field(default=None, ge=1, le=100)


class SubscriptionBody(_Body):
    """CreateSubscription / UpdateSubscription. On update, absent fields keep their values."""

    name: str | None = Field(default=None, max_length=200)
    endpoint_id: str | None = Field(default=None, max_length=64)
    filter_config: FilterConfigBody | None = None
    alert_config: dict[str, Any] | None = None
    retry_config: RetryConfigBody | None = None
    rate_limit_config: dict[str, Any] | None = None
    delivery_mode: Literal["at_least_once", "at_most_once"] | None = None
    function: str | None = Field(default=None, max_length=20_000)
    source_id: str | None = None
    app_id: str | None = None


class _EventBody(_Body):
    event_type: str | None = Field(default=None, max_length=200)
    data: Any = None
    custom_headers: dict[str, str] | None = None
    #: sent to endpoints as a header (the project's ``request_id_header``)
    idempotency_key: str | None = Field(default=None, max_length=200)
    #: hookcast (docs/ordering.md): deliveries of one key to an endpoint whose ordering is
    #: "per_key" go one at a time, in publish order
    ordering_key: str | None = Field(default=None, max_length=200)

    @field_validator("idempotency_key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value:
            _header_check(headers.value_problem(value), "value")
        return value


class CreateEvent(_EventBody):
    endpoint_id: str | None = Field(default=None, max_length=64)
    app_id: str | None = None


class FanoutEvent(_EventBody):
    owner_id: str | None = Field(default=None, max_length=200)


class BroadcastEvent(_EventBody):
    acknowledged_at: str | None = None


class DynamicEvent(_EventBody):
    url: str | None = Field(default=None, max_length=2048)
    secret: str | None = Field(default=None, max_length=512)
    event_types: list[str] | None = None


class ProjectBody(_Body):
    name: str | None = Field(default=None, max_length=200)
    type: Literal["outgoing", "incoming"] | None = None
    logo_url: str | None = None
    config: dict[str, Any] | None = None


class ForceResendBody(_Body):
    ids: list[str] = Field(max_length=1000)


class FilterSample(_Body):
    body: Any = None
    header: dict[str, Any] | None = None
    headers: dict[str, Any] | None = None
    query: dict[str, Any] | None = None
    path: dict[str, Any] | None = None


class TestFilterBody(_Body):
    """Convoy's ``{request: sample, schema: filter}``; ``event_type`` also checks types."""

    request: FilterSample | None = None
    schema_: FilterSample | None = Field(default=None, alias="schema")
    event_type: str | None = None
    event_types: list[str] | None = None


class ApiKeyBody(_Body):
    name: str | None = Field(default=None, max_length=200)
    role: Literal["admin", "publisher", "viewer"] = "publisher"
    broadcast: bool = False
    expires_in_days: float | None = Field(default=None, gt=0, le=3650, allow_inf_nan=False)


class EventTypeBody(_Body):
    """CreateEventType / UpdateEventType (``name`` is required on create and cannot change).
    On update, absent fields keep their values, and so do an empty ``category`` or
    ``description`` (as Convoy); ``json_schema: {}`` removes the schema."""

    name: str | None = Field(default=None, max_length=MAX_NAME_CHARS)
    category: str | None = Field(default=None, max_length=MAX_CATEGORY_CHARS)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_CHARS)
    #: a JSON Schema (2020-12 unless its ``$schema`` says otherwise) of the events' ``data``
    json_schema: dict[str, Any] | None = None
    #: hookcast: a sample ``data`` for readers of the catalog (a portal); it must match
    #: ``json_schema``
    example: Any = None


class EventTypeImportBody(_Body):
    """An OpenAPI 3.1 document (its ``webhooks``), given as the body itself or as
    ``spec`` (Convoy's form: the document as JSON text, or as an object); or a plain list
    of ``event_types``. Upserted by name."""

    spec: Annotated[str, Field(max_length=MAX_SPEC_CHARS)] | dict[str, Any] | None = None
    openapi: str | None = Field(default=None, max_length=50)
    webhooks: dict[str, Any] | None = None
    event_types: list[EventTypeBody] | None = Field(default=None, max_length=MAX_IMPORT)


class PortalLinkBody(_Body):
    """CreatePortalLink / UpdatePortalLink. ``name`` and ``owner_id`` are required on
    create; on update, absent fields keep their values."""

    name: str | None = Field(default=None, max_length=MAX_LINK_NAME_CHARS)
    #: the endpoints' ``owner_id`` the link's token sees (and manages)
    owner_id: str | None = Field(default=None, max_length=MAX_OWNER_CHARS)
    can_manage_endpoint: bool | None = None
    #: ``static_token`` (the default: the token does not expire) or ``refresh_token``
    #: (tokens expire after an hour; ``GET …/refresh_token`` issues the next)
    auth_type: Literal["static_token", "refresh_token", ""] | None = None
    #: deprecated (Convoy): stored and given back, never used for scoping
    endpoints: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=MAX_ENDPOINTS
    )
