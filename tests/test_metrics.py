"""The worker's metrics render in Prometheus text format, and health turns red only when it stalls."""

from __future__ import annotations

import time

import pytest

from streams.metrics import STALL_AFTER_S, BusMetrics, field_label

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


@pytest.mark.parametrize(("field", "label"), [
    ("person_ref", "person_ref"),
    ("(event)", "(event)"),
    ("kind", "kind"),
    ("travel[3].left_at", "travel[].left_at"),  # list indexes would make one series per position
    ("travel[0]", "travel[]"),
    ("shoe_size", "(other)"),  # an unknown field's name is the sender's free text
    ("13912345678", "(other)"),
    (None, "(none)"),  # a rule or the intake raised: no field at fault
])
def test_dead_letter_fields_are_a_bounded_set(field: str | None, label: str) -> None:
    assert field_label(field) == label


def test_health_fails_only_when_records_wait_and_nothing_moves() -> None:
    metrics = BusMetrics()
    start = time.monotonic()
    later = start + STALL_AFTER_S + 1
    metrics.set_lag({("jpc.intake", 0): 0}, now=later)
    assert metrics.healthy(later)  # idle but caught up: healthy
    metrics.set_lag({("jpc.intake", 0): 5})
    assert metrics.healthy()  # lag, but progress just now
    metrics.set_lag({("jpc.intake", 0): 5}, now=later)
    assert not metrics.healthy(later)  # lag and no progress for longer than the stall limit
    assert metrics.problems(later) == [f"engine stalled: records wait (jpc.intake/0: 5) and nothing was processed "
                                       f"for {later - start:.0f} s"]
    metrics.progressed()
    assert metrics.healthy()


def test_each_stage_answers_for_its_own_topics() -> None:
    metrics = BusMetrics(stall_after_s=3.0)
    now = time.monotonic()
    metrics.set_lag({("jpc.intake", 0): 7, ("jpc.case-reports", 2): 0}, now=now + 10)
    metrics.progressed("intake")  # the intake keeps going while the engine is stuck: still unhealthy
    problems = metrics.problems(now + 10)
    assert len(problems) == 1
    assert problems[0].startswith("engine stalled: records wait (jpc.intake/0: 7)")
    metrics.set_lag({("jpc.intake", 0): 0, ("jpc.case-reports", 2): 4}, now=now + 10)
    metrics.progressed("engine")
    assert metrics.problems(now + 1) == []  # the intake progressed a second ago
    assert metrics.problems(now + 10)[0].startswith("intake stalled: records wait (jpc.case-reports/2: 4)")


def test_unhealthy_when_lag_cannot_be_measured() -> None:
    metrics = BusMetrics(stall_after_s=3.0)
    now = time.monotonic()
    metrics.set_lag({}, now=now)
    assert metrics.healthy(now + 2)
    assert metrics.problems(now + 5) == ["consumer lag not measured for 5 s (broker unreachable?)"]
    assert not metrics.healthy(now + 5)
    assert 'jpc_healthy 0.0' in metrics.render()[0].decode()
