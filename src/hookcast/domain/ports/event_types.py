"""The event catalog's port: a project's event types (:mod:`hookcast.domain.event_types`),
kept by the store (:mod:`hookcast.store.event_types`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from hookcast.domain.event_types import EventType, EventTypeFields, Outcome
from hookcast.domain.paging import Page, PageRequest


class EventTypeCatalog(Protocol):
    async def create_event_type(self, event_type: EventType) -> None:
        """Add *event_type*: 400 when its project already has one of that name, or has
        :data:`~hookcast.domain.event_types.MAX_PER_PROJECT`."""
        ...

    async def get_event_type(self, project_id: str, event_type_id: str) -> EventType | None: ...

    async def find_event_type(self, project_id: str, name: str) -> EventType | None:
        """The project's entry of that name (what publishing checks ``data`` against)."""
        ...

    async def list_event_types(
        self, project_id: str, category: str | None, page: PageRequest
    ) -> Page[EventType]: ...

    async def update_event_type(self, event_type: EventType) -> None:
        """Write every field of *event_type* (404 when it is gone)."""
        ...

    async def import_event_types(
        self,
        project_id: str,
        entries: Sequence[EventTypeFields],
        new_id: Callable[[], str],
        now_us: int,
    ) -> list[tuple[EventType, Outcome]]:
        """Create or update each entry by name, in one transaction (all or nothing)."""
        ...

    async def delete_event_types(self, project_id: str) -> int:
        """Remove a deleted project's catalog."""
        ...
