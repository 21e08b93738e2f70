"""The baselines' producer, as its own process: enqueue one task per webhook.

``python -m bench.enqueue --system celery|dramatiq --events N --url URL --secret S``

Each task carries the URL, the secret and a ~1 KiB JSON body whose first field is the
enqueue time, ``{"t":<unix seconds>,"seq":i,"pad":"…"}`` (the same body hookcast's load
generator publishes), so the receiver measures enqueue→delivered latency the same way.
Bounded by ``--events`` and ``--deadline-s``. Prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import orjson


def _sender(system: str) -> Callable[[str, str, str], Any]:
    if system == "celery":
        from bench.celery_app import deliver_webhook

        return deliver_webhook.delay  # type: ignore[no-any-return]
    from bench.dramatiq_app import deliver_webhook as actor

    return actor.send


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.enqueue", description=__doc__)
    p.add_argument("--system", choices=["celery", "dramatiq"], required=True)
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--payload-bytes", type=int, default=1024)
    p.add_argument("--deadline-s", type=float, default=300.0)
    args = p.parse_args(argv)
    send = _sender(args.system)
    base = len(orjson.dumps({"t": time.time(), "seq": 1_000_000, "pad": ""}))
    pad = "x" * max(0, args.payload_bytes - base)
    t0 = time.time()
    cpu0 = time.process_time()
    deadline = t0 + args.deadline_s
    sent = 0
    for i in range(args.events):
        now = time.time()
        if now > deadline:
            break
        body = orjson.dumps({"t": now, "seq": i, "pad": pad}).decode()
        send(args.url, body, args.secret)
        sent += 1
    t_last = time.time()
    result = {
        "enqueued": sent,
        "t_first": t0,
        "t_last": t_last,
        "enqueue_per_s": sent / max(1e-9, t_last - t0),
        "cpu_s": time.process_time() - cpu0,
        "cpu_total_s": time.process_time(),
    }
    print(orjson.dumps(result).decode(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
