"""Go-style duration strings ("10s", "1m30s", "2h", "500ms"), as Convoy accepts them."""

from __future__ import annotations

import re

from hookcast.domain.errors import ValidationError

_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str | int | float) -> float:
    """Seconds in *value*: a number of seconds, or a Go duration string."""
    if isinstance(value, bool):
        raise ValidationError("a duration must be seconds or a string like '10s'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValidationError("a duration must not be negative")
        return float(value)
    text = value.strip()
    if text.isdigit():
        return float(text)
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValidationError(f"{value!r} is not a duration (use seconds or e.g. '10s', '1m30s')")
    return total
