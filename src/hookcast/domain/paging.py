"""Convoy's cursor pagination, as pure values.

A page is keyset-ordered by id (ULIDs sort by creation time). ``next_page_cursor`` is the
id of the first item of the next page (inclusive), ``prev_page_cursor`` the id of the
first item of this page.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 1000


class Direction(enum.StrEnum):
    NEXT = "next"
    PREV = "prev"


@dataclass(frozen=True, slots=True)
class PageRequest:
    per_page: int = DEFAULT_PER_PAGE
    direction: Direction = Direction.NEXT
    next_cursor: str | None = None
    prev_cursor: str | None = None
    descending: bool = True


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    per_page: int
    has_next_page: bool
    has_prev_page: bool
    next_page_cursor: str
    prev_page_cursor: str
