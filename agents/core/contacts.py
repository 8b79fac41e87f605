"""Checkpoint contact: an infected person who passed a checkpoint within the window before the case.

Whichever arrives first, the case or the checkpoint record, the other finds it: both are indexed
by pseudonym and dropped once older than the window allows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from agents.core import wording
from agents.core.cases import INFECTED
from agents.core.ladder import Action, Finding
from agents.core.routing import RouteContext
from schemas.directory import Directory
from schemas.escalation import Evidence
from schemas.events import CaseReport, CheckpointAlert


@dataclass(slots=True)
class Sighting:
    checkpoint_id: str
    occurred_at: datetime
    evidence: Evidence


@dataclass(slots=True)
class InfectedCase:
    case_id: str
    status: str
    region: str
    occurred_at: datetime
    evidence: Evidence


@dataclass(slots=True)
class Trail:
    sightings: list[Sighting] = field(default_factory=list)
    cases: dict[str, InfectedCase] = field(default_factory=dict)


@dataclass(slots=True)
class ContactIndex:
    trails: dict[str, Trail] = field(default_factory=dict)  # person_ref -> what we know of them
    person_of_case: dict[str, str] = field(default_factory=dict)

    def on_sighting(self, d: Directory, alert: CheckpointAlert, evidence: Evidence) -> list[Action]:
        sighting = Sighting(alert.checkpoint_id, alert.occurred_at, evidence)
        trail = self.trails.setdefault(alert.person_ref, Trail())
        trail.sightings.append(sighting)
        return [_finding(d, case, sighting) for case in trail.cases.values() if _within(d, case, sighting)]

    def on_case(self, d: Directory, report: CaseReport, evidence: Evidence) -> list[Action]:
        if report.status == "excluded":
            person = self.person_of_case.pop(report.case_id, None)
            trail = self.trails.get(person) if person is not None else None
            if trail is not None:
                trail.cases.pop(report.case_id, None)
            return []
        if report.status not in INFECTED:
            return []
        case = InfectedCase(report.case_id, report.status, report.region, report.occurred_at, evidence)
        trail = self.trails.setdefault(report.person_ref, Trail())
        trail.cases[report.case_id] = case
        self.person_of_case[report.case_id] = report.person_ref
        return [_finding(d, case, s) for s in trail.sightings if _within(d, case, s)]

    def evict(self, before: datetime) -> None:
        for person in list(self.trails):
            trail = self.trails[person]
            trail.sightings = [s for s in trail.sightings if s.occurred_at >= before]
            for case_id in [c for c, case in trail.cases.items() if case.occurred_at < before]:
                del trail.cases[case_id]
                self.person_of_case.pop(case_id, None)
            if not trail.sightings and not trail.cases:
                del self.trails[person]


def _within(d: Directory, case: InfectedCase, sighting: Sighting) -> bool:
    window = timedelta(days=d.rules.contact_window_days)
    return case.occurred_at - window <= sighting.occurred_at <= case.occurred_at


def _finding(d: Directory, case: InfectedCase, sighting: Sighting) -> Finding:
    checkpoint = d.checkpoint_by_id[sighting.checkpoint_id]
    title, summary = wording.contact(checkpoint.name, case.status)
    return Finding(
        rule="checkpoint_contact", subject={"case_id": case.case_id, "checkpoint_id": checkpoint.id},
        severity="III", region=case.region, title=title, summary=summary,
        evidence=[sighting.evidence, case.evidence],
        ctx=RouteContext(region=case.region, checkpoint_unit=checkpoint.unit),
    )
