"""Checkpoint contact: an infected person who passed a checkpoint within the window before the case.

Whichever arrives first, the case or the checkpoint record, the other finds it: both are indexed
by pseudonym and dropped once older than the window allows.

This is the largest state the bus holds (every person screened in the last four weeks: a million in a
province), so a sighting is the event's `Proof` alone, a person seen once holds it without a list, and
sightings are filed by the hour they occurred in so that forgetting looks at old hours only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache

from agents.core import wording
from agents.core.cases import INFECTED
from agents.core.ladder import Action, Finding
from agents.core.proof import Proof
from agents.core.routing import RouteContext
from agents.core.timers import HOUR_US, epoch_micros
from schemas.directory import Directory
from schemas.events import CaseReport, CheckpointAlert


@dataclass(slots=True)
class InfectedCase:
    case_id: str
    status: str
    region: str
    occurred_at: datetime
    evidence: Proof


@dataclass(slots=True)
class ContactIndex:
    # person_ref -> the checkpoint records of them (Proof.checkpoint_id says where), in arrival order
    sightings: dict[str, Proof | list[Proof]] = field(default_factory=dict)
    cases: dict[str, dict[str, InfectedCase]] = field(default_factory=dict)  # person_ref -> case id -> case
    person_of_case: dict[str, str] = field(default_factory=dict)
    _hours: dict[int, list[str]] = field(default_factory=dict)  # hour a sighting occurred in -> person_refs

    def on_sighting(self, d: Directory, alert: CheckpointAlert, evidence: Proof) -> list[Action]:
        person = alert.person_ref
        before = self.sightings.get(person)
        if before is None:
            self.sightings[person] = evidence
        elif isinstance(before, list):
            before.append(evidence)
        else:
            self.sightings[person] = [before, evidence]
        hour = epoch_micros(alert.occurred_at) // HOUR_US
        filed = self._hours.get(hour)
        if filed is None:
            self._hours[hour] = [person]
        else:
            filed.append(person)
        cases = self.cases.get(person)
        if not cases:
            return []
        return [_finding(d, case, evidence) for case in cases.values() if _within(d, case, evidence)]

    def on_case(self, d: Directory, report: CaseReport, evidence: Proof) -> list[Action]:
        if report.status == "excluded":
            person = self.person_of_case.pop(report.case_id, None)
            cases = self.cases.get(person) if person is not None else None
            if cases is not None:
                cases.pop(report.case_id, None)
            return []
        if report.status not in INFECTED:
            return []
        case = InfectedCase(report.case_id, report.status, report.region, report.occurred_at, evidence)
        self.cases.setdefault(report.person_ref, {})[report.case_id] = case
        self.person_of_case[report.case_id] = report.person_ref
        seen = self.sightings.get(report.person_ref)
        if seen is None:
            return []
        return [_finding(d, case, s) for s in (seen if isinstance(seen, list) else [seen]) if _within(d, case, s)]

    def evict(self, before: datetime) -> None:
        last_hour = epoch_micros(before) // HOUR_US  # the hour `before` falls in is sorted record by record
        for hour in sorted(h for h in self._hours if h <= last_hour):
            persons = self._hours.pop(hour)
            for person in persons:
                self._forget_sightings(person, before)
            if hour == last_hour:
                self._hours[hour] = [p for p in persons if p in self.sightings]
        for person in list(self.cases):
            cases = self.cases[person]
            for case_id in [c for c, case in cases.items() if case.occurred_at < before]:
                del cases[case_id]
                self.person_of_case.pop(case_id, None)
            if not cases:
                del self.cases[person]

    def _forget_sightings(self, person: str, before: datetime) -> None:
        seen = self.sightings.get(person)
        if seen is None:
            return
        if not isinstance(seen, list):
            if seen.occurred_at < before:
                del self.sightings[person]
            return
        kept = [s for s in seen if s.occurred_at >= before]
        if not kept:
            del self.sightings[person]
        else:
            self.sightings[person] = kept[0] if len(kept) == 1 else kept


@cache
def _window(days: int) -> timedelta:
    return timedelta(days=days)


def _within(d: Directory, case: InfectedCase, sighting: Proof) -> bool:
    window = _window(d.rules.contact_window_days)
    return case.occurred_at - window <= sighting.occurred_at <= case.occurred_at


def _finding(d: Directory, case: InfectedCase, sighting: Proof) -> Finding:
    assert sighting.checkpoint_id is not None  # only checkpoint alerts are filed as sightings
    checkpoint = d.checkpoint_by_id[sighting.checkpoint_id]
    title, summary = wording.contact(checkpoint.name, case.status)
    return Finding(
        rule="checkpoint_contact", subject={"case_id": case.case_id, "checkpoint_id": checkpoint.id},
        severity="III", region=case.region, title=title, summary=summary,
        evidence=[sighting, case.evidence],
        ctx=RouteContext(region=case.region, checkpoint_unit=checkpoint.unit),
    )
