"""Optional OpenTelemetry tracing (``pip install 'hookcast[otel]'``, ``HOOKCAST_OTEL_ENABLED``).

The trace goes from the publish request to every attempt of every delivery it makes:

* the publish handler opens a ``hookcast.publish`` span, a child of the caller's W3C
  ``traceparent`` when it sent one, and stores that span's context (``traceparent``,
  ``tracestate``) with the event, among its headers;
* each attempt opens a ``hookcast.attempt`` span, a child of the stored context (in
  whichever worker process, however much later), and sends its own ``traceparent`` to the
  endpoint, so a traced receiver continues the same trace.

When tracing is off (the default) nothing is imported and every hook is a no-op.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

log = logging.getLogger("hookcast.tracing")

#: the W3C trace-context headers stored with an event and sent with each attempt
TRACE_HEADERS = ("traceparent", "tracestate")


class AttemptSpan:
    """What the worker does with an attempt's span: headers to send, the result."""

    def __init__(self, span: Any = None, headers: dict[str, str] | None = None) -> None:
        self._span = span
        self.headers = headers or {}

    def result(self, status: int | None, error: str) -> None:
        if self._span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        if status is not None:
            self._span.set_attribute("http.response.status_code", status)
        if error or status is None or not 200 <= status < 300:
            self._span.set_status(Status(StatusCode.ERROR, error or f"HTTP {status}"))


class Tracing:
    """No-op unless built by :func:`setup` with OpenTelemetry installed."""

    enabled = False

    def publish(
        self, request_headers: Mapping[str, str], kind: str, project_id: str
    ) -> contextlib.AbstractContextManager[dict[str, str]]:
        """Around a publish: the trace-context headers to store with the event (none
        here, at the cost of one small object on the hot path)."""
        return contextlib.nullcontext({})

    def attempt(
        self, event_headers: Mapping[str, str], attributes: Mapping[str, str | int]
    ) -> contextlib.AbstractContextManager[AttemptSpan]:
        return contextlib.nullcontext(AttemptSpan())

    def shutdown(self) -> None:
        return None


class OtelTracing(Tracing):
    enabled = True

    def __init__(self, provider: Any) -> None:
        from opentelemetry import propagate

        self._provider = provider
        self._tracer = provider.get_tracer("hookcast")
        self._propagate = propagate

    def publish(
        self, request_headers: Mapping[str, str], kind: str, project_id: str
    ) -> contextlib.AbstractContextManager[dict[str, str]]:
        return self._publish(request_headers, kind, project_id)

    @contextlib.contextmanager
    def _publish(
        self, request_headers: Mapping[str, str], kind: str, project_id: str
    ) -> Iterator[dict[str, str]]:
        from opentelemetry.trace import SpanKind

        parent = self._propagate.extract(_lower(request_headers))
        attributes = {"hookcast.event.kind": kind, "hookcast.project_id": project_id}
        with self._tracer.start_as_current_span(
            "hookcast.publish", context=parent, kind=SpanKind.SERVER, attributes=attributes
        ):
            carrier: dict[str, str] = {}
            self._propagate.inject(carrier)
            yield carrier

    def attempt(
        self, event_headers: Mapping[str, str], attributes: Mapping[str, str | int]
    ) -> contextlib.AbstractContextManager[AttemptSpan]:
        return self._attempt(event_headers, attributes)

    @contextlib.contextmanager
    def _attempt(
        self, event_headers: Mapping[str, str], attributes: Mapping[str, str | int]
    ) -> Iterator[AttemptSpan]:
        from opentelemetry.trace import SpanKind

        parent = self._propagate.extract(_lower(event_headers))
        with self._tracer.start_as_current_span(
            "hookcast.attempt", context=parent, kind=SpanKind.CLIENT, attributes=dict(attributes)
        ) as span:
            carrier: dict[str, str] = {}
            self._propagate.inject(carrier)
            yield AttemptSpan(span, carrier)

    def shutdown(self) -> None:
        self._provider.shutdown()


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower() in TRACE_HEADERS}


def setup(enabled: bool, exporter: str = "otlp", span_exporter: Any = None) -> Tracing:
    """The process's tracing: a no-op unless *enabled*. *exporter* is ``otlp`` (OTLP over
    HTTP, configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables) or ``console``;
    tests pass their own *span_exporter*."""
    if not enabled:
        return Tracing()
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError as exc:
        from hookcast.domain.errors import HookcastError

        raise HookcastError(
            "HOOKCAST_OTEL_ENABLED is set but OpenTelemetry is not installed: "
            "pip install 'hookcast[otel]'"
        ) from exc
    provider = TracerProvider(resource=Resource.create({"service.name": "hookcast"}))
    if span_exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    elif exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    log.info("tracing.enabled", extra={"exporter": "custom" if span_exporter else exporter})
    return OtelTracing(provider)
