"""The dramatiq baseline: one actor message per webhook, Redis broker.

Started by ``bench/baseline.py`` as ``dramatiq bench.dramatiq_app …``; the broker URL comes
from ``BENCH_DRAMATIQ_BROKER`` (a Redis database of its own). dramatiq retries failed
messages with backoff by default.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench import diy

broker = RedisBroker(url=os.environ.get("BENCH_DRAMATIQ_BROKER", "redis://127.0.0.1:6379/14"))
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="deliver_webhook", max_retries=5)
def deliver_webhook(url: str, body: str, secret: str) -> None:
    diy.deliver(url, body, secret)
