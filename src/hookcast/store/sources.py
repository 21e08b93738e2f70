"""The sources' store (:class:`hookcast.domain.sources.SourceCatalog`), for both dialects,
on the same :class:`~hookcast.store.db.Database` as the records.

Contract for the broker consumers (``hookcast.brokers``), who read their configs here:

* ``SourceStore.list_pub_sub_sources()`` (async) returns every **enabled** source of
  ``type == "pub_sub"`` of **all** projects, oldest first, as
  :class:`hookcast.domain.models.Source` values; the consumer reads ``id``,
  ``project_id``, ``name`` and ``pub_sub`` (a ``dict``).
* ``pub_sub`` is stored and returned exactly as the API received it, after this shape
  check only (``domain/sources.py``): ``{"type": "amqp" | "redis_stream", "workers":
  1..64 (default 1), "amqp": {...} | "redis_stream": {...}}``, the object named by
  ``type`` present. The inner config (URL, queue, stream, group, …) is the consumer's to
  validate.
* A source that is disabled (``is_disabled``) or deleted is no longer listed; consumers
  that poll the list stop it.

Everything else here serves ``/sources`` and the ingest route (``find_source_by_mask``).
"""

from __future__ import annotations

from typing import Any

from hookcast.domain.models import Source, SourceType
from hookcast.domain.paging import Page, PageRequest
from hookcast.store.db import Database, Row, Tx
from hookcast.store.records import paged
from hookcast.store.rows import Mapping, dumps, loads


def _load(r: Row) -> Source:
    return Source(
        id=r[0],
        project_id=r[1],
        mask_id=r[2],
        name=r[3],
        type=SourceType(r[4]),
        provider=r[5],
        is_disabled=bool(r[6]),
        verifier=loads(r[7]) or {},
        custom_response=loads(r[8]),
        idempotency_keys=tuple(loads(r[9]) or ()),
        forward_headers=tuple(loads(r[10]) or ()),
        body_function=r[11],
        header_function=r[12],
        event_type_location=r[13],
        pub_sub=loads(r[14]),
        created_at_us=r[15],
        updated_at_us=r[16],
    )


def _dump(s: Source) -> tuple[Any, ...]:
    return (
        s.id,
        s.project_id,
        s.mask_id,
        s.name,
        s.type.value,
        s.provider,
        s.is_disabled,
        dumps(s.verifier),
        None if s.custom_response is None else dumps(s.custom_response),
        dumps(list(s.idempotency_keys)),
        dumps(list(s.forward_headers)),
        s.body_function,
        s.header_function,
        s.event_type_location,
        None if s.pub_sub is None else dumps(s.pub_sub),
        s.created_at_us,
        s.updated_at_us,
    )


SOURCE = Mapping[Source](
    "sources",
    (
        "id",
        "project_id",
        "mask_id",
        "name",
        "type",
        "provider",
        "is_disabled",
        "verifier",
        "custom_response",
        "idempotency_keys",
        "forward_headers",
        "body_function",
        "header_function",
        "event_type_location",
        "pub_sub",
        "created_at_us",
        "updated_at_us",
    ),
    _load,
    _dump,
)


class SourceStore:
    """Sources, in the ``sources`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_source(self, source: Source) -> None:
        await self.db.write(lambda tx: tx.run(SOURCE.insert, **SOURCE.args(source)))

    async def get_source(self, project_id: str, source_id: str) -> Source | None:
        return await self._one("id = :id AND project_id = :p", id=source_id, p=project_id)

    async def find_source_by_mask(self, mask_id: str) -> Source | None:
        return await self._one("mask_id = :m", m=mask_id)

    async def _one(self, where: str, **args: Any) -> Source | None:
        async def run(tx: Tx) -> Source | None:
            row = await tx.row(f"SELECT {SOURCE.select} FROM sources WHERE {where}", **args)
            return None if row is None else _load(row)

        return await self.db.read(run)

    async def list_sources(
        self, project_id: str, type: str | None, provider: str | None, page: PageRequest
    ) -> Page[Source]:
        where = ["project_id = :project"]
        args: dict[str, Any] = {"project": project_id}
        if type:
            where.append("type = :type")
            args["type"] = type
        if provider:
            where.append("provider = :provider")
            args["provider"] = provider
        return await self.db.read(lambda tx: paged(tx, SOURCE, where, args, page))

    async def update_source(self, source: Source) -> None:
        await self.db.write(
            lambda tx: tx.run(
                SOURCE.update(where="id = :id AND project_id = :project_id"),
                **SOURCE.args(source),
            )
        )

    async def delete_source(self, project_id: str, source_id: str) -> bool:
        """Delete a source and the subscriptions that route it (as Convoy)."""

        async def run(tx: Tx) -> bool:
            gone = await tx.run(
                "DELETE FROM sources WHERE id = :id AND project_id = :p", id=source_id, p=project_id
            )
            if gone:
                await tx.run(
                    "DELETE FROM subscriptions WHERE project_id = :p AND source_id = :id",
                    id=source_id,
                    p=project_id,
                )
            return gone > 0

        return await self.db.write(run)

    async def delete_sources(self, project_id: str) -> int:
        return await self.db.write(
            lambda tx: tx.run("DELETE FROM sources WHERE project_id = :p", p=project_id)
        )

    async def list_pub_sub_sources(self) -> list[Source]:
        """Every enabled ``pub_sub`` source of every project, oldest first (the contract
        at the top of this module)."""

        async def run(tx: Tx) -> list[Source]:
            rows = await tx.rows(
                f"SELECT {SOURCE.select} FROM sources WHERE type = :t AND NOT is_disabled "
                "ORDER BY id",
                t=SourceType.PUB_SUB.value,
            )
            return SOURCE.all(rows)

        return await self.db.read(run)
