"""GET /metrics: Prometheus text, bounded labels, real numbers from a real gateway."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from hookcast import bootstrap
from hookcast.domain.models import DeliveryStatus
from hookcast.metrics import Metrics, deferral_reason, disable_reason, status_class
from support import ADMIN_KEY, Behaviour, Gateway, Project, Receiver, free_port, make_settings
from support import wait_until as _wait_until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape(base: str) -> Samples:
    r = requests.get(base + "/metrics", timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain")
    return parse(r.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for_value(base: str, name: str, want: float, timeout: float = 10, **labels: str) -> None:
    last: list[float] = []

    def reached() -> bool:
        last[:] = [value(scrape(base), name, **labels)]
        return last[0] >= want

    assert _wait_until(reached, timeout, 0.05), f"{name}{labels} = {last}, want {want}"


# ------------------------------------------------------------------ pure pieces


def test_label_values_are_bounded() -> None:
    assert deferral_reason("endpoint at its concurrency cap") == "concurrency"
    assert deferral_reason("endpoint rate limit") == "rate_limit"
    assert deferral_reason("circuit breaker open") == "circuit_breaker"
    assert deferral_reason("held: the endpoint is disabled") == "endpoint_disabled"
    assert deferral_reason("anything else, e.g. an id 01H…") == "other"
    assert [status_class(s) for s in (200, 302, 404, 503, 101, None, 0, 999)] == [
        *("2xx", "3xx", "4xx", "5xx", "1xx"),
        *("error", "error", "error"),
    ]
    assert [disable_reason(r) for r in ("", "gone", "breaker", "manual", "weird")] == [
        *("manual", "gone", "breaker", "manual", "other"),
    ]


def test_a_fresh_registry_shows_every_fixed_series_at_zero() -> None:
    m = Metrics()
    m.outcome(DeliveryStatus.SUCCESS)
    m.attempt(204, 0.012)
    m.deferred("endpoint rate limit")
    samples = parse(m.render("")[0].decode())
    assert value(samples, "hookcast_deliveries_total", outcome="success") == 1
    assert value(samples, "hookcast_deliveries_total", outcome="failure") == 0
    assert ("hookcast_deliveries_total", (("outcome", "failure"),)) in samples
    assert value(samples, "hookcast_delivery_attempt_duration_seconds_count", status_class="2xx")
    assert value(samples, "hookcast_delivery_deferrals_total", reason="rate_limit") == 1
    assert ("hookcast_delivery_deferrals_total", (("reason", "concurrency"),)) in samples
    assert (
        "hookcast_meta_events_total",
        (("event_type", "broadcast.completed"), ("result", "failed")),
    ) in samples
    assert value(samples, "hookcast_store_up") == 0  # not scraped through a store yet
    assert not any(name.endswith("_created") for name, _ in samples)
    # OpenMetrics is negotiated when asked for
    body, content_type = m.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")


# ------------------------------------------------------------------ a real gateway


def test_ingest_and_delivery_metrics(
    gateway: Gateway, project: Project, receiver: Receiver
) -> None:
    ep = project.endpoint(receiver.url + "/ok", owner_id="acme")
    for i in range(3):
        project.publish(ep["uid"], data={"i": i})
    project.ok(
        "POST",
        "/events/fanout",
        201,
        json={"owner_id": "acme", "event_type": "t", "data": {"fan": True}},
    )
    receiver.wait_for("/ok", 4)
    wait_for_value(gateway.base, "hookcast_deliveries_total", 4, outcome="success")
    s = scrape(gateway.base)
    ingested = "hookcast_events_ingested_total"
    assert value(s, ingested, project_id=project.id, kind="single") == 3
    assert value(s, ingested, project_id=project.id, kind="fanout") == 1
    assert value(s, "hookcast_ingest_batch_size_count") >= 1
    assert value(s, "hookcast_ingest_batch_size_sum") == 4
    attempts = "hookcast_delivery_attempt_duration_seconds_count"
    assert value(s, attempts, status_class="2xx") == 4
    assert value(s, "hookcast_delivery_latency_seconds_count") == 4
    assert value(s, "hookcast_delivery_latency_seconds_sum") > 0
    assert value(s, "hookcast_deliveries_in_flight") == 0
    assert value(s, "hookcast_api_requests_in_flight") == 1  # this scrape
    assert value(s, "hookcast_store_up") == 1
    assert value(s, "hookcast_circuit_breakers", state="closed") == 1
    assert value(s, "process_resident_memory_bytes") > 0
    # no per-event or per-endpoint label anywhere
    labels = {k for _, pairs in s for k, _ in pairs}
    assert not labels & {"event_id", "endpoint_id", "delivery_id", "url"}


def test_throttles_failures_and_disabled_endpoints(tmp_path: Path, receiver: Receiver) -> None:
    gateway = Gateway(make_settings(str(tmp_path / "m.db")))
    try:
        project = gateway.create_project("m", {"strategy": {"retry_count": 1}})
        receiver.behave("/gone", Behaviour(status=410))
        receiver.behave("/fail", Behaviour(status=500))
        gone = project.endpoint(receiver.url + "/gone")
        fail = project.endpoint(receiver.url + "/fail")
        slow = project.endpoint(receiver.url + "/slow", rate_limit=1, rate_limit_duration=60)
        project.publish(gone["uid"])
        project.publish(fail["uid"])
        for _ in range(3):
            project.publish(slow["uid"])
        wait_for_value(gateway.base, "hookcast_deliveries_total", 2, outcome="failure")
        wait_for_value(gateway.base, "hookcast_delivery_deferrals_total", 1, reason="rate_limit")
        s = scrape(gateway.base)
        assert value(s, "hookcast_endpoints_disabled_total", reason="gone") == 1
        assert value(s, "hookcast_endpoints_inactive", reason="gone") == 1
        assert value(s, "hookcast_endpoints_inactive", reason="breaker") == 0
        classes = "hookcast_delivery_attempt_duration_seconds_count"
        assert value(s, classes, status_class="4xx") == 1
        assert value(s, classes, status_class="5xx") == 1
        assert value(s, "hookcast_deliveries_total", outcome="success") == 1  # one of three
        # the throttled two wait for the bucket: scheduled, not lost
        assert value(s, "hookcast_queue_scheduled_deliveries") >= 2
    finally:
        gateway.stop()


def test_broadcast_metrics(gateway: Gateway, project: Project, receiver: Receiver) -> None:
    for i in range(5):
        ep = project.endpoint(f"{receiver.url}/b{i}")
        project.ok(
            "POST",
            "/subscriptions",
            201,
            json={"name": "all", "endpoint_id": ep["uid"], "filter_config": {"event_types": ["*"]}},
        )
    key = project.ok("POST", "/api-keys", 201, json={"name": "b", "broadcast": True})["key"]
    b = Project(gateway, project.id, key)
    b.ok("POST", "/events/broadcast", 201, json={"event_type": "news", "data": {"x": 1}})
    wait_for_value(gateway.base, "hookcast_broadcasts_completed_total", 1)
    s = scrape(gateway.base)
    assert value(s, "hookcast_events_ingested_total", project_id=project.id, kind="broadcast") == 1
    assert value(s, "hookcast_broadcast_deliveries_written_total") == 5
    assert value(s, "hookcast_broadcast_fanout_duration_seconds_count") == 1
    assert value(s, "hookcast_broadcast_fanouts_in_progress") == 0
    assert value(s, "hookcast_deliveries_total", outcome="success") == 5


async def test_queue_depth_and_age_come_from_the_store(tmp_path: Path) -> None:
    """An API-only process (no worker here) still reports the whole queue."""
    settings = make_settings(str(tmp_path / "q.db"))
    bootstrap.run_migrations(settings)
    running = await bootstrap.start(settings, api=True, worker=False)
    base = f"http://{settings.host}:{settings.port}"
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    try:
        async with aiohttp.ClientSession(base_url=base) as http:

            async def call(method: str, path: str, key: str, body: Any = None) -> Any:
                headers = {"Authorization": f"Bearer {key}"}
                async with http.request(method, path, json=body, headers=headers) as r:
                    assert r.status < 300, await r.text()
                    return (await r.json())["data"]

            created = await call("POST", "/api/v1/projects", ADMIN_KEY, {"name": "q"})
            pid, key = created["project"]["uid"], created["api_key"]["key"]
            p = f"/api/v1/projects/{pid}"
            ep = await call("POST", p + "/endpoints", key, {"url": "http://127.0.0.1:9/x"})
            for _ in range(3):
                body = {"endpoint_id": ep["uid"], "event_type": "t", "data": {}}
                await call("POST", p + "/events", key, body)
            await asyncio.sleep(0.05)

            async def metrics() -> Samples:
                async with http.get("/metrics", headers=admin) as r:
                    assert r.status == 200
                    return parse(await r.text())

            s = await metrics()
            assert value(s, "hookcast_queue_due_deliveries") == 3
            age = value(s, "hookcast_queue_oldest_due_age_seconds")
            assert 0.04 <= age < 60
            assert value(s, "hookcast_queue_held_deliveries") == 0

            now = time.time_ns() // 1000
            await running.store.records.disable_endpoint(ep["uid"], "breaker", None, now)
            s = await metrics()
            assert value(s, "hookcast_queue_due_deliveries") == 0
            assert value(s, "hookcast_queue_oldest_due_age_seconds") == 0
            assert value(s, "hookcast_queue_held_deliveries") == 3
            assert value(s, "hookcast_endpoints_inactive", reason="breaker") == 1
            assert value(s, "hookcast_endpoints_inactive", reason="manual") == 0
    finally:
        await bootstrap.stop(running)


async def test_a_worker_only_process_serves_metrics_on_its_own_port(tmp_path: Path) -> None:
    port = free_port()
    settings = make_settings(str(tmp_path / "w.db"), metrics_port=port)
    bootstrap.run_migrations(settings)
    running = await bootstrap.start(settings, api=False, worker=True)
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://{settings.host}:{port}/metrics") as r,
        ):
            assert r.status == 200
            s = parse(await r.text())
        assert ("hookcast_deliveries_total", (("outcome", "success"),)) in s
        assert value(s, "hookcast_store_up") == 1
        assert value(s, "hookcast_queue_due_deliveries") == 0
    finally:
        await bootstrap.stop(running)


def test_metrics_can_be_switched_off(tmp_path: Path) -> None:
    gateway = Gateway(make_settings(str(tmp_path / "off.db"), metrics_enabled=False))
    try:
        r = requests.get(gateway.base + "/metrics", timeout=10)
        assert r.status_code == 404
    finally:
        gateway.stop()


async def test_a_taken_metrics_port_does_not_stop_delivery(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = make_settings(str(tmp_path / "t.db"), metrics_port=port)
        bootstrap.run_migrations(settings)
        running = await bootstrap.start(settings, api=False, worker=True)
        try:
            assert running.metrics_runner is None and running.worker is not None
            assert "metrics.listen_failed" in [r.getMessage() for r in caplog.records]
        finally:
            await bootstrap.stop(running)
