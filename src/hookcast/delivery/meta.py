"""Meta events: signed operator webhooks about hookcast itself.

A project opts in with ``config.meta_event`` (``is_enabled``, ``url``, ``secret``,
``event_types``). The worker process that sees a change sends it: ``endpoint.disabled``
and ``delivery.failed`` (final) from the delivery worker, ``endpoint.enabled`` from the
prober, ``broadcast.completed`` from the broadcast watcher.

Best effort, by design: a meta event is not stored. It is signed like a delivery (the
project's Convoy signature header, simple form, and the Standard Webhooks headers), sent
through the same :class:`Sender` (deadline, SSRF guard, no redirects), retried a few times
with backoff, and its fate is logged (``meta_event.sent``, ``meta_event.failed``,
``meta_event.dropped``) and counted (``hookcast_meta_events_total``). A crash or a
shutdown may lose one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from hookcast.delivery.sender import Sender
from hookcast.domain.config import MetaEventConfig, ProjectConfig, SignatureConfig
from hookcast.domain.ids import new_id
from hookcast.domain.outbound import USER_AGENT
from hookcast.domain.signing import (
    convoy_signature,
    standard_webhooks_headers,
    standard_webhooks_key,
)
from hookcast.metrics import Metrics

log = logging.getLogger("hookcast.meta")

META_HEADER = "X-Hookcast-Meta-Event"


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class MetaOptions:
    attempts: int = 3
    backoff_s: float = 1.0  # doubles after each failed attempt
    timeout_s: float = 10.0
    #: meta events being sent or retried at once; more are dropped (and logged)
    max_pending: int = 1000


def _stamp(now_us: int) -> str:
    return datetime.fromtimestamp(now_us / 1e6, UTC).isoformat(timespec="milliseconds")


def build_meta_request(
    meta: MetaEventConfig,
    signature: SignatureConfig,
    *,
    msg_id: str,
    project_id: str,
    event_type: str,
    data: dict[str, Any],
    now_us: int,
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one meta event, signed over exactly the body. Pure."""
    body = orjson.dumps(
        {
            "uid": msg_id,
            "event_type": event_type,
            "project_id": project_id,
            "data": data,
            "created_at": _stamp(now_us),
        }
    )
    now_s = now_us // 1_000_000
    versions = [(v.hash, v.encoding) for v in signature.versions] or [("SHA256", "hex")]
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        META_HEADER: event_type,
        signature.header: convoy_signature(
            body, [meta.secret], timestamp=now_s, advanced=False, versions=versions
        ),
    }
    with contextlib.suppress(ValueError):  # a malformed whsec_ secret: Convoy's header only
        headers.update(
            standard_webhooks_headers(msg_id, now_s, body, [standard_webhooks_key(meta.secret)])
        )
    return body, headers


class MetaEvents:
    """Sends meta events in the background; :meth:`emit` never blocks or raises."""

    def __init__(
        self,
        sender: Sender,
        metrics: Metrics,
        options: MetaOptions | None = None,
        *,
        clock: Callable[[], int] = _now_us,
    ) -> None:
        self._sender = sender
        self._metrics = metrics
        self._opt = options or MetaOptions()
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()

    def emit(
        self,
        project_id: str,
        config: ProjectConfig | None,
        event_type: str,
        data: dict[str, Any],
    ) -> None:
        if config is None or not config.meta_event.wants(event_type):
            return
        if self._stopping.is_set() or len(self._tasks) >= self._opt.max_pending:
            self._metrics.meta_events.labels(event_type, "dropped").inc()
            log.warning(
                "meta_event.dropped",
                extra={"project_id": project_id, "event_type": event_type},
            )
            return
        task = asyncio.create_task(
            self._deliver(project_id, config.meta_event, config.signature, event_type, data)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(
        self,
        project_id: str,
        meta: MetaEventConfig,
        signature: SignatureConfig,
        event_type: str,
        data: dict[str, Any],
    ) -> None:
        msg_id = new_id()
        status: int | None = None
        error = ""
        attempt = 0
        while attempt < self._opt.attempts:
            attempt += 1
            body, headers = build_meta_request(
                meta,
                signature,
                msg_id=msg_id,
                project_id=project_id,
                event_type=event_type,
                data=data,
                now_us=self._clock(),
            )
            result = await self._sender.send(meta.url, body, headers, self._opt.timeout_s)
            status, error = result.status, result.error
            if status is not None and 200 <= status < 300:
                self._metrics.meta_events.labels(event_type, "sent").inc()
                log.info(
                    "meta_event.sent",
                    extra={
                        "project_id": project_id,
                        "event_type": event_type,
                        "meta_event_id": msg_id,
                        "attempts": attempt,
                    },
                )
                return
            if attempt < self._opt.attempts and await self._backoff(attempt):
                break
        self._metrics.meta_events.labels(event_type, "failed").inc()
        log.warning(
            "meta_event.failed",
            extra={
                "project_id": project_id,
                "event_type": event_type,
                "meta_event_id": msg_id,
                "attempts": attempt,
                "status": status,
                "error": error,
            },
        )

    async def _backoff(self, attempt: int) -> bool:
        """Wait before the next attempt; True when stopping cut the wait short."""
        delay = self._opt.backoff_s * (1 << (attempt - 1))
        try:
            async with asyncio.timeout(delay):
                await self._stopping.wait()
        except TimeoutError:
            return False
        return True

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def close(self, grace_s: float) -> None:
        """Stop retrying; let attempts on the wire finish within *grace_s*."""
        self._stopping.set()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
