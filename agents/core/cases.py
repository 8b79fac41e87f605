"""Case rules that need one report only: imported cases and late reports."""

from __future__ import annotations

from datetime import timedelta

from agents.core import wording
from agents.core.ladder import Finding
from agents.core.proof import Proof
from agents.core.routing import RouteContext
from schemas.directory import Directory
from schemas.events import CaseReport
from schemas.times import rfc3339

ACTIVE = frozenset({"suspected", "confirmed", "asymptomatic"})  # statuses a report must be made for
INFECTED = frozenset({"confirmed", "asymptomatic"})  # statuses that count towards clusters and contacts


def imported_case(d: Directory, report: CaseReport, evidence: Proof) -> Finding | None:
    if report.status not in ACTIVE or not report.travel:
        return None
    window = timedelta(days=d.rules.high_risk_window_days)
    trips = [t for t in report.travel if t.region in d.high_risk and t.left_at >= report.occurred_at - window]
    if not trips:
        return None
    trip = max(trips, key=lambda t: t.left_at)  # the most recent exposure is the one to trace
    title, summary = wording.imported(d.region_name(report.region), report.status, trip.region,
                                      rfc3339(trip.left_at, d.zone))
    return Finding(
        rule="imported_case", subject={"case_id": report.case_id}, severity="III", region=report.region,
        title=title, summary=summary, evidence=[evidence], ctx=RouteContext(region=report.region),
    )


def late_report(d: Directory, report: CaseReport, evidence: Proof) -> Finding | None:
    if report.status not in ACTIVE:
        return None
    delay = report.reported - report.occurred_at
    deadline = d.rules.report_deadline_minutes
    if delay <= timedelta(minutes=deadline):
        return None
    title, summary = wording.late(int(delay.total_seconds() // 60), deadline)
    return Finding(
        rule="late_report", subject={"case_id": report.case_id}, severity="IV", region=report.region,
        title=title, summary=summary, evidence=[evidence], ctx=RouteContext(region=report.region),
    )
