"""The worker's metrics render in Prometheus text format, and health turns red only when it stalls."""

from __future__ import annotations

import time

import pytest

from streams.metrics import STALL_AFTER_S, BusMetrics

pytestmark = pytest.mark.core


def test_metrics_render_with_bounded_labels() -> None:
    metrics = BusMetrics()
    metrics.events_in.labels(kind="case_report").inc(3)
    metrics.dead_letters.labels(field="person_ref").inc()
    metrics.revisions.labels(rule="case_cluster", severity="II").inc()
    metrics.latency.labels(stage="engine").observe(0.02)
    body, content_type = metrics.render()
    text = body.decode()
    assert content_type.startswith("text/plain")
    assert 'jpc_events_in_total{kind="case_report"} 3.0' in text
    assert 'jpc_dead_letters_total{field="person_ref"} 1.0' in text
    assert 'jpc_escalation_revisions_total{rule="case_cluster",severity="II"} 1.0' in text
    assert 'jpc_processing_latency_seconds_bucket{le="0.025",stage="engine"} 1.0' in text


def test_health_fails_only_when_records_wait_and_nothing_moves() -> None:
    metrics = BusMetrics()
    later = time.monotonic() + STALL_AFTER_S + 1
    assert metrics.healthy(later)  # idle but caught up: healthy
    metrics.consumer_lag.labels(topic="jpc.intake", partition="0").set(5)
    assert metrics.healthy()  # lag, but progress just now
    assert not metrics.healthy(later)  # lag and no progress for longer than the stall limit
    metrics.progressed()
    assert metrics.healthy()
