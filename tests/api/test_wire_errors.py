"""What aiohttp's HTTP parser refuses before any handler runs is answered with the JSON
envelope too: raw bytes on a raw socket, since no HTTP client sends such requests."""

from __future__ import annotations

import socket

import orjson
import pytest
import requests

from hookcast.api.app import MAX_HEADER_BYTES, MAX_HEADERS, MAX_REQUEST_LINE
from support import Gateway


def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send *raw* on a new connection and read the answer: status, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break  # the server closes after its answer; what it sent is in data
            if not chunk:
                break
            data += chunk
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"no complete answer: {data[:300]!r}"
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(body)))
    assert len(body) >= length, f"short body: {data[:300]!r}"
    return int(status_line.split(" ", 2)[1]), headers, body[:length]


GET = b"GET /api/v1/projects HTTP/1.1\r\nHost: localhost\r\n"

CASES = {
    "request line too long": (
        b"GET /api/v1/projects/x?q=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",
        414,
        f"request line too long: the limit is {MAX_REQUEST_LINE} bytes",
    ),
    "header value too long": (
        GET + b"X-Big: " + b"x" * 40_000 + b"\r\n\r\n",
        431,
        f"request header too large: the limit is {MAX_HEADER_BYTES} bytes",
    ),
    "header name too long": (
        GET + b"X-" + b"n" * 40_000 + b": 1\r\n\r\n",
        431,
        f"request header too large: the limit is {MAX_HEADER_BYTES} bytes",
    ),
    "too many headers": (
        GET + b"".join(b"X-F-%d: 1\r\n" % n for n in range(3 * MAX_HEADERS)) + b"\r\n",
        431,
        f"too many request headers: the limit is {MAX_HEADERS}",
    ),
    "garbage request line": (b"GARBAGE\r\n\r\n", 400, "bad HTTP request: "),
    "binary garbage": (b"\x01\x02\x03 hello\r\n\r\n", 400, "bad HTTP request: "),
    "NUL in the request line": (
        b"GET /api/v1/pro\x00jects HTTP/1.1\r\nHost: localhost\r\n\r\n",
        400,
        "bad HTTP request: ",
    ),
    "bad HTTP version": (b"GET / HTTP/7.Z\r\nHost: localhost\r\n\r\n", 400, "bad HTTP request: "),
    "space in a header name": (GET + b"Bad Name: x\r\n\r\n", 400, "bad HTTP request: "),
    "TLS on the HTTP port": (
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(40),
        400,
        "bad HTTP request: ",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_what_the_parser_refuses_is_a_json_envelope(gateway: Gateway, case: str) -> None:
    raw, want_status, want_message = CASES[case]
    status, headers, body = exchange(gateway.settings.port, raw)
    assert status == want_status, body
    assert headers["content-type"].startswith("application/json")
    assert headers.get("x-request-id")
    doc = orjson.loads(body)
    assert doc["status"] is False and set(doc) == {"status", "message"}, doc
    assert doc["message"].startswith(want_message), doc
    assert len(doc["message"]) > len("bad HTTP request: ")  # says what was wrong
    assert "\x00" not in doc["message"] and len(doc["message"]) < 300
    # the server keeps serving, on new connections
    assert requests.get(gateway.base + "/health", timeout=10).status_code == 200
    r = gateway.admin("GET", "/api/v1/projects")
    assert r.status_code == 200 and r.json()["status"] is True


def test_the_limits_themselves_pass_the_parser(gateway: Gateway) -> None:
    # a request line just under the limit reaches the app (and its JSON 404 or 401)
    target = b"/api/v1/projects/x?q="
    pad = MAX_REQUEST_LINE - len(target) - 100
    status, headers, body = exchange(
        gateway.settings.port,
        b"GET "
        + target
        + b"a" * pad
        + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    assert status == 401 and headers["content-type"].startswith("application/json"), body
    # a header between the app's limit and the parser's gets the app's own 431
    status, _, body = exchange(
        gateway.settings.port,
        GET + b"X-Big: " + b"x" * (MAX_HEADER_BYTES + 100) + b"\r\nConnection: close\r\n\r\n",
    )
    assert status == 431 and b"X-Big" in body
