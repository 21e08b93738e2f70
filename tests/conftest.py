from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support import Gateway, Project, Receiver, make_settings


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(make_settings(str(tmp_path / "hookcast.db")))
    yield gw
    gw.stop()


@pytest.fixture
def project(gateway: Gateway) -> Project:
    return gateway.create_project("test")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()
