"""SQL written once, for both dialects.

Statements are written in one neutral form and compiled, once per text and dialect, into
what each driver runs:

* parameters are named, ``:name`` (SQLite takes these as they are; PostgreSQL gets ``$n``);
* ``column = ANY(:names)`` takes a Python list: PostgreSQL as it is, SQLite as
  ``column IN (SELECT value FROM json_each(:names))`` with the list sent as JSON;
* ``{lock}`` is ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (a row another transaction holds
  is skipped) and nothing on SQLite, whose writers take turns (``BEGIN IMMEDIATE``);
* ``{row_lock}`` is ``FOR UPDATE`` on PostgreSQL and nothing on SQLite.

Everything else is SQL both understand (SQLite 3.35 and later: ``RETURNING``, ``UPDATE …
FROM``, ``ON CONFLICT DO NOTHING``, ``TRUE``/``FALSE``, window functions).
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson


class Dialect(enum.StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"


_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_ANY = re.compile(r"=\s*ANY\(:([A-Za-z_]\w*)\)")
_TOKENS = {
    Dialect.SQLITE: {"lock": "", "row_lock": ""},
    Dialect.POSTGRES: {"lock": "FOR UPDATE SKIP LOCKED", "row_lock": "FOR UPDATE"},
}


@dataclass(frozen=True, slots=True)
class Compiled:
    text: str
    #: PostgreSQL: the parameter names in ``$n`` order
    order: tuple[str, ...]
    #: SQLite: the parameters that take a list (sent as JSON)
    lists: frozenset[str]
    positional: bool

    def args(self, values: Mapping[str, Any]) -> Any:
        """The driver's arguments for *values*: a positional list (PostgreSQL) or the
        mapping with lists as JSON (SQLite)."""
        if self.positional:
            return [values[name] for name in self.order]
        if self.lists:
            return {
                k: (orjson.dumps(list(v)).decode() if k in self.lists else v)
                for k, v in values.items()
            }
        return values


@functools.lru_cache(maxsize=4096)
def compile_sql(text: str, dialect: Dialect) -> Compiled:
    for token, replacement in _TOKENS[dialect].items():
        text = text.replace("{" + token + "}", replacement)
    if dialect is Dialect.SQLITE:
        lists = frozenset(_ANY.findall(text))
        text = _ANY.sub(lambda m: f"IN (SELECT value FROM json_each(:{m.group(1)}))", text)
        return Compiled(text, (), lists, positional=False)
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in order:
            order.append(name)
        return f"${order.index(name) + 1}"

    return Compiled(_PARAM.sub(number, text), tuple(order), frozenset(), positional=True)


def placeholders(names: Sequence[str]) -> str:
    """``:a, :b, :c`` for an INSERT's VALUES."""
    return ", ".join(f":{n}" for n in names)
