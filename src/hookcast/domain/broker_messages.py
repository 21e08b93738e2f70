"""Broker sources, the pure half: a source's ``pub_sub`` object checked, and one broker
message turned into an event to publish, or refused with a reason.

The consumers (``hookcast.brokers``) read messages and acknowledge them; everything they
decide about a message is decided here, from data alone (docs/brokers.md is the user's
page).

A message is a body (bytes), headers (AMQP headers; a Redis Streams entry's fields other
than ``body``) and the broker's id for it (AMQP ``message_id``; the stream entry id). Two
formats, chosen by one header:

* **Convoy's envelope** (no ``x-hookcast-event-type`` header): the body is a JSON object
  ``{"event_type", "data", "endpoint_id", "owner_id", "custom_headers",
  "idempotency_key"}``, nothing else (as Convoy, unknown fields are refused);
* **raw** (header ``x-hookcast-event-type`` present): the body is the event's ``data``
  (any JSON value), the target comes from ``x-hookcast-endpoint-id`` or
  ``x-hookcast-owner-id``.

Convoy's ``x-convoy-message-type`` header (``single``, the default, ``fanout`` or
``broadcast``; in the envelope format it may also come in ``custom_headers``, the broker's
header winning) picks the kind. A broadcast is refused unless the source grants it
explicitly (``pub_sub.allow_broadcast``), as an API key needs the broadcast grant.

The idempotency key is the envelope's ``idempotency_key`` when given (as for an HTTP
publish), else ``<source id>:<broker message id>``, else, for a message without an id,
``<source id>:sha256:<digest of body and headers>``: a redelivered message meets its first
copy and becomes a duplicate, stored but not delivered again.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from hookcast.domain import headers as header_rules
from hookcast.domain.errors import ValidationError
from hookcast.domain.models import EventKind

MESSAGE_TYPE_HEADER = "x-convoy-message-type"
EVENT_TYPE_HEADER = "x-hookcast-event-type"
ENDPOINT_HEADER = "x-hookcast-endpoint-id"
OWNER_HEADER = "x-hookcast-owner-id"
#: the header (AMQP) or field (Redis) that carries a dead letter's reason
DEAD_REASON = "x-hookcast-dead-reason"

ENVELOPE_FIELDS = frozenset(
    {"event_type", "data", "endpoint_id", "owner_id", "custom_headers", "idempotency_key"}
)
MAX_CUSTOM_HEADERS = 50
MAX_EVENT_TYPE_CHARS = 200
MAX_ID_CHARS = 200
MAX_WORKERS = 64


class MessageType(enum.StrEnum):
    SINGLE = "single"
    FANOUT = "fanout"
    BROADCAST = "broadcast"


_KINDS = {
    MessageType.SINGLE: EventKind.SINGLE,
    MessageType.FANOUT: EventKind.FANOUT,
    MessageType.BROADCAST: EventKind.BROADCAST,
}


# ------------------------------------------------------------------ the source's config


@dataclass(frozen=True, slots=True)
class PubSubConfig:
    """A source's ``pub_sub`` object, checked: the broker kind, how many consumers run per
    process, whether its messages may broadcast, and the kind's own object (read by that
    broker's module with :class:`Fields`)."""

    kind: str
    workers: int
    allow_broadcast: bool
    settings: Mapping[str, Any]


class Fields:
    """Reads one JSON object of a config; every error names the field's full path."""

    def __init__(self, doc: Any, path: str) -> None:
        if not isinstance(doc, Mapping):
            raise ValidationError(f"{path}: must be an object")
        self.doc: Mapping[str, Any] = doc
        self.path = path

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}"

    def text(self, key: str, default: str | None = None, *, max_chars: int = 1000) -> str:
        value = self.doc.get(key)
        if value is None or value == "":
            if default is None:
                raise ValidationError(f"{self._name(key)}: required")
            return default
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValidationError(f"{self._name(key)}: must be a string")
        text = str(value)
        if len(text) > max_chars:
            raise ValidationError(f"{self._name(key)}: at most {max_chars} characters")
        return text

    def optional_text(self, key: str) -> str | None:
        return self.text(key, "") or None

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.doc.get(key)
        if value is None or value == "":
            return default
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"{self._name(key)}: must be an integer")
        if not low <= value <= high:
            raise ValidationError(f"{self._name(key)}: must be between {low} and {high}")
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.doc.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ValidationError(f"{self._name(key)}: must be true or false")
        return value

    def child(self, key: str, *, required: bool = True) -> Fields | None:
        value = self.doc.get(key)
        if value is None:
            if required:
                raise ValidationError(f"{self._name(key)}: required")
            return None
        return Fields(value, self._name(key))


def parse_pub_sub(doc: Any, kinds: Collection[str]) -> PubSubConfig:
    """Check a source's ``pub_sub`` object: ``type`` one of *kinds*, ``workers`` (1 to
    64, default 1), ``allow_broadcast`` (default false), and the object named by the type.
    The kind's own fields are checked by its broker module."""
    top = Fields(doc, "pub_sub")
    kind = top.text("type")
    if kind not in kinds:
        raise ValidationError(
            f"pub_sub.type: {kind!r} is not a broker hookcast consumes; one of "
            + ", ".join(sorted(kinds))
        )
    settings = top.child(kind)
    assert settings is not None  # required=True
    return PubSubConfig(
        kind=kind,
        workers=top.integer("workers", 1, 1, MAX_WORKERS),
        allow_broadcast=top.flag("allow_broadcast"),
        settings=settings.doc,
    )


# ------------------------------------------------------------------ one message


@dataclass(frozen=True, slots=True)
class BrokerMessage:
    body: bytes
    #: AMQP headers, or a stream entry's fields other than ``body``, as text
    headers: Mapping[str, str]
    #: the broker's id of the message ("" when it has none)
    message_id: str


@dataclass(frozen=True, slots=True)
class SourceRules:
    """What one source lets its messages do."""

    source_id: str
    allow_broadcast: bool = False
    max_body_bytes: int = 1_048_576


@dataclass(frozen=True, slots=True)
class ToPublish:
    """An event to store, as the API would store a publish."""

    kind: EventKind
    event_type: str
    data: bytes  # ``data`` serialised as JSON
    parsed: Any
    idempotency_key: str
    headers: dict[str, str] = field(default_factory=dict)
    endpoint_id: str | None = None
    owner_id: str = ""


@dataclass(frozen=True, slots=True)
class Refusal:
    """The message cannot become an event; it is dead-lettered with this reason."""

    reason: str


def map_message(message: BrokerMessage, rules: SourceRules) -> ToPublish | Refusal:
    """The event *message* asks for, or why it cannot be one."""
    if not message.body:
        return Refusal(
            "the message has no body (a Redis Streams entry carries it in its body field)"
        )
    if len(message.body) > rules.max_body_bytes:
        return Refusal(f"body of {len(message.body)} bytes exceeds {rules.max_body_bytes}")
    try:
        parsed = orjson.loads(message.body)
    except orjson.JSONDecodeError as exc:
        return Refusal(f"body is not JSON: {exc}")
    found = {k.lower(): v for k, v in message.headers.items()}
    try:
        if EVENT_TYPE_HEADER in found:
            return _raw(message, parsed, found, rules)
        return _envelope(message, parsed, found, rules)
    except ValidationError as exc:
        return Refusal(exc.message)


def _raw(
    message: BrokerMessage, data: Any, found: Mapping[str, str], rules: SourceRules
) -> ToPublish:
    event_type = _event_type(found[EVENT_TYPE_HEADER], EVENT_TYPE_HEADER)
    mtype = _message_type(found.get(MESSAGE_TYPE_HEADER))
    return _target(
        mtype,
        rules,
        ToPublish(
            kind=_KINDS[mtype],
            event_type=event_type,
            data=orjson.dumps(data),
            parsed=data,
            idempotency_key=_key("", message, rules),
        ),
        endpoint_id=found.get(ENDPOINT_HEADER, ""),
        owner_id=found.get(OWNER_HEADER, ""),
        where=("header " + ENDPOINT_HEADER, "header " + OWNER_HEADER),
    )


def _envelope(
    message: BrokerMessage, body: Any, found: Mapping[str, str], rules: SourceRules
) -> ToPublish:
    if not isinstance(body, dict):
        raise ValidationError(
            "body must be a JSON object {event_type, data, endpoint_id | owner_id, ...}, "
            f"or set the {EVENT_TYPE_HEADER} header to send the body as the event's data"
        )
    unknown = sorted(set(body) - ENVELOPE_FIELDS)
    if unknown:
        raise ValidationError(
            f"unknown field(s) {', '.join(unknown)}; the body takes "
            + ", ".join(sorted(ENVELOPE_FIELDS))
        )
    if body.get("data") is None:
        raise ValidationError("data: required")
    custom = _custom_headers(body.get("custom_headers"))
    lowered = {k.lower(): v for k, v in custom.items()}
    mtype = _message_type(found.get(MESSAGE_TYPE_HEADER, lowered.get(MESSAGE_TYPE_HEADER)))
    own_key = _text(body, "idempotency_key")
    if own_key:
        header_rules.check_value(own_key, "idempotency_key")
    return _target(
        mtype,
        rules,
        ToPublish(
            kind=_KINDS[mtype],
            event_type=_event_type(body.get("event_type"), "event_type"),
            data=orjson.dumps(body["data"]),
            parsed=body["data"],
            idempotency_key=_key(own_key, message, rules),
            headers={k: v for k, v in custom.items() if k.lower() != MESSAGE_TYPE_HEADER},
        ),
        endpoint_id=_text(body, "endpoint_id"),
        owner_id=_text(body, "owner_id"),
        where=("endpoint_id", "owner_id"),
    )


def _target(
    mtype: MessageType,
    rules: SourceRules,
    event: ToPublish,
    *,
    endpoint_id: str,
    owner_id: str,
    where: tuple[str, str],
) -> ToPublish:
    if mtype is MessageType.SINGLE:
        if not endpoint_id:
            raise ValidationError(f"a single event needs an endpoint: set {where[0]}")
        return replace(event, endpoint_id=endpoint_id)
    if mtype is MessageType.FANOUT:
        if not owner_id:
            raise ValidationError(f"a fanout event needs an owner: set {where[1]}")
        return replace(event, owner_id=owner_id)
    if not rules.allow_broadcast:
        raise ValidationError(
            f"source {rules.source_id} may not broadcast: its pub_sub.allow_broadcast is not "
            "true (a broadcast reaches every endpoint of the project, so it is granted to a "
            "source explicitly, as to an API key)"
        )
    return event


def _message_type(value: str | None) -> MessageType:
    text = (value or MessageType.SINGLE.value).strip().lower()
    try:
        return MessageType(text)
    except ValueError:
        raise ValidationError(
            f"{MESSAGE_TYPE_HEADER}: {value!r} is not one of single, fanout, broadcast"
        ) from None


def _event_type(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{where}: required, a non-empty string")
    if len(value) > MAX_EVENT_TYPE_CHARS:
        raise ValidationError(f"{where}: at most {MAX_EVENT_TYPE_CHARS} characters")
    return value


def _text(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError(f"{key}: must be a string")
    if len(value) > MAX_ID_CHARS:
        raise ValidationError(f"{key}: at most {MAX_ID_CHARS} characters")
    return value


def _custom_headers(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValidationError("custom_headers: must be an object of strings")
    if len(value) > MAX_CUSTOM_HEADERS:
        raise ValidationError(f"custom_headers: at most {MAX_CUSTOM_HEADERS} headers")
    return header_rules.check_headers(value, "custom_headers")


def _key(own: str, message: BrokerMessage, rules: SourceRules) -> str:
    if own:
        return own
    if message.message_id:
        key = f"{rules.source_id}:{message.message_id}"
        if len(key) <= MAX_ID_CHARS and header_rules.value_problem(key) is None:
            return key
        # an id that cannot travel as a header value (it is sent as one) is hashed
        sha = hashlib.sha256(message.message_id.encode()).hexdigest()[:40]
        return f"{rules.source_id}:id-sha256:{sha}"
    digest = hashlib.sha256(message.body)
    for name in sorted(message.headers):
        digest.update(b"\x00" + name.encode() + b"\x00" + message.headers[name].encode())
    return f"{rules.source_id}:sha256:{digest.hexdigest()[:40]}"
