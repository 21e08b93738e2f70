"""The load generator: publishes events over HTTP, as its own process.

``python -m bench.loadgen --url URL --key KEY --target '{"endpoint_id": "…"}' --events N``

``--target`` is merged into every body; ``--targets '[{…}, {…}]'`` instead sends event *i*
to the *i*-th target modulo their number (round-robin over several endpoints).

aiohttp on uvloop, ``--concurrency`` workers each awaiting its 201 before sending again
(closed loop), or, with ``--rate R``, event *i* due at ``start + i/R`` (open loop: a
worker sleeps until its event is due). Each event's ``data`` is about ``--payload-bytes``
of JSON whose first field is the publish time, ``{"t":<unix seconds>,"seq":i,"pad":"…"}``;
the receiver reads it back to compute publish→delivered latency. Under ``--rate`` the
embedded time is the *scheduled* send time, so a generator or server falling behind shows
up in the latency instead of being hidden (no coordinated omission).

Bounded by ``--events`` and by ``--deadline-s``. Prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import orjson

EVENT_TYPE = "bench.e2e"


def _pad_for(payload_bytes: int) -> str:
    base = len(orjson.dumps({"t": time.time(), "seq": 1_000_000, "pad": ""}))
    return "x" * max(0, payload_bytes - base)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    idx = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[idx]


async def publish(args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp

    targets: list[dict[str, Any]] = (
        orjson.loads(args.targets) if args.targets else [orjson.loads(args.target)]
    )
    pad = _pad_for(args.payload_bytes)
    headers = {"Authorization": f"Bearer {args.key}", "Content-Type": "application/json"}
    n, rate, concurrency = args.events, args.rate, args.concurrency
    ack_ms: list[float] = []
    errors: dict[str, int] = {}
    state = {"next": 0, "accepted": 0, "last_accept": 0.0}
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        t0 = time.time()
        cpu0 = time.process_time()  # imports and set-up are not the load generator's per-event cost
        deadline = t0 + args.deadline_s

        async def worker() -> None:
            while state["next"] < n:
                i = state["next"]
                state["next"] = i + 1
                if rate:
                    due = t0 + i / rate
                    delay = due - time.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    stamp = due
                else:
                    stamp = time.time()
                if stamp > deadline:
                    return
                target = targets[int(i) % len(targets)]
                body = orjson.dumps(
                    {**target, "event_type": EVENT_TYPE, "data": {"t": stamp, "seq": i, "pad": pad}}
                )
                sent = time.time()
                try:
                    async with session.post(args.url, data=body, headers=headers) as resp:
                        await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, OSError) as exc:
                    key = type(exc).__name__
                    errors[key] = errors.get(key, 0) + 1
                    continue
                done = time.time()
                if status == 201:
                    state["accepted"] += 1
                    state["last_accept"] = done
                    ack_ms.append((done - sent) * 1000.0)
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1

        await asyncio.wait_for(
            asyncio.gather(*(worker() for _ in range(concurrency))), timeout=args.deadline_s + 30
        )
    cpu_s = time.process_time() - cpu0
    ack_ms.sort()
    elapsed = max(1e-9, state["last_accept"] - t0)
    return {
        "sent": state["next"],
        "accepted": state["accepted"],
        "errors": errors,
        "t_first_send": t0,
        "t_last_accept": state["last_accept"],
        "events_per_s": state["accepted"] / elapsed,
        "ack_p50_ms": _percentile(ack_ms, 50),
        "ack_p95_ms": _percentile(ack_ms, 95),
        "ack_p99_ms": _percentile(ack_ms, 99),
        "ack_p999_ms": _percentile(ack_ms, 99.9),
        "ack_max_ms": ack_ms[-1] if ack_ms else 0.0,
        "cpu_s": cpu_s,
        "cpu_total_s": time.process_time(),  # with interpreter start-up and imports
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    p.add_argument("--url", required=True, help="the publish URL (…/events or …/events/fanout)")
    p.add_argument("--key", required=True, help="the project API key")
    p.add_argument("--target", help='JSON merged into every body, e.g. {"endpoint_id":…}')
    p.add_argument("--targets", help="a JSON list of targets, used round-robin")
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--rate", type=float, default=0.0, help="events/s (0: as fast as accepted)")
    p.add_argument("--payload-bytes", type=int, default=1024)
    p.add_argument("--deadline-s", type=float, default=300.0)
    args = p.parse_args(argv)
    if not (args.target or args.targets):
        p.error("give --target or --targets")
    import uvloop

    result = uvloop.run(publish(args))
    print(orjson.dumps(result).decode(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
