"""Signatures: Convoy's header (simple and advanced) and Standard Webhooks.

Expected values are computed independently here with ``hmac``/``hashlib`` (or taken from
openssl and the Standard Webhooks spec), never by calling the code under test twice.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from hookcast.domain.signing import (
    Encoding,
    HashName,
    convoy_signature,
    generate_secret,
    standard_webhooks_headers,
    standard_webhooks_key,
    verify_convoy_signature,
)

PAYLOAD = b'{"event":"ping"}'
TS = 1_700_000_000
HASHES = {"SHA256": hashlib.sha256, "SHA512": hashlib.sha512}
COMBOS: list[tuple[HashName, Encoding]] = [
    ("SHA256", "hex"),
    ("SHA256", "base64"),
    ("SHA512", "hex"),
    ("SHA512", "base64"),
]


def reference(secret: str, message: bytes, hash_name: str, encoding: str) -> str:
    digest = hmac.new(secret.encode(), message, HASHES[hash_name]).digest()
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


# --- Convoy, simple -------------------------------------------------------------------


def test_simple_sha256_hex_matches_openssl() -> None:
    # printf '%s' '{"event":"ping"}' | openssl dgst -sha256 -hmac 'my-secret'
    expected = "a4aa04fd005086c11e0953dd0aaa3306e2d8a9fbd9b7d333cc52ce210bdc67f6"
    assert convoy_signature(PAYLOAD, ["my-secret"], timestamp=TS, advanced=False) == expected


def test_simple_sha512_base64_matches_openssl() -> None:
    # printf '%s' '{"event":"ping"}' | openssl dgst -sha512 -hmac 'my-secret' -binary | base64
    expected = (
        "8ce+T6PUuSk2blBmqe7j/4s8o/FzTmMpI0A3Vqg4/Ad8fNWK2dTPGJSePCk0btqd68y32Z7nZmrCuYpMU7PxXA=="
    )
    got = convoy_signature(
        PAYLOAD, ["my-secret"], timestamp=TS, advanced=False, versions=[("SHA512", "base64")]
    )
    assert got == expected


@pytest.mark.parametrize(("hash_name", "encoding"), COMBOS)
def test_simple_uses_newest_secret_and_last_version(
    hash_name: HashName, encoding: Encoding
) -> None:
    versions: list[tuple[HashName, Encoding]] = [("SHA256", "hex"), (hash_name, encoding)]
    got = convoy_signature(
        PAYLOAD, ["old-secret", "new-secret"], timestamp=TS, advanced=False, versions=versions
    )
    assert got == reference("new-secret", PAYLOAD, hash_name, encoding)
    assert got != reference("old-secret", PAYLOAD, hash_name, encoding)


def test_simple_ignores_timestamp() -> None:
    a = convoy_signature(PAYLOAD, ["s"], timestamp=1, advanced=False)
    b = convoy_signature(PAYLOAD, ["s"], timestamp=2, advanced=False)
    assert a == b == reference("s", PAYLOAD, "SHA256", "hex")


def test_key_is_utf8_of_secret() -> None:
    secret = "clé-ß-🔑"
    expected = hmac.new(secret.encode("utf-8"), PAYLOAD, hashlib.sha256).hexdigest()
    assert convoy_signature(PAYLOAD, [secret], timestamp=TS, advanced=False) == expected


# --- Convoy, advanced -----------------------------------------------------------------


def test_advanced_sha256_hex_matches_openssl() -> None:
    # printf '%s' '1700000000,{"event":"ping"}' | openssl dgst -sha256 -hmac 'my-secret'
    sig = "3bee25a3a8f28ff57af78b0044587935f707f9e7863fa4aa3c5701a7d8714852"
    got = convoy_signature(PAYLOAD, ["my-secret"], timestamp=TS, advanced=True)
    assert got == f"t=1700000000,v1={sig}"


@pytest.mark.parametrize(("hash_name", "encoding"), COMBOS)
def test_advanced_one_version_many_secrets(hash_name: HashName, encoding: Encoding) -> None:
    secrets = ["first", "second", "third"]
    got = convoy_signature(
        PAYLOAD, secrets, timestamp=TS, advanced=True, versions=[(hash_name, encoding)]
    )
    message = f"{TS},".encode() + PAYLOAD
    sigs = [reference(s, message, hash_name, encoding) for s in secrets]
    assert got == f"t={TS},v1={sigs[0]},v1={sigs[1]},v1={sigs[2]}"


def test_advanced_many_versions_are_labelled_by_position() -> None:
    versions: list[tuple[HashName, Encoding]] = [("SHA256", "hex"), ("SHA512", "base64")]
    got = convoy_signature(PAYLOAD, ["a", "b"], timestamp=TS, advanced=True, versions=versions)
    message = f"{TS},".encode() + PAYLOAD
    expected = ",".join(
        [
            f"t={TS}",
            "v1=" + reference("a", message, "SHA256", "hex"),
            "v1=" + reference("b", message, "SHA256", "hex"),
            "v2=" + reference("a", message, "SHA512", "base64"),
            "v2=" + reference("b", message, "SHA512", "base64"),
        ]
    )
    assert got == expected


def test_advanced_signature_depends_on_timestamp() -> None:
    a = convoy_signature(PAYLOAD, ["s"], timestamp=TS, advanced=True)
    b = convoy_signature(PAYLOAD, ["s"], timestamp=TS + 1, advanced=True)
    assert a.split(",")[1] != b.split(",")[1]


@pytest.mark.parametrize("advanced", [True, False])
def test_no_secret_raises(advanced: bool) -> None:
    with pytest.raises(ValueError, match="secret"):
        convoy_signature(PAYLOAD, [], timestamp=TS, advanced=advanced)


def test_no_version_raises() -> None:
    with pytest.raises(ValueError, match="version"):
        convoy_signature(PAYLOAD, ["s"], timestamp=TS, advanced=True, versions=[])


# --- Convoy verification --------------------------------------------------------------


@pytest.mark.parametrize(("hash_name", "encoding"), COMBOS)
@pytest.mark.parametrize("advanced", [True, False])
def test_verify_accepts_own_signature(
    hash_name: HashName, encoding: Encoding, advanced: bool
) -> None:
    header = convoy_signature(
        PAYLOAD, ["s1", "s2"], timestamp=TS, advanced=advanced, versions=[(hash_name, encoding)]
    )
    # simple mode signs with the newest secret only; advanced with every live secret
    cases = [(["s2"], True), (["other", "s2"], True), (["s1"], advanced), (["other"], False)]
    for secrets, ok in cases:
        got = verify_convoy_signature(
            PAYLOAD,
            header,
            secrets,
            now=TS + 10,
            advanced=advanced,
            hash_name=hash_name,
            encoding=encoding,
        )
        assert got is ok, secrets


@pytest.mark.parametrize("advanced", [True, False])
def test_verify_rejects_wrong_secret(advanced: bool) -> None:
    header = convoy_signature(PAYLOAD, ["right"], timestamp=TS, advanced=advanced)
    assert not verify_convoy_signature(PAYLOAD, header, ["wrong"], now=TS, advanced=advanced)


@pytest.mark.parametrize("advanced", [True, False])
def test_verify_rejects_tampered_body(advanced: bool) -> None:
    header = convoy_signature(PAYLOAD, ["s"], timestamp=TS, advanced=advanced)
    tampered = PAYLOAD.replace(b"ping", b"pong")
    assert verify_convoy_signature(PAYLOAD, header, ["s"], now=TS, advanced=advanced)
    assert not verify_convoy_signature(tampered, header, ["s"], now=TS, advanced=advanced)


@pytest.mark.parametrize(("offset", "ok"), [(300, True), (-300, True), (301, False), (-301, False)])
def test_verify_timestamp_tolerance(offset: int, ok: bool) -> None:
    header = convoy_signature(PAYLOAD, ["s"], timestamp=TS, advanced=True)
    got = verify_convoy_signature(PAYLOAD, header, ["s"], now=TS + offset, advanced=True)
    assert got is ok


def test_verify_rejects_replayed_signature_with_new_timestamp() -> None:
    header = convoy_signature(PAYLOAD, ["s"], timestamp=TS, advanced=True)
    forged = header.replace(f"t={TS}", f"t={TS + 1000}")
    assert not verify_convoy_signature(PAYLOAD, forged, ["s"], now=TS + 1000, advanced=True)


def test_verify_wrong_encoding_rejects() -> None:
    header = convoy_signature(PAYLOAD, ["s"], timestamp=TS, advanced=False)
    assert not verify_convoy_signature(
        PAYLOAD, header, ["s"], now=TS, advanced=False, encoding="base64"
    )


def test_verify_advanced_ignores_other_versions() -> None:
    versions: list[tuple[HashName, Encoding]] = [("SHA256", "hex"), ("SHA512", "hex")]
    header = convoy_signature(PAYLOAD, ["s"], timestamp=TS, advanced=True, versions=versions)
    assert verify_convoy_signature(PAYLOAD, header, ["s"], now=TS, advanced=True)
    v2_only = ",".join(p for p in header.split(",") if not p.startswith("v1="))
    assert not verify_convoy_signature(PAYLOAD, v2_only, ["s"], now=TS, advanced=True)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        "v1=abc",  # no timestamp
        f"t={TS}",  # no signature
        f"t=abc,v1={'0' * 64}",
        f"t={TS},t={TS},v1={'0' * 64}",
        f"t=-{TS},v1={'0' * 64}",
        f"t={TS},v1",
    ],
)
def test_verify_rejects_malformed_advanced_header(header: str) -> None:
    assert not verify_convoy_signature(PAYLOAD, header, ["s"], now=TS, advanced=True)


def test_verify_without_secrets_raises() -> None:
    with pytest.raises(ValueError, match="secret"):
        verify_convoy_signature(PAYLOAD, "x", [], now=TS, advanced=False)


secret_text = st.text(min_size=1, max_size=40)
hash_names = st.sampled_from(["SHA256", "SHA512"])
encodings = st.sampled_from(["hex", "base64"])


@given(
    payload=st.binary(max_size=2048),
    secrets=st.lists(secret_text, min_size=1, max_size=4),
    timestamp=st.integers(min_value=0, max_value=2**40),
    advanced=st.booleans(),
    hash_name=hash_names,
    encoding=encodings,
)
def test_sign_verify_roundtrip(
    payload: bytes,
    secrets: list[str],
    timestamp: int,
    advanced: bool,
    hash_name: HashName,
    encoding: Encoding,
) -> None:
    header = convoy_signature(
        payload, secrets, timestamp=timestamp, advanced=advanced, versions=[(hash_name, encoding)]
    )

    def verify(body: bytes) -> bool:
        return verify_convoy_signature(
            body,
            header,
            [secrets[-1]],
            now=timestamp,
            advanced=advanced,
            hash_name=hash_name,
            encoding=encoding,
        )

    assert verify(payload)
    expected = reference(secrets[-1], f"{timestamp},".encode() + payload, hash_name, encoding)
    if advanced:
        assert f"v1={expected}" in header.split(",")
    else:
        assert header == reference(secrets[-1], payload, hash_name, encoding)
    assert not verify(payload + b"x")


@given(payload=st.binary(max_size=256), secret=secret_text, other=secret_text)
def test_other_secret_never_verifies(payload: bytes, secret: str, other: str) -> None:
    header = convoy_signature(payload, [secret], timestamp=TS, advanced=True)
    ok = verify_convoy_signature(payload, header, [other], now=TS, advanced=True)
    assert ok is (other == secret)


@given(header=st.text(max_size=300), advanced=st.booleans(), now=st.integers())
def test_verify_never_raises_on_arbitrary_headers(header: str, advanced: bool, now: int) -> None:
    assert verify_convoy_signature(PAYLOAD, header, ["s"], now=now, advanced=advanced) is False


# --- Standard Webhooks ----------------------------------------------------------------

SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_standard_webhooks_spec_vector() -> None:
    key = standard_webhooks_key(SPEC_SECRET)
    headers = standard_webhooks_headers(SPEC_MSG_ID, SPEC_TS, SPEC_BODY, [key])
    assert headers == {
        "webhook-id": SPEC_MSG_ID,
        "webhook-timestamp": "1614265330",
        "webhook-signature": SPEC_SIG,
    }


def test_standard_webhooks_one_entry_per_key() -> None:
    keys = [b"k1", b"k2"]
    headers = standard_webhooks_headers("msg_1", 1000, b"body", keys)
    entries = headers["webhook-signature"].split(" ")
    expected = [
        "v1," + base64.b64encode(hmac.new(k, b"msg_1.1000.body", hashlib.sha256).digest()).decode()
        for k in keys
    ]
    assert entries == expected


def test_standard_webhooks_without_keys_raises() -> None:
    with pytest.raises(ValueError, match="key"):
        standard_webhooks_headers("msg_1", 1000, b"body", [])


def test_real_library_verifies_our_headers() -> None:
    now = int(time.time())
    body = b'{"type":"invoice.paid","data":{"id":42}}'
    old_secret, new_secret = generate_secret(lambda n: b"\x01" * n), SPEC_SECRET
    keys = [standard_webhooks_key(old_secret), standard_webhooks_key(new_secret)]
    headers = standard_webhooks_headers("msg_abc", now, body, keys)
    for secret in (old_secret, new_secret):
        assert Webhook(secret).verify(body, headers) == {
            "type": "invoice.paid",
            "data": {"id": 42},
        }
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret(lambda n: b"\x02" * n)).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret).verify(body + b" ", headers)


@given(body=st.text(max_size=500), key=st.binary(min_size=1, max_size=64))
def test_real_library_verifies_arbitrary_bodies(body: str, key: bytes) -> None:
    now = int(time.time())
    headers = standard_webhooks_headers("msg_x", now, body.encode(), [key])
    secret = "whsec_" + base64.b64encode(key).decode()
    assert Webhook(secret).verify(body.encode(), headers, json_parse=False) is None


def test_key_from_whsec_secret_is_base64_decoded() -> None:
    assert standard_webhooks_key(SPEC_SECRET) == base64.b64decode(
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    )


@pytest.mark.parametrize(
    ("secret", "key"), [("whsec_YWJj", b"abc"), ("whsec_YWI", b"ab"), ("whsec_YQ", b"a")]
)
def test_key_accepts_missing_padding(secret: str, key: bytes) -> None:
    assert standard_webhooks_key(secret) == key


def test_key_without_prefix_is_utf8() -> None:
    assert standard_webhooks_key("plain-sécret") == "plain-sécret".encode()


@pytest.mark.parametrize("secret", ["whsec_!!!!", "whsec_abcde", "whsec_", ""])
def test_key_rejects_bad_or_empty(secret: str) -> None:
    with pytest.raises(ValueError, match="secret"):
        standard_webhooks_key(secret)


def test_generate_secret() -> None:
    requested: list[int] = []

    def fake_randbytes(n: int) -> bytes:
        requested.append(n)
        return bytes(range(n))

    secret = generate_secret(fake_randbytes)
    assert requested == [32]
    assert secret == "whsec_" + base64.b64encode(bytes(range(32))).decode()
    assert secret == "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    assert standard_webhooks_key(secret) == bytes(range(32))


@given(raw=st.binary(min_size=32, max_size=32))
def test_generated_secret_roundtrips_to_its_key(raw: bytes) -> None:
    secret = generate_secret(lambda n: raw[:n])
    assert secret.startswith("whsec_")
    assert standard_webhooks_key(secret) == raw
