"""The exact request for one attempt: headers, signatures over the bytes sent."""

from __future__ import annotations

import base64
import hashlib
import hmac

from hookcast.domain.config import ProjectConfig, SignatureConfig, SignatureVersion
from hookcast.domain.models import (
    Delivery,
    DeliveryMode,
    DeliveryStatus,
    Endpoint,
    Secret,
)
from hookcast.domain.outbound import build_request, live_secrets, loggable_headers
from unit.factories import make_endpoint

NOW = 1_700_000_000_000_000


def _endpoint(**kw: object) -> Endpoint:
    defaults: dict[str, object] = {
        "secrets": (Secret("S1", "old", 0, NOW - 1), Secret("S2", "new", 1)),
    }
    return make_endpoint(**{**defaults, **kw})


DELIVERY = Delivery(
    "D",
    "P",
    "EV",
    "E",
    "SUB",
    "t",
    DeliveryStatus.PROCESSING,
    DeliveryMode.AT_LEAST_ONCE,
    "idem",
    1,
    10,
    "linear",
    10,
    100,
    NOW,
    None,
    "",
    0,
    0,
)


def test_expired_secrets_do_not_sign() -> None:
    assert live_secrets(_endpoint().secrets, NOW) == ["new"]


def test_headers_signature_and_custom_headers_cannot_override() -> None:
    cfg = ProjectConfig(
        signature=SignatureConfig(
            header="X-Sig", versions=[SignatureVersion(hash="SHA512", encoding="base64")]
        )
    )
    req = build_request(
        DELIVERY,
        _endpoint(),
        cfg,
        b'{"a":1}',
        {"X-Sig": "forged", "webhook-id": "forged", "X-Custom": "1"},
        NOW,
    )
    t = NOW // 1_000_000
    mac = hmac.new(b"new", f"{t},".encode() + b'{"a":1}', hashlib.sha512).digest()
    assert req.headers["X-Sig"] == f"t={t},v1={base64.b64encode(mac).decode()}"
    assert req.headers["webhook-id"] == "D"
    assert req.headers["X-Custom"] == "1"
    assert req.headers["X-Convoy-Idempotency-Key"] == "idem"
    assert req.body == b'{"a":1}'


def test_basic_auth_is_sent_but_redacted_in_the_log() -> None:
    ep = _endpoint(
        authentication={"type": "basic_auth", "basic_auth": {"username": "u", "password": "p"}}
    )
    req = build_request(DELIVERY, ep, ProjectConfig(), b"{}", {}, NOW)
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
    assert loggable_headers(req)["Authorization"] == "[redacted]"
