"""History growth: does the delivery queue cost the same with millions of finished rows?

The e2e fan-out 1 case (``bench/e2e.py``: N events to one endpoint, as fast as accepted,
deliveries/s to a local receiver) on each store, twice:

* ``<store>_empty``: a fresh, migrated database (SQLite: a fresh file; PostgreSQL: a fresh
  database, ``bench/pgdb.py``), as in ``e2e`` and ``postgres``;
* ``<store>_seeded``: a migrated database that already holds H finished deliveries
  (status ``Success``), each with its event (a ~10-byte payload) and one successful
  attempt, written with SQL before the gateway starts, in a project and endpoint of their
  own (not the measured run's); their ids are valid ULIDs whose timestamps are spread
  evenly from 20 days to 1 day before the seeding, so they are older than the run but
  inside the default 30-day retention (nothing is purged during the run). H is 10,000,000
  (1,000,000 with ``--quick``, 10,000 with ``--smoke``).

Seeding is pure SQL, no Python per row: SQLite, a recursive CTE per table and chunk
(``INSERT … SELECT`` from ``WITH RECURSIVE``, 250,000 rows a transaction, through the
``sqlite3`` module, ``synchronous=OFF``, no journal); PostgreSQL, ``INSERT … SELECT FROM
generate_series`` per table and chunk (psycopg, autocommit, ``synchronous_commit=off``).
ULIDs are made in SQL: the timestamp's ten Crockford base32 characters from shifts of the
millisecond, then a tag letter and the row number in upper-case hex (valid base32). On
PostgreSQL, where events, deliveries and attempts are partitioned by day of id, the seeded
days get one partition each, as a gateway running for 20 days would have made them (the
empty ``<table>_before_p<today>`` partition the migration made is replaced by one ending
where the history starts); then ``VACUUM (ANALYZE)`` and ``CHECKPOINT``, so neither
autovacuum nor a checkpoint of the seeded data lands in the measured window. SQLite's
file is back in WAL mode, checkpointed and fsynced before the gateway opens it (without
the fsync, hookcast's first ``synchronous=FULL`` commit wrote the whole history to disk
inside the measured window: a seeded ÷ empty ratio of 0.66 that was the harness's doing).
Then the case waits (up to 60 s) for the machine to be idle. On this 2-vCPU box, 10
million deliveries (30 million rows) took ~3 min on SQLite (~160,000 rows/s, a 12 GB
file) and ~3.6 min on PostgreSQL (~140,000 rows/s over two connections, vacuum and
checkpoint included, 14.7 GB).

So on PostgreSQL the seeded database differs from the empty one in two ways, as a
deployment 20 days old does: more rows, and ~20 more partitions per table (27 instead of
7, counting the default and the history partition); the figures are of both together.
(Before the delivery queue got its own table, the extra partitions, not the rows, slowed
the tick: 10,000 rows in the same 20 partitions slowed it as much as 10 million.)

Seeding 3 x 10 million rows takes minutes per store, so each store's history database is
seeded **once per suite run** (in that store's first ``seeded`` run) and reused by every
later ``seeded`` run; each run still starts a fresh ``hookcast serve`` on it and creates
its own project (through the API) and endpoint, so a later run also finds the earlier
runs' few thousand finished deliveries (counted in ``…_leftover_live`` if any were not
finished, which are then marked ``Discarded`` so they are not claimed). The database is
dropped (the file deleted) after the last run.

Measured per run, beside e2e's figures: the worker's queue tick
(``hookcast_queue_tick_seconds``, one tick = record the previous batch's results + claim
the next batch), read from every worker process's ``/metrics`` (``HOOKCAST_METRICS_PORT``;
``serve --workers N`` gives worker *i* that port + *i*) right before and right after the
measured window; the bucket counts are subtracted and summed over workers, and p50/p99
estimated by linear interpolation inside the bucket (as Prometheus's
``histogram_quantile``; the buckets are 0.5, 1, 2, 3, 5, 7.5, 10, 15, 25, 50 ms …, so
the estimate is only as fine as they are).
A fan-out 1 run claims many deliveries per tick (~60-70), so a 15,000-event window holds
only ~200-300 ticks and its p99 is about its 2nd-3rd slowest tick: compare the p50 and the
mean too, and look at ``per_run``. ``growth_<store>_seeded_vs_empty_ratio`` is the seeded
run's deliveries/s over the empty run's of the same round (the aim: ≥ 0.90); its headline
is the median of those per-round ratios (not a ratio of medians as in ``summary.py``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench import e2e, machine, pgdb, procs
from bench.e2e import E2ECase
from bench.gateway import HOOKCAST, Gateway, bench_workers
from bench.harness import Metric, Options, Outcome, log
from bench.parts import Publisher, Receiver
from hookcast.store import partitions

NAME = "growth"
TITLE = (
    "History growth: the delivery queue with an empty database vs. millions of finished "
    "deliveries stored (SQLite and PostgreSQL)"
)

STORES = ("sqlite", "postgres")
KINDS = ("empty", "seeded")
DAY_MS = 86_400_000
#: the history's ids lie from this many days before the seeding …
OLDEST_DAYS = 20
#: … to this many
NEWEST_DAYS = 1
#: rows per INSERT statement (and transaction) while seeding
CHUNK = 250_000
#: PostgreSQL seeds over this many connections at most (and no more than the cores)
PG_SEED_CONNECTIONS = 2
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_LIVE = "('Scheduled', 'Retry', 'Processing')"

_HB = "; higher is better"
_LB = "; lower is better"

#: e2e's figures each case keeps (from ``E2ECase._measure``)
_E2E_KEYS: dict[str, Metric] = {
    "deliveries_per_s": Metric(f"deliveries completed/s{_HB}", "/s"),
    "events_per_s": Metric(f"events accepted/s{_HB}", "/s"),
    "p50_ms": Metric(f"publish→delivered p50{_LB}", "ms", 1),
    "p99_ms": Metric(f"publish→delivered p99{_LB}", "ms", 1),
    "server_cpu_us_per_delivery": Metric(f"server CPU per delivery{_LB}", "µs"),
    "background_cpu_cores": Metric("CPU used outside the benchmark", "cores", 2, show_spread=False),
}
#: the queue tick, from the worker's histogram
_TICK_KEYS: dict[str, Metric] = {
    "tick_p50_ms": Metric(
        f"queue tick p50 (`hookcast_queue_tick_seconds`, interpolated in its bucket){_LB}",
        "ms",
        2,
    ),
    "tick_p99_ms": Metric(
        "queue tick (finish previous batch + claim next) p99 "
        f"(`hookcast_queue_tick_seconds`, interpolated in its bucket){_LB}",
        "ms",
        2,
    ),
    "tick_mean_ms": Metric(f"queue tick mean{_LB}", "ms", 2),
    "ticks_per_delivery": Metric("queue ticks per delivery (for the record)", "", 3),
}
#: figures of the seeded case only
_SEEDED_KEYS: dict[str, Metric] = {
    "seeded_vs_empty_ratio": Metric(
        f"deliveries/s seeded ÷ empty, same round (aim ≥ 0.90){_HB}", "x", 2
    ),
    "history_deliveries": Metric(
        "finished deliveries stored before the run (each with its event and 1 attempt)",
        "",
        show_spread=False,
    ),
    "seed_rows": Metric(
        "rows seeded (events + deliveries + attempts; once per suite run)", "", show_spread=False
    ),
    "seed_s": Metric(f"seeding time (incl. vacuum/checkpoint; once per suite run){_LB}", "s", 1),
    "seed_rows_per_s": Metric(f"seeding speed{_HB}", "rows/s"),
    "db_mib": Metric("database size with the history", "MiB", show_spread=False),
}


def _table(store: str) -> dict[str, Metric]:
    out: dict[str, Metric] = {}
    for kind in KINDS:
        label = "empty database" if kind == "empty" else "with history"
        for key, m in {**_E2E_KEYS, **_TICK_KEYS}.items():
            out[f"growth_{store}_{kind}_{key}"] = Metric(
                f"{label}: {m.label}", m.unit, m.digits, m.show_spread
            )
    for key, m in _SEEDED_KEYS.items():
        out[f"growth_{store}_{key}"] = m
    return out


_TABLES = {store: _table(store) for store in STORES}
METRICS: dict[str, Metric] = {k: m for table in _TABLES.values() for k, m in table.items()}
for _store in STORES:  # E2ECase keeps the figures its scenario's table names
    e2e.register(f"growth_{_store}", _TABLES[_store])


# -- ULIDs in SQL ---------------------------------------------------------------------------------
def _ulid_time_sql(ms: str, *, postgres: bool) -> str:
    """SQL for the ten Crockford base32 characters of the millisecond ``ms`` (an integer
    expression): a ULID's timestamp, as ``hookcast.domain.ids`` decodes it."""
    cast = "::int" if postgres else ""
    return " || ".join(
        f"substr('{_CROCKFORD}', ((({ms}) >> {shift}) & 31){cast} + 1, 1)"
        for shift in range(45, -1, -5)
    )


def _ulid_sql(time_part: str, tag: str, n: str, *, postgres: bool) -> str:
    """A 26-character ULID: the time part, a tag letter, row number ``n`` in 15 hex digits
    (upper-case hex digits are Crockford base32 digits)."""
    assert tag in _CROCKFORD
    hex15 = f"lpad(upper(to_hex({n})), 15, '0')" if postgres else f"printf('%015X', {n})"
    return f"({time_part}) || '{tag}' || {hex15}"


def _ulid(ms: int, rand: int) -> str:
    value = (ms << 80) | (rand & ((1 << 80) - 1))
    return "".join(_CROCKFORD[(value >> s) & 31] for s in range(125, -1, -5))


@dataclass(frozen=True)
class _Span:
    """The history: ``rows`` deliveries with timestamps evenly from ``start_ms`` to
    ``end_ms``; row ``i``'s millisecond is ``start_ms + i * (end_ms - start_ms) // rows``."""

    rows: int
    start_ms: int
    end_ms: int

    @classmethod
    def ending_now(cls, rows: int) -> _Span:
        now = time.time_ns() // 1_000_000
        return cls(rows, now - OLDEST_DAYS * DAY_MS, now - NEWEST_DAYS * DAY_MS)

    def ms_sql(self, i: str) -> str:
        return f"({self.start_ms} + ({i}) * {self.end_ms - self.start_ms} / {self.rows})"


@dataclass(frozen=True)
class _Owner:
    """The history's own project, endpoint and subscription."""

    project_id: str
    endpoint_id: str
    subscription_id: str


def _statements(span: _Span, owner: _Owner, *, postgres: bool) -> list[tuple[str, str]]:
    """``(table, SELECT …)`` for one chunk: the SELECT reads ``i`` (row number) and ``t``
    (its millisecond) from a relation ``s`` the caller supplies."""
    ts = _ulid_time_sql("s.t", postgres=postgres)
    event_id = _ulid_sql(ts, "E", "s.i", postgres=postgres)
    delivery_id = _ulid_sql(ts, "D", "s.i", postgres=postgres)
    attempt_id = _ulid_sql(ts, "A", "s.i", postgres=postgres)
    payload = "'{\"n\":' || s.i || '}'"
    data = f"convert_to({payload}, 'UTF8')" if postgres else f"CAST({payload} AS BLOB)"
    true, us = ("true" if postgres else "1"), "s.t * 1000"
    p, e, sub = owner.project_id, owner.endpoint_id, owner.subscription_id
    url = "http://127.0.0.1:9/history"
    req_headers = '{"Content-Type":"application/json","User-Agent":"hookcast/history"}'
    resp_headers = '{"Content-Length":"2","Content-Type":"text/plain"}'
    return [
        (
            "events (id, project_id, kind, event_type, data, headers, endpoints, status, "
            "acknowledged_at_us, created_at_us, updated_at_us)",
            f"SELECT {event_id}, '{p}', 'single', 'history.event', {data}, '{{}}', "
            f"'[\"{e}\"]', 'Success', {us}, {us}, {us} + 2000",
        ),
        (
            "deliveries (id, project_id, event_id, endpoint_id, subscription_id, event_type, "
            "status, delivery_mode, attempts, retry_limit, strategy, interval_seconds, "
            "max_retry_seconds, due_at_us, latency_us, created_at_us, updated_at_us)",
            f"SELECT {delivery_id}, '{p}', {event_id}, '{e}', '{sub}', 'history.event', "
            f"'Success', 'at_least_once', 1, 10, 'exponential', 10, 7200, {us} + 1800, 800, "
            f"{us}, {us} + 2000",
        ),
        (
            "attempts (id, delivery_id, project_id, endpoint_id, url, method, ip_address, "
            "request_headers, response_headers, http_status, response_data, success, "
            "requested_at_us, responded_at_us, created_at_us)",
            f"SELECT {attempt_id}, {delivery_id}, '{p}', '{e}', '{url}', 'POST', '127.0.0.1', "
            f"'{req_headers}', '{resp_headers}', 200, 'ok', {true}, {us} + 1000, {us} + 1800, "
            f"{us} + 1800",
        ),
    ]


def _owner_rows(owner: _Owner, now_us: int) -> list[tuple[str, tuple[Any, ...]]]:
    secrets = orjson.dumps(
        [{"id": owner.endpoint_id, "value": "whsec_aGlzdG9yeQ==", "created_at_us": now_us}]
    ).decode()
    return [
        (
            "INSERT INTO endpoints (id, project_id, owner_id, name, url, status, secrets, "
            "advanced_signatures, http_timeout, content_type, created_at_us, updated_at_us) "
            "VALUES ({})",
            (
                owner.endpoint_id,
                owner.project_id,
                "",
                "history",
                "http://127.0.0.1:9/history",
                "active",
                secrets,
                True,
                10,
                "application/json",
                now_us,
                now_us,
            ),
        ),
        (
            "INSERT INTO subscriptions (id, project_id, endpoint_id, name, filter_config, "
            "delivery_mode, created_at_us, updated_at_us) VALUES ({})",
            (
                owner.subscription_id,
                owner.project_id,
                owner.endpoint_id,
                "history-all",
                '{"event_types":["*"],"filter":{}}',
                "at_least_once",
                now_us,
                now_us,
            ),
        ),
    ]


def _cli(database_url: str, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [*HOOKCAST, *args, "--json", "--database-url", database_url],
        capture_output=True,
        timeout=300,
        check=False,
    )
    if out.returncode != 0:
        raise procs.BenchError(f"hookcast {args[0]} failed: {out.stderr.decode()[-2000:]}")
    doc: dict[str, Any] = orjson.loads(out.stdout) if out.stdout.strip() else {}
    return doc


def _new_owner(database_url: str) -> _Owner:
    created = _cli(database_url, "project", "create", "history")
    now_ms = time.time_ns() // 1_000_000
    return _Owner(str(created["project_id"]), _ulid(now_ms, 0xE0_0001), _ulid(now_ms, 0xE0_0002))


class _Progress:
    """Logs rows written and rows/s, at most every ``every_s`` seconds."""

    def __init__(self, store: str, total: int, every_s: float = 10.0) -> None:
        self.store, self.total, self.every_s = store, total, every_s
        self.t0 = self.last = time.monotonic()
        self.rows = 0
        self._lock = threading.Lock()

    def add(self, rows: int, *, force: bool = False) -> None:
        with self._lock:
            self.rows += rows
            now = time.monotonic()
            if not (force or now - self.last >= self.every_s):
                return
            self.last = now
            log(
                f"  seeding {self.store}: {self.rows:,} of {self.total:,} rows "
                f"({self.rows / max(1e-9, now - self.t0):,.0f} rows/s, "
                f"{now - self.t0:,.0f} s)"
            )


@dataclass
class _History:
    """A store holding the seeded history, kept for every seeded run of a suite run."""

    store: str
    database_url: str
    rows: int  # events + deliveries + attempts
    deliveries: int
    seconds: float
    size_mib: float
    close: Callable[[], None]
    reported: bool = False


def _chunks(total: int) -> list[tuple[int, int]]:
    return [(a, min(total, a + CHUNK) - 1) for a in range(0, total, CHUNK)]


def _seed_sqlite(deliveries: int) -> _History:
    workdir = Path(tempfile.mkdtemp(prefix="hookcast-growth-"))
    path = workdir / "history.db"
    url = f"sqlite:///{path}"
    try:
        _cli(url, "migrate")
        t0 = time.monotonic()
        owner = _new_owner(url)
        span = _Span.ending_now(deliveries)
        progress = _Progress("sqlite", 3 * deliveries)
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        try:
            # a throwaway file: no journal, no sync while it is written; WAL again after
            conn.execute("PRAGMA journal_mode=OFF")
            conn.execute("PRAGMA synchronous=OFF")
            conn.execute("PRAGMA cache_size=-524288")  # 512 MiB: the indexes' right edges
            now_us = time.time_ns() // 1000
            conn.execute("BEGIN")
            for sql, args in _owner_rows(owner, now_us):
                conn.execute(sql.format(", ".join("?" * len(args))), args)
            conn.execute("COMMIT")
            statements = _statements(span, owner, postgres=False)
            for a, b in _chunks(deliveries):
                source = (
                    f"WITH RECURSIVE n(i) AS (SELECT {a} UNION ALL SELECT i + 1 FROM n "
                    f"WHERE i < {b}), s(i, t) AS (SELECT i, {span.ms_sql('i')} FROM n) "
                )
                conn.execute("BEGIN")
                for target, select in statements:
                    conn.execute(f"{source}INSERT INTO {target} {select} FROM s")
                conn.execute("COMMIT")
                progress.add(3 * (b - a + 1))
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        # written without syncs: flush the file now, or hookcast's first fsync (it runs
        # with synchronous=FULL) would write the whole history inside the measured window
        for written in workdir.iterdir():
            fd = os.open(written, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.sync()
        progress.add(0, force=True)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    seconds = time.monotonic() - t0
    size = sum(f.stat().st_size for f in workdir.iterdir()) / (1024 * 1024)
    return _History(
        "sqlite",
        url,
        3 * deliveries,
        deliveries,
        seconds,
        size,
        lambda: shutil.rmtree(workdir, ignore_errors=True),
    )


_BOUND = re.compile(r"FROM \((.+)\) TO \((.+)\)")


def _day_name(table: str, day_ms: int, before: bool = False) -> str:
    day = datetime.fromtimestamp(day_ms / 1000, UTC)
    return f"{table}_{'before_' if before else ''}p{day:%Y%m%d}"


def _prepare_partitions(conn: Any, span: _Span) -> int:
    """One partition per seeded day of each table partitioned by id (those of a fresh
    database: the migration made ``<table>_before_p<today>`` for everything older, empty
    here, which is replaced by one ending where the history starts). Tables that are not
    partitioned are left alone. Returns the partitions made."""
    made = 0
    first_day = span.start_ms - span.start_ms % DAY_MS
    last_day = span.end_ms - span.end_ms % DAY_MS
    for table in ("events", "deliveries", "attempts"):
        parent = partitions.by_day(table)  # deliveries_history, for the deliveries
        kind = conn.execute("SELECT relkind FROM pg_class WHERE relname = %s", (parent,)).fetchone()
        if not kind or kind[0] != "p":
            continue
        parts = conn.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE p.relname = %s",
            (parent,),
        ).fetchall()
        ranges: list[tuple[str, str]] = []
        for name, bound in parts:
            m = _BOUND.search(bound or "")
            if not m:
                continue  # the default partition
            low, high = m.group(1).strip("'"), m.group(2).strip("'")
            if low == "MINVALUE" and high > _ulid(first_day, 0):
                empty = conn.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {name})").fetchone()
                if empty and empty[0]:
                    conn.execute(f"DROP TABLE {name}")
                    history = _day_name(table, first_day, before=True)
                    conn.execute(
                        f"CREATE TABLE {history} PARTITION OF {parent} "
                        f"FOR VALUES FROM (MINVALUE) TO ('{_ulid(first_day, 0)}')"
                    )
                    ranges.append(("MINVALUE", _ulid(first_day, 0)))
                    continue
            ranges.append((low, high))
        for day in range(first_day, last_day + DAY_MS, DAY_MS):
            low, high = _ulid(day, 0), _ulid(day + DAY_MS, 0)
            if any((lo == "MINVALUE" or lo < high) and hi > low for lo, hi in ranges):
                continue
            conn.execute(
                f"CREATE TABLE {_day_name(table, day)} PARTITION OF {parent} "
                f"FOR VALUES FROM ('{low}') TO ('{high}')"
            )
            ranges.append((low, high))
            made += 1
    return made


def _insert_chunks(
    url: str,
    statements: list[tuple[str, str]],
    span: _Span,
    chunks: list[tuple[int, int]],
    progress: _Progress,
) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        for a, b in chunks:
            source = (
                f"(SELECT i, {span.ms_sql('i')} AS t "
                f"FROM generate_series({a}::bigint, {b}::bigint) AS i) s"
            )
            with conn.transaction():
                for target, select in statements:
                    conn.execute(f"INSERT INTO {target} {select} FROM {source}")
            progress.add(3 * (b - a + 1))


def _seed_postgres(deliveries: int) -> _History:
    import psycopg

    stack = contextlib.ExitStack()
    try:
        url = stack.enter_context(pgdb.fresh_database())
        t0 = time.monotonic()
        owner = _new_owner(url)
        span = _Span.ending_now(deliveries)
        progress = _Progress("postgres", 3 * deliveries)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET synchronous_commit = off")
            now_us = time.time_ns() // 1000
            with conn.transaction():
                for sql, args in _owner_rows(owner, now_us):
                    conn.execute(sql.format(", ".join(["%s"] * len(args))), args)
            made = _prepare_partitions(conn, span)
            if made:
                log(f"  seeding postgres: {made} daily partitions made for the history")
            statements = _statements(span, owner, postgres=True)
            chunks = _chunks(deliveries)
            # PostgreSQL does the work: one connection per core, each its own chunks
            lanes = max(1, min(PG_SEED_CONNECTIONS, os.cpu_count() or 1, len(chunks)))
            with ThreadPoolExecutor(lanes) as pool:
                done = [
                    pool.submit(
                        _insert_chunks, url, statements, span, chunks[lane::lanes], progress
                    )
                    for lane in range(lanes)
                ]
                for future in done:
                    future.result()
            progress.add(0, force=True)
            log("  seeding postgres: VACUUM (ANALYZE), CHECKPOINT")
            conn.execute("VACUUM (ANALYZE) events, deliveries, attempts")
            conn.execute("CHECKPOINT")
            os.sync()  # and whatever the kernel still holds of it
            size_row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        seconds = time.monotonic() - t0
    except BaseException:
        stack.close()
        raise
    size = float(size_row[0]) / (1024 * 1024) if size_row else 0.0
    return _History("postgres", url, 3 * deliveries, deliveries, seconds, size, stack.close)


def _discard_leftovers(history: _History) -> int:
    """Deliveries an earlier run left unfinished (a run that failed): marked Discarded so
    the next run's worker does not claim them. Returns how many."""
    sql = f"UPDATE deliveries SET status = 'Discarded' WHERE status IN {_LIVE}"
    if history.store == "postgres":
        import psycopg

        with psycopg.connect(history.database_url, autocommit=True) as pg:
            return pg.execute(sql).rowcount
    path = history.database_url.removeprefix("sqlite:///")
    lite = sqlite3.connect(path, timeout=30)
    try:
        with lite:
            return lite.execute(sql).rowcount
    finally:
        lite.close()


# -- the worker's histogram -----------------------------------------------------------------------
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_BUCKET = re.compile(r'^hookcast_queue_tick_seconds_bucket\{[^}]*le="([^"]+)"[^}]*\}\s+(\S+)')
_SUM_COUNT = re.compile(r"^hookcast_queue_tick_seconds_(sum|count)(?:\{[^}]*\})?\s+(\S+)")


@dataclass
class TickHistogram:
    buckets: dict[float, float] = field(default_factory=dict)  # upper bound -> cumulative
    sum: float = 0.0
    count: float = 0.0

    def __add__(self, other: TickHistogram) -> TickHistogram:
        bounds = set(self.buckets) | set(other.buckets)
        return TickHistogram(
            {b: self.buckets.get(b, 0.0) + other.buckets.get(b, 0.0) for b in bounds},
            self.sum + other.sum,
            self.count + other.count,
        )

    def __sub__(self, other: TickHistogram) -> TickHistogram:
        return TickHistogram(
            {b: v - other.buckets.get(b, 0.0) for b, v in self.buckets.items()},
            self.sum - other.sum,
            self.count - other.count,
        )

    def quantile(self, q: float) -> float:
        """Seconds, by linear interpolation inside the bucket holding the q-quantile (from
        0 for the first); the largest finite bound when it lies in the ``+Inf`` bucket."""
        bounds = sorted(self.buckets)
        total = self.buckets.get(float("inf"), self.count)
        if total <= 0 or not bounds:
            return 0.0
        rank = q * total
        lower, below = 0.0, 0.0
        for bound in bounds:
            cumulative = self.buckets[bound]
            if cumulative >= rank:
                if bound == float("inf"):
                    return lower
                inside = cumulative - below
                return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
            lower, below = bound, cumulative
        return lower


def parse_tick_histogram(text: str) -> TickHistogram:
    out = TickHistogram()
    for line in text.splitlines():
        if m := _BUCKET.match(line):
            out.buckets[float(m.group(1))] = float(m.group(2))
        elif m := _SUM_COUNT.match(line):
            setattr(out, m.group(1), float(m.group(2)))
    return out


def _scrape(urls: list[str]) -> TickHistogram:
    total = TickHistogram()
    for url in urls:
        with _opener.open(url, timeout=10) as resp:
            total = total + parse_tick_histogram(resp.read().decode())
    return total


def _free_ports(n: int) -> int:
    """A port p with p … p+n-1 free (for ``serve --workers n``'s metrics listeners)."""
    import socket

    for _ in range(50):
        base = procs.free_port()
        with contextlib.ExitStack() as held:
            try:
                for i in range(1, n):
                    s = held.enter_context(socket.socket())
                    s.bind(("127.0.0.1", base + i))
            except OSError:
                continue
        return base
    raise procs.BenchError(f"no {n} consecutive free ports")


# -- the cases ------------------------------------------------------------------------------------
@dataclass
class GrowthCase:
    name: str
    store: str
    kind: str  # empty | seeded
    events: int
    warmup: int
    concurrency: int
    history: int  # deliveries seeded (seeded only)
    #: the same store's empty case, for the seeded run's ratio
    empty: GrowthCase | None = None
    last_deliveries_per_s: float | None = None
    _seeded: _History | None = None
    _runs: int = 0

    @property
    def prefix(self) -> str:
        return f"growth_{self.store}_{self.kind}_"

    def e2e_case(self) -> E2ECase:
        return E2ECase(
            self.name,
            self.prefix,
            "",
            1,
            self.events,
            self.warmup,
            self.concurrency,
            scenario=f"growth_{self.store}",
            store=self.store,
        )

    def describe(self) -> dict[str, Any]:
        store = "SQLite file" if self.store == "sqlite" else "PostgreSQL database"
        history = (
            f"a {store} already holding {self.history:,} finished deliveries (+ their "
            f"events and 1 attempt each, ids {NEWEST_DAYS} to {OLDEST_DAYS} days old, another "
            "project; seeded once per suite run, reused by every run)"
            if self.kind == "seeded"
            else f"a fresh {store}"
        )
        return {
            "summary": f"{self.events:,} events x 1 KiB via `/events` to one endpoint, as fast "
            f"as accepted, {self.concurrency} concurrent publishers, {self.warmup:,} warm-up "
            f"events first; on {history}",
            "store": self.store,
            "history_deliveries": self.history if self.kind == "seeded" else 0,
            "events": self.events,
            "warmup": self.warmup,
            "concurrency": self.concurrency,
        }

    def metric_keys(self) -> list[str]:
        keys = [f"{self.prefix}{k}" for k in (*_E2E_KEYS, *_TICK_KEYS)]
        if self.kind == "seeded":
            keys += [f"growth_{self.store}_{k}" for k in _SEEDED_KEYS]
        return keys

    def _unavailable(self, exc: BaseException) -> Outcome:
        reason = str(exc).strip().splitlines()
        return Outcome(
            unavailable=(reason[0] if reason else type(exc).__name__)[:300],
            null_keys=tuple(self.metric_keys()),
        )

    def _history(self) -> _History:
        if self._seeded is None:
            log(f"  seeding {self.history:,} finished deliveries into a {self.store} database")
            seed = _seed_sqlite if self.store == "sqlite" else _seed_postgres
            self._seeded = seed(self.history)
            atexit.register(self._seeded.close)
            log(
                f"  seeded {self._seeded.rows:,} rows in {self._seeded.seconds:,.0f} s "
                f"({self._seeded.rows / max(1e-9, self._seeded.seconds):,.0f} rows/s), "
                f"{self._seeded.size_mib:,.0f} MiB"
            )
            busy = machine.wait_idle(60)
            if busy > 0.15:
                log(f"  machine still busy ({busy:.2f} cores) after seeding")
        return self._seeded

    def run(self, options: Options, *, profile: bool = False) -> Outcome:
        self._runs += 1
        self.last_deliveries_per_s = None
        try:
            return self._run(options)
        finally:
            last = self._runs >= options.runs and not options.profile
            if (last or profile) and self._seeded is not None:
                self._seeded.close()
                self._seeded = None

    def _run(self, options: Options) -> Outcome:
        extra: dict[str, float] = {}
        counts: dict[str, int] = {}
        with contextlib.ExitStack() as stack:
            workdir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="hookcast-bench-"))
            )
            receiver = stack.enter_context(Receiver(workdir))
            try:
                if self.kind == "seeded":
                    history = self._history()
                    database: str | None = history.database_url
                    counts[f"growth_{self.store}_leftover_live"] = _discard_leftovers(history)
                    extra |= {
                        f"growth_{self.store}_history_deliveries": float(history.deliveries),
                        f"growth_{self.store}_db_mib": history.size_mib,
                    }
                    if not history.reported:  # the run that seeded reports the seeding
                        history.reported = True
                        extra |= {
                            f"growth_{self.store}_seed_rows": float(history.rows),
                            f"growth_{self.store}_seed_s": history.seconds,
                            f"growth_{self.store}_seed_rows_per_s": history.rows
                            / max(1e-9, history.seconds),
                        }
                else:
                    database = (
                        stack.enter_context(pgdb.fresh_database())
                        if self.store == "postgres"
                        else None
                    )
                port = _free_ports(max(1, bench_workers()))
                gateway = stack.enter_context(
                    Gateway(database=database, env={"HOOKCAST_METRICS_PORT": str(port)})
                )
                targets = e2e._setup_endpoints(gateway, receiver, 1)
            except (pgdb.Unavailable, procs.BenchError) as exc:
                if self.store != "postgres":
                    raise
                return self._unavailable(exc)
            urls = (
                [f"http://127.0.0.1:{port + i}/metrics" for i in range(gateway.workers)]
                if gateway.workers
                else [gateway.base + "/metrics"]
            )
            publish = Publisher(gateway, [targets], 1, options.concurrency, workdir)
            if self.warmup:
                publish.run_to_completion(receiver, self.warmup, rate=0.0)
                receiver.reset()
            before = _scrape(urls)
            outcome = self.e2e_case()._measure(publish, receiver, gateway, None)
            ticks = _scrape(urls) - before
        delivered = outcome.counts.get(f"growth_{self.store}_deliveries_received", 0)
        outcome.metrics |= extra | {
            f"{self.prefix}tick_p50_ms": ticks.quantile(0.50) * 1000,
            f"{self.prefix}tick_p99_ms": ticks.quantile(0.99) * 1000,
            f"{self.prefix}tick_mean_ms": ticks.sum / max(1.0, ticks.count) * 1000,
            f"{self.prefix}ticks_per_delivery": ticks.count / max(1, delivered),
        }
        rate = outcome.metrics.get(f"{self.prefix}deliveries_per_s")
        self.last_deliveries_per_s = rate
        if self.kind == "seeded" and self.empty is not None:
            base = self.empty.last_deliveries_per_s
            if rate is not None and base:
                outcome.metrics[f"growth_{self.store}_seeded_vs_empty_ratio"] = rate / base
        counts[f"growth_{self.store}_{self.kind}_ticks"] = int(ticks.count)
        # e2e's counts and problems are per store; keep the case apart in the counts
        outcome.counts = {
            k.replace(f"growth_{self.store}_", f"growth_{self.store}_{self.kind}_", 1): v
            for k, v in outcome.counts.items()
        } | counts
        return outcome


def history_size(options: Options) -> int:
    return 10_000 if options.smoke else 1_000_000 if options.quick else 10_000_000


def cases(options: Options) -> list[GrowthCase]:
    quick = options.quick
    n = options.events or (200 if options.smoke else 5_000 if quick else 15_000)
    warmup = 0 if n < 1000 else (100 if quick else 1_000)
    out: list[GrowthCase] = []
    for store in STORES:
        empty = GrowthCase(
            f"{store}_empty", store, "empty", n, warmup, options.concurrency, history=0
        )
        seeded = GrowthCase(
            f"{store}_seeded",
            store,
            "seeded",
            n,
            warmup,
            options.concurrency,
            history=history_size(options),
            empty=empty,
        )
        out += [empty, seeded]
    return out
