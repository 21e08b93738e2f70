"""Broker messages → events (domain.broker_messages) and the pub_sub config checks."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from hookcast.brokers import check_pub_sub
from hookcast.domain.broker_messages import (
    BrokerMessage,
    Refusal,
    SourceRules,
    ToPublish,
    map_message,
)
from hookcast.domain.errors import ValidationError
from hookcast.domain.models import EventKind

RULES = SourceRules("src_1")


def msg(body: Any, headers: dict[str, str] | None = None, message_id: str = "m-1") -> BrokerMessage:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return BrokerMessage(raw, headers or {}, message_id)


def published(message: BrokerMessage, rules: SourceRules = RULES) -> ToPublish:
    out = map_message(message, rules)
    assert isinstance(out, ToPublish), out
    return out


def refused(message: BrokerMessage, rules: SourceRules = RULES) -> str:
    out = map_message(message, rules)
    assert isinstance(out, Refusal), out
    return out.reason


def test_convoy_envelope_single_by_default() -> None:
    ev = published(msg({"event_type": "invoice.paid", "data": {"a": 1}, "endpoint_id": "ep1"}))
    assert ev.kind is EventKind.SINGLE
    assert ev.endpoint_id == "ep1"
    assert ev.event_type == "invoice.paid"
    assert orjson.loads(ev.data) == {"a": 1}
    assert ev.idempotency_key == "src_1:m-1"


def test_message_type_header_picks_fanout_and_custom_headers_travel() -> None:
    body = {
        "event_type": "t",
        "data": [1, 2],
        "owner_id": "own",
        "custom_headers": {"X-Tenant": "acme"},
    }
    ev = published(msg(body, {"X-Convoy-Message-Type": "fanout"}))
    assert ev.kind is EventKind.FANOUT
    assert ev.owner_id == "own"
    assert ev.endpoint_id is None
    assert ev.headers == {"X-Tenant": "acme"}


def test_message_type_in_custom_headers_as_convoy_merges_them() -> None:
    body = {
        "event_type": "t",
        "data": 1,
        "owner_id": "own",
        "custom_headers": {"x-convoy-message-type": "fanout"},
    }
    ev = published(msg(body))
    assert ev.kind is EventKind.FANOUT
    assert ev.headers == {}  # the routing header is not sent to receivers


def test_broadcast_needs_the_source_grant() -> None:
    m = msg({"event_type": "t", "data": {}}, {"x-convoy-message-type": "broadcast"})
    assert "allow_broadcast" in refused(m)
    ev = published(m, SourceRules("src_1", allow_broadcast=True))
    assert ev.kind is EventKind.BROADCAST


def test_raw_format_body_is_data_and_target_from_headers() -> None:
    headers = {"x-hookcast-event-type": "user.created", "x-hookcast-endpoint-id": "ep9"}
    ev = published(msg(["any", "json"], headers))
    assert ev.kind is EventKind.SINGLE
    assert ev.endpoint_id == "ep9"
    assert orjson.loads(ev.data) == ["any", "json"]
    headers = {"x-hookcast-event-type": "t", "x-convoy-message-type": "fanout"}
    assert "x-hookcast-owner-id" in refused(msg({"a": 1}, headers))


def test_own_idempotency_key_wins_and_id_less_messages_hash_their_content() -> None:
    body = {"event_type": "t", "data": 1, "endpoint_id": "e", "idempotency_key": "k-7"}
    assert published(msg(body)).idempotency_key == "k-7"
    body.pop("idempotency_key")
    first = published(msg(body, message_id="")).idempotency_key
    again = published(msg(body, message_id="")).idempotency_key
    other = published(msg({**body, "data": 2}, message_id="")).idempotency_key
    assert first == again != other
    assert first.startswith("src_1:sha256:")
    bad_id = published(msg(body, message_id="a\r\nb")).idempotency_key
    assert "\r" not in bad_id


@pytest.mark.parametrize(
    ("body", "headers", "reason"),
    [
        (b"not json", {}, "not JSON"),
        (b"", {}, "no body"),
        ([1, 2], {}, "JSON object"),
        ({"event_type": "t", "data": 1, "endpoint_id": "e", "extra": 1}, {}, "unknown field"),
        ({"event_type": "t", "endpoint_id": "e"}, {}, "data: required"),
        ({"data": 1, "endpoint_id": "e"}, {}, "event_type"),
        ({"event_type": "t", "data": 1}, {}, "endpoint"),
        ({"event_type": "t", "data": 1, "endpoint_id": "e"}, {"x-convoy-message-type": "x"}, "x"),
        (
            {"event_type": "t", "data": 1, "endpoint_id": "e", "custom_headers": {"A": "b\nc"}},
            {},
            "custom_headers",
        ),
        ({"event_type": "t", "data": 1, "endpoint_id": 5}, {}, "endpoint_id"),
    ],
)
def test_refusals_say_why(body: Any, headers: dict[str, str], reason: str) -> None:
    assert reason in refused(msg(body, headers))


def test_body_size_limit() -> None:
    big = msg({"event_type": "t", "data": "x" * 2000, "endpoint_id": "e"})
    assert "exceeds" in refused(big, SourceRules("s", max_body_bytes=1024))


def test_pub_sub_config_checks() -> None:
    amqp = check_pub_sub({"type": "amqp", "amqp": {"host": "127.0.0.1", "queue": "q"}})
    assert (amqp.kind, amqp.workers, amqp.allow_broadcast) == ("amqp", 1, False)
    redis = check_pub_sub({"type": "redis_stream", "workers": 2, "redis_stream": {"stream": "s"}})
    assert redis.workers == 2
    for doc, field in [
        ({"type": "sqs", "sqs": {}}, "pub_sub.type"),
        ({"type": "amqp"}, "pub_sub.amqp"),
        ({"type": "amqp", "amqp": {"queue": "q"}}, "pub_sub.amqp.host"),
        ({"type": "amqp", "amqp": {"host": "h", "queue": "q", "port": 0}}, "pub_sub.amqp.port"),
        ({"type": "amqp", "amqp": {"host": "h", "queue": "q", "schema": "http"}}, "schema"),
        ({"type": "redis_stream", "redis_stream": {}}, "pub_sub.redis_stream.stream"),
        ({"type": "redis_stream", "redis_stream": {"stream": "s", "url": "http://x"}}, "url"),
        ({"type": "redis_stream", "workers": 99, "redis_stream": {"stream": "s"}}, "workers"),
        ({"type": "amqp", "allow_broadcast": "yes", "amqp": {}}, "allow_broadcast"),
        ("nope", "pub_sub"),
    ]:
        with pytest.raises(ValidationError) as err:
            check_pub_sub(doc)
        assert field in err.value.message, (doc, err.value.message)
