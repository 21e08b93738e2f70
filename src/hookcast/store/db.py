"""The narrow waist between the store's one implementation and its two drivers.

:mod:`hookcast.store.records` and the queues speak to a :class:`Tx` (one transaction, or
one consistent read), in the neutral SQL of :mod:`hookcast.store.sql`. Each dialect's
driver (:mod:`hookcast.store.sqlite`, :mod:`hookcast.store.postgres`) provides a
:class:`Database` that runs a transaction function and hands it its own :class:`Tx`.

A transaction function is an ``async def`` so that PostgreSQL (asyncpg) can await each
round trip. SQLite's driver is synchronous and never suspends: it runs the same coroutine
to its end in one step on the thread that owns the connection (:func:`drive`), so a
whole transaction costs one hop (or none) whatever its number of statements.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Protocol, TypeVar

from sqlalchemy import Table

from hookcast.store.sql import Dialect

T = TypeVar("T")
Row = Sequence[Any]


class Tx(Protocol):
    dialect: Dialect

    async def rows(self, sql: str, **args: Any) -> list[Row]: ...
    async def row(self, sql: str, **args: Any) -> Row | None: ...
    async def value(self, sql: str, **args: Any) -> Any: ...
    async def run(self, sql: str, **args: Any) -> int:
        """Execute; the number of rows changed."""
        ...

    async def insert(
        self, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Insert many rows at once (one statement on PostgreSQL)."""
        ...

    async def lock(self, names: Iterable[str]) -> None:
        """Hold these names until the transaction ends (PostgreSQL: advisory locks, taken
        in a fixed order; SQLite: its writers already take turns)."""
        ...

    def notify(self) -> None:
        """Wake workers in other processes once this transaction commits."""
        ...


Work = Callable[[Tx], Coroutine[Any, Any, T]]


class Database(Protocol):
    dialect: Dialect

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def write(self, work: Work[T]) -> T:
        """Run *work* in one transaction (committed, or rolled back when it raises)."""
        ...

    async def read(self, work: Work[T]) -> T:
        """Run *work* on a consistent snapshot, writing nothing."""
        ...

    async def data_version(self) -> int:
        """A number that changes when another process commits new work."""
        ...


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (every await is on a synchronous driver) to its
    end, here and now."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a SQLite transaction awaited something other than the database")
