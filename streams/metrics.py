"""What the worker tells Prometheus, and when it calls itself unhealthy.

Label values are bounded sets (event kinds, contract field names, rules, severities, topics), never
ids or free text, so the number of series stays small however much traffic flows.

Health: each stage of the worker (intake reads the input topics, the engine reads `jpc.intake`) is
stalled when records wait on its topics and it has processed nothing for `stall_after_s`; the worker is
also unhealthy when its lag could not be measured for that long (the broker out of reach).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel

from schemas.events import EVENT_MODELS
from streams.topics import INTAKE

# An escalation is acknowledged in minutes to hours; processing takes milliseconds to seconds.
ACK_BUCKETS = (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STALL_AFTER_S = 30.0  # lag without progress for this long: the worker has stopped consuming
STAGES = ("intake", "engine")


def stage_of(topic: str) -> str:
    """The stage of the worker that consumes `topic`."""
    return "engine" if topic == INTAKE else "intake"


def _model_fields(model: type[BaseModel], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for name, info in model.model_fields.items():
        out.add(prefix + name)
        for arg in _flatten(info.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                out |= {f"{prefix}{name}[]"} | _model_fields(arg, f"{prefix}{name}[].")
    return out


def _flatten(annotation: Any) -> list[Any]:
    args = get_args(annotation)
    if not args:
        return [annotation]
    return [leaf for arg in args for leaf in _flatten(arg)]


# Every field a refusal can name: the contract's fields (lists written `travel[].left_at`), and the two
# names for a record as a whole. Anything else (an unknown field's name is free text) counts as (other).
KNOWN_FIELDS = frozenset({"(event)", "kind"}.union(*(_model_fields(m) for m in EVENT_MODELS.values())))
_INDEX = re.compile(r"\[\d+\]")


def field_label(field_name: str | None) -> str:
    """A dead letter's field as a bounded label value."""
    if field_name is None:
        return "(none)"  # the intake's or a rule's exception: no field at fault
    path = _INDEX.sub("[]", field_name)
    return path if path in KNOWN_FIELDS else "(other)"


@dataclass
class BusMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    stall_after_s: float = STALL_AFTER_S

    def __post_init__(self) -> None:
        r = self.registry
        self.events_in = Counter("jpc_events_in", "Valid input events accepted by intake", ["kind"], registry=r)
        self.dead_letters = Counter("jpc_dead_letters", "Records sent to jpc.dead-letter, by refused field",
                                    ["field"], registry=r)
        self.duplicates = Counter("jpc_duplicates_ignored", "Events ignored as duplicates", registry=r)
        self.revisions = Counter("jpc_escalation_revisions", "Escalation revisions sent", ["rule", "severity"],
                                 registry=r)
        self.opened = Counter("jpc_escalations_opened", "Escalations opened", ["rule", "severity"], registry=r)
        self.open_escalations = Gauge("jpc_open_escalations", "Escalations currently open", ["rule"], registry=r)
        self.time_to_ack = Histogram("jpc_time_to_acknowledge_seconds", "From opening to fully acknowledged",
                                     ["rule"], buckets=ACK_BUCKETS, registry=r)
        self.latency = Histogram("jpc_processing_latency_seconds",
                                 "From a record's broker timestamp to its outputs acknowledged by the broker",
                                 ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.consumer_lag = Gauge("jpc_consumer_lag", "Records not yet consumed", ["topic", "partition"], registry=r)
        self.last_progress = Gauge("jpc_last_progress_timestamp_seconds", "When a batch was last processed",
                                   registry=r)
        self.healthy_gauge = Gauge("jpc_healthy", "1 when the worker is healthy (see /health), else 0", registry=r)
        start = time.monotonic()
        self._progress_at = dict.fromkeys(STAGES, start)
        self._lag_at = start

    def progressed(self, stage: str | None = None) -> None:
        """A stage (None: every stage) has just processed something."""
        now = time.monotonic()
        for s in STAGES if stage is None else (stage,):
            self._progress_at[s] = now
        self.last_progress.set_to_current_time()

    def set_lag(self, lag: Mapping[tuple[str, int], int], now: float | None = None) -> None:
        """The lag of every partition the worker consumes, as just measured (partitions not given are gone)."""
        self.consumer_lag.clear()
        for (topic, partition), value in lag.items():
            self.consumer_lag.labels(topic=topic, partition=str(partition)).set(value)
        self._lag_at = now if now is not None else time.monotonic()

    def problems(self, now: float | None = None) -> list[str]:
        """Why the worker is unhealthy; empty when it is healthy."""
        now = now if now is not None else time.monotonic()
        out = []
        unmeasured = now - self._lag_at
        if unmeasured > self.stall_after_s:
            out.append(f"consumer lag not measured for {unmeasured:.0f} s (broker unreachable?)")
        waiting: dict[str, list[str]] = {}
        for metric in self.consumer_lag.collect():
            for sample in metric.samples:
                if sample.value > 0:
                    topic = sample.labels["topic"]
                    waiting.setdefault(stage_of(topic), []).append(
                        f"{topic}/{sample.labels['partition']}: {sample.value:.0f}")
        for stage, where in sorted(waiting.items()):
            idle = now - self._progress_at[stage]
            if idle > self.stall_after_s:
                out.append(f"{stage} stalled: records wait ({', '.join(sorted(where))}) and nothing was "
                           f"processed for {idle:.0f} s")
        return out

    def healthy(self, now: float | None = None) -> bool:
        """Unhealthy when records wait to be consumed and nothing has been processed for a while."""
        ok = not self.problems(now)
        self.healthy_gauge.set(1 if ok else 0)
        return ok

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
