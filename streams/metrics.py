"""What the worker tells Prometheus, and when it calls itself unhealthy.

Label values are bounded sets (event kinds, contract field names, rules, severities, topics), never
ids or free text, so the number of series stays small however much traffic flows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# An escalation is acknowledged in minutes to hours; processing takes milliseconds to seconds.
ACK_BUCKETS = (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STALL_AFTER_S = 30.0  # lag without progress for this long: the worker has stopped consuming


@dataclass
class BusMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

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
        self._progress_at = time.monotonic()

    def progressed(self) -> None:
        self._progress_at = time.monotonic()
        self.last_progress.set_to_current_time()

    def healthy(self, now: float | None = None) -> bool:
        """Unhealthy when records wait to be consumed and nothing has been processed for a while."""
        waiting = any(sample.value > 0 for metric in self.consumer_lag.collect() for sample in metric.samples)
        idle = (now if now is not None else time.monotonic()) - self._progress_at
        return not (waiting and idle > STALL_AFTER_S)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
