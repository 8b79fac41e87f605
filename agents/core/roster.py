"""The duty roster: who holds which post at which unit, shift by shift.

Built from `duty_shift` events; for each roster key the shift that arrived last wins, exactly as
log compaction keeps it, so the roster read back from the compacted topic equals this one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from agents.core.proof import Proof
from schemas.events import DutyShift, Post

WATCHED_POSTS: tuple[Post, ...] = ("principal", "in_charge")


@dataclass(frozen=True, slots=True)
class Shift:
    unit_id: str
    post: Post
    officer_id: str
    start: datetime
    end: datetime
    cancelled: bool
    evidence: Proof

    def covers(self, at: datetime) -> bool:
        return not self.cancelled and self.start <= at < self.end


@dataclass(slots=True)
class DutyRoster:
    _shifts: dict[str, dict[str, Shift]] = field(default_factory=dict)  # unit -> roster key -> shift
    watch_start: dict[str, datetime] = field(default_factory=dict)  # earliest shift_start ever published

    def publish(self, shift: DutyShift, evidence: Proof) -> None:
        unit = self._shifts.setdefault(shift.unit_id, {})
        unit[shift.roster_key] = Shift(
            shift.unit_id, shift.post, shift.officer_id, shift.shift_start, shift.shift_end,
            shift.status == "cancelled", evidence,
        )
        known = self.watch_start.get(shift.unit_id)
        if known is None or shift.shift_start < known:
            self.watch_start[shift.unit_id] = shift.shift_start

    def shifts(self, unit_id: str) -> list[Shift]:
        return list(self._shifts.get(unit_id, {}).values())

    def on_duty(self, unit_id: str, at: datetime) -> list[str]:
        """Officer ids whose non-cancelled shifts at the unit cover `at`, sorted."""
        return sorted({s.officer_id for s in self._shifts.get(unit_id, {}).values() if s.covers(at)})

    def coverage(self, unit_id: str, post: Post) -> list[tuple[datetime, datetime]]:
        """Merged covered intervals of one post, in time order."""
        spans = sorted((s.start, s.end) for s in self._shifts.get(unit_id, {}).values()
                       if s.post == post and not s.cancelled)
        merged: list[tuple[datetime, datetime]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                if end > merged[-1][1]:
                    merged[-1] = (merged[-1][0], end)
            else:
                merged.append((start, end))
        return merged

    def evict(self, before: datetime) -> None:
        """Forget shifts that ended before `before` (the watch start is kept: it is one time per unit).

        The last shift to end of each post is kept however old: it says when that post's coverage ended,
        which is where a gap that is still open began. Forgetting it would move the gap's start back to
        the watch start, resolving the real gap and opening a false one (a unit unstaffed for weeks)."""
        for unit_id in list(self._shifts):
            shifts = self._shifts[unit_id]
            last: dict[Post, str] = {}
            for key, s in shifts.items():
                if not s.cancelled and (s.post not in last or s.end > shifts[last[s.post]].end):
                    last[s.post] = key
            keep = set(last.values())
            kept = {k: s for k, s in shifts.items() if s.end >= before or k in keep}
            if kept:
                self._shifts[unit_id] = kept
            else:
                del self._shifts[unit_id]

    def units(self) -> list[str]:
        return sorted(self.watch_start)


def gap_at(spans: list[tuple[datetime, datetime]], watch_start: datetime, at: datetime
           ) -> tuple[datetime | None, datetime | None]:
    """(gap start, next cover start) at `at`; gap start None when covered (then the second is the end
    of the covered run, when the next gap would begin)."""
    last_end: datetime | None = None
    for start, end in spans:
        if start <= at < end:
            return None, end
        if end <= at:
            last_end = end
        elif start > at:
            return (last_end or watch_start), start
    return (last_end or watch_start), None


ONE_DAY = timedelta(days=1)
