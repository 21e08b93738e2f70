"""The hostile receiver zoo against a bystander project, on both stores.

One project's endpoints answer anything a receiver can send: bad status lines, broken
framing, NUL bytes, two responses to one request, resets, slow drips. A second project
sends to a well-behaved path on the same host and port, so both share the gateway's
worker, its keep-alive pool and its completion batches. Whatever the hostile answers,
every bystander delivery must arrive exactly once, succeed with exactly one attempt, and
every hostile request must be recorded as an attempt (none sent twice within an attempt,
none lost, none smuggled).

``make soak`` runs the randomized part longer (HOOKCAST_ZOO_EXAMPLES) and prints figures.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookcast.domain.ids import new_id
from pg_support import fresh_database
from support import Gateway, Project, make_settings, wait_until
from zoo import OK, Reply, Zoo

HOSTILE_TIMEOUT_S = 1
#: a hostile delivery gets two attempts one second apart, then fails for good
HOSTILE_STRATEGY = {"strategy": {"type": "linear", "duration": 1, "retry_count": 2}}

NAMED: dict[str, Reply] = {
    "nul-body": Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\na\x00b\x00c"),
    "nul-body-500": Reply(b"HTTP/1.1 500 Oops\r\nContent-Length: 3\r\n\r\n\x00\x00\x00"),
    "nul-header": Reply(b"HTTP/1.1 200 OK\r\nX-Evil: a\x00b\r\nContent-Length: 2\r\n\r\nok"),
    "status-overflow": Reply(b"HTTP/1.1 99999999999999999999 OK\r\nContent-Length: 0\r\n\r\n"),
    "status-int32": Reply(b"HTTP/1.1 2147483648 OK\r\nContent-Length: 0\r\n\r\n"),
    "status-1000": Reply(b"HTTP/1.1 1000 OK\r\nContent-Length: 0\r\n\r\n"),
    "status-099": Reply(b"HTTP/1.1 099 OK\r\nContent-Length: 0\r\n\r\n"),
    "status-negative": Reply(b"HTTP/1.1 -200 OK\r\nContent-Length: 0\r\n\r\n"),
    "negative-length": Reply(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nok"),
    "huge-length": Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\nok"),
    "double-length": Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nokk"),
    "length-and-chunked": Reply(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n"
    ),
    "negative-chunk": Reply(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"
    ),
    "huge-chunk": Reply(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\nx\r\n"
    ),
    "two-responses": Reply(OK + b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsmuggle"),
    "late-second-response": Reply(
        OK + b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate", chunk=len(OK), drip_s=0.2
    ),
    "interim-100": Reply(b"HTTP/1.1 100 Continue\r\n\r\n" + OK),
    "upgrade-101": Reply(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    ),
    "bare-lf": Reply(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok"),
    "header-without-colon": Reply(b"HTTP/1.1 200 OK\r\nNoColon\r\nContent-Length: 2\r\n\r\nok"),
    "binary-body": Reply(b"HTTP/1.1 500 X\r\nContent-Length: 4\r\n\r\n\xff\xfe\x00\x80"),
    "close-mid-body": Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", close=True),
    "close-mid-head": Reply(b"HTTP/1.1 200 OK\r\nContent-Le", close=True),
    "silent-close": Reply(b"", close=True),
    "reset": Reply(b"", reset=True),
    "retry-after-huge": Reply(
        b"HTTP/1.1 429 Slow\r\nRetry-After: 99999999999999999999999999\r\nContent-Length: 0\r\n\r\n"
    ),
    "retry-after-far-date": Reply(
        b"HTTP/1.1 503 X\r\nRetry-After: Fri, 31 Dec 9999 23:59:59 GMT\r\nContent-Length: 0\r\n\r\n"
    ),
    "many-headers": Reply(
        b"HTTP/1.1 200 OK\r\n"
        + b"".join(b"X-H%d: %d\r\n" % (i, i) for i in range(1000))
        + b"Content-Length: 2\r\n\r\nok"
    ),
    "huge-header": Reply(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"),
    "slow-drip": Reply(OK, chunk=1, drip_s=0.3),
    "gone": Reply(b"HTTP/1.1 410 Gone\r\nContent-Length: 0\r\n\r\n"),
    "garbage": Reply(b"\x00\x01\x02garbage\r\n\r\n"),
    "http09": Reply(b"ok", close=True),
    "http2-preface": Reply(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    "body-to-close": Reply(b"HTTP/1.1 200 OK\r\n\r\n" + b"\x00" * 5000, close=True),
    "utf8-status-text": Reply("HTTP/1.1 200 \u00e9\u00e8\r\nContent-Length: 0\r\n\r\n".encode()),
    "redirect": Reply(b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\n\r\n"),
}


# ---------------------------------------------------------------- random responses

_VERSIONS = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"HTTP/1.1x", b"", b"ICE/1.0"])
_CODES = st.one_of(
    st.integers(100, 599).map(lambda n: str(n).encode()),
    st.integers(-(10**25), 10**25).map(lambda n: str(n).encode()),
    st.binary(max_size=6),
)
_NAME = st.one_of(
    st.sampled_from(
        [b"Content-Length", b"Transfer-Encoding", b"Connection", b"Retry-After", b"X-A"]
    ),
    st.binary(min_size=1, max_size=12),
)
_VALUE = st.one_of(
    st.sampled_from([b"chunked", b"close", b"keep-alive", b"0", b"-1", b"5", b"1e3", b" 7 "]),
    st.binary(max_size=40),
)
_FRAMING = st.sampled_from(["length", "wrong-length", "chunked", "bad-chunked", "close", "none"])


@st.composite
def responses(draw: st.DrawFn) -> Reply:
    """Any status line, header block, framing and body bytes a receiver could send."""
    status = draw(_VERSIONS) + b" " + draw(_CODES) + b" " + draw(st.binary(max_size=12))
    headers = draw(st.lists(st.tuples(_NAME, _VALUE), max_size=6))
    body = draw(st.binary(max_size=300))
    framing = draw(_FRAMING)
    head = b"".join(n + b": " + v + b"\r\n" for n, v in headers)
    close = False
    if framing == "length":
        head += b"Content-Length: %d\r\n" % len(body)
    elif framing == "wrong-length":
        head += b"Content-Length: %d\r\n" % (len(body) + draw(st.integers(-5, 5)))
        close = True
    elif framing == "chunked":
        head += b"Transfer-Encoding: chunked\r\n"
        body = (b"%x\r\n" % len(body) + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
    elif framing == "bad-chunked":
        head += b"Transfer-Encoding: chunked\r\n"
        body = draw(st.binary(max_size=20)) + b"\r\n" + body
    elif framing == "close":
        close = True
    separator = draw(st.sampled_from([b"\r\n", b"\n", b"\r\n\r\n"]))
    raw = status + b"\r\n" + head + separator + body
    extra = draw(st.sampled_from([b"", b"", OK]))  # sometimes a second, unasked response
    return Reply(raw + extra, close=close or draw(st.booleans()))


# ---------------------------------------------------------------- the run


@pytest.fixture(scope="module")
def zoo() -> Iterator[Zoo]:
    z = Zoo()
    yield z
    z.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def store_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gateway]:
    overrides: dict[str, Any] = {"poll_interval_s": 0.05, "probe_base_s": 3600.0}
    if request.param == "postgres":
        with fresh_database("hookcast_zoo") as url:
            gw = Gateway(make_settings(str(tmp_path / "unused.db"), database_url=url, **overrides))
            yield gw
            gw.stop()
    else:
        gw = Gateway(make_settings(str(tmp_path / "hookcast.db"), **overrides))
        yield gw
        gw.stop()


def _attempts(project: Project, delivery_id: str) -> list[dict[str, Any]]:
    return project.ok("GET", f"/eventdeliveries/{delivery_id}/deliveryattempts")  # type: ignore[no-any-return]


def _settled(d: dict[str, Any]) -> bool:
    """Done with for now: finished, held for its disabled endpoint, or told by the
    receiver's Retry-After to come back much later."""
    if d["status"] in ("Success", "Failure", "Discarded"):
        return True
    if d["status"] != "Retry":
        return False
    if d["held"]:
        return True
    due = datetime.fromisoformat(d["metadata"]["next_send_time"])
    return due.timestamp() > time.time() + 60


def run_zoo(gateway: Gateway, zoo: Zoo, cases: dict[str, Reply], bystanders: int) -> dict[str, int]:
    """Publish a bystander stream interleaved with one event per hostile case; check
    everything the module docstring promises. Returns figures for the soak report."""
    tag = new_id()[-10:].lower()
    hostile = gateway.create_project("hostile", HOSTILE_STRATEGY)
    bystander = gateway.create_project("bystander")
    good = bystander.endpoint(f"{zoo.url}/good/{tag}/ok", http_timeout=5)
    paths = {}
    targets = []
    for name, reply in cases.items():
        path = f"/zoo/{tag}/{name}"
        zoo.script(path, reply)
        ep = hostile.endpoint(zoo.url + path, http_timeout=HOSTILE_TIMEOUT_S)
        paths[ep["uid"]] = path
        targets.append(ep["uid"])
    every = max(1, bystanders // max(len(targets), 1))
    for i in range(bystanders):
        bystander.publish(good["uid"], data={"i": i})
        if targets and i % every == 0:
            hostile.publish(targets.pop(), data={"i": i})
    for endpoint_id in targets:
        hostile.publish(endpoint_id, data={"late": True})

    assert zoo.wait_for(f"/good/{tag}/", bystanders, timeout=30), "bystander deliveries late"
    deadline = 30 + 4 * HOSTILE_TIMEOUT_S
    assert wait_until(lambda: all(_settled(d) for d in hostile.deliveries()), deadline), [
        (paths[d["endpoint_id"]], d["status"], d["description"])
        for d in hostile.deliveries()
        if not _settled(d)
    ]
    time.sleep(gateway.settings.lease_margin_s + 1)  # a lease that would expire has expired

    ids = zoo.ids(f"/good/{tag}/")
    assert len(ids) == bystanders and set(ids.values()) == {1}, ids.most_common(3)
    dup = sum(n - 1 for n in ids.values())
    for d in bystander.deliveries():
        assert d["status"] == "Success", d
        attempts = _attempts(bystander, d["uid"])
        assert len(attempts) == 1 and attempts[0]["http_status"] == "200 OK", attempts

    assert zoo.unexpected == [], [s.head[:120] for s in zoo.unexpected]
    hostile_requests = 0
    for d in hostile.deliveries():
        path = paths[d["endpoint_id"]]
        sent = len(zoo.at(path))
        recorded = len(_attempts(hostile, d["uid"]))
        assert recorded == sent >= 1, (
            path,
            d["uid"],
            d["status"],
            sent,
            recorded,
            [(x.connection, x.index, x.headers.get("webhook-id")) for x in zoo.at(path)],
        )
        hostile_requests += sent
    return {
        "cases": len(cases),
        "hostile_requests": hostile_requests,
        "bystander_deliveries": bystanders,
        "duplicates": dup,
        "lost": bystanders - len(ids),
    }


def _report(store: Gateway, figures: dict[str, int]) -> None:
    """One line per run for ``make soak`` (HOOKCAST_ZOO_REPORT names the file)."""
    path = os.environ.get("HOOKCAST_ZOO_REPORT")
    if path:
        store_name = "postgres" if "postgres" in store.settings.database_url else "sqlite"
        with open(path, "a") as f:
            f.write(json.dumps({"store": store_name, **figures}) + "\n")


def test_named_hostile_receivers(store_gateway: Gateway, zoo: Zoo) -> None:
    _report(store_gateway, run_zoo(store_gateway, zoo, NAMED, bystanders=120))


EXAMPLES = int(os.environ.get("HOOKCAST_ZOO_EXAMPLES", "2"))
CASES_PER_EXAMPLE = int(os.environ.get("HOOKCAST_ZOO_CASES", "12"))


# the gateway's threads draw from the global random module (retry jitter) while hypothesis
# draws the next example, which hypothesis mistakes for a strategy using it
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(responses(), min_size=CASES_PER_EXAMPLE, max_size=CASES_PER_EXAMPLE))
def test_random_hostile_receivers(store_gateway: Gateway, zoo: Zoo, replies: list[Reply]) -> None:
    cases = {f"r{i}": r for i, r in enumerate(replies)}
    _report(store_gateway, run_zoo(store_gateway, zoo, cases, bystanders=40))
