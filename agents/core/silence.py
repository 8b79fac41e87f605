"""Silent checkpoints: a checkpoint that has reported before and then says nothing for too long.

"No gap left" at the city's entrances: a screening point that stops sending is a hole in the net.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache

from agents.core import wording
from agents.core.ladder import Action, Finding, Resolve
from agents.core.proof import Proof
from agents.core.routing import RouteContext
from agents.core.timers import TimerQueue
from schemas.directory import Directory
from schemas.times import rfc3339


@cache
def _silence(minutes: int) -> timedelta:
    return timedelta(minutes=minutes)


@dataclass(slots=True)
class LastWord:
    occurred_at: datetime
    evidence: Proof
    due: datetime  # when the checkpoint counts as silent unless it speaks again
    seq: int  # its place among timers due at the same moment (reserved when it spoke)


@dataclass(slots=True)
class SilenceWatch:
    last: dict[str, LastWord] = field(default_factory=dict)
    open_silences: dict[str, str] = field(default_factory=dict)  # checkpoint id -> escalation id
    # Checkpoints with a silence timer in the queue. A busy checkpoint speaks many times a minute: it keeps
    # one timer, moved on when it comes due, in the place its latest word reserved (same firing order as
    # one timer per word, without a queue of thousands of stale ones).
    armed: set[str] = field(default_factory=set)

    def on_event(self, d: Directory, timers: TimerQueue, checkpoint_id: str, occurred_at: datetime,
                 evidence: Proof) -> list[Action]:
        known = self.last.get(checkpoint_id)
        if known is not None and occurred_at <= known.occurred_at:
            return []  # a late record says nothing about whether the checkpoint is there now
        due, seq = occurred_at + _silence(d.rules.checkpoint_silence_minutes), timers.reserve()
        if known is None:
            self.last[checkpoint_id] = LastWord(occurred_at, evidence, due, seq)
        else:
            known.occurred_at, known.evidence, known.due, known.seq = occurred_at, evidence, due, seq
        if checkpoint_id not in self.armed:
            self.armed.add(checkpoint_id)
            timers.put(due, seq, "silence", checkpoint_id)
        if not self.open_silences:
            return []
        esc_id = self.open_silences.pop(checkpoint_id, None)
        return [Resolve(esc_id, evidence)] if esc_id is not None else []

    def on_timer(self, d: Directory, timers: TimerQueue, checkpoint_id: str, due: datetime) -> list[Action]:
        minutes = d.rules.checkpoint_silence_minutes
        self.armed.discard(checkpoint_id)
        known = self.last.get(checkpoint_id)
        if known is None:
            return []
        if known.due != due:  # it spoke again since this timer was set: wait for its latest word
            self.armed.add(checkpoint_id)
            timers.put(known.due, known.seq, "silence", checkpoint_id)
            return []
        checkpoint = d.checkpoint_by_id[checkpoint_id]
        since = rfc3339(known.occurred_at, d.zone)
        title, summary = wording.silent(checkpoint.name, minutes, since)
        finding = Finding(
            rule="checkpoint_silent", subject={"checkpoint_id": checkpoint_id, "silent_since": since},
            severity="III", region=checkpoint.region, title=title, summary=summary,
            evidence=[known.evidence],
            ctx=RouteContext(region=checkpoint.region, checkpoint_unit=checkpoint.unit),
        )
        self.open_silences[checkpoint_id] = finding.escalation_id
        return [finding]
