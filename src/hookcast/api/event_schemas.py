"""Publishing checks ``data`` against the event type's schema, when the project asks for it
(``validate_event_schemas``).

The compiled schema of each (project, event type) is kept in this process for a few
seconds (:data:`TTL_S`), and so is the absence of one (a type without a catalog entry or
without a schema), so a steady stream of events costs one catalog read per type every few
seconds, not one per event. A schema is compiled once: a refresh that finds the entry
unchanged (same ``updated_at``) keeps the compiled one. A change made through this
process's API takes effect at once (:meth:`SchemaGate.forget`); one made through another
API process within :data:`TTL_S`.

With the setting off (the default) :meth:`SchemaGate.check` returns at its first line: no
lookup, no store read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hookcast.domain.errors import ValidationError
from hookcast.domain.event_types import CompiledSchema, compile_schema
from hookcast.domain.models import Project
from hookcast.domain.ports import NewEvent
from hookcast.domain.ports.event_types import EventTypeCatalog

#: how long a compiled schema (or the absence of one) is trusted without a catalog read
TTL_S = 5.0
#: (project, event type) pairs kept; past this the cache starts over
MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class _Entry:
    until: float
    #: the entry's ``updated_at_us`` (None: no catalog entry)
    version: int | None
    schema: CompiledSchema | None


class SchemaGate:
    def __init__(
        self,
        catalog: EventTypeCatalog | None,
        *,
        ttl_s: float = TTL_S,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._catalog = catalog
        self._ttl_s = ttl_s
        self._max = max_entries
        self._clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}
        #: bumped by every :meth:`forget`: a read begun before it is not cached
        self._epoch = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def check(self, project: Project, event: NewEvent) -> None:
        """400 when the project validates event schemas and *event*'s ``data`` does not
        match its type's schema; the message names the failing place in ``data``."""
        if not project.config.validate_event_schemas or self._catalog is None:
            return
        key = (project.id, event.event_type)
        entry = self._entries.get(key)
        if entry is None or entry.until <= self._clock():
            entry = await self._load(key, entry)
        if entry.schema is None:
            return
        problem = entry.schema.problem(event.parsed)
        if problem is not None:
            what = f"the json_schema of event type {event.event_type!r}"
            raise ValidationError(f"data does not match {what}: {problem}")

    async def _load(self, key: tuple[str, str], old: _Entry | None) -> _Entry:
        assert self._catalog is not None
        epoch = self._epoch
        found = await self._catalog.find_event_type(*key)
        version = None if found is None else found.updated_at_us
        # another request may have compiled this version meanwhile
        old = self._entries.get(key, old)
        if old is not None and old.version == version:
            schema = old.schema
        elif found is None or found.json_schema is None:
            schema = None
        else:
            schema = compile_schema(found.json_schema, f"the json_schema of {found.name!r}")
        entry = _Entry(self._clock() + self._ttl_s, version, schema)
        if epoch == self._epoch:
            if len(self._entries) >= self._max and key not in self._entries:
                self._entries.clear()
            self._entries[key] = entry
        return entry

    def forget(self, project_id: str, names: Iterable[str]) -> None:
        """These event types changed (in this process): read them again on next use."""
        self._epoch += 1
        for name in names:
            self._entries.pop((project_id, name), None)
