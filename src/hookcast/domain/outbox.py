"""The transactional outbox's decisions: what an application may write, how a stored row
becomes a publish call of hookcast's REST API, what an answer means, and when to try again.

Pure: data in, data out; randomness is passed in. The SQL lives in ``hookcast.outbox``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from hookcast.domain import headers as header_rules
from hookcast.domain.errors import ValidationError

#: hookcast's own limits on a publish (api/schemas.py, api/routes/events.py)
MAX_EVENT_TYPE = 200
MAX_KEY = 200
MAX_CUSTOM_HEADERS = 50

#: the idempotency key of a row the application gave none: ``outbox:<row id>``
KEY_PREFIX = "outbox:"


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """An event to publish once the application's transaction commits: the fields of
    hookcast's REST publish. Exactly one target: ``endpoint_id`` (one endpoint),
    ``owner_id`` (fan-out to an owner's subscribed endpoints) or ``broadcast=True`` (every
    subscribed endpoint of the project; the relay's key needs the broadcast grant).

    ``project_id`` may be left empty: the relay then publishes into its own project (its
    ``--project``, or its key's). ``ordering_key`` is stored and sent along, for ordered
    delivery."""

    event_type: str
    data: Any
    endpoint_id: str = ""
    owner_id: str = ""
    broadcast: bool = False
    custom_headers: Mapping[str, str] = field(default_factory=dict)
    idempotency_key: str = ""
    ordering_key: str = ""
    project_id: str = ""

    def __post_init__(self) -> None:
        check_event(self)


def check_event(event: OutboxEvent) -> None:
    """Refuse, when it is written, what hookcast would refuse when the relay publishes it
    (a :class:`ValidationError` naming the field)."""
    targets = (bool(event.endpoint_id), bool(event.owner_id), event.broadcast)
    if sum(targets) != 1:
        raise ValidationError(
            "an outbox event needs exactly one target: endpoint_id=..., owner_id=... "
            "or broadcast=True"
        )
    if not event.event_type or len(event.event_type) > MAX_EVENT_TYPE:
        raise ValidationError(f"event_type: give one of 1 to {MAX_EVENT_TYPE} characters")
    if event.data is None:
        raise ValidationError("data: give the event's payload (any JSON value but null)")
    for name in ("idempotency_key", "ordering_key"):
        value = getattr(event, name)
        if len(value) > MAX_KEY:
            raise ValidationError(f"{name}: at most {MAX_KEY} characters")
        problem = header_rules.value_problem(value) if value else None
        if problem:
            raise ValidationError(f"{name}: {problem}")
    if len(event.custom_headers) > MAX_CUSTOM_HEADERS:
        raise ValidationError(f"custom_headers: at most {MAX_CUSTOM_HEADERS} headers")
    if event.custom_headers:
        header_rules.check_headers(dict(event.custom_headers), "custom_headers")


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A committed row of the outbox table, as the relay reads it."""

    id: str
    event: OutboxEvent
    attempts: int = 0


def idempotency_key(row: OutboxRow) -> str:
    """The application's own key if it gave one, else ``outbox:<row id>`` (the row id
    is a UUID, so two outbox tables feeding one project never collide)."""
    return row.event.idempotency_key or KEY_PREFIX + row.id


@dataclass(frozen=True, slots=True)
class PublishRequest:
    path: str
    body: dict[str, Any]


def publish_request(row: OutboxRow, default_project: str) -> PublishRequest:
    """The REST call that publishes *row*: single, fan-out or broadcast, with its
    idempotency key."""
    ev = row.event
    project = ev.project_id or default_project
    if not project:
        raise ValidationError(
            f"outbox row {row.id} names no project and the relay has none: give the relay "
            "--project or a project key"
        )
    base = f"/api/v1/projects/{quote(project, safe='')}/events"
    body: dict[str, Any] = {
        "event_type": ev.event_type,
        "data": ev.data,
        "idempotency_key": idempotency_key(row),
    }
    if ev.custom_headers:
        body["custom_headers"] = dict(ev.custom_headers)
    if ev.ordering_key:
        body["ordering_key"] = ev.ordering_key
    if ev.endpoint_id:
        return PublishRequest(base, {**body, "endpoint_id": ev.endpoint_id})
    if ev.owner_id:
        return PublishRequest(base + "/fanout", {**body, "owner_id": ev.owner_id})
    return PublishRequest(base + "/broadcast", body)


class Answer(enum.StrEnum):
    """What the relay does with a row after hookcast answered."""

    #: stored (a duplicate too: hookcast already holds it): delete the row
    STORED = "stored"
    #: refused for good (a 4xx): keep the row, marked failed, with the reason
    REJECTED = "rejected"
    #: hookcast could not take it now (5xx, 408, 429, no connection): try again later
    RETRY = "retry"
    #: the relay's key was refused (401): nothing is wrong with the row; stop the relay
    UNAUTHORIZED = "unauthorized"


#: 4xx answers that mean "not now" rather than "never"
_TRANSIENT_4XX = frozenset({408, 425, 429})


def classify(status: int) -> Answer:
    """*status* is the HTTP status of hookcast's answer, 0 when there was none."""
    if 200 <= status < 300:
        return Answer.STORED
    if status == 401:
        return Answer.UNAUTHORIZED
    if 400 <= status < 500 and status not in _TRANSIENT_4XX:
        return Answer.REJECTED
    return Answer.RETRY


@dataclass(frozen=True, slots=True)
class Backoff:
    first_s: float = 0.5
    cap_s: float = 60.0


def retry_delay(attempts: int, rand: Callable[[], float], policy: Backoff = Backoff()) -> float:
    """Seconds before the next try of a row that has failed *attempts* times (1 after
    the first failure): exponential, capped, with jitter in [50 %, 100 %] so relays that
    failed together do not retry together. *rand* returns a float in [0, 1)."""
    exp = policy.first_s * 2.0 ** min(max(attempts - 1, 0), 30)
    ceiling = min(exp, policy.cap_s)
    return ceiling * (0.5 + 0.5 * rand())


def row_event(fields: Mapping[str, Any]) -> OutboxEvent:
    """The event of a stored row (a mapping by column name). A row the application wrote
    around this API (raw SQL) may break the rules: :class:`ValidationError` then, and the
    relay marks it failed with the reason."""
    return OutboxEvent(
        event_type=str(fields["event_type"]),
        data=fields["data"],
        endpoint_id=str(fields["endpoint_id"] or ""),
        owner_id=str(fields["owner_id"] or ""),
        broadcast=bool(fields["broadcast"]),
        custom_headers=dict(fields["custom_headers"] or {}),
        idempotency_key=str(fields["idempotency_key"] or ""),
        ordering_key=str(fields["ordering_key"] or ""),
        project_id=str(fields["project_id"] or ""),
    )
