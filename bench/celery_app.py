"""The Celery baseline: one task per webhook, Redis broker, no result backend.

Started by ``bench/baseline.py`` as ``celery -A bench.celery_app worker …``; the broker URL
comes from ``BENCH_CELERY_BROKER`` (a Redis database of its own). The configuration is the
cheap, common one: results ignored (no backend), JSON serialisation, automatic retries
with backoff on a failed POST (free while nothing fails).
"""

from __future__ import annotations

import os

import requests
from celery import Celery

from bench import diy

app = Celery(
    "bench_baseline", broker=os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/13")
)
app.conf.update(
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(
    name="bench.deliver_webhook",
    autoretry_for=(requests.RequestException,),
    retry_backoff=True,
    max_retries=5,
)
def deliver_webhook(url: str, body: str, secret: str) -> None:
    diy.deliver(url, body, secret)
