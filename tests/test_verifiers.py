"""The source verifiers and the incoming-request helpers (domain/verifiers.py,
domain/sources.py): pure functions, the signatures made here with each provider's
documented algorithm (never with hookcast's own code)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest

from hookcast.domain.errors import ValidationError
from hookcast.domain.sources import (
    SourceFields,
    check_source,
    event_type,
    extract,
    idempotency_key,
    kept_headers,
    new_mask_id,
)
from hookcast.domain.verifiers import Kind, Request, build_verifier, secret_headers, verify

BODY = b'{"id":"evt_1","type":"invoice.paid","data":{"id":"in_9","n":[1,2]}}'
NOW = 1_760_000_000


def req(headers: dict[str, str] | None = None, body: bytes = BODY, **query: str) -> Request:
    return Request(body, {k.lower(): v for k, v in (headers or {}).items()}, query)


def hmac_verifier(**hmac_doc: Any) -> dict[str, Any]:
    doc = {"header": "X-Sig", "hash": "SHA256", "secret": "s3cret", "encoding": "hex"}
    return {"type": "hmac", "hmac": doc | hmac_doc}


# ---------------------------------------------------------------- hmac


@pytest.mark.parametrize(
    ("algo", "encoding"),
    [("SHA256", "hex"), ("SHA256", "base64"), ("SHA512", "hex"), ("SHA512", "base64")],
)
def test_hmac_accepts_a_good_signature_and_refuses_others(algo: str, encoding: str) -> None:
    v = build_verifier("", hmac_verifier(hash=algo, encoding=encoding))
    digest = hmac.new(b"s3cret", BODY, getattr(hashlib, algo.lower())).digest()
    good = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()
    assert verify(v, req({"X-Sig": good}), NOW) is None
    assert verify(v, req({"X-Sig": good}, body=BODY + b" "), NOW) is not None
    wrong = hmac.new(b"other", BODY, getattr(hashlib, algo.lower())).digest()
    bad = wrong.hex() if encoding == "hex" else base64.b64encode(wrong).decode()
    assert "does not match" in (verify(v, req({"X-Sig": bad}), NOW) or "")
    assert "missing" in (verify(v, req({}), NOW) or "")
    assert verify(v, req({"X-Sig": "not-an-encoding!"}), NOW) is not None


def test_a_reason_never_shows_the_secret() -> None:
    v = build_verifier("", hmac_verifier(secret="very-secret-value"))
    why = verify(v, req({"X-Sig": "00"}), NOW)
    assert why is not None and "very-secret-value" not in why


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"type": "hmac"}, "verifier.hmac"),
        (hmac_verifier(hash="MD5"), "verifier.hmac.hash"),
        (hmac_verifier(encoding="base32"), "verifier.hmac.encoding"),
        (hmac_verifier(secret=""), "verifier.hmac.secret"),
        (hmac_verifier(header=""), "verifier.hmac.header"),
        ({"type": "basic_auth", "basic_auth": {"username": "u"}}, "verifier.basic_auth.password"),
        ({"type": "api_key", "api_key": {"header_name": "X-Key"}}, "header_value"),
        ({"type": "magic"}, "verifier.type"),
    ],
)
def test_a_bad_verifier_config_names_the_field(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=field.replace(".", r"\.")):
        build_verifier("", doc)


# ---------------------------------------------------------------- basic auth, api key


def test_basic_auth() -> None:
    v = build_verifier(
        "", {"type": "basic_auth", "basic_auth": {"username": "u", "password": "p:w"}}
    )
    good = "Basic " + base64.b64encode(b"u:p:w").decode()
    assert verify(v, req({"Authorization": good}), NOW) is None
    bad = "Basic " + base64.b64encode(b"u:nope").decode()
    assert verify(v, req({"Authorization": bad}), NOW) == "wrong basic auth credentials"
    assert verify(v, req({"Authorization": "Bearer x"}), NOW) is not None
    assert verify(v, req({}), NOW) is not None
    assert secret_headers(v) == {"authorization"}


def test_api_key_in_a_named_header_or_in_authorization() -> None:
    named = build_verifier(
        "", {"type": "api_key", "api_key": {"header_name": "X-Key", "header_value": "k1"}}
    )
    assert verify(named, req({"X-Key": "k1"}), NOW) is None
    assert verify(named, req({"X-Key": "k2"}), NOW) == "wrong API key"
    assert verify(named, req({}), NOW) is not None
    assert secret_headers(named) == {"x-key"}
    bare = build_verifier("", {"type": "api_key", "api_key": {"header_value": "k1"}})
    assert verify(bare, req({"Authorization": "Bearer k1"}), NOW) is None
    assert verify(bare, req({"Authorization": "Bearer k2"}), NOW) is not None


def test_noop_lets_everything_in() -> None:
    v = build_verifier("", None)
    assert v.kind is Kind.NOOP
    assert verify(v, req({}), NOW) is None


# ---------------------------------------------------------------- provider presets


def github_signature(secret: bytes, body: bytes) -> str:
    # docs.github.com "Validating webhook deliveries": sha256= + hex HMAC-SHA256 of the body
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def stripe_header(secret: bytes, body: bytes, t: int, extra: tuple[str, ...] = ()) -> str:
    # stripe.com/docs/webhooks/signatures: HMAC-SHA256 hex of "{t}.{body}", t=…,v1=…
    sig = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return ",".join([f"t={t}", *extra, f"v1={sig}"])


def test_github_preset() -> None:
    v = build_verifier("github", {"type": "hmac", "hmac": {"secret": "gh"}})
    assert verify(v, req({"X-Hub-Signature-256": github_signature(b"gh", BODY)}), NOW) is None
    wrong = github_signature(b"other", BODY)
    assert verify(v, req({"X-Hub-Signature-256": wrong}), NOW) is not None
    bare = github_signature(b"gh", BODY).removeprefix("sha256=")
    assert "sha256=" in (verify(v, req({"X-Hub-Signature-256": bare}), NOW) or "")


def test_a_preset_needs_its_secret() -> None:
    with pytest.raises(ValidationError, match=r"verifier\.hmac"):
        build_verifier("github", {"type": "noop"})
    with pytest.raises(ValidationError, match="provider"):
        build_verifier("twitter", hmac_verifier())


def test_shopify_preset() -> None:
    v = build_verifier("shopify", {"hmac": {"secret": "shp"}})
    good = base64.b64encode(hmac.new(b"shp", BODY, hashlib.sha256).digest()).decode()
    assert verify(v, req({"X-Shopify-Hmac-SHA256": good}), NOW) is None
    hex_form = hmac.new(b"shp", BODY, hashlib.sha256).hexdigest()
    assert verify(v, req({"X-Shopify-Hmac-SHA256": hex_form}), NOW) is not None


def test_stripe_preset_with_tolerance_and_several_signatures() -> None:
    v = build_verifier("stripe", {"hmac": {"secret": "whsec_stripe"}})
    secret = b"whsec_stripe"
    assert verify(v, req({"Stripe-Signature": stripe_header(secret, BODY, NOW)}), NOW) is None
    # a rolled secret: the old one's v1 first, the new one's after: any match passes
    old = hmac.new(b"old", f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    two = stripe_header(secret, BODY, NOW, (f"v1={old}", "v0=abc"))
    assert verify(v, req({"Stripe-Signature": two}), NOW) is None
    # within 300 s either way passes; beyond, a replay is refused
    assert verify(v, req({"Stripe-Signature": stripe_header(secret, BODY, NOW - 300)}), NOW) is None
    replay = verify(v, req({"Stripe-Signature": stripe_header(secret, BODY, NOW - 301)}), NOW)
    assert replay is not None and "replayed" in replay
    ahead = verify(v, req({"Stripe-Signature": stripe_header(secret, BODY, NOW + 301)}), NOW)
    assert ahead is not None
    # the timestamp is signed: moving it breaks the signature
    moved = stripe_header(secret, BODY, NOW - 1000).replace(f"t={NOW - 1000}", f"t={NOW}")
    assert "no v1" in (verify(v, req({"Stripe-Signature": moved}), NOW) or "")
    assert verify(v, req({"Stripe-Signature": f"t={NOW}"}), NOW) is not None
    assert verify(v, req({}), NOW) is not None


def test_stripe_tolerance_is_configurable() -> None:
    v = build_verifier("stripe", {"hmac": {"secret": "s", "tolerance": 10}})
    assert verify(v, req({"Stripe-Signature": stripe_header(b"s", BODY, NOW - 11)}), NOW)
    with pytest.raises(ValidationError, match="tolerance"):
        build_verifier("stripe", {"hmac": {"secret": "s", "tolerance": 0}})


def standard_headers(key: bytes, msg_id: str, ts: int, body: bytes) -> dict[str, str]:
    # standardwebhooks.com spec: v1,base64(HMAC-SHA256(key, "{id}.{ts}.{body}"))
    sig = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": "v1,AAAA v1," + base64.b64encode(sig).decode(),
    }


def test_standard_webhooks_preset() -> None:
    key = b"0123456789abcdef0123456789abcdef"
    secret = "whsec_" + base64.b64encode(key).decode()
    v = build_verifier("standard_webhooks", {"hmac": {"secret": secret}})
    assert verify(v, req(standard_headers(key, "msg_1", NOW, BODY)), NOW) is None
    assert verify(v, req(standard_headers(key, "msg_1", NOW, BODY), body=b"{}"), NOW) is not None
    assert verify(v, req(standard_headers(key, "msg_1", NOW - 400, BODY)), NOW) is not None
    assert verify(v, req(standard_headers(b"x" * 32, "msg_1", NOW, BODY)), NOW) is not None
    with pytest.raises(ValidationError, match="whsec_"):
        build_verifier("standard_webhooks", {"hmac": {"secret": "whsec_!!!"}})


# ---------------------------------------------------------------- locations and keys


def test_extract_reads_headers_body_and_query() -> None:
    r = req({"X-Id": "h1"}, id="q1")
    body = {"data": {"id": "in_9", "n": [1, 2], "obj": {"b": 1, "a": 2}}}
    assert extract("request.header.X-Id", r, body) == "h1"
    assert extract("request.header.x-id", r, body) == "h1"
    assert extract("request.query.id", r, body) == "q1"
    assert extract("request.body.data.id", r, body) == "in_9"
    assert extract("request.body.data.n.1", r, body) == "2"
    assert extract("request.body.data.obj", r, body) == '{"a":2,"b":1}'
    assert extract("request.body.data.missing", r, body) == ""
    assert extract("request.body.data.n.9", r, body) == ""


def test_idempotency_key_is_a_sha256_over_source_and_values() -> None:
    r = req({"X-Id": "h1"})
    locations = ("request.header.X-Id", "request.body.data.id")
    key = idempotency_key("src1", locations, r, {"data": {"id": "in_9"}})
    expected = hashlib.sha256(b"src1\x1fh1\x1fin_9").hexdigest()
    assert key == expected
    assert idempotency_key("src2", locations, r, {"data": {"id": "in_9"}}) != key
    assert idempotency_key("src1", locations, r, {"data": {"id": "in_8"}}) != key
    assert idempotency_key("src1", (), r, {}) == ""
    assert idempotency_key("src1", ("request.query.id",), r, {}) == ""


def test_event_type_location_and_default() -> None:
    r = req({"X-GitHub-Event": "push"})
    assert event_type("request.header.X-GitHub-Event", r, {}) == "push"
    assert event_type("request.body.type", r, {"type": "invoice.paid"}) == "invoice.paid"
    assert event_type("request.body.type", r, {}) == "*"
    assert event_type("", r, {"type": "x"}) == "*"


def test_kept_headers_drop_credentials_and_join_repeats() -> None:
    pairs = [
        ("Content-Type", "application/json"),
        ("Authorization", "Basic xx"),
        ("X-Tag", "a"),
        ("x-tag", "b"),
        ("Host", "example"),
    ]
    kept = kept_headers(pairs, frozenset({"authorization", "host"}))
    assert kept == {"Content-Type": "application/json", "X-Tag": "a, b"}


def test_mask_ids_are_url_safe_and_need_randomness() -> None:
    mask = new_mask_id(bytes(range(16)))
    assert len(mask) == 22 and mask.replace("-", "").replace("_", "").isalnum()
    with pytest.raises(ValueError):
        new_mask_id(b"short")


def fields(**kw: Any) -> SourceFields:
    base: dict[str, Any] = {
        "name": "gh",
        "type": "http",
        "provider": "",
        "is_disabled": False,
        "verifier": {"type": "noop"},
        "custom_response": None,
        "idempotency_keys": (),
        "forward_headers": (),
        "body_function": "",
        "header_function": "",
        "event_type_location": "",
        "pub_sub": None,
    }
    return SourceFields(**(base | kw))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"name": " "}, "name"),
        ({"type": "sqs"}, "type: one of"),
        ({"type": "rest_api"}, "not supported yet"),
        ({"type": "db_change_stream"}, "not supported yet"),
        ({"idempotency_keys": ("data.id",)}, "idempotency_keys"),
        ({"event_type_location": "request.cookie.x"}, "event_type_location"),
        ({"body_function": "x"}, "body_function"),
        ({"type": "pub_sub"}, "pub_sub"),
        ({"type": "pub_sub", "pub_sub": {"type": "sqs"}}, "pub_sub.type"),
        ({"type": "pub_sub", "pub_sub": {"type": "amqp"}}, "pub_sub.amqp"),
        ({"type": "pub_sub", "pub_sub": {"type": "amqp", "amqp": {}, "workers": 0}}, "workers"),
        ({"custom_response": {"body": 1}}, "custom_response"),
    ],
)
def test_check_source_refuses_with_the_field(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        check_source(fields(**kw))


def test_check_source_keeps_pub_sub_as_given() -> None:
    doc = {"type": "redis_stream", "workers": 2, "redis_stream": {"stream": "s", "extra": [1]}}
    checked = check_source(fields(type="pub_sub", pub_sub=doc))
    assert checked.pub_sub == doc
