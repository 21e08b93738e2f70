"""Daily partitions of the tables that grow with traffic, on PostgreSQL.

``events``, ``deliveries`` and ``attempts`` are partitioned by range of id. Ids are ULIDs
(their first ten characters are the millisecond they were made; a delivery's are its
event's), so one day of ids is one partition, ``<table>_pYYYYMMDD``. Each table also has
a ``<table>_default`` partition that catches any id no daily partition covers (a clock far
off, or a server that was down longer than the partitions made ahead): nothing is ever
refused for want of a partition, and when that day's partition is made later, its rows
move out of the default into it.

:func:`maintain` runs inside the retention pass: it makes the partitions of yesterday,
today and the next :data:`AHEAD_DAYS` days, and drops whole partitions that end before
the retention cutoff (``DROP TABLE``: constant time whatever the size, no dead rows and no
vacuum, instead of deleting rows). The statements are built here once and used both by
the migrations and at run time. SQLite keeps one table each.

``deliveries`` has one level more, so that the queue never touches history: it is
partitioned by status into ``deliveries_queue`` (Scheduled, Retry, Processing: what is
due, leased or waiting, one ordinary table) and ``deliveries_history`` (every other
status), and only the history is partitioned by day. A delivery moves between the two
when its status does (PostgreSQL moves the row on UPDATE). The queue's statements name
the live statuses, so PostgreSQL prunes the history at planning time: a tick plans and
locks the same few relations whether the history holds one day or a year.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hookcast.domain.ids import ulid_floor, ulid_timestamp_ms
from hookcast.store.db import Tx

TABLES = ("events", "deliveries", "attempts")
#: the statuses of a delivery in the queue (``deliveries_queue``); the rest is history
LIVE = ("Scheduled", "Retry", "Processing")
LIVE_SQL = "status IN ('Scheduled', 'Retry', 'Processing')"
QUEUE = "deliveries_queue"
HISTORY = "deliveries_history"
#: the table whose day partitions hold *table*'s rows by id
_BY_DAY = {"events": "events", "deliveries": HISTORY, "attempts": "attempts"}
_TABLE_OF = {parent: table for table, parent in _BY_DAY.items()}
DAY_MS = 86_400_000
#: days of partitions made beyond today, so a maintenance pass missed (or several) costs
#: nothing
AHEAD_DAYS = 3
#: a DROP or ATTACH waits at most this long for the table's lock (a long read holding
#: it), then gives up until the next pass instead of queueing every claim behind it
LOCK_TIMEOUT = "2s"
_PARTITION = re.compile(
    rf"^(({'|'.join(TABLES)})_(p\d{{8}}|before_p\d{{8}}|default)|{QUEUE}|{HISTORY})$"
)
_UPPER = re.compile(r"TO \('([0-9A-Z]{26})'\)")
_LOWER = re.compile(r"FROM \('([0-9A-Z]{26})'\)")


def day_of(ms: int) -> int:
    """The first millisecond (UTC) of the day holding *ms*."""
    return ms - ms % DAY_MS


def partition_name(table: str, day_ms: int) -> str:
    return f"{table}_p{datetime.fromtimestamp(day_ms / 1000, UTC):%Y%m%d}"


def is_partition(name: str | None) -> bool:
    """True for a partition's table name: managed at run time, not by the declared schema
    (Alembic's comparisons leave them out)."""
    return name is not None and _PARTITION.match(name) is not None


def history_name(table: str, day_ms: int) -> str:
    """The partition of every row older than *day_ms*, made when partitioning began."""
    return f"{table}_before{partition_name(table, day_ms)[len(table) :]}"


def by_day(table: str) -> str:
    """The table whose partitions hold one day of *table* each."""
    return _BY_DAY[table]


def create_statements(table: str, day_ms: int, *, parent: str | None = None) -> list[str]:
    """One day's partition of *table*, created beside the table, filled with any rows of
    that day the default partition holds, then attached to *parent* (by default
    :func:`by_day`; one transaction; the attach checks the range and adds the table's
    indexes)."""
    name = partition_name(table, day_ms)
    parent = parent or by_day(table)
    low, high = ulid_floor(day_ms), ulid_floor(day_ms + DAY_MS)
    return [
        f"CREATE TABLE {name} (LIKE {parent} INCLUDING DEFAULTS)",
        f"WITH moved AS (DELETE FROM {table}_default WHERE id >= '{low}' AND id < '{high}'"
        f" RETURNING *) INSERT INTO {name} SELECT * FROM moved",
        f"ALTER TABLE {parent} ATTACH PARTITION {name} FOR VALUES FROM ('{low}') TO ('{high}')",
    ]


def default_statement(table: str, *, parent: str | None = None) -> str:
    return f"CREATE TABLE {table}_default PARTITION OF {parent or by_day(table)} DEFAULT"


def history_statement(table: str, day_ms: int, *, parent: str | None = None) -> str:
    """The partition of every row of *table* older than *day_ms*."""
    return (
        f"CREATE TABLE {history_name(table, day_ms)} PARTITION OF {parent or by_day(table)}"
        f" FOR VALUES FROM (MINVALUE) TO ('{ulid_floor(day_ms)}')"
    )


@dataclass(frozen=True)
class Partition:
    table: str
    name: str
    #: its range in milliseconds, from *low_ms* to before *high_ms* (None: unbounded)
    low_ms: int | None
    high_ms: int | None
    default: bool = False

    def overlaps(self, start_ms: int, end_ms: int) -> bool:
        if self.default:
            return False
        low = self.low_ms if self.low_ms is not None else -1
        high = self.high_ms if self.high_ms is not None else end_ms + 1
        return low < end_ms and high > start_ms


@dataclass
class Maintenance:
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


_LIST = (
    "SELECT p.relname, c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
    " JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent"
    " WHERE p.relname = ANY(:parents) AND pg_table_is_visible(p.oid) ORDER BY c.relname"
)


async def partitions(tx: Tx) -> list[Partition]:
    """The day partitions of the partitioned tables (and their default and history
    partitions), from the catalog."""
    out = []
    for parent, name, bound in await tx.rows(_LIST, parents=list(_TABLE_OF)):
        low, high = _LOWER.search(bound or ""), _UPPER.search(bound or "")
        out.append(
            Partition(
                _TABLE_OF[parent],
                name,
                ulid_timestamp_ms(low.group(1)) if low else None,
                ulid_timestamp_ms(high.group(1)) if high else None,
                default=(bound or "").strip().upper() == "DEFAULT",
            )
        )
    return out


def plan(
    existing: Sequence[Partition], now_ms: int, drop_before_ms: int | None
) -> tuple[list[tuple[str, int]], list[Partition]]:
    """What a pass does: the ``(table, day)`` partitions to create (yesterday to
    :data:`AHEAD_DAYS` ahead, where no partition covers that day yet), and the partitions
    to drop (those that end at or before *drop_before_ms*; never the default)."""
    today = day_of(now_ms)
    days = [today + i * DAY_MS for i in range(-1, AHEAD_DAYS + 1)]
    create = [
        (t, d)
        for t in TABLES
        for d in days
        if not any(p.table == t and p.overlaps(d, d + DAY_MS) for p in existing)
    ]
    drop = []
    if drop_before_ms is not None:
        drop = [
            p
            for p in existing
            if not p.default and p.high_ms is not None and p.high_ms <= drop_before_ms
        ]
    return create, drop


async def maintain(tx: Tx, now_ms: int, drop_before_ms: int | None) -> Maintenance:
    """One maintenance pass, on PostgreSQL (SQLite has no partitions: its callers do not
    call this). Callers serialise passes across processes (an advisory lock)."""
    done = Maintenance()
    await tx.run(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    create, drop = plan(await partitions(tx), now_ms, drop_before_ms)
    for table, day in create:
        for statement in create_statements(table, day):
            await tx.run(statement)
        done.created.append(partition_name(table, day))
    for p in drop:
        await tx.run(f"DROP TABLE {p.name}")
        done.dropped.append(p.name)
    return done
