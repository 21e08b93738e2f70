"""OpenTelemetry tracing from the publish request to every attempt, and request ids in logs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from hookcast import logs, tracing
from hookcast.domain.errors import HookcastError
from support import Behaviour, Gateway, Receiver, make_settings, wait_until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def traced(tmp_path: Path, spans: InMemorySpanExporter) -> Iterator[Gateway]:
    gateway = Gateway(
        make_settings(str(tmp_path / "traced.db")),
        tracing=tracing.setup(True, span_exporter=spans),
    )
    yield gateway
    gateway.stop()


def test_the_trace_runs_from_the_publish_to_every_attempt(
    traced: Gateway, receiver: Receiver, spans: InMemorySpanExporter
) -> None:
    project = traced.create_project("otel", {"strategy": {"type": "linear", "duration": 1}})
    receiver.behave("/traced", Behaviour(500), Behaviour(200))
    ep = project.endpoint(receiver.url + "/traced")
    r = project.call(
        "POST",
        "/events",
        json={"endpoint_id": ep["uid"], "event_type": "t", "data": {}},
        headers={"traceparent": TRACEPARENT},
    )
    assert r.status_code == 201
    got = receiver.wait_for("/traced", 2, timeout=15)

    def finished() -> list[str]:
        return [s.name for s in spans.get_finished_spans()]

    assert wait_until(lambda: finished().count("hookcast.attempt") == 2, 10)
    by_name = {s.name: s for s in spans.get_finished_spans()}
    publish = by_name["hookcast.publish"]
    assert publish.context is not None and publish.parent is not None
    assert f"{publish.context.trace_id:032x}" == TRACE_ID  # continues the caller's trace
    assert f"{publish.parent.span_id:016x}" == CALLER_SPAN
    attempts = sorted(
        (s for s in spans.get_finished_spans() if s.name == "hookcast.attempt"),
        key=lambda s: s.start_time or 0,
    )
    for span in attempts:
        assert span.parent is not None and span.parent.span_id == publish.context.span_id
        assert span.attributes is not None
        assert span.attributes["hookcast.endpoint_id"] == ep["uid"]
    assert [s.attributes and s.attributes["hookcast.attempt"] for s in attempts] == [1, 2]
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert attempts[1].status.status_code is not StatusCode.ERROR
    # the receiver gets each attempt's own context, in the same trace
    for received, span in zip(got, attempts, strict=True):
        assert span.context is not None
        assert received.headers["traceparent"] == (f"00-{TRACE_ID}-{span.context.span_id:016x}-01")


def test_without_tracing_nothing_is_added(gateway: Gateway, receiver: Receiver) -> None:
    project = gateway.create_project("plain")
    ep = project.endpoint(receiver.url + "/plain")
    event = project.publish(ep["uid"])
    assert "traceparent" not in event["headers"]
    (got,) = receiver.wait_for("/plain", 1)
    assert "traceparent" not in got.headers


def test_tracing_asked_for_without_the_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_otel(name: str, *args: object, **kw: object) -> object:
        if name.startswith("opentelemetry"):
            raise ImportError(name)
        return real_import(name, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_otel)
    with pytest.raises(HookcastError, match=r"pip install 'hookcast\[otel\]'"):
        tracing.setup(True)
    assert not tracing.setup(False).enabled


def test_request_ids_are_echoed_and_on_every_log_line_of_the_request(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    project = gateway.create_project("rid")
    handler = caplog.handler
    handler.addFilter(logs.RequestIdFilter())
    try:
        with caplog.at_level(logging.INFO, logger="hookcast.audit"):
            r = project.call(
                "POST", "/api-keys", json={"name": "k"}, headers={"X-Request-ID": "req-42"}
            )
            assert r.status_code == 201 and r.headers["X-Request-ID"] == "req-42"
            assert wait_until(lambda: any(rec.msg == "key.created" for rec in caplog.records), 5)
    finally:
        handler.removeFilter(handler.filters[-1])
    (created,) = [rec for rec in caplog.records if rec.msg == "key.created"]
    assert getattr(created, "request_id", None) == "req-42"
    assert getattr(created, "key_id", None) == r.json()["data"]["uid"]
    # a generated id when the caller sends none (or an unprintable one)
    other = requests.get(gateway.base + "/health", timeout=5).headers["X-Request-ID"]
    assert other and other != "req-42"
