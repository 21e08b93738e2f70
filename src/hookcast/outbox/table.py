"""The outbox table in the application's database: its DDL and every statement on it,
written once here for all drivers (the writers' placeholders differ, the SQL does not).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from hookcast.domain.errors import ValidationError
from hookcast.domain.outbox import OutboxEvent

DEFAULT_SCHEMA = "public"
TABLE = "hookcast_outbox"

#: the columns the writers fill, in this order (the rest have defaults)
WRITTEN = (
    "project_id",
    "event_type",
    "data",
    "endpoint_id",
    "owner_id",
    "broadcast",
    "custom_headers",
    "idempotency_key",
    "ordering_key",
)
#: what the relay reads of a claimed row
READ = ("id", "attempts", *WRITTEN)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class OutboxTable:
    """Where the outbox lives: ``<schema>.hookcast_outbox``, and the ``NOTIFY`` channel
    its writers signal on commit."""

    schema: str = DEFAULT_SCHEMA

    def __post_init__(self) -> None:
        if not _NAME.match(self.schema):
            raise ValidationError(
                f"outbox schema {self.schema!r}: give a plain PostgreSQL name "
                "(letters, digits, _; at most 63)"
            )

    @property
    def name(self) -> str:
        return f"{_ident(self.schema)}.{_ident(TABLE)}"

    @property
    def channel(self) -> str:
        """The ``LISTEN``/``NOTIFY`` channel (one per schema)."""
        return TABLE if self.schema == DEFAULT_SCHEMA else f"{TABLE}_{self.schema}"[:63]

    # ------------------------------------------------------------------ install

    def ddl(self) -> list[str]:
        """Creates the schema, table and index if missing (idempotent); run in one
        transaction under :meth:`install_lock`."""
        t = self.name
        return [
            f"CREATE SCHEMA IF NOT EXISTS {_ident(self.schema)}",
            f"""CREATE TABLE IF NOT EXISTS {t} (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq bigint GENERATED ALWAYS AS IDENTITY,
    project_id text NOT NULL DEFAULT '',
    event_type text NOT NULL,
    data jsonb NOT NULL,
    endpoint_id text NOT NULL DEFAULT '',
    owner_id text NOT NULL DEFAULT '',
    broadcast boolean NOT NULL DEFAULT false,
    custom_headers jsonb NOT NULL DEFAULT '{{}}',
    idempotency_key text NOT NULL DEFAULT '',
    ordering_key text NOT NULL DEFAULT '',
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    available_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_error text NOT NULL DEFAULT '',
    failed_at timestamptz
)""",
            f"CREATE INDEX IF NOT EXISTS {_ident(TABLE + '_pending')} ON {t} (seq) "
            "WHERE status = 'pending'",
            f"COMMENT ON TABLE {t} IS 'hookcast transactional outbox: rows are events "
            f"committed by the application; `hookcast relay` publishes and deletes them "
            f"(NOTIFY channel {self.channel})'",
        ]

    def install_lock(self) -> str:
        """Serialises concurrent installs (``CREATE ... IF NOT EXISTS`` can race)."""
        return f"SELECT pg_advisory_xact_lock(hashtext('{TABLE}:' || '{self.schema}'))"

    # ------------------------------------------------------------------ writers

    def insert(self, placeholders: list[str]) -> str:
        """One statement that writes a row and signals the relays (the notification is
        delivered on commit, never on rollback; PostgreSQL folds the notifications of one
        transaction into one). Its one result: the new row's id."""
        values = ", ".join(
            f"CAST(CAST({p} AS text) AS jsonb)" if c in ("data", "custom_headers") else p
            for c, p in zip(WRITTEN, placeholders, strict=True)
        )
        return (
            f"WITH written AS (INSERT INTO {self.name} ({', '.join(WRITTEN)}) "
            f"VALUES ({values}) RETURNING id) "
            f"SELECT CAST(written.id AS text), pg_notify('{self.channel}', '') FROM written"
        )

    # ------------------------------------------------------------------ the relay

    def claim(self) -> str:
        """Due pending rows, oldest first, locked for this relay's transaction; rows
        another relay holds are skipped, not waited for. ``$1``: the batch size."""
        cols = ", ".join("CAST(id AS text) AS id" if c == "id" else c for c in READ)
        return (
            f"SELECT {cols} FROM {self.name} WHERE status = 'pending' "
            f"AND available_at <= now() ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED"
        )

    def delete(self) -> str:
        """``$1``: ids (text[]) of the rows hookcast stored."""
        return f"DELETE FROM {self.name} WHERE id = ANY(CAST($1 AS uuid[]))"

    def mark_failed(self) -> str:
        """``$1``: ids, ``$2``: reasons. Kept, visible, never retried by the relay."""
        return (
            f"UPDATE {self.name} AS o SET status = 'failed', attempts = o.attempts + 1, "
            "last_error = f.reason, failed_at = now() "
            "FROM unnest(CAST($1 AS uuid[]), CAST($2 AS text[])) AS f(id, reason) "
            "WHERE o.id = f.id"
        )

    def schedule_retry(self) -> str:
        """``$1``: ids, ``$2``: seconds to wait, ``$3``: reasons."""
        return (
            f"UPDATE {self.name} AS o SET attempts = o.attempts + 1, last_error = r.reason, "
            "available_at = now() + make_interval(secs => r.delay) "
            "FROM unnest(CAST($1 AS uuid[]), CAST($2 AS float8[]), CAST($3 AS text[])) "
            "AS r(id, delay, reason) WHERE o.id = r.id"
        )


def values(event: OutboxEvent) -> list[Any]:
    """The parameters of :meth:`OutboxTable.insert`, in :data:`WRITTEN` order."""
    try:
        data = orjson.dumps(event.data).decode()
    except orjson.JSONEncodeError as exc:
        raise ValidationError(f"data: not JSON-serialisable ({exc}); give JSON types") from exc
    return [
        event.project_id,
        event.event_type,
        data,
        event.endpoint_id,
        event.owner_id,
        event.broadcast,
        orjson.dumps(dict(event.custom_headers)).decode(),
        event.idempotency_key,
        event.ordering_key,
    ]


#: ``public.hookcast_outbox``, what the writers use unless given another
DEFAULT_TABLE = OutboxTable()
