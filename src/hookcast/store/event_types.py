"""The event catalog's store (:class:`hookcast.domain.ports.EventTypeCatalog`), for both
dialects, on the same :class:`~hookcast.store.db.Database` as the records.

Every write of a project's catalog first takes that project's catalog lock (an advisory
lock on PostgreSQL; SQLite's writers take turns anyway), so a check-then-write (a name
already taken, the per-project limit, an import's upsert) never races another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hookcast.domain.errors import ConflictError, NotFoundError, ValidationError
from hookcast.domain.event_types import (
    MAX_PER_PROJECT,
    EventType,
    EventTypeFields,
    Outcome,
    plan_import,
)
from hookcast.domain.paging import Page, PageRequest
from hookcast.store.db import Database, Row, Tx
from hookcast.store.records import paged
from hookcast.store.rows import Mapping, dumps, loads


def _load(r: Row) -> EventType:
    return EventType(
        id=r[0],
        project_id=r[1],
        name=r[2],
        category=r[3],
        description=r[4],
        json_schema=loads(r[5]),
        example=loads(r[6]),
        deprecated_at_us=r[7],
        created_at_us=r[8],
        updated_at_us=r[9],
    )


def _dump(e: EventType) -> tuple[Any, ...]:
    return (
        e.id,
        e.project_id,
        e.name,
        e.category,
        e.description,
        None if e.json_schema is None else dumps(e.json_schema),
        None if e.example is None else dumps(e.example),
        e.deprecated_at_us,
        e.created_at_us,
        e.updated_at_us,
    )


EVENT_TYPE = Mapping[EventType](
    "event_types",
    (
        "id",
        "project_id",
        "name",
        "category",
        "description",
        "json_schema",
        "example",
        "deprecated_at_us",
        "created_at_us",
        "updated_at_us",
    ),
    _load,
    _dump,
)

_BY_NAME = f"SELECT {EVENT_TYPE.select} FROM event_types WHERE project_id = :p AND name = :name"


def _lock(project_id: str) -> str:
    return f"event_types\x1f{project_id}"


async def _room_for(tx: Tx, project_id: str, more: int) -> None:
    count = await tx.value("SELECT count(*) FROM event_types WHERE project_id = :p", p=project_id)
    if int(count) + more > MAX_PER_PROJECT:
        raise ValidationError(f"a project holds at most {MAX_PER_PROJECT} event types")


class EventTypeStore:
    """A project's event types, in the ``event_types`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_event_type(self, event_type: EventType) -> None:
        async def run(tx: Tx) -> None:
            await tx.lock([_lock(event_type.project_id)])
            if await tx.value(
                "SELECT 1 FROM event_types WHERE project_id = :p AND name = :name",
                p=event_type.project_id,
                name=event_type.name,
            ):
                raise ConflictError(f"an event type named {event_type.name!r} already exists")
            await _room_for(tx, event_type.project_id, 1)
            await tx.run(EVENT_TYPE.insert, **EVENT_TYPE.args(event_type))

        await self.db.write(run)

    async def get_event_type(self, project_id: str, event_type_id: str) -> EventType | None:
        async def run(tx: Tx) -> EventType | None:
            row = await tx.row(
                f"SELECT {EVENT_TYPE.select} FROM event_types WHERE id = :id AND project_id = :p",
                id=event_type_id,
                p=project_id,
            )
            return None if row is None else _load(row)

        return await self.db.read(run)

    async def find_event_type(self, project_id: str, name: str) -> EventType | None:
        async def run(tx: Tx) -> EventType | None:
            row = await tx.row(_BY_NAME, p=project_id, name=name)
            return None if row is None else _load(row)

        return await self.db.read(run)

    async def list_event_types(
        self, project_id: str, category: str | None, page: PageRequest
    ) -> Page[EventType]:
        where = ["project_id = :project"]
        args: dict[str, Any] = {"project": project_id}
        if category:
            where.append("category = :category")
            args["category"] = category
        return await self.db.read(lambda tx: paged(tx, EVENT_TYPE, where, args, page))

    async def update_event_type(self, event_type: EventType) -> None:
        async def run(tx: Tx) -> None:
            await tx.lock([_lock(event_type.project_id)])
            changed = await tx.run(
                EVENT_TYPE.update(where="id = :id AND project_id = :project_id"),
                **EVENT_TYPE.args(event_type),
            )
            if not changed:
                raise NotFoundError("Resource not found")

        await self.db.write(run)

    async def import_event_types(
        self,
        project_id: str,
        entries: Sequence[EventTypeFields],
        new_id: Callable[[], str],
        now_us: int,
    ) -> list[tuple[EventType, Outcome]]:
        async def run(tx: Tx) -> list[tuple[EventType, Outcome]]:
            await tx.lock([_lock(project_id)])
            rows = await tx.rows(
                f"SELECT {EVENT_TYPE.select} FROM event_types "
                "WHERE project_id = :p AND name = ANY(:names)",
                p=project_id,
                names=[e.name for e in entries],
            )
            existing = {et.name: et for et in EVENT_TYPE.all(rows)}
            planned = plan_import(project_id, list(entries), existing, new_id, now_us)
            created = [et for et, outcome in planned if outcome is Outcome.CREATED]
            if created:
                await _room_for(tx, project_id, len(created))
            for et, outcome in planned:
                if outcome is Outcome.CREATED:
                    await tx.run(EVENT_TYPE.insert, **EVENT_TYPE.args(et))
                elif outcome is Outcome.UPDATED:
                    await tx.run(
                        EVENT_TYPE.update(where="id = :id AND project_id = :project_id"),
                        **EVENT_TYPE.args(et),
                    )
            return planned

        return await self.db.write(run)

    async def delete_event_types(self, project_id: str) -> int:
        async def run(tx: Tx) -> int:
            await tx.lock([_lock(project_id)])
            return await tx.run("DELETE FROM event_types WHERE project_id = :p", p=project_id)

        return await self.db.write(run)
