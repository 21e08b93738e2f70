"""Every configurable number has both bounds, enforced by the schema and tested at its
edges (issue 12: no project can hurt another).

* a structural walk fails when any int/float field of the project config, the breaker
  config, a request body or the process settings lacks a lower or an upper bound;
* through the real API, each bound of each project-config and endpoint number is
  accepted, and one step beyond it gets 400 and changes nothing;
* at the edges the gateway still behaves: retention at its maximum (or a stale row far
  beyond it) does not stop the purge of other projects, and activating an endpoint at the
  slowest and fastest recovery rate answers 202.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import sqlite3
import time
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import annotated_types
import orjson
import pydantic
import pytest
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from hookcast import bootstrap
from hookcast.api import schemas
from hookcast.api.routes.endpoints import DEFAULT_TIMEOUT_S
from hookcast.delivery.retention import RetentionRunner, retention_cutoff_us
from hookcast.domain.breaker import BreakerConfig
from hookcast.domain.config import MAX_INT32, ProjectConfig
from hookcast.domain.ports import Operations
from hookcast.settings import Settings
from support import Gateway, Project, Receiver, make_settings, wait_until

# --- the structural walk ------------------------------------------------------------


def _arms(annotation: Any) -> list[Any]:
    """The types an annotation accepts: Optional, unions and Annotated unwrapped."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _arms(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [arm for arg in typing.get_args(annotation) for arm in _arms(arg)]
    return [annotation]


def _is_number(annotation: Any) -> bool:
    return any(arm in (int, float) for arm in _arms(annotation))  # bool is not a number


def _is_float(annotation: Any) -> bool:
    return float in _arms(annotation)


def _nested_models(annotation: Any) -> list[type[pydantic.BaseModel]]:
    found: list[type[pydantic.BaseModel]] = []
    for arm in _arms(annotation):
        if inspect.isclass(arm) and issubclass(arm, pydantic.BaseModel):
            found.append(arm)
        for arg in typing.get_args(arm):  # list[Model], dict[str, Model]
            found.extend(_nested_models(arg))
    return found


def _bounds(info: FieldInfo) -> tuple[float | None, float | None]:
    low: float | None = None
    high: float | None = None
    for m in info.metadata:
        if isinstance(m, annotated_types.Ge):
            low = cast(float, m.ge)
        elif isinstance(m, annotated_types.Gt):
            low = cast(float, m.gt)
        elif isinstance(m, annotated_types.Le):
            high = cast(float, m.le)
        elif isinstance(m, annotated_types.Lt):
            high = cast(float, m.lt)
    return low, high


def _finite_only(info: FieldInfo) -> bool:
    return any(getattr(m, "allow_inf_nan", None) is False for m in info.metadata)


def numeric_fields(
    model: type[pydantic.BaseModel], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], FieldInfo]]:
    """Every int/float field of *model* and of the models nested in it, by path."""
    for name, info in model.model_fields.items():
        path = (*prefix, name)
        if _is_number(info.annotation):
            yield path, info
        for nested in _nested_models(info.annotation):
            yield from numeric_fields(nested, path)


def _body_models() -> list[type[pydantic.BaseModel]]:
    return [
        obj
        for obj in vars(schemas).values()
        if inspect.isclass(obj)
        and issubclass(obj, pydantic.BaseModel)
        and obj.__module__ == schemas.__name__
    ]


CHECKED_MODELS: list[type[pydantic.BaseModel]] = [
    ProjectConfig,
    BreakerConfig,
    Settings,
    *_body_models(),
]


def test_the_walk_sees_the_models_it_must_check() -> None:
    names = {m.__name__ for m in CHECKED_MODELS}
    assert {"EndpointBody", "RetryConfigBody", "ApiKeyBody", "ExpireSecretBody"} <= names
    paths = {p for p, _ in numeric_fields(ProjectConfig)}
    assert ("circuit_breaker", "half_open_probes") in paths  # nested models are walked
    assert ("strategy", "retry_count") in paths
    assert not _is_number(bool) and not _is_number(bool | None)


@pytest.mark.parametrize("model", CHECKED_MODELS, ids=lambda m: m.__name__)
def test_every_number_has_a_lower_and_an_upper_bound(model: type[pydantic.BaseModel]) -> None:
    unbounded, infinite = [], []
    for path, info in numeric_fields(model):
        low, high = _bounds(info)
        if low is None or high is None:
            unbounded.append(".".join(path))
        if _is_float(info.annotation) and not _finite_only(info):
            infinite.append(".".join(path))
    assert not unbounded, f"{model.__name__}: numbers without both bounds: {unbounded}"
    assert not infinite, f"{model.__name__}: floats without allow_inf_nan=False: {infinite}"


@pytest.mark.parametrize("model", CHECKED_MODELS, ids=lambda m: m.__name__)
def test_every_default_is_within_its_bounds(model: type[pydantic.BaseModel]) -> None:
    """Defaults are not validated by pydantic: check them against the bounds here."""
    for path, info in numeric_fields(model):
        if info.default is None or info.default is PydanticUndefined:
            continue
        low, high = _bounds(info)
        assert low is not None and high is not None
        assert low <= info.default <= high, f"{'.'.join(path)}: default {info.default}"


# --- the project config through the API ---------------------------------------------

#: every number of a project's config, with the bounds the API must accept
PROJECT_BOUNDS: dict[tuple[str, ...], tuple[float, float]] = {
    ("strategy", "duration"): (1, 86_400),
    ("strategy", "retry_count"): (1, 100),
    ("strategy", "max_retry_seconds"): (1, 7 * 86_400),
    ("ratelimit", "count"): (0, MAX_INT32),
    ("ratelimit", "duration"): (0, MAX_INT32),
    ("circuit_breaker", "failure_threshold"): (1, 100),
    ("circuit_breaker", "minimum_request_count"): (1, 1_000_000),
    ("circuit_breaker", "observability_window_s"): (1, 86_400),
    ("circuit_breaker", "error_timeout_s"): (1, 86_400),
    ("circuit_breaker", "half_open_probes"): (1, 1_000),
    ("circuit_breaker", "success_threshold"): (1, 1_000),
    ("circuit_breaker", "disable_after_trips"): (0, 1_000),
    ("circuit_breaker", "max_error_timeout_s"): (1, 7 * 86_400),
    ("max_payload_read_size",): (1, 100 * 1_048_576),
    ("broadcast_rate",): (0, 1_000_000),
    ("retention_hours",): (0, 87_600),
    ("recovery_rate",): (0.01, 100_000.0),
}


def test_the_edge_table_covers_every_project_number() -> None:
    """A new number in the project config needs its edges listed (and so tested) here."""
    fields = dict(numeric_fields(ProjectConfig))
    assert set(fields) == set(PROJECT_BOUNDS)
    for path, (low, high) in PROJECT_BOUNDS.items():
        assert _bounds(fields[path]) == (low, high), path


def _beyond(value: float, direction: int, is_float: bool) -> float:
    """The nearest value past *value* (a bound) in *direction* (-1 below, +1 above)."""
    if is_float:
        return math.nextafter(value, direction * math.inf)
    return int(value) + direction


def _nest(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    doc: Any = value
    for part in reversed(path):
        doc = {part: doc}
    return cast(dict[str, Any], doc)


def _dig(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


@pytest.fixture(scope="module")
def shared_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = Gateway(make_settings(str(tmp_path_factory.mktemp("bounds") / "bounds.db")))
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def shared_project(shared_gateway: Gateway) -> Project:
    return shared_gateway.create_project("bounds")


def _project_config(gateway: Gateway, project_id: str) -> dict[str, Any]:
    r = gateway.admin("GET", f"/api/v1/projects/{project_id}")
    assert r.status_code == 200, r.text
    return cast(dict[str, Any], r.json()["data"]["config"])


def _project_count(gateway: Gateway) -> int:
    r = gateway.admin("GET", "/api/v1/projects")
    assert r.status_code == 200, r.text
    return len(r.json()["data"])


EDGES = [(path, side) for path in PROJECT_BOUNDS for side in ("lower", "upper")]


@pytest.mark.parametrize(("path", "side"), EDGES, ids=lambda v: ".".join(v) if v else v)
def test_project_config_bound_is_accepted_and_one_step_beyond_is_refused(
    shared_gateway: Gateway, shared_project: Project, path: tuple[str, ...], side: str
) -> None:
    gw, pid = shared_gateway, shared_project.id
    low, high = PROJECT_BOUNDS[path]
    is_float = isinstance(high, float)
    bound, direction = (low, -1) if side == "lower" else (high, +1)
    where = f"/api/v1/projects/{pid}"

    # the bound itself: accepted by an update and by a create, and read back as sent
    r = gw.admin("PUT", where, json={"config": _nest(path, bound)})
    assert r.status_code == 202, r.text
    assert _dig(r.json()["data"]["config"], path) == bound
    before = _project_config(gw, pid)
    assert _dig(before, path) == bound
    r = gw.admin("POST", "/api/v1/projects", json={"name": "edge", "config": _nest(path, bound)})
    assert r.status_code == 201, r.text
    assert _dig(_project_config(gw, r.json()["data"]["project"]["uid"]), path) == bound

    # one step beyond: 400 naming the field, and nothing changes
    past = _beyond(bound, direction, is_float)
    r = gw.admin("PUT", where, json={"config": _nest(path, past)})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["status"] is False
    assert ".".join(path) in body["message"], body["message"]
    assert "invalid project config" in body["message"]
    assert _project_config(gw, pid) == before
    count = _project_count(gw)
    r = gw.admin("POST", "/api/v1/projects", json={"name": "past", "config": _nest(path, past)})
    assert r.status_code == 400, r.text
    assert ".".join(path) in r.json()["message"]
    assert _project_count(gw) == count


@pytest.mark.parametrize("value", ["inf", "nan", "1e400", None, "fast", [1]])
def test_recovery_rate_must_be_a_finite_number(
    shared_gateway: Gateway, shared_project: Project, value: Any
) -> None:
    before = _project_config(shared_gateway, shared_project.id)
    raw = b'{"config": {"recovery_rate": %s}}' % (
        orjson.dumps(value) if value not in ("inf", "nan", "1e400") else value.encode()
    )
    r = shared_gateway.admin(
        "PUT",
        f"/api/v1/projects/{shared_project.id}",
        data=raw,
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert r.json()["status"] is False
    assert _project_config(shared_gateway, shared_project.id) == before


# --- endpoint bodies through the API ------------------------------------------------

ENDPOINT_BOUNDS: dict[str, tuple[int, int]] = {
    "http_timeout": (0, schemas.MAX_TIMEOUT_S),
    "rate_limit": (0, MAX_INT32),
    "rate_limit_duration": (0, MAX_INT32),
    "max_in_flight": (0, 10_000),
}


def test_the_edge_table_covers_every_endpoint_number() -> None:
    fields = dict(numeric_fields(schemas.EndpointBody))
    assert set(fields) == {(name,) for name in ENDPOINT_BOUNDS}
    for name, bounds in ENDPOINT_BOUNDS.items():
        assert _bounds(fields[(name,)]) == bounds, name


def _created(field: str, value: int) -> int:
    """What a new endpoint holds after *value* was sent: a 0 timeout means the default."""
    return DEFAULT_TIMEOUT_S if field == "http_timeout" and value == 0 else value


ENDPOINT_EDGES = [(name, side) for name in ENDPOINT_BOUNDS for side in ("lower", "upper")]


@pytest.mark.parametrize(("field", "side"), ENDPOINT_EDGES)
def test_endpoint_bound_is_accepted_and_one_step_beyond_is_refused(
    shared_project: Project, field: str, side: str
) -> None:
    p = shared_project
    low, high = ENDPOINT_BOUNDS[field]
    bound, past = (low, low - 1) if side == "lower" else (high, high + 1)
    url = "http://127.0.0.1:9/edge"

    created = p.endpoint(url, **{field: bound})
    assert created[field] == _created(field, bound)
    assert p.ok("GET", f"/endpoints/{created['uid']}")[field] == created[field]

    ep = p.endpoint(url)
    updated = p.ok("PUT", f"/endpoints/{ep['uid']}", 202, json={"url": url, field: bound})
    expected = ep[field] if field == "http_timeout" and bound == 0 else bound  # 0 = keep
    assert updated[field] == expected
    before = p.ok("GET", f"/endpoints/{ep['uid']}")

    r = p.call("PUT", f"/endpoints/{ep['uid']}", json={"url": url, field: past})
    assert r.status_code == 400, r.text
    assert r.json()["status"] is False
    assert field in r.json()["message"]
    assert p.ok("GET", f"/endpoints/{ep['uid']}") == before

    count = len(p.ok("GET", "/endpoints", params={"perPage": 1000})["content"])
    r = p.call("POST", "/endpoints", json={"url": url, "name": "past", field: past})
    assert r.status_code == 400, r.text
    assert field in r.json()["message"]
    assert len(p.ok("GET", "/endpoints", params={"perPage": 1000})["content"]) == count


# --- other request bodies (no gateway needed) ----------------------------------------


@pytest.mark.parametrize(
    ("model", "field", "good", "bad"),
    [
        (schemas.RetryConfigBody, "duration", [1, "1s", 86_400, "24h"], [0, "0.5s", 86_401, "25h"]),
        (schemas.RetryConfigBody, "interval_seconds", [1, 86_400], [0, 86_401]),
        (schemas.RetryConfigBody, "retry_count", [1, 100], [0, 101]),
        (schemas.ExpireSecretBody, "expiration", [0, 30 * 86_400], [-1, 30 * 86_400 + 1]),
        (
            schemas.ApiKeyBody,
            "expires_in_days",
            [math.nextafter(0, 1), 3650],
            [0, math.nextafter(3650, math.inf), math.inf, math.nan],
        ),
    ],
)
def test_body_number_edges(
    model: type[pydantic.BaseModel], field: str, good: list[Any], bad: list[Any]
) -> None:
    for value in good:
        model.model_validate({field: value})
    for value in bad:
        with pytest.raises(pydantic.ValidationError):
            model.model_validate({field: value})


# --- settings -------------------------------------------------------------------------

SETTINGS_BOUNDS: dict[str, tuple[float, float]] = {
    "port": (0, 65_535),
    "max_body_bytes": (1024, 256 * 1_048_576),
    "api_rate_limit": (0, 1_000_000),
    "ingest_batch_max": (1, 10_000),
    "ingest_batch_wait_ms": (0.0, 1_000.0),
    "worker_concurrency": (1, 10_000),
    "claim_batch": (1, 10_000),
    "poll_interval_s": (0.001, 300.0),
    "lease_margin_s": (0.1, 3_600.0),
    "completion_flush_ms": (0.0, 1_000.0),
    "response_capture_bytes": (0, 1_048_576),
    "response_read_bytes": (0, 16 * 1_048_576),
    "shutdown_grace_s": (0.0, 3_600.0),
    "endpoint_max_in_flight": (1, 10_000),
    "pg_pool_max": (2, 500),
    "probe_base_s": (0.1, 86_400.0),
    "probe_max_s": (0.1, 7 * 86_400.0),
    "retention_interval_s": (1.0, 86_400.0),
    "fanout_chunk": (1, 20_000),
    "metrics_port": (0, 65_535),
    "meta_event_attempts": (1, 10),
    "meta_event_backoff_s": (0.0, 3_600.0),
}


def test_the_settings_table_covers_every_number() -> None:
    fields = {path[0]: info for path, info in numeric_fields(Settings)}
    assert set(fields) == set(SETTINGS_BOUNDS)
    for name, bounds in SETTINGS_BOUNDS.items():
        assert _bounds(fields[name]) == bounds, name


@pytest.mark.parametrize("name", sorted(SETTINGS_BOUNDS))
def test_settings_at_their_bounds_construct_and_beyond_raise(name: str) -> None:
    low, high = SETTINGS_BOUNDS[name]
    is_float = isinstance(high, float)
    for value in (low, high):
        assert getattr(Settings(**{name: value}), name) == value
    for value in (_beyond(low, -1, is_float), _beyond(high, +1, is_float)):
        with pytest.raises(pydantic.ValidationError):
            Settings(**{name: value})
    if is_float:
        for value in (math.inf, -math.inf, math.nan):
            with pytest.raises(pydantic.ValidationError):
                Settings(**{name: value})


def test_settings_from_the_environment_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKCAST_WORKER_CONCURRENCY", "0")
    with pytest.raises(pydantic.ValidationError, match="worker_concurrency"):
        Settings()
    monkeypatch.setenv("HOOKCAST_WORKER_CONCURRENCY", "10000")
    monkeypatch.setenv("HOOKCAST_POLL_INTERVAL_S", "inf")
    with pytest.raises(pydantic.ValidationError, match="poll_interval_s"):
        Settings()
    monkeypatch.setenv("HOOKCAST_POLL_INTERVAL_S", "300")
    assert Settings().worker_concurrency == 10_000


# --- stale rows: stored configs from before the bounds ----------------------------------


def test_a_stored_config_beyond_the_bounds_is_read_into_them() -> None:
    """Rows written under looser bounds still load (numbers moved to the bound they
    crossed); the same values from an API caller are refused."""
    stale = {
        "retention_hours": 10**12,
        "recovery_rate": 1e-300,
        "broadcast_rate": -5,
        "max_payload_read_size": 10**15,
        "circuit_breaker": {"half_open_probes": 10**9, "minimum_request_count": 0},
        "ratelimit": {"count": 2**40},
        "strategy": {"retry_count": 1000},
    }
    cfg = ProjectConfig.model_validate_json(orjson.dumps(stale))
    assert cfg.retention_hours == 87_600
    assert cfg.recovery_rate == 0.01
    assert cfg.broadcast_rate == 0
    assert cfg.max_payload_read_size == 100 * 1_048_576
    assert cfg.circuit_breaker.half_open_probes == 1_000
    assert cfg.circuit_breaker.minimum_request_count == 1
    assert cfg.ratelimit.count == MAX_INT32
    assert cfg.strategy.retry_count == 100
    assert ProjectConfig.model_validate_json(cfg.model_dump_json()) == cfg
    with pytest.raises(pydantic.ValidationError):
        ProjectConfig.model_validate(stale)
    # anything else wrong in a row is still an error, not silently replaced
    with pytest.raises(pydantic.ValidationError):
        ProjectConfig.model_validate_json(b'{"strategy": {"type": "sideways"}}')


def _write_stale_config(db_path: str, project_id: str, **values: Any) -> None:
    """What a row written before the bounds may hold (bypassing the API on purpose)."""
    with sqlite3.connect(db_path) as db:
        (text,) = db.execute("SELECT config FROM projects WHERE id = ?", (project_id,)).fetchone()
        doc = {**orjson.loads(text), **values}
        db.execute(
            "UPDATE projects SET config = ?, updated_at_us = updated_at_us + 1 WHERE id = ?",
            (orjson.dumps(doc).decode(), project_id),
        )
    db.close()


def _db_path(gateway: Gateway) -> str:
    return gateway.settings.database_url.removeprefix("sqlite:///")


# --- behaviour at the edges: retention ---------------------------------------------


class _PurgeFailsFor:
    """A store whose purge fails for one project, listed first."""

    def __init__(self, store: Operations, bad: str, hours: int | None = None) -> None:
        self._store, self._bad, self._hours = store, bad, hours
        self.purged: list[tuple[str, int]] = []

    async def retention_policies(self) -> list[tuple[str, int]]:
        policies = await self._store.retention_policies()
        bad = [(pid, self._hours or h) for pid, h in policies if pid == self._bad]
        return bad + [(pid, h) for pid, h in policies if pid != self._bad]

    async def purge_before(self, project_id: str, cutoff_us: int, limit: int) -> int:
        self.purged.append((project_id, cutoff_us))
        if project_id == self._bad and self._hours is None:
            raise RuntimeError("this project's purge fails")
        return await self._store.purge_before(project_id, cutoff_us, limit)

    async def maintain_partitions(
        self, now_us: int, drop_before_us: int | None
    ) -> tuple[list[str], list[str]]:
        return await self._store.maintain_partitions(now_us, drop_before_us)


def _sweep(gateway: Gateway, hours_later: float, wrap: Any = None) -> int:
    async def run() -> int:
        store = bootstrap.build_store(gateway.settings)
        await store.open()
        try:
            runner_store = store.records if wrap is None else wrap(store.records)
            now = time.time_ns() // 1000 + int(hours_later * 3_600_000_000)
            return await RetentionRunner(cast(Operations, runner_store), 60).pass_once(now_us=now)
        finally:
            await store.close()

    return asyncio.run(run())


@pytest.fixture
def two_projects(gateway: Gateway, receiver: Receiver) -> tuple[Project, Project]:
    """A project kept for the longest retention and one kept for an hour, each with a
    delivered event."""
    keep = gateway.create_project("keep", {"retention_hours": 87_600})
    short = gateway.create_project("short", {"retention_hours": 1})
    for p in (keep, short):
        ep = p.endpoint(receiver.url + f"/{p.id}")
        p.publish(ep["uid"])
        assert _delivered(p, 1)
    return keep, short


def _delivered(p: Project, count: int) -> bool:
    return wait_until(lambda: [d["status"] for d in p.deliveries()] == ["Success"] * count, 10)


def test_retention_at_its_maximum_keeps_that_project_and_purges_the_other(
    gateway: Gateway, two_projects: tuple[Project, Project]
) -> None:
    keep, short = two_projects
    assert _sweep(gateway, 2) >= 3  # the short project's event, delivery and attempt
    assert short.deliveries() == [] and short.ok("GET", "/events")["content"] == []
    assert len(keep.deliveries()) == 1 and len(keep.ok("GET", "/events")["content"]) == 1


def test_one_projects_failed_purge_does_not_stop_the_others(
    gateway: Gateway, two_projects: tuple[Project, Project], caplog: pytest.LogCaptureFixture
) -> None:
    keep, short = two_projects
    wrappers: list[_PurgeFailsFor] = []

    def wrap(store: Operations) -> _PurgeFailsFor:
        wrappers.append(_PurgeFailsFor(store, keep.id))
        return wrappers[-1]

    with caplog.at_level("ERROR", logger="hookcast.retention"):
        assert _sweep(gateway, 2, wrap) >= 3
    assert [pid for pid, _ in wrappers[0].purged][:1] == [keep.id]  # it went first, and failed
    assert short.deliveries() == []
    failed = [r for r in caplog.records if r.getMessage() == "retention.project_failed"]
    assert failed and getattr(failed[0], "project_id", None) == keep.id


def test_a_retention_beyond_every_bound_gives_cutoff_zero_not_an_overflow(
    gateway: Gateway, two_projects: tuple[Project, Project]
) -> None:
    keep, short = two_projects
    assert retention_cutoff_us(time.time_ns() // 1000, 10**12) == 0
    assert retention_cutoff_us(10**15, 0) == 10**15
    wrappers: list[_PurgeFailsFor] = []

    def wrap(store: Operations) -> _PurgeFailsFor:  # a store that hands out the raw hours
        wrappers.append(_PurgeFailsFor(store, keep.id, hours=10**12))
        return wrappers[-1]

    assert _sweep(gateway, 2, wrap) >= 3
    assert (keep.id, 0) in wrappers[0].purged
    assert len(keep.deliveries()) == 1
    assert short.deliveries() == []


def test_a_stale_row_beyond_the_bounds_breaks_neither_its_project_nor_the_others(
    gateway: Gateway, two_projects: tuple[Project, Project]
) -> None:
    keep, short = two_projects
    _write_stale_config(_db_path(gateway), keep.id, retention_hours=10**12, recovery_rate=1e-300)
    time.sleep(1.1)  # the API caches a project for a second
    config = keep.ok("GET", "")["config"]
    assert config["retention_hours"] == 87_600 and config["recovery_rate"] == 0.01
    assert _sweep(gateway, 2) >= 3
    assert short.deliveries() == []
    assert len(keep.deliveries()) == 1
    ep = keep.ok("GET", "/endpoints")["content"][0]
    keep.ok("PUT", f"/endpoints/{ep['uid']}", 202, json={"is_disabled": True})
    keep.ok("POST", f"/endpoints/{ep['uid']}/activate", 202)


# --- behaviour at the edges: recovery rate -----------------------------------------


@pytest.mark.parametrize("rate", [0.01, 100_000.0])
def test_activating_an_endpoint_at_the_recovery_rate_bounds(
    tmp_path: Path, receiver: Receiver, rate: float
) -> None:
    gateway = Gateway(make_settings(str(tmp_path / "recovery.db")))
    try:
        project = gateway.create_project("recovery", {"recovery_rate": rate})
        ep = project.endpoint(receiver.url + "/back")
        project.ok("PUT", f"/endpoints/{ep['uid']}", 202, json={"is_disabled": True})
        for _ in range(3):
            project.publish(ep["uid"])
        assert wait_until(lambda: [d["held"] for d in project.deliveries()] == [True] * 3, 10)

        activated = project.ok("POST", f"/endpoints/{ep['uid']}/activate", 202)
        assert activated["status"] == "active"
        assert not any(d["held"] for d in project.deliveries())
        if rate == 100_000.0:  # 10 µs apart: all of them at once
            assert _delivered(project, 3)
        else:  # one per 100 s: the first now, the others 100 s and 200 s later
            assert len(receiver.wait_for("/back", 1)) == 1
            waiting = [d for d in project.deliveries() if d["status"] == "Scheduled"]
            assert len(waiting) == 2
            assert len({d["metadata"]["next_send_time"] for d in waiting}) == 2
        assert gateway.admin("GET", "/health").status_code == 200
    finally:
        gateway.stop()
