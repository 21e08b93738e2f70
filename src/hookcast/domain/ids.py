"""ULIDs: 26-char Crockford base32, time-sortable, monotonic within one generator.

Cursor pagination relies on ids sorting by creation time, so one generator per process
hands out strictly increasing ids even within one millisecond.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections.abc import Callable

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(_ALPHABET)}
_RANDOM_MAX = (1 << 80) - 1


# two base32 digits per lookup: 13 steps for the 26 characters of a ULID
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]


def _encode(value: int) -> str:
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in range(120, -1, -10)])


def is_ulid(text: str) -> bool:
    """True when *text* is a syntactically valid ULID (upper-case Crockford base32)."""
    return len(text) == 26 and text[0] in "01234567" and all(c in _DECODE for c in text)


def ulid_timestamp_ms(text: str) -> int:
    """The millisecond timestamp carried in the first 10 characters of a ULID."""
    value = 0
    for c in text[:10]:
        value = (value << 5) | _DECODE[c]
    return value


def ulid_floor(ms: int) -> str:
    """The smallest ULID of millisecond *ms*; useful as a time cursor."""
    return _encode(ms << 80)


class UlidGenerator:
    """Monotonic ULID source. Clock and randomness are injectable for tests."""

    def __init__(
        self,
        clock_ms: Callable[[], int] | None = None,
        randbits: Callable[[], int] | None = None,
    ) -> None:
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        # ids need uniqueness, not secrecy: a fast PRNG seeded from the OS per generator
        rng = random.Random(os.urandom(16))
        self._randbits = randbits or (lambda: rng.getrandbits(80))
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_rand = 0

    def new(self) -> str:
        with self._lock:
            ms = self._clock_ms()
            if ms <= self._last_ms:
                ms = self._last_ms
                rand = self._last_rand + 1
                if rand > _RANDOM_MAX:  # pragma: no cover - 2**80 ids in one ms
                    ms += 1
                    rand = self._randbits() >> 1
            else:
                # keep headroom so increments within the millisecond cannot overflow
                rand = self._randbits() >> 1
            self._last_ms, self._last_rand = ms, rand
            return _encode((ms << 80) | rand)


_default = UlidGenerator()


def new_id() -> str:
    """A fresh ULID from the process-wide generator."""
    return _default.new()


def delivery_id(event_id: str, endpoint_id: str) -> str:
    """The id of the one delivery of *event_id* to *endpoint_id*: the event's timestamp
    (so the delivery sorts, and on PostgreSQL is partitioned, with its event) followed by
    80 bits of a hash of the pair. Writing a delivery twice (a broadcast chunk re-run after
    a lost lease, a retried ingest) meets the primary key and is ignored; no unique index
    on ``(event_id, endpoint_id)`` is needed, which a table partitioned by id could not
    have."""
    digest = hashlib.blake2b(f"{event_id}/{endpoint_id}".encode(), digest_size=10).digest()
    return event_id[:10] + _encode(int.from_bytes(digest, "big"))[10:]
