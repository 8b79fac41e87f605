"""Duty gaps: every watched unit keeps a principal and an in-charge leader on duty at all times.

A unit is watched from the earliest shift it has published. A gap starts when coverage of a post
ends and escalates once the engine clock is strictly past its start plus the grace period; it is
resolved when the post is covered again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from agents.core import wording
from agents.core.ladder import Action, Finding, Resolve
from agents.core.proof import Proof
from agents.core.roster import WATCHED_POSTS, DutyRoster, gap_at
from agents.core.routing import RouteContext
from agents.core.timers import TimerKind, TimerQueue
from schemas.directory import Directory
from schemas.events import Post
from schemas.times import rfc3339

SEP = "\x1f"  # unit ids may hold any printable character; this one they cannot


@dataclass(slots=True)
class DutyWatch:
    open_gaps: dict[str, str] = field(default_factory=dict)  # unit/post -> escalation id
    _scheduled: dict[str, tuple[datetime, TimerKind]] = field(default_factory=dict)

    def on_roster(self, d: Directory, roster: DutyRoster, timers: TimerQueue, unit_id: str,
                  at: datetime) -> list[Action]:
        actions: list[Action] = []
        for post in WATCHED_POSTS:
            actions += self.check(d, roster, timers, unit_id, post, at=at, fired=False)
        return actions

    def on_timer(self, d: Directory, roster: DutyRoster, timers: TimerQueue, key: str, *,
                 due: datetime, kind: TimerKind) -> list[Action]:
        unit_id, post = key.split(SEP)
        if self._scheduled.get(key) == (due, kind):
            del self._scheduled[key]
        # Only a "duty" timer is strict (held until the clock is strictly past its due time), so only it
        # may open a gap whose start + grace is exactly its due time. A "cover" timer fires with the clock
        # at its due time; if the roster changed meanwhile and a gap starts right then, escalating now
        # would be at, not strictly past, gap start + grace (contract §3): check() schedules a duty timer.
        return self.check(d, roster, timers, unit_id, post, at=due,  # type: ignore[arg-type]
                          fired=kind == "duty")

    def check(self, d: Directory, roster: DutyRoster, timers: TimerQueue, unit_id: str, post: Post, *,
              at: datetime, fired: bool) -> list[Action]:
        unit = d.unit_by_id.get(unit_id)
        watch_start = roster.watch_start.get(unit_id)
        if unit is None or not unit.duty_required or watch_start is None:
            return []
        key = f"{unit_id}{SEP}{post}"
        grace = timedelta(minutes=d.rules.duty_grace_minutes)
        if at < watch_start:
            self._schedule(timers, key, watch_start + grace, "duty")
            return []
        gap_start, nxt = gap_at(roster.coverage(unit_id, post), watch_start, at)
        actions: list[Action] = []
        if gap_start is None:  # covered: resolve any open gap, look again when this run of shifts ends
            if key in self.open_gaps:
                actions.append(Resolve(self.open_gaps.pop(key), _latest_evidence(roster, unit_id)))
            if nxt is not None:
                self._schedule(timers, key, nxt + grace, "duty")
            return actions
        due = gap_start + grace
        if at > due or (fired and at == due):
            finding = _finding(d, roster, unit_id, post, gap_start)
            previous = self.open_gaps.get(key)
            if previous != finding.escalation_id:
                if previous is not None:
                    actions.append(Resolve(previous))
                self.open_gaps[key] = finding.escalation_id
                # Raised once per gap. Raising a gap that is still open again adds nothing, and once the
                # book has forgotten an escalation that was acknowledged long ago it would restart it at
                # revision 1 under the same id (readers drop a revision number they have seen).
                actions.append(finding)
            if nxt is not None:
                self._schedule(timers, key, nxt, "cover")
        else:
            self._schedule(timers, key, due, "duty")
        return actions

    def _schedule(self, timers: TimerQueue, key: str, due: datetime, kind: TimerKind) -> None:
        if self._scheduled.get(key) != (due, kind):
            self._scheduled[key] = (due, kind)
            timers.schedule(due, kind, key)


def _latest_evidence(roster: DutyRoster, unit_id: str) -> Proof | None:
    shifts = roster.shifts(unit_id)
    if not shifts:
        return None
    return max(shifts, key=lambda s: (s.evidence.occurred_at, s.evidence.event_id)).evidence


def _finding(d: Directory, roster: DutyRoster, unit_id: str, post: Post, gap_start: datetime) -> Finding:
    unit = d.unit_by_id[unit_id]
    shifts = roster.shifts(unit_id)
    ended = [s for s in shifts if s.post == post and s.end == gap_start and not s.cancelled]
    behind = ended or sorted(shifts, key=lambda s: (s.start, s.evidence.event_id))[:1]
    since = rfc3339(gap_start, d.zone)
    title, summary = wording.duty_gap(unit.name, post, since)
    return Finding(
        rule="duty_gap", subject={"unit_id": unit_id, "post": post, "gap_start": since},
        severity="III", region=unit.region, title=title, summary=summary,
        evidence=[s.evidence for s in behind], ctx=RouteContext(region=unit.region, unit=unit_id),
    )
