"""The topic catalogue (contract §6): every topic the bus reads or writes, in one place.

Topics are provisioned explicitly with their partition counts: an auto-created topic gets the
broker's default and breaks co-partitioning, so the broker runs with auto-creation off.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

DAY_MS = 24 * 3600 * 1000

CASE_REPORTS = "jpc.case-reports"
CHECKPOINT_ALERTS = "jpc.checkpoint-alerts"
DUTY_ROSTERS = "jpc.duty-rosters"
ESCALATION_ACKS = "jpc.escalation-acks"
ESCALATIONS = "jpc.escalations"
DEAD_LETTER = "jpc.dead-letter"
INTAKE = "jpc.intake"  # internal: valid events in the one order the engine sees them
SPOOL_PROGRESS = "jpc.spool-progress"  # internal: how far each publisher's spool is on the bus
UNIT_PREFIX = "jpc.escalations."

INPUT_TOPIC_OF_KIND = {
    "case_report": CASE_REPORTS,
    "checkpoint_alert": CHECKPOINT_ALERTS,
    "checkpoint_heartbeat": CHECKPOINT_ALERTS,
    "duty_shift": DUTY_ROSTERS,
    "escalation_ack": ESCALATION_ACKS,
}
INPUT_TOPICS = (CASE_REPORTS, CHECKPOINT_ALERTS, DUTY_ROSTERS, ESCALATION_ACKS)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    key: str  # what the record key is, for people
    configs: dict[str, str] = field(default_factory=dict)
    internal: bool = False

    @property
    def cleanup(self) -> str:
        return self.configs.get("cleanup.policy", "delete")


def unit_topic(unit_id: str) -> str:
    return UNIT_PREFIX + unit_id


def changelog_topic(app_id: str, table: str) -> str:
    return f"{app_id}-{table}-changelog"  # Faust's naming; we provision it ourselves


def catalogue(unit_ids: Iterable[str], *, input_partitions: int = 4, app_id: str = "jpc-bus",
              tables: Iterable[str] = ("engine",)) -> list[TopicSpec]:
    """Every topic for a directory's units. Inputs are kept 90 days: the log is the record that
    `jpc replay` rebuilds escalations from and thresholds are backtested on."""
    keep_90 = {"cleanup.policy": "delete", "retention.ms": str(90 * DAY_MS)}
    specs = [
        TopicSpec(CASE_REPORTS, input_partitions, "region", keep_90),
        TopicSpec(CHECKPOINT_ALERTS, input_partitions, "checkpoint_id", keep_90),
        # Compacted: the roster is the last shift published under each key, for ever.
        TopicSpec(DUTY_ROSTERS, input_partitions, "unit_id/post/officer_id/shift_start",
                  {"cleanup.policy": "compact"}),
        TopicSpec(ESCALATION_ACKS, input_partitions, "escalation_id", keep_90),
        TopicSpec(ESCALATIONS, input_partitions, "escalation_id", keep_90),
        TopicSpec(DEAD_LETTER, 1, "source topic", keep_90),
        # One partition: the engine sees every event in one order, as replay does.
        TopicSpec(INTAKE, 1, "source topic", keep_90, internal=True),
        # Compacted: the last position committed by each spool, written in the same transaction as the
        # events it covers (streams/forwarder.py).
        TopicSpec(SPOOL_PROGRESS, 1, "spool id", {"cleanup.policy": "compact"}, internal=True),
    ]
    specs += [TopicSpec(changelog_topic(app_id, t), 1, "table key", {"cleanup.policy": "compact"}, internal=True)
              for t in tables]
    specs += [TopicSpec(unit_topic(u), 1, "escalation_id", keep_90) for u in sorted(set(unit_ids))]
    return specs
