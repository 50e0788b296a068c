"""Tracing, when turned on: the processor's batch span links back to the ingest request.

The spans are caught by the OpenTelemetry SDK's in-memory exporter: no collector runs
here, and the OTLP exporter that production uses is the SDK's own, not ours to test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from reco import tracing
from reco.embedded import create_app
from tests.conftest import settings_for, wait_until

pytestmark = pytest.mark.api


def test_event_trace_reaches_the_processor(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    settings = settings_for(tmp_path, otel_enabled=True)
    tracing.setup(None, settings, "test", exporter=exporter)
    with TestClient(create_app(settings)) as client:
        r = client.post("/events", json={"user_id": "u", "item_id": "a", "type": "view"})
        assert r.status_code == 202
        wait_until(
            lambda: any(
                s.name == "reco.processor.batch" and s.links for s in exporter.get_finished_spans()
            )
        )
        client.get("/recommendations", params={"user_id": "u"})
        client.get("/health/ready")
    spans = exporter.get_finished_spans()
    post = next(s for s in spans if s.name == "POST /events" and s.kind.name == "SERVER")
    batch = next(s for s in spans if s.name == "reco.processor.batch" and s.links)
    assert batch.links[0].context.trace_id == post.context.trace_id
    assert batch.attributes is not None
    assert batch.attributes["records"] == 1
    assert any(s.name == "GET /recommendations" for s in spans)
    assert not any("health" in s.name for s in spans), "probes are not traced"


def test_off_by_default_adds_nothing(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    assert settings.otel_enabled is False
    with TestClient(create_app(settings)) as client:
        client.post("/events", json={"user_id": "u", "item_id": "a", "type": "view"})
        engine = client.app.state.engine  # type: ignore[attr-defined]
        wait_until(lambda: engine.store.applied_offsets())
    assert tracing.traceparent() is None
