"""Who is (or was) on duty: the roster read back from `jpc.duty-rosters`, per unit and post, and the
gaps ahead.

Coverage is the engine's own (agents/core/roster.py: DutyRoster, gap_at), so what this shows is what
routing and the duty-gap rule use. Names and phones, which the core does not keep, ride alongside.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from agents.core.proof import Proof
from agents.core.roster import ONE_DAY, WATCHED_POSTS, DutyRoster, gap_at
from agents.core.wording import POST_CN
from agents.officer_time import short, span
from schemas.directory import Directory
from schemas.events import POSTS, DutyShift, Post
from schemas.times import rfc3339


@dataclass(frozen=True, slots=True)
class OnDuty:
    post: Post
    officer_id: str
    officer_name: str
    phone: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Gap:
    post: Post
    start: datetime  # when the post was last covered (or watching began): it may lie before the window
    end: datetime | None  # the next covered time; None when no later shift is published


@dataclass(frozen=True, slots=True)
class UnitDuty:
    unit_id: str
    on_duty: list[OnDuty]
    gaps: list[Gap]
    watched: bool  # duty is required of the unit and it has published a roster


@dataclass(slots=True)
class RosterBook:
    """Duty shifts in the order the topic holds them; for each roster key the last one wins."""

    roster: DutyRoster = field(default_factory=DutyRoster)
    # The core keeps what coverage needs; names and phones are found through the evidence it keeps.
    details: dict[tuple[str, str], DutyShift] = field(default_factory=dict)

    def add(self, shift: DutyShift, topic: str | None = None, partition: int | None = None,
            offset: int | None = None) -> None:
        self.roster.publish(shift, Proof(source_unit=shift.source_unit, event_id=shift.event_id, kind=shift.kind,
                                         occurred_at=shift.occurred_at, topic=topic, partition=partition,
                                         offset=offset))
        self.details[(shift.source_unit, shift.event_id)] = shift

    def on_duty(self, unit_id: str, at: datetime) -> list[OnDuty]:
        found = []
        for s in self.roster.shifts(unit_id):
            if s.covers(at):
                d = self.details[(s.evidence.source_unit, s.evidence.event_id)]
                found.append(OnDuty(s.post, s.officer_id, d.officer_name, d.phone, s.start, s.end))
        return sorted(found, key=lambda o: (POSTS.index(o.post), o.officer_id, o.start))

    def gaps(self, unit_id: str, post: Post, start: datetime, end: datetime) -> list[Gap]:
        """Uncovered stretches of `post` that overlap [start, end), from the unit's first shift on."""
        watch_start = self.roster.watch_start.get(unit_id)
        if watch_start is None:
            return []
        spans = self.roster.coverage(unit_id, post)
        found: list[Gap] = []
        at = max(start, watch_start)
        while at < end:
            gap_start, nxt = gap_at(spans, watch_start, at)
            if gap_start is not None:
                found.append(Gap(post, gap_start, nxt))
            if nxt is None:
                break
            at = nxt
        return found

    def unit_duty(self, directory: Directory, unit_id: str, at: datetime, ahead: timedelta = ONE_DAY) -> UnitDuty:
        unit = directory.unit_by_id.get(unit_id)
        watched = unit_id in self.roster.watch_start and (unit is None or unit.duty_required)
        gaps = [g for post in WATCHED_POSTS for g in self.gaps(unit_id, post, at, at + ahead)] if watched else []
        return UnitDuty(unit_id, self.on_duty(unit_id, at), gaps, watched)

    def units(self, directory: Directory) -> list[str]:
        """Units with a roster, in directory order (the command tree), then any the directory lacks."""
        have = set(self.roster.watch_start)
        ordered = [u.id for u in directory.units if u.id in have]
        return ordered + sorted(have - set(ordered))


def duty_json(report: list[UnitDuty], at: datetime, until: datetime, directory: Directory,
              silent_units: list[str]) -> dict[str, Any]:
    zone = directory.zone
    return {
        "at": rfc3339(at, zone),
        "gaps_until": rfc3339(until, zone),
        "units": [{
            "unit_id": u.unit_id,
            "name": _name(directory, u.unit_id),
            "watched": u.watched,
            "on_duty": [{"post": o.post, "officer_id": o.officer_id, "officer_name": o.officer_name,
                         "phone": o.phone, "shift_start": rfc3339(o.start, zone), "shift_end": rfc3339(o.end, zone)}
                        for o in u.on_duty],
            "gaps": [{"post": g.post, "start": rfc3339(g.start, zone),
                      "end": rfc3339(g.end, zone) if g.end else None} for g in u.gaps],
        } for u in report],
        "no_roster": silent_units,
    }


def render_unit(u: UnitDuty, directory: Directory, at: datetime) -> str:
    zone = directory.zone
    lines = [f"{u.unit_id} {_name(directory, u.unit_id)}"]
    for post in POSTS:
        officers = [o for o in u.on_duty if o.post == post]
        label = _pad(f"{post} {POST_CN[post]}", 26)
        if not officers:
            lines.append(f"  {label}nobody on duty")
        for o in officers:
            lines.append(f"  {label}{o.officer_id} {o.officer_name}  {o.phone}  "
                         f"{short(o.start, zone)} → {short(o.end, zone)}")
    if not u.watched:
        lines.append("  gaps: not watched (duty is not required of this unit)")
    elif not u.gaps:
        lines.append("  gaps: none in these 24 h (principal and in_charge covered throughout)")
    for g in u.gaps:
        until = f"{short(g.end, zone)} ({span(g.end - g.start)})" if g.end else "no later shift published"
        note = f" (uncovered at {short(at, zone)})" if g.start <= at else ""
        lines.append(f"  gap: {g.post} {short(g.start, zone)} → {until}{note}")
    return "\n".join(lines)


def _pad(text: str, width: int) -> str:
    """Pad to `width` terminal columns: a Chinese character takes two."""
    used = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return text + " " * max(1, width - used)


def _name(directory: Directory, unit_id: str) -> str:
    unit = directory.unit_by_id.get(unit_id)
    return unit.name if unit else "(not in the directory)"
