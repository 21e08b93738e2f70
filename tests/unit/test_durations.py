from __future__ import annotations

import pytest

from hookcast.domain.durations import parse_duration
from hookcast.domain.errors import ValidationError


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (10, 10.0),
        ("10", 10.0),
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("2h", 7200.0),
        ("500ms", 0.5),
        ("1.5s", 1.5),
    ],
)
def test_parses_seconds_and_go_durations(value: str | int, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "soon", "10x", "s10", "1m 30s", -1, True])
def test_rejects_junk(value: str | int) -> None:
    with pytest.raises(ValidationError):
        parse_duration(value)
