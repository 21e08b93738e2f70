"""A fast webhook receiver for the benchmarks, run as its own process.

``python -m bench.receiver --port P [--verify-every 100]``

An asyncio ``Protocol`` HTTP/1.1 server on uvloop with keep-alive that answers ``200`` to
any POST. Per request it does only what the harness needs, with byte searches rather than
a full header parse:

* the delivery id (``webhook-id``), to count each delivery once and spot duplicates;
* the arrival time and the publish time the load generator embedded at the head of the
  body (``{"t":<unix seconds>,…``), whose difference is the publish→delivered latency;
* for the first request and every ``--verify-every``-th after it, the Standard Webhooks
  signature, checked with :mod:`hmac` against the endpoint's secret (the key is the
  base64 after ``whsec_``), which proves the deliveries really are signed.

Two path prefixes behave differently, for the noisy-neighbour scenario:

* ``/hang/…``: the request is counted (``hung``) and never answered; the connection stays
  open until the sender gives up (its timeout) or the receiver stops;
* ``/other/…``: answered ``200`` at once and counted apart (``other``), not as a delivery,
  so a run can measure the same set of endpoints with and without hanging neighbours.

Control routes, all under ``/__bench/`` (never a delivery path):

* ``POST /__bench/secrets`` ``{"/hook/0": "whsec_…", …}``: the secret of each endpoint path;
  the path ``"*"`` sets the secret of every path without its own (broadcast's 100,000);
* ``GET /__bench/stats``: counters (cheap, polled by the harness);
* ``GET /__bench/results``: counters plus every latency in ms (once, at the end of a run);
* ``POST /__bench/reset``: forget every delivery seen (after a warm-up).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hmac
import signal
import time
from array import array
from typing import Any

import orjson

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
_OK_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
_BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_CONTROL = b"/__bench/"
_HANG = b" /hang/"
_OTHER = b" /other/"
_MAX_HEAD = 64 * 1024


def _header(head: bytes, lower: bytes, name: bytes) -> bytes | None:
    """The value of header ``name`` (given as b"\\r\\nname:", lower case) or None."""
    i = lower.find(name)
    if i < 0:
        return None
    start = i + len(name)
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else len(head)].strip()


class Recorder:
    """Everything the receiver counts. One instance per process; reset between phases."""

    def __init__(self, verify_every: int) -> None:
        self.verify_every = max(1, verify_every)
        self.keys: dict[bytes, bytes] = {}
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.duplicates = 0
        self.no_timestamp = 0
        self.verified = 0
        self.bad_signatures = 0
        self.unverifiable = 0
        self.hung = 0
        self.other = 0
        self.first_arrival = 0.0
        self.last_arrival = 0.0
        self.seen: set[bytes] = set()
        self.latency_ms = array("d")

    # -- the hot path ----------------------------------------------------------------------
    def on_delivery(self, head: bytes, lower: bytes, body: bytes) -> None:
        now = time.time()
        self.requests += 1
        delivery_id = _header(head, lower, b"\r\nwebhook-id:") or b""
        if delivery_id in self.seen:
            self.duplicates += 1
        else:
            self.seen.add(delivery_id)
            if not self.first_arrival:
                self.first_arrival = now
            self.last_arrival = now
            k = body.find(b'"t":')
            e = body.find(b",", k)
            if k >= 0 and e > k:
                self.latency_ms.append((now - float(body[k + 4 : e])) * 1000.0)
            else:
                self.no_timestamp += 1
        if self.requests % self.verify_every == 1 or self.verify_every == 1:
            self._verify(head, lower, body, delivery_id)

    def _verify(self, head: bytes, lower: bytes, body: bytes, delivery_id: bytes) -> None:
        path = head[head.find(b" ") + 1 : head.find(b" HTTP/")]
        key = self.keys.get(path) or self.keys.get(b"*")
        ts = _header(head, lower, b"\r\nwebhook-timestamp:")
        sig = _header(head, lower, b"\r\nwebhook-signature:")
        if key is None or ts is None or sig is None or not delivery_id:
            self.unverifiable += 1
            return
        expected = b"v1," + base64.b64encode(
            hmac.digest(key, delivery_id + b"." + ts + b"." + body, "sha256")
        )
        if any(hmac.compare_digest(expected, s) for s in sig.split()):
            self.verified += 1
        else:
            self.bad_signatures += 1

    # -- control -----------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "unique": len(self.seen),
            "duplicates": self.duplicates,
            "no_timestamp": self.no_timestamp,
            "verified": self.verified,
            "bad_signatures": self.bad_signatures,
            "unverifiable": self.unverifiable,
            "hung": self.hung,
            "other": self.other,
            "first_arrival": self.first_arrival,
            "last_arrival": self.last_arrival,
        }

    def control(self, head: bytes, body: bytes) -> bytes:
        line = head[: head.find(b"\r\n")] if b"\r\n" in head else head
        method, _, rest = line.partition(b" ")
        path = rest.partition(b" ")[0]
        doc: Any
        if path == b"/__bench/stats":
            doc = self.stats()
        elif path == b"/__bench/results":
            doc = {**self.stats(), "latency_ms": self.latency_ms.tolist()}
        elif path == b"/__bench/reset" and method == b"POST":
            self.reset()
            doc = {"reset": True}
        elif path == b"/__bench/secrets" and method == b"POST":
            for hook_path, secret in orjson.loads(body).items():
                self.keys[hook_path.encode()] = _key(secret)
            doc = {"paths": len(self.keys)}
        else:
            return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        payload = orjson.dumps(doc)
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % len(payload)
        ) + payload


def _key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        encoded = secret[len("whsec_") :]
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4))
    return secret.encode()


class ReceiverProtocol(asyncio.Protocol):
    __slots__ = ("buf", "hanging", "recorder", "transport")

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.buf = b""
        self.hanging = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.hanging:
            return
        buf = self.buf + data if self.buf else data
        transport = self.transport
        assert transport is not None
        out: list[bytes] = []
        while True:
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                if len(buf) > _MAX_HEAD:
                    transport.write(_BAD)
                    transport.close()
                    return
                break
            head = buf[:head_end]
            lower = head.lower()
            length_value = _header(head, lower, b"\r\ncontent-length:")
            length = int(length_value) if length_value else 0
            end = head_end + 4 + length
            if len(buf) < end:
                break
            body = buf[head_end + 4 : end]
            buf = buf[end:]
            if head.find(_CONTROL, 0, 64) >= 0:
                out.append(self.recorder.control(head, body))
                continue
            if head.find(_HANG, 0, 16) >= 0:
                # never answered: hold the connection (and ignore anything after it on it)
                self.recorder.hung += 1
                self.buf = b""
                if out:
                    transport.write(b"".join(out))
                self.hanging = True
                return
            if head.find(_OTHER, 0, 16) >= 0:
                self.recorder.other += 1
                out.append(_OK)
                continue
            self.recorder.on_delivery(head, lower, body)
            if b"\r\nconnection: close" in lower:
                out.append(_OK_CLOSE)
                transport.write(b"".join(out))
                transport.close()
                return
            out.append(_OK)
        self.buf = buf
        if out:
            transport.write(out[0] if len(out) == 1 else b"".join(out))


async def serve(host: str, port: int, verify_every: int) -> None:
    loop = asyncio.get_running_loop()
    recorder = Recorder(verify_every)
    server = await loop.create_server(
        lambda: ReceiverProtocol(recorder), host, port, backlog=4096, reuse_address=True
    )
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    async with server:
        await stopping.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.receiver", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--verify-every", type=int, default=100, help="check every Nth signature")
    args = p.parse_args(argv)
    import uvloop

    uvloop.run(serve(args.host, args.port, args.verify_every))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
