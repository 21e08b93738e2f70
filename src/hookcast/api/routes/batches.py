"""Operator actions over many deliveries: replay, batch replay, batch retry; job progress.

Batch actions run in the background (a leased, chunked job in a worker process) and report
progress at ``GET /batch-jobs/{id}``. Each is safe to call twice: only finished deliveries
are requeued, and a second batch of the same kind waits until the first is done.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hookcast.api import serializers as ser
from hookcast.api.auth import Permission
from hookcast.api.context import Route, ctx
from hookcast.api.envelope import ok
from hookcast.api.routes.deliveries import delivery_filter
from hookcast.api.routes.events import event_filter
from hookcast.domain.errors import NotFoundError
from hookcast.domain.ids import new_id
from hookcast.domain.models import BatchJob, BatchKind, BatchStatus
from hookcast.domain.ports import filter_to_json


def job_json(job: BatchJob) -> dict[str, Any]:
    return {
        "uid": job.id,
        "project_id": job.project_id,
        "kind": job.kind.value,
        "status": job.status.value,
        "filter": job.filter,
        "total": job.total,
        "processed": job.processed,
        "requeued": job.requeued,
        "progress": round(job.processed / job.total, 4) if job.total else 1.0,
        "error": job.error,
        "created_at": ser.ts(job.created_at_us),
        "updated_at": ser.ts(job.updated_at_us),
        "finished_at": ser.ts(job.finished_at_us),
    }


async def _create(request: web.Request, kind: BatchKind, flt: dict[str, Any]) -> BatchJob:
    c = ctx(request)
    _, project = await c.auth.authorize(request, Permission.PUBLISH)
    now = c.clock()
    job = BatchJob(new_id(), project.id, kind, flt, BatchStatus.QUEUED, 0, 0, 0, "", now, now, None)
    created = await c.store.create_batch_job(job)
    c.ingest.notify()
    return created


async def batch_retry(request: web.Request) -> web.Response:
    job = await _create(request, BatchKind.RETRY, filter_to_json(delivery_filter(request)))
    return ok(job_json(job), "Batch retry processing")


async def batch_replay(request: web.Request) -> web.Response:
    job = await _create(request, BatchKind.REPLAY, filter_to_json(event_filter(request)))
    return ok(job.id, "Batch replay processing")


async def replay_event(request: web.Request) -> web.Response:
    c = ctx(request)
    _, project = await c.auth.authorize(request, Permission.PUBLISH)
    event = await c.store.get_event(project.id, request.match_info["event_id"])
    if event is None:
        raise NotFoundError("Resource not found")
    requeued = await c.store.replay_event(project.id, event.id, c.clock())
    c.ingest.notify()
    # Convoy's answer, with what happened: none requeued when every delivery is still queued
    note = (
        f": {requeued} {'delivery' if requeued == 1 else 'deliveries'} requeued"
        if requeued
        else ": nothing requeued, its deliveries are still queued or it has none"
    )
    return ok(ser.event(event), "Endpoint event replayed successfully" + note)


async def get_job(request: web.Request) -> web.Response:
    c = ctx(request)
    _, project = await c.auth.authorize(request, Permission.READ)
    job = await c.store.get_batch_job(project.id, request.match_info["job_id"])
    if job is None:
        raise NotFoundError("Resource not found")
    return ok(job_json(job), "Batch job fetched successfully")


_P = "/api/v1/projects/{project_id}"
ROUTES = [
    Route(
        "POST",
        _P + "/eventdeliveries/batchretry",
        batch_retry,
        "Retry failed deliveries matching the list filters (background)",
        "Event Deliveries",
    ),
    Route(
        "POST",
        _P + "/events/batchreplay",
        batch_replay,
        "Replay events matching the list filters (background)",
        "Events",
    ),
    Route("PUT", _P + "/events/{event_id}/replay", replay_event, "Replay one event", "Events"),
    Route("GET", _P + "/batch-jobs/{job_id}", get_job, "Progress of a batch job", "Batch Jobs"),
]
