"""The escalation book: opening, revising, joint acknowledgement, the ladder, and resolution.

Every change to an escalation is a new revision with a number one higher than the last; nothing
else produces revisions, so re-running the same input re-creates exactly the same records.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from agents.core.ids import escalation_id
from agents.core.proof import Cited, cite
from agents.core.roster import DutyRoster
from agents.core.routing import RouteContext, resolve_targets, staff
from agents.core.timers import TimerQueue
from schemas.codec import construct
from schemas.directory import Directory
from schemas.escalation import SEVERITIES, Escalation, Rule, Severity, Status
from schemas.events import EscalationAck


@dataclass(slots=True)
class Finding:
    """What a rule saw: one subject, how severe, why, and whom the route placeholders mean."""

    rule: Rule
    subject: dict[str, str]
    severity: Severity
    region: str | None
    title: str
    summary: str
    evidence: Sequence[Cited]
    ctx: RouteContext
    extra_targets: tuple[str, ...] = ()
    exact_severity: bool = False  # clusters follow their count down as well as up

    @property
    def escalation_id(self) -> str:
        return escalation_id(self.rule, self.subject)


@dataclass(slots=True)
class Tracked:
    escalation_id: str
    rule: Rule
    subject: dict[str, str]
    severity: Severity
    region: str | None
    title: str
    summary: str
    ctx: RouteContext
    routed_to: list[str]
    opened_at: datetime
    updated_at: datetime
    ack_deadline: datetime
    evidence: list[Cited] = field(default_factory=list)
    fallback: dict[str, str] = field(default_factory=dict)
    acked_by: dict[str, str] = field(default_factory=dict)
    revision: int = 0
    step: int = 0
    resolved: bool = False  # automatically (the condition ended) or by an officer
    final: bool = False  # resolved by an officer: nothing reopens it


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What is kept of an escalation evicted from memory."""

    revision: int
    step: int
    final: bool
    updated_at: datetime


# As long as the escalation topics keep revisions (streams.topics: 90 days' retention).
FORGET_AFTER = timedelta(days=90)


class AckRefused(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field


@dataclass(slots=True)
class EscalationBook:
    directory: Directory
    roster: DutyRoster
    timers: TimerQueue
    escalations: dict[str, Tracked] = field(default_factory=dict)
    forgotten: dict[str, Forgotten] = field(default_factory=dict)
    # (updated_at, id) of every revision, and (updated_at, id) of every tombstone: eviction looks only at
    # what is old enough instead of walking every escalation each time (stale entries are skipped).
    _by_update: list[tuple[datetime, str]] = field(default_factory=list)
    _forgotten_by_update: list[tuple[datetime, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # A book restored from a snapshot gets its queues back from what it holds.
        if not self._by_update:
            self._by_update = [(t.updated_at, k) for k, t in self.escalations.items()]
            heapq.heapify(self._by_update)
        if not self._forgotten_by_update:
            self._forgotten_by_update = [(f.updated_at, k) for k, f in self.forgotten.items()]
            heapq.heapify(self._forgotten_by_update)

    # ---- rules report here ----
    def raise_finding(self, finding: Finding, at: datetime) -> Escalation | None:
        esc_id = finding.escalation_id
        tracked = self.escalations.get(esc_id)
        if tracked is None:
            past = self.forgotten.pop(esc_id, None)
            if past is not None and past.final:
                self.forgotten[esc_id] = past
                return None  # an officer ended it: nothing reopens it, however late the news
            tracked = self._open(esc_id, finding, at)
            if past is not None:  # carry on its numbering: readers drop revisions they have seen
                tracked.revision, tracked.step = past.revision, past.step
            return self._revise(tracked, at)
        if tracked.final:
            return None
        changed = self._absorb(tracked, finding)
        if tracked.resolved:  # the condition is back: reopen, and everyone must acknowledge again
            tracked.resolved = False
            tracked.acked_by.clear()
            self._set_deadline(tracked, at)
            changed = True
        return self._revise(tracked, at) if changed else None

    def auto_resolve(self, esc_id: str, at: datetime, evidence: Cited | None = None) -> Escalation | None:
        tracked = self.escalations.get(esc_id)
        if tracked is None or tracked.resolved:
            return None
        tracked.resolved = True
        if evidence is not None:
            self._add_evidence(tracked, [evidence])
        return self._revise(tracked, at)

    # ---- duty officers ----
    def acknowledge(self, ack: EscalationAck, at: datetime) -> Escalation | None:
        tracked = self.escalations.get(ack.escalation_id)
        if tracked is None and ack.escalation_id in self.forgotten:
            return None  # over long ago: as an ack on a resolved escalation, ignored
        if tracked is None:
            raise AckRefused("escalation_id", f"escalation_id: unknown escalation {ack.escalation_id!r}")
        if tracked.resolved:
            return None  # acknowledging what is over changes nothing
        if ack.unit_id not in tracked.routed_to:
            raise AckRefused("unit_id", f"unit_id: {ack.unit_id!r} is not routed for {ack.escalation_id}")
        changed = False
        if ack.unit_id not in tracked.acked_by:
            tracked.acked_by[ack.unit_id] = ack.officer_id
            changed = True
        if ack.action == "resolve":
            tracked.resolved = tracked.final = True
            changed = True
        return self._revise(tracked, at) if changed else None

    # ---- the ladder ----
    def on_deadline(self, esc_id: str, due: datetime) -> Escalation | None:
        tracked = self.escalations.get(esc_id)
        if tracked is None or tracked.resolved or tracked.ack_deadline != due:
            return None  # a stale timer: the escalation moved on
        uncovered = self._uncovered(tracked)
        if not uncovered:
            return None
        added: list[str] = []
        for unit in uncovered:
            for candidate in (self.directory.parent(unit), self.directory.root.id):
                if candidate and candidate not in tracked.routed_to and candidate not in added:
                    added.append(candidate)
        if not added:
            return None  # nobody left to add: the escalation stays open at the top of the tree
        tracked.routed_to.extend(added)
        tracked.step += 1
        self._set_deadline(tracked, due)
        return self._revise(tracked, due)

    def evict(self, before: datetime) -> None:
        """Drop escalations that are over (or acknowledged) and untouched since `before`, keeping a
        small tombstone so that a late finding continues the numbering and a final resolve stays final;
        tombstones go once the escalation topics no longer hold the revisions they stand for."""
        # Only a revision changes an escalation's status, and every revision queues (updated_at, id): so an
        # escalation still open when its entry comes up is looked at again after its next revision.
        queue = self._by_update
        while queue and queue[0][0] < before:
            updated_at, esc_id = heapq.heappop(queue)
            t = self.escalations.get(esc_id)
            if t is None or t.updated_at != updated_at or self._status(t) == "open":
                continue
            del self.escalations[esc_id]
            self.forgotten[esc_id] = Forgotten(t.revision, t.step, t.final, t.updated_at)
            heapq.heappush(self._forgotten_by_update, (t.updated_at, esc_id))
        horizon = before - FORGET_AFTER
        gone = self._forgotten_by_update
        while gone and gone[0][0] < horizon:
            updated_at, esc_id = heapq.heappop(gone)
            past = self.forgotten.get(esc_id)
            if past is not None and past.updated_at == updated_at:
                del self.forgotten[esc_id]

    def status(self, esc_id: str) -> Status | None:
        tracked = self.escalations.get(esc_id)
        if tracked is None:
            past = self.forgotten.get(esc_id)
            return None if past is None else ("resolved" if past.final else "acknowledged")
        return self._status(tracked)

    # ---- internals ----
    def _open(self, esc_id: str, finding: Finding, at: datetime) -> Tracked:
        tracked = Tracked(
            escalation_id=esc_id, rule=finding.rule, subject=finding.subject, severity=finding.severity,
            region=finding.region, title=finding.title, summary=finding.summary, ctx=finding.ctx,
            routed_to=resolve_targets(self.directory, finding.rule, finding.ctx, finding.extra_targets),
            opened_at=at, updated_at=at, ack_deadline=at,
        )
        self._add_evidence(tracked, finding.evidence)
        self._set_deadline(tracked, at)
        self.escalations[esc_id] = tracked
        return tracked

    def _absorb(self, tracked: Tracked, finding: Finding) -> bool:
        before = _looks(tracked)
        if finding.exact_severity or SEVERITIES.index(finding.severity) < SEVERITIES.index(tracked.severity):
            tracked.severity = finding.severity
        tracked.title, tracked.summary = finding.title, finding.summary
        self._add_evidence(tracked, finding.evidence)
        for unit in resolve_targets(self.directory, finding.rule, finding.ctx, finding.extra_targets):
            if unit not in tracked.routed_to:
                tracked.routed_to.append(unit)
        return _looks(tracked) != before

    def _add_evidence(self, tracked: Tracked, evidence: Sequence[Cited]) -> None:
        # Cited when it joins: the escalation keeps the evidence item, so the million events never cited
        # need not hold a place for one.
        seen = {(e.source_unit, e.event_id) for e in tracked.evidence}
        zone = self.directory.zone
        for item in evidence:
            if (item.source_unit, item.event_id) not in seen:
                tracked.evidence.append(cite(item, zone))
                seen.add((item.source_unit, item.event_id))

    def _set_deadline(self, tracked: Tracked, at: datetime) -> None:
        tracked.ack_deadline = at + timedelta(minutes=self.directory.rules.ack_minutes[tracked.severity])
        self.timers.schedule(tracked.ack_deadline, "ack", tracked.escalation_id)

    def _uncovered(self, tracked: Tracked) -> list[str]:
        if not tracked.acked_by:
            return list(tracked.routed_to)  # the common case: nobody has acknowledged yet
        return [u for u in tracked.routed_to
                if not any(self.directory.covers(acker, u) for acker in tracked.acked_by)]

    def _status(self, tracked: Tracked) -> Status:
        if tracked.resolved:
            return "resolved"
        return "open" if self._uncovered(tracked) else "acknowledged"

    def _revise(self, tracked: Tracked, at: datetime) -> Escalation:
        assignees = staff(self.directory, self.roster, tracked.routed_to, tracked.fallback, at)
        tracked.revision += 1
        tracked.updated_at = at
        heapq.heappush(self._by_update, (at, tracked.escalation_id))
        zone = self.directory.zone
        return _escalation(
            escalation_id=tracked.escalation_id,
            revision=tracked.revision,
            step=tracked.step,
            rule=tracked.rule,
            severity=tracked.severity,
            status=self._status(tracked),
            region=tracked.region,
            subject=dict(tracked.subject),
            title=tracked.title,
            summary=tracked.summary,
            routed_to=list(tracked.routed_to),
            assignees=assignees,
            fallback=dict(tracked.fallback),
            evidence=[cite(e, zone) for e in tracked.evidence],
            opened_at=tracked.opened_at.astimezone(zone),
            updated_at=at.astimezone(zone),
            ack_deadline=tracked.ack_deadline.astimezone(zone),
            acked_by=dict(tracked.acked_by),
        )


_ESCALATION_FIELDS = frozenset(Escalation.model_fields)


def _escalation(**fields: Any) -> Escalation:
    """An `Escalation` of values the book made itself, each already of its field's type (every container a
    fresh copy), without validating a revision field by field again, which cost more than the rest of making
    it. Every field is given, in definition order."""
    return construct(Escalation, fields, set(_ESCALATION_FIELDS))


def _looks(tracked: Tracked) -> tuple[str, str, str, int, int]:
    """What a reader of the escalation would see change (evidence and routes only ever grow)."""
    return (tracked.severity, tracked.title, tracked.summary, len(tracked.evidence), len(tracked.routed_to))


@dataclass(frozen=True, slots=True)
class Resolve:
    """A condition that ended by itself (a post covered again, a checkpoint back, a cluster shrunk)."""

    escalation_id: str
    evidence: Cited | None = None


Action = Finding | Resolve
