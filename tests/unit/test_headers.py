"""No value reaches the wire with a control character: the one place that makes headers,
checked as a property over any text, through the request the sender really writes."""

from __future__ import annotations

import re

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hookcast.delivery.sender import _encode_request, _target
from hookcast.domain import headers
from hookcast.domain.config import ProjectConfig
from hookcast.domain.errors import ValidationError
from hookcast.domain.outbound import build_request
from unit.factories import make_delivery, make_endpoint

_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+: [^\x00-\x08\x0a-\x1f\x7f]*")
ANY_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40
) | st.sampled_from(["a\r\nX-Injected: 1", "\n", "\r", "\x00", "ok\tvalue", " padded ", "é"])


def _parsed(raw: bytes) -> tuple[int, list[tuple[bytes, bytes]]]:
    """How many requests *raw* holds, and the first one's headers, as a server reads it."""
    found: list[list[tuple[bytes, bytes]]] = []

    class Proto:
        def on_message_begin(self) -> None:
            found.append([])

        def on_header(self, name: bytes, value: bytes) -> None:
            found[-1].append((name, value))

    httptools.HttpRequestParser(Proto()).feed_data(raw)
    return len(found), found[0]


def _wire(
    custom: dict[str, str], key: str, auth: dict[str, str] | None, config: ProjectConfig
) -> bytes:
    ep = make_endpoint(
        authentication=None
        if auth is None
        else {"type": "api_key", "api_key": {"header_name": auth["n"], "header_value": auth["v"]}},
    )
    request = build_request(make_delivery(idempotency_key=key), ep, config, b"{}", custom, 10**15)
    return _encode_request(_target(ep.url), request.body, request.headers)


@settings(max_examples=400, deadline=None)
@given(
    name=ANY_TEXT,
    value=ANY_TEXT,
    key=ANY_TEXT,
    auth_name=ANY_TEXT,
    auth_value=ANY_TEXT,
    id_header=ANY_TEXT,
)
def test_what_the_api_accepts_is_one_clean_request_and_the_rest_is_refused(
    name: str, value: str, key: str, auth_name: str, auth_value: str, id_header: str
) -> None:
    accepted = True
    try:
        custom = headers.check_headers({name: value}, "custom_headers")
        headers.check_value(key, "idempotency_key")
        headers.check_name(auth_name, "authentication.api_key.header_name")
        headers.check_value(auth_value, "authentication.api_key.header_value")
        config = ProjectConfig.model_validate({"request_id_header": id_header})
    except (ValidationError, ValueError):
        accepted = False
    if not accepted:
        # what an older version stored unchecked is refused at the wire, or is harmless
        try:
            raw = _wire({name: value}, key, {"n": auth_name, "v": auth_value}, ProjectConfig())
        except headers.UnsafeHeaderError:
            return
    else:
        raw = _wire(custom, key, {"n": auth_name, "v": auth_value}, config)
    head = raw.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n")[1:]:
        assert _LINE.fullmatch(line), line
    count, parsed = _parsed(raw)
    assert count == 1
    names = [n.lower() for n, _ in parsed]
    assert names.count(b"content-length") == 1 and b"transfer-encoding" not in names


@pytest.mark.parametrize(
    "name", ["Content-Length", "transfer-encoding", "Host", "Connection", "X A", "", "X\r\nY", "é"]
)
def test_unsafe_names_are_refused_at_the_api_and_at_the_wire(name: str) -> None:
    with pytest.raises(ValidationError):
        headers.check_name(name, "f")
    with pytest.raises(headers.UnsafeHeaderError):
        headers.encode_header_block({name: "v"})


@pytest.mark.parametrize("value", ["a\r\nb", "a\nb", "a\rb", "a\x00b", "a\x7fb", "\x1b[31m"])
def test_control_characters_are_refused_at_the_api_and_at_the_wire(value: str) -> None:
    with pytest.raises(ValidationError, match="control character"):
        headers.check_value(value, "f")
    with pytest.raises(headers.UnsafeHeaderError):
        headers.encode_header_block({"X-A": value})


def test_tab_and_non_ascii_values_are_sent_as_utf8() -> None:
    assert headers.encode_header_block({"X-A": "a\tb é"}) == "X-A: a\tb é\r\n".encode()
