"""An event's stored status, decided once for both stores."""

from __future__ import annotations

import pytest

from hookcast.domain.models import EventKind, EventStatus
from hookcast.domain.routing import initial_event_status


@pytest.mark.parametrize(
    ("kind", "duplicate", "routed", "expected"),
    [
        (EventKind.SINGLE, False, True, (EventStatus.SUCCESS, "", False)),
        (EventKind.FANOUT, False, False, (EventStatus.FAILURE, "no subscription", False)),
        (EventKind.BROADCAST, False, False, (EventStatus.PENDING, "", True)),
        (EventKind.BROADCAST, True, False, (EventStatus.SUCCESS, "duplicate", False)),
        (EventKind.DYNAMIC, True, True, (EventStatus.SUCCESS, "duplicate", False)),
    ],
)
def test_initial_event_status(
    kind: EventKind, duplicate: bool, routed: bool, expected: tuple[EventStatus, str, bool]
) -> None:
    status, reason, fan_out = initial_event_status(kind, duplicate=duplicate, routed=routed)
    assert (status, fan_out) == (expected[0], expected[2])
    assert reason.startswith(expected[1])
