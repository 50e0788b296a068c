"""OpenTelemetry tracing, off by default (``RECO_OTEL_ENABLED=true`` turns it on).

Spans: every HTTP request (FastAPI instrumentation, probes and metrics left out); one span
per processor batch, linked to the ingest request of each event in it (the W3C
``traceparent`` travels inside the event, so it survives the log whatever the backend), so
a trace shows an event's way from ``POST /events`` through Kafka to the features that the
next ``GET /recommendations`` reads. Spans go to an OTLP/HTTP collector
(``RECO_OTEL_ENDPOINT``). Off, every call here is the OpenTelemetry API's no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace

from reco.exceptions import ConfigError

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace.export import SpanExporter

    from reco.settings import HttpSettings

log = logging.getLogger(__name__)

# Links per batch span: enough to follow a sample of its events, bounded for big batches.
MAX_LINKS = 64
_provider: Any = None


def setup(
    app: FastAPI | None,
    settings: HttpSettings,
    service: str,
    *,
    exporter: SpanExporter | None = None,
) -> None:
    """Configure the process's tracer provider once, and instrument ``app``."""
    global _provider
    if not settings.otel_enabled:
        return
    if _provider is None:
        try:
            import opentelemetry.sdk  # noqa: F401
        except ImportError:
            raise ConfigError(
                "RECO_OTEL_ENABLED needs the tracing extra: pip install 'reco-engine[tracing]'"
            ) from None
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": f"reco-{service}"}))
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(
                BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otel_endpoint))
            )
        else:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        _provider = provider
        log.info("tracing on: spans of reco-%s go to %s", service, settings.otel_endpoint)
    if app is not None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=_provider, excluded_urls="health/.*,metrics"
        )


def traceparent() -> str | None:
    """The current span's W3C ``traceparent``, to carry inside the events it produces."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def _links(traceparents: Iterable[str | None]) -> list[trace.Link]:
    links: list[trace.Link] = []
    for parent in traceparents:
        if parent is None:
            continue
        ctx = trace.get_current_span(propagate.extract({"traceparent": parent})).get_span_context()
        if ctx.is_valid:
            links.append(trace.Link(ctx))
            if len(links) >= MAX_LINKS:
                break
    return links


@contextmanager
def batch_span(name: str, traceparents: Iterable[str | None], **attributes: Any) -> Iterator[None]:
    """A span for one batch, linked to the requests its events came from."""
    tracer = trace.get_tracer("reco")
    links = _links(traceparents) if _provider is not None else []
    with tracer.start_as_current_span(name, links=links, attributes=attributes):
        yield
