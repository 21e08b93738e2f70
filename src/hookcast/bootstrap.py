"""The only place that builds concrete pieces (store, sender, worker, app) and runs them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from hookcast.api.app import api_runner, create_app
from hookcast.api.auth import Authenticator
from hookcast.api.context import ApiContext
from hookcast.api.ingest import IngestQueue
from hookcast.delivery.batches import BatchRunner
from hookcast.delivery.directory import Directory
from hookcast.delivery.fanout import BroadcastWatcher, FanoutOptions, FanoutRunner
from hookcast.delivery.meta import MetaEvents, MetaOptions
from hookcast.delivery.prober import Prober
from hookcast.delivery.retention import RetentionRunner
from hookcast.delivery.sender import Sender
from hookcast.delivery.shared import RedisRateLimiter
from hookcast.delivery.waker import Waker
from hookcast.delivery.worker import Worker, WorkerOptions
from hookcast.domain.ports import Records
from hookcast.metrics import Metrics, is_loopback, start_listener
from hookcast.settings import Settings
from hookcast.store import Store, open_store
from hookcast.store.event_types import EventTypeStore
from hookcast.store.portal_links import PortalLinkStore
from hookcast.store.sources import SourceStore
from hookcast.tracing import Tracing
from hookcast.tracing import setup as setup_tracing

log = logging.getLogger("hookcast")


def build_store(settings: Settings, *, api: bool = True, worker: bool = True) -> Store:
    """The store for this process. A process with one role runs its SQLite transactions on
    the event loop's thread (short, batched ones: the hop to a thread and the GIL hand-offs
    cost more than they spare); one that serves the API and delivers keeps them on threads,
    so neither role waits for the other's commit to sync."""
    alone = api != worker
    return open_store(
        settings.database_url,
        synchronous=settings.sqlite_synchronous,
        pg_pool_max=settings.pg_pool_max,
        inline_writes=alone,
        inline_reads=worker and not api,
    )


def run_migrations(settings: Settings, *, newer_ok: bool = True) -> str | None:
    """Bring the schema to this version's head. A schema migrated by a newer hookcast is
    left as it is when *newer_ok* (a process of the old version during a rolling upgrade
    keeps running: migrations only add), else the error says what to do."""
    from hookcast.store import migrate  # Alembic: loaded only where migrations run

    try:
        migrate.upgrade(settings.database_url)
    except migrate.SchemaTooNewError as exc:
        if not newer_ok:
            raise
        log.warning("schema.newer", extra={"detail": exc.message})
    return migrate.current_revision(settings.database_url)


def worker_options(settings: Settings) -> WorkerOptions:
    return WorkerOptions(
        concurrency=settings.worker_concurrency,
        claim_batch=settings.claim_batch,
        poll_interval_s=settings.poll_interval_s,
        lease_margin_s=settings.lease_margin_s,
        completion_flush_ms=settings.completion_flush_ms,
        shutdown_grace_s=settings.shutdown_grace_s,
        endpoint_max_in_flight=settings.endpoint_max_in_flight,
        probe_base_s=settings.probe_base_s,
        probe_max_s=settings.probe_max_s,
    )


class Stoppable(Protocol):
    def request_stop(self) -> None: ...


@dataclass
class Running:
    store: Store
    runner: web.AppRunner | None
    ingest: IngestQueue | None
    worker: Worker | None
    worker_task: asyncio.Task[None] | None
    sender: Sender | None
    fanout: FanoutRunner | None = None
    background: list[tuple[Stoppable, asyncio.Task[None]]] = field(default_factory=list)
    metrics: Metrics = field(default_factory=Metrics)
    meta: MetaEvents | None = None
    #: the separate /metrics listener: of a process without the API (HOOKCAST_METRICS_PORT),
    #: or of the API process given HOOKCAST_METRICS_ADDRESS
    metrics_runner: web.AppRunner | None = None
    limiter: RedisRateLimiter | None = None
    tracing: Tracing = field(default_factory=Tracing)
    metrics_elsewhere: tuple[str, int] | None = None


async def start(
    settings: Settings,
    *,
    api: bool = True,
    worker: bool = True,
    tracing: Tracing | None = None,
    open_port: bool = True,
) -> Running:
    """Build and start this process's pieces; with *open_port* false the API is built but
    takes no connection until :func:`listen` (``serve`` waits for its worker processes)."""
    tracing = tracing or setup_tracing(settings.otel_enabled, settings.otel_exporter)
    store = build_store(settings, api=api, worker=worker)
    await store.open()
    records = store.records
    # a worker in its own process learns of new work from the database's change counter
    probe = None if api else store.db.data_version
    waker = Waker(probe)
    fanout_waker = Waker(probe)
    batch_waker = Waker(probe)

    def wake_all() -> None:
        waker.notify()
        fanout_waker.notify()
        batch_waker.notify()

    running = Running(store, None, None, None, None, None, tracing=tracing)
    metrics = running.metrics
    if worker:
        reclaimed = await store.reclaim_at_start(time.time_ns() // 1000)
        if reclaimed:
            log.info("worker.reclaimed_at_start", extra={"leases": reclaimed})
        sender = Sender(
            read_bytes=settings.response_read_bytes,
            capture_bytes=settings.response_capture_bytes,
            allowed_networks=settings.allowed_network_list(),
            guard=settings.ssrf_guard,
        )
        await sender.start()
        running.sender = sender
        meta = running.meta = MetaEvents(
            sender,
            metrics,
            MetaOptions(
                attempts=settings.meta_event_attempts, backoff_s=settings.meta_event_backoff_s
            ),
        )
        running.limiter = await _limiter(settings)
        running.worker = Worker(
            store.queue,
            Directory(records),
            sender,
            waker,
            worker_options(settings),
            metrics=metrics,
            meta=meta,
            limiter=running.limiter,
            tracing=tracing,
        )
        running.worker_task = asyncio.create_task(running.worker.run())
        watcher = BroadcastWatcher(records, settings.poll_interval_s, metrics=metrics, meta=meta)
        running.fanout = FanoutRunner(
            records,
            fanout_waker,
            waker,
            FanoutOptions(
                chunk=settings.fanout_chunk,
                lease_s=settings.lease_margin_s,
                poll_interval_s=settings.poll_interval_s,
            ),
            metrics=metrics,
            on_done=watcher.watch,
        )
        batches = BatchRunner(records, batch_waker, waker, settings.poll_interval_s)
        prober = Prober(
            records,
            sender,
            waker,
            settings.poll_interval_s,
            metrics=metrics,
            meta=meta,
            base_s=settings.probe_base_s,
            max_s=settings.probe_max_s,
        )
        retention = RetentionRunner(records, settings.retention_interval_s)
        for runner in (running.fanout, watcher, batches, prober, retention):
            running.background.append((runner, asyncio.create_task(runner.run())))
        # broker sources (issue 17, docs/brokers.md): consumers of the pub_sub sources
        running.background.append(_broker_sources(settings, store, metrics, wake_all))
        if not api and settings.metrics_enabled and settings.metrics_port:
            running.metrics_runner = await start_listener(
                metrics, records, settings.host, settings.metrics_port, settings.metrics_token
            )
    if api:
        running.ingest = IngestQueue(
            records,
            max_batch=settings.ingest_batch_max,
            wait_ms=settings.ingest_batch_wait_ms,
            on_commit=wake_all,
            metrics=metrics,
        )
        portal_links = PortalLinkStore(store.db)
        context = ApiContext(
            store=records,
            auth=Authenticator(
                records,
                settings.admin_api_key,
                rate_limit=settings.api_rate_limit,
                portal_links=portal_links,
            ),
            ingest=running.ingest,
            readiness=Readiness(settings, records),
            tracing=tracing,
            event_types=EventTypeStore(store.db),
            portal_links=portal_links,
            sources=SourceStore(store.db),
            check_pub_sub=_check_pub_sub,
            source_rate_limit=settings.api_rate_limit,
            metrics=metrics if settings.metrics_enabled else None,
        )
        metrics_elsewhere = settings.metrics_listen_address()
        app = create_app(
            context,
            max_body_bytes=settings.max_body_bytes,
            metrics=metrics if settings.metrics_enabled else None,
            metrics_route=metrics_elsewhere is None,
            metrics_token=settings.metrics_token,
            portal_frame_ancestors=settings.portal_frame_ancestors,
        )
        running.runner = api_runner(app)
        await running.runner.setup()
        running.metrics_elsewhere = metrics_elsewhere
        if open_port:
            await listen(running, settings)
    return running


async def listen(running: Running, settings: Settings) -> None:
    """Open the API's port (and the separate /metrics address, if any)."""
    assert running.runner is not None
    site = web.TCPSite(running.runner, settings.host, settings.port, backlog=1024)
    await site.start()
    log.info("api.listening", extra={"url": f"http://{settings.host}:{settings.port}"})
    if settings.metrics_enabled:
        await _serve_metrics(running, settings, running.metrics_elsewhere)


async def _serve_metrics(
    running: Running, settings: Settings, elsewhere: tuple[str, int] | None
) -> None:
    """/metrics of the API process: on HOOKCAST_METRICS_ADDRESS when set, else on the API
    port, where without a token anyone who reaches that port reads it."""
    if elsewhere is not None:
        host, port = elsewhere
        running.metrics_runner = await start_listener(
            running.metrics, running.store.records, host, port, settings.metrics_token
        )
    elif not settings.metrics_token and not is_loopback(settings.host):
        log.warning(
            "metrics.unprotected",
            extra={
                "detail": f"/metrics on {settings.host}:{settings.port} answers anyone who "
                "reaches the API port; set HOOKCAST_METRICS_TOKEN, or HOOKCAST_METRICS_ADDRESS "
                "to serve it on an internal address"
            },
        )


def _check_pub_sub(doc: Any) -> object:
    """The broker consumers' check of a ``pub_sub`` source, for the /sources API (loaded
    when a pub_sub source is saved, not at start)."""
    from hookcast.brokers import check_pub_sub

    return check_pub_sub(doc)


def _broker_sources(
    settings: Settings, store: Store, metrics: Metrics, wake: Callable[[], None]
) -> tuple[Stoppable, asyncio.Task[None]]:
    """The consumers of the projects' ``pub_sub`` sources (docs/brokers.md), storing through
    a group commit of their own. The runner re-reads the sources every few seconds; a
    broker's client library is loaded only once a source of its kind exists."""
    from hookcast.api.event_schemas import SchemaGate
    from hookcast.brokers import BrokerRunner
    from hookcast.store.sources import SourceStore

    ingest = IngestQueue(
        store.records,
        max_batch=settings.ingest_batch_max,
        wait_ms=settings.ingest_batch_wait_ms,
        on_commit=wake,
        metrics=metrics,
    )
    runner = BrokerRunner(
        SourceStore(store.db).list_pub_sub_sources,
        store.records,
        ingest,
        max_body_bytes=settings.max_body_bytes,
        gate=SchemaGate(EventTypeStore(store.db)),
    )

    async def run() -> None:
        try:
            await runner.run()
        finally:
            await ingest.close()

    return runner, asyncio.create_task(run())


async def _limiter(settings: Settings) -> RedisRateLimiter | None:
    if not settings.redis_url:
        return None
    limiter = RedisRateLimiter(settings.redis_url)
    try:
        await limiter.ping()
        log.info("limits.shared", extra={"backend": "redis"})
    except Exception as exc:
        # not fatal: limits apply per process until Redis answers
        log.warning(
            "limits.redis_unavailable",
            extra={"error": str(exc) or type(exc).__name__, "fallback": "per-process limits"},
        )
    return limiter


class Readiness:
    """Why this process is not ready, or None: the database must answer, and its schema
    must not be behind this version (a newer one is fine: a rolling upgrade migrated it).
    A good schema check is remembered for a few seconds (it opens a connection)."""

    SCHEMA_CHECK_S = 10.0

    def __init__(self, settings: Settings, store: Records) -> None:
        self._url = settings.database_url
        self._store = store
        self._schema_ok_until = 0.0

    async def __call__(self) -> str | None:
        try:
            await self._store.list_projects()
        except Exception as exc:
            return f"database unreachable: {exc}"
        if time.monotonic() < self._schema_ok_until:
            return None
        from hookcast.store import migrate

        current, state = await asyncio.to_thread(migrate.schema_state, self._url)
        if state in ("behind", "empty"):
            head = migrate.head_revision()
            return f"schema at {current}, expected {head}: run `hookcast migrate`"
        self._schema_ok_until = time.monotonic() + self.SCHEMA_CHECK_S
        return None


async def stop(running: Running) -> None:
    """Stop taking requests, commit what was accepted, drain the worker, close."""
    if running.runner is not None:
        with contextlib.suppress(Exception):
            await running.runner.shutdown()
    if running.ingest is not None:
        await running.ingest.close()
    if running.runner is not None:
        await running.runner.cleanup()
    for runner, _ in running.background:
        runner.request_stop()
    await asyncio.gather(*(task for _, task in running.background), return_exceptions=True)
    if running.worker is not None and running.worker_task is not None:
        running.worker.request_stop()
        await running.worker_task
    if running.meta is not None:
        await running.meta.close(5.0)
    if running.limiter is not None:
        with contextlib.suppress(Exception):
            await running.limiter.close()
    running.tracing.shutdown()
    if running.metrics_runner is not None:
        await running.metrics_runner.cleanup()
    if running.sender is not None:
        await running.sender.close()
    await running.store.close()
    log.info("hookcast.stopped")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def process_layout(
    requested: int | None, *, no_worker: bool, cores: int | None = None
) -> tuple[int, str]:
    """How many delivery worker processes ``serve`` runs beside its API process, and why.
    Asked for: that many. Otherwise one on a machine with two or more cores (ingest and
    delivery each get a core; measured about twice the throughput of one process), and
    none (all in one process) on a single core."""
    if no_worker:
        return 0, "API only (--no-worker)"
    if requested is not None:
        return requested, f"--workers {requested}"
    cores = usable_cores() if cores is None else cores
    if cores >= 2:
        return 1, f"{cores} cores: the API in this process, delivery in one worker process"
    return 0, "1 core: the API and delivery in this process"


async def serve(
    settings: Settings, *, api: bool = True, worker: bool = True, worker_processes: int = 0
) -> None:
    """Run until SIGINT or SIGTERM, then shut down cleanly. With *worker_processes*, the
    delivery workers run as that many child processes (``hookcast worker``) beside this
    API process, so ingest and delivery each get a core."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    children = [await _spawn_worker(settings, i) for i in range(worker_processes)]
    # the children start while this process does; the API answers once they are ready
    ready = [asyncio.create_task(_ready(child)) for child in children]
    running = await start(settings, api=api, worker=worker and not children, open_port=False)
    await asyncio.gather(*ready)
    if running.runner is not None:
        await listen(running, settings)
    ready_fd = os.environ.pop(READY_ENV, "")
    if ready_fd:  # a worker process of a serve: tell it this one is ready
        with contextlib.suppress(OSError):
            os.write(int(ready_fd), b"ready\n")
            os.close(int(ready_fd))
    try:
        await stopping.wait()
        log.info("hookcast.stopping")
    finally:
        await stop(running)
        await _stop_children(children, settings.shutdown_grace_s + 5)


#: set for the worker processes ``serve`` starts: they stop when it goes, however it goes
PARENT_ENV = "HOOKCAST_PARENT_PID"
#: the pipe on which such a worker process says it is ready
READY_ENV = "HOOKCAST_READY_FD"
READY_TIMEOUT_S = 60.0


def follow_parent(parent_pid: int) -> None:
    """In a worker process started by ``serve``: be sent SIGTERM (a clean stop: in-flight
    attempts finish, leases are given back) when the parent dies, even by kill -9, so no
    orphan keeps delivering beside the next ``serve``."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # it died before the line above took effect
        os.kill(os.getpid(), signal.SIGTERM)


async def _spawn_worker(settings: Settings, index: int) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "HOOKCAST_DATABASE_URL": settings.database_url,
        PARENT_ENV: str(os.getpid()),
    }
    if settings.metrics_port:  # each child serves its own registry on a port of its own
        env["HOOKCAST_METRICS_PORT"] = str(settings.metrics_port + index)
    read_fd, write_fd = os.pipe()
    env[READY_ENV] = str(write_fd)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hookcast", "worker", env=env, pass_fds=(write_fd,)
    )
    os.close(write_fd)
    _READY_PIPES[proc.pid] = read_fd
    log.info("worker.spawned", extra={"pid": proc.pid})
    return proc


_READY_PIPES: dict[int, int] = {}


async def _ready(child: asyncio.subprocess.Process) -> None:
    """Wait (bounded) until a worker process says it is ready, or ends."""
    fd = _READY_PIPES.pop(child.pid)
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            said = await asyncio.to_thread(os.read, fd, 16)
    except TimeoutError:
        said = b""
    finally:
        os.close(fd)
    if said.startswith(b"ready"):
        log.info("worker.ready", extra={"pid": child.pid})
    else:
        log.warning("worker.not_ready", extra={"pid": child.pid, "returncode": child.returncode})


async def _stop_children(children: list[asyncio.subprocess.Process], grace_s: float) -> None:
    for proc in children:
        if proc.returncode is None:
            proc.terminate()
    for proc in children:
        try:
            async with asyncio.timeout(grace_s):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()
