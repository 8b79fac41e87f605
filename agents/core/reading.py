"""Reading escalations is a duty obligation: a unit whose officers leave a revision unread past its
acknowledgement deadline is itself escalated, to its parent and the HQ office.

The live worker observes each unit's duty consumer group (`jpc.duty.<unit>`) and puts what it saw
into the intake log as a reading report, so this rule, like every other, is a pure function of the
log: replaying the log gives the same escalations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from agents.core.ladder import Action, Finding, Resolve
from agents.core.proof import Cited
from agents.core.routing import RouteContext
from schemas.directory import Directory
from schemas.times import rfc3339


@dataclass(frozen=True, slots=True)
class ReadingReport:
    """What the worker saw of one unit's duty group at `observed_at`."""

    unit_id: str
    observed_at: datetime
    unread_since: datetime | None  # deadline of the oldest revision still unread; None when caught up


@dataclass(slots=True)
class ReadingWatch:
    not_reading: dict[str, str] = field(default_factory=dict)  # unit id -> open escalation id

    def on_report(self, d: Directory, report: ReadingReport, evidence: Cited) -> list[Action]:
        unit = d.unit_by_id.get(report.unit_id)
        if unit is None or not unit.duty_required:
            return []  # a unit that keeps no duty has no duty officers to read
        if report.unread_since is None or report.observed_at < report.unread_since:
            esc_id = self.not_reading.pop(report.unit_id, None)
            return [Resolve(esc_id, evidence)] if esc_id is not None else []
        if report.unit_id in self.not_reading:
            return []  # still behind: one escalation per episode, not one revision per observation
        since = rfc3339(report.unread_since, d.zone)
        finding = Finding(
            rule="unit_not_reading", subject={"unit_id": unit.id, "unread_since": since}, severity="III",
            region=unit.region, title=f"{unit.name}未按时阅读预警信息",
            summary=f"{unit.name}的值班消费组自{since}起有到期未读的预警，请督促值班人员在岗接收",
            evidence=[evidence], ctx=RouteContext(region=unit.region, unit=unit.id),
        )
        self.not_reading[report.unit_id] = finding.escalation_id
        return [finding]
