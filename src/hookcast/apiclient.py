"""A small client of hookcast's own REST API, for the CLI's remote commands (``send``,
``tail``, ``retry``, ``replay``, ``endpoint``, ``subscription``).

It speaks to a running gateway over HTTP like any producer would, so it works against
any deployment (one process or many) and needs nothing but a URL and an API key.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from hookcast.domain.errors import HookcastError

_SEEN_MAX = 20_000


class ApiClientError(HookcastError):
    """The gateway could not be reached, or answered with an error. ``status`` is the
    HTTP status of an error answer (0 when there was none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ApiClient:
    def __init__(self, base_url: str, key: str, *, timeout_s: float = 10.0) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiClient:
        self._session = aiohttp.ClientSession(
            headers=self._headers, timeout=self._timeout, json_serialize=_dumps
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """The ``data`` of the JSON envelope; :class:`ApiClientError` on any failure."""
        if self._session is None:
            raise ApiClientError("the client is not open")
        url = self._base + path
        try:
            async with self._session.request(
                method, url, json=json, params=params, allow_redirects=False
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiClientError(f"cannot reach {self._base}: {exc or type(exc).__name__}") from exc
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ApiClientError(f"{method} {path}: HTTP {status}, not JSON", status) from exc
        if status >= 400 or not isinstance(doc, dict) or doc.get("status") is not True:
            message = doc.get("message") if isinstance(doc, dict) else None
            raise ApiClientError(f"{method} {path}: HTTP {status}: {message or 'failed'}", status)
        return doc.get("data")


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# ------------------------------------------------------------------ projects, endpoints,
# subscriptions


async def key_projects(client: ApiClient) -> list[str]:
    """The ids of the projects the client's key reaches: its own for a project key,
    every project for an instance admin key."""
    data = await client.call("GET", "/api/v1/projects")
    return [str(p["uid"]) for p in data or [] if isinstance(p, dict) and p.get("uid")]


def project_path(project_id: str, *parts: str) -> str:
    """``/api/v1/projects/{project_id}/part/...``, each part quoted."""
    return "/".join(("/api/v1/projects", *(quote(p, safe="") for p in (project_id, *parts))))


async def list_all(
    client: ApiClient, path: str, params: dict[str, str] | None = None, *, limit: int = 100
) -> tuple[list[dict[str, Any]], bool]:
    """Up to *limit* items of a paginated list, oldest first, following the cursors; and
    whether more were left."""
    query = {**(params or {}), "perPage": str(min(max(limit, 1), 1000)), "sort": "ASC"}
    items: list[dict[str, Any]] = []
    while True:
        page = await client.call("GET", path, params=query)
        items.extend(_content(page))
        paging = page.get("pagination") if isinstance(page, dict) else None
        more = isinstance(paging, dict) and bool(paging.get("has_next_page"))
        cursor = paging.get("next_page_cursor") if isinstance(paging, dict) else None
        if len(items) >= limit:
            return items[:limit], more or len(items) > limit
        if not more or not cursor:
            return items, False
        query["next_page_cursor"] = str(cursor)


async def one(client: ApiClient, method: str, path: str, body: Any = None) -> dict[str, Any]:
    """A call whose ``data`` is one object (``{}`` when it is not)."""
    data = await client.call(method, path, json=body)
    return data if isinstance(data, dict) else {}


# ------------------------------------------------------------------ send


@dataclass(frozen=True, slots=True)
class Publish:
    project_id: str
    event_type: str
    data: Any
    endpoint_id: str = ""
    owner_id: str = ""
    broadcast: bool = False
    idempotency_key: str = ""
    headers: dict[str, str] | None = None


def publish_request(p: Publish) -> tuple[str, dict[str, Any]]:
    """The path and body that publish *p* (single, fan-out or broadcast)."""
    if sum((bool(p.endpoint_id), bool(p.owner_id), p.broadcast)) != 1:
        raise ApiClientError("give exactly one of --endpoint, --owner or --broadcast")
    base = f"/api/v1/projects/{p.project_id}/events"
    body: dict[str, Any] = {"event_type": p.event_type, "data": p.data}
    if p.idempotency_key:
        body["idempotency_key"] = p.idempotency_key
    if p.headers:
        body["custom_headers"] = p.headers
    if p.endpoint_id:
        return base, {**body, "endpoint_id": p.endpoint_id}
    if p.owner_id:
        return base + "/fanout", {**body, "owner_id": p.owner_id}
    return base + "/broadcast", body


async def send(client: ApiClient, p: Publish) -> dict[str, Any]:
    path, body = publish_request(p)
    data = await client.call("POST", path, json=body)
    return data if isinstance(data, dict) else {}


# ------------------------------------------------------------------ batch operations

#: called with (done, total, note) while a long operation runs
OnProgress = Callable[[int, "int | None", str], None]


async def start_batch(client: ApiClient, project_id: str, kind: str, query: dict[str, str]) -> str:
    """Start a batch retry (``kind="retry"``) or replay (``"replay"``); its job id."""
    base = f"/api/v1/projects/{project_id}"
    if kind == "retry":
        job = await client.call("POST", base + "/eventdeliveries/batchretry", params=query)
        job_id = job.get("uid") if isinstance(job, dict) else None
    else:
        job_id = await client.call("POST", base + "/events/batchreplay", params=query)
    if not isinstance(job_id, str) or not job_id:
        raise ApiClientError("the gateway did not return a batch job id")
    return job_id


#: what one poll tells: (done, total or None, note, finished), from the polled document
Reading = tuple[int, "int | None", str, bool]


async def _follow(
    client: ApiClient,
    path: str,
    read: Callable[[Any], Reading],
    on_progress: OnProgress,
    still: str,
    *,
    interval_s: float,
    timeout_s: float,
) -> Any:
    """Poll *path* until *read* says it is finished (or *timeout_s*, 0 = no limit),
    reporting each reading; the last document."""
    deadline = time.monotonic() + timeout_s if timeout_s > 0 else None
    while True:
        doc = await client.call("GET", path)
        done, total, note, finished = read(doc)
        on_progress(done, total, note)
        if finished:
            return doc
        _check(deadline, timeout_s, still)
        await asyncio.sleep(_pause(interval_s, deadline))


async def wait_batch(
    client: ApiClient,
    project_id: str,
    job_id: str,
    on_progress: OnProgress,
    *,
    interval_s: float = 0.5,
    timeout_s: float = 0.0,
) -> dict[str, Any]:
    """Poll a batch job until it is done (or *timeout_s*, 0 = no limit); the final job."""
    path = f"/api/v1/projects/{project_id}/batch-jobs/{job_id}"

    def read(job: Any) -> Reading:
        if not isinstance(job, dict):
            raise ApiClientError(f"GET {path}: not a batch job")
        note = f"requeued {job.get('requeued', 0):,}"
        done = job.get("status") == "done"
        return int(job.get("processed", 0)), job.get("total") or None, note, done

    job = await _follow(
        client,
        path,
        read,
        on_progress,
        f"batch job {job_id} is still running",
        interval_s=interval_s,
        timeout_s=timeout_s,
    )
    return job  # type: ignore[no-any-return]


async def wait_broadcast(
    client: ApiClient,
    project_id: str,
    event_id: str,
    on_progress: OnProgress,
    *,
    interval_s: float = 0.5,
    timeout_s: float = 0.0,
) -> dict[str, Any]:
    """Poll a broadcast until every delivery it wrote is final; its progress document."""

    def read(event: Any) -> Reading:
        progress = event.get("broadcast") if isinstance(event, dict) else None
        if not isinstance(progress, dict):
            raise ApiClientError(f"event {event_id} is not a broadcast")
        written = int(progress.get("deliveries_written", 0))
        final = sum(int(progress.get(k, 0)) for k in ("succeeded", "failed", "discarded"))
        fanout_done = bool(progress.get("fanout_done"))
        note = f"ok {progress.get('succeeded', 0):,}  failed {progress.get('failed', 0):,}"
        if progress.get("retrying"):
            note += f"  retrying {progress['retrying']:,}"
        if not fanout_done:
            note += f"  (fan-out: {written:,} written)"
        total = written if fanout_done else None
        return final, total, note, fanout_done and final >= written

    event = await _follow(
        client,
        f"/api/v1/projects/{project_id}/events/{event_id}",
        read,
        on_progress,
        f"broadcast {event_id} is still being delivered",
        interval_s=interval_s,
        timeout_s=timeout_s,
    )
    return event["broadcast"]  # type: ignore[no-any-return]


# ------------------------------------------------------------------ tail


@dataclass(frozen=True, slots=True)
class TailOptions:
    interval_s: float = 1.0
    #: deliveries shown from before the start (newest last); then only new changes
    backlog: int = 10
    #: stop after this many lines (0 = never)
    max_lines: int = 0
    #: stop after this many seconds (0 = never)
    seconds: float = 0.0
    per_page: int = 100


def delivery_line(d: dict[str, Any]) -> str:
    meta = d.get("metadata") or {}
    parts = [
        str(d.get("updated_at", "")),
        f"{d.get('status', ''):<10}",
        str(d.get("uid", "")),
        f"event={d.get('event_id', '')}",
        f"type={d.get('event_type', '')}",
        f"endpoint={d.get('endpoint_id', '')}",
        f"attempts={meta.get('num_trials', 0)}",
    ]
    if d.get("latency"):
        parts.append(f"latency={d['latency']}")
    if d.get("description"):
        parts.append(f"- {d['description']}")
    return " ".join(parts)


class _Seen:
    """What each recent delivery looked like when last printed (bounded)."""

    def __init__(self) -> None:
        self._state: OrderedDict[str, tuple[Any, Any]] = OrderedDict()

    def changed(self, d: dict[str, Any]) -> bool:
        key = str(d.get("uid"))
        state = (d.get("status"), (d.get("metadata") or {}).get("num_trials"))
        if self._state.get(key) == state:
            return False
        self._state[key] = state
        self._state.move_to_end(key)
        while len(self._state) > _SEEN_MAX:
            self._state.popitem(last=False)
        return True


async def tail(
    client: ApiClient,
    project_id: str,
    options: TailOptions,
    out: Callable[[dict[str, Any]], None],
    *,
    on_error: Callable[[str], None] = lambda _: None,
) -> int:
    """Poll the newest deliveries and pass each new one, and each status change of a
    recent one, to *out* (oldest first). Returns how many were passed on.

    Polling sees the newest ``per_page`` deliveries each time: under a burst larger than
    that per interval some are skipped, and the changes of older ones are not followed.
    """
    path = f"/api/v1/projects/{project_id}/eventdeliveries"
    params = {"perPage": str(options.per_page), "sort": "DESC"}
    deadline = time.monotonic() + options.seconds if options.seconds > 0 else None
    seen = _Seen()
    first = await client.call("GET", path, params=params)
    items = list(reversed(_content(first)))
    for d in items:
        seen.changed(d)
    shown = 0
    for d in items[-options.backlog :] if options.backlog > 0 else []:
        out(d)
        shown += 1
        if options.max_lines and shown >= options.max_lines:
            return shown
    while deadline is None or time.monotonic() < deadline:
        await asyncio.sleep(_pause(options.interval_s, deadline))
        try:
            page = await client.call("GET", path, params=params)
        except ApiClientError as exc:
            on_error(exc.message)
            continue
        for d in reversed(_content(page)):
            if seen.changed(d):
                out(d)
                shown += 1
                if options.max_lines and shown >= options.max_lines:
                    return shown
    return shown


def _check(deadline: float | None, timeout_s: float, what: str) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise ApiClientError(
            f"{what} after {timeout_s:g} s; it goes on in the background: "
            "wait again with a longer --timeout, or follow it in the dashboard"
        )


def _pause(interval_s: float, deadline: float | None) -> float:
    if deadline is None:
        return interval_s
    return max(min(interval_s, deadline - time.monotonic()), 0.0)


def _content(page: Any) -> list[dict[str, Any]]:
    items = page.get("content") if isinstance(page, dict) else None
    return [d for d in items or [] if isinstance(d, dict)]
