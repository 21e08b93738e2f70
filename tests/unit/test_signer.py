"""The prepared Signer (keys derived once per endpoint) signs exactly as the one-shot
functions receivers' libraries are checked against."""

from __future__ import annotations

import base64
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from hookcast.domain.signing import (
    Signer,
    convoy_signature,
    generate_secret,
    standard_webhooks_headers,
    standard_webhooks_key,
)

NOW = 1_800_000_000_000_000
SECRETS = ["whsec_" + base64.b64encode(bytes([i]) * 32).decode() for i in range(3)] + ["plain"]
VERSIONS = st.lists(
    st.tuples(st.sampled_from(["SHA256", "SHA512"]), st.sampled_from(["hex", "base64"])),
    min_size=1,
    max_size=3,
)


@settings(max_examples=200, deadline=None)
@given(
    secrets=st.lists(st.sampled_from(SECRETS), min_size=1, max_size=3),
    versions=VERSIONS,
    advanced=st.booleans(),
    body=st.binary(max_size=200),
)
def test_prepared_signatures_equal_the_one_shot_ones(
    secrets: list[str], versions: list[tuple[str, str]], advanced: bool, body: bytes
) -> None:
    signer = Signer(
        [(s, None) for s in secrets], header="X-Sig", advanced=advanced, versions=versions
    )  # type: ignore[arg-type]
    got = dict(signer.sign("msg_1", body, NOW))
    t = NOW // 1_000_000
    assert got["X-Sig"] == convoy_signature(
        body,
        secrets,
        timestamp=t,
        advanced=advanced,
        versions=versions,  # type: ignore[arg-type]
    )
    std = standard_webhooks_headers("msg_1", t, body, [standard_webhooks_key(s) for s in secrets])
    assert {k: got[k] for k in std} == std


def test_expired_secrets_do_not_sign_and_receivers_verify() -> None:
    now = time.time_ns() // 1000  # the receiver's library checks the timestamp
    new = generate_secret(lambda n: b"\x07" * n)
    signer = Signer([("whsec_" + "A" * 43, now - 1), (new, None)], header="X-Sig", advanced=True)
    headers = dict(signer.sign("msg_2", b'{"a":1}', now))
    assert headers["webhook-signature"].count("v1,") == 1
    Webhook(new).verify(b'{"a":1}', headers)


def test_an_unusable_secret_is_an_error_when_signing_not_when_loading() -> None:
    signer = Signer([("whsk_x", None)], header="X-Sig", advanced=True)
    with pytest.raises(ValueError):
        signer.sign("m", b"{}", NOW)
