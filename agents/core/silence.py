"""Silent checkpoints: a checkpoint that has reported before and then says nothing for too long.

"No gap left" at the city's entrances: a screening point that stops sending is a hole in the net.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from agents.core import wording
from agents.core.ladder import Action, Finding, Resolve
from agents.core.routing import RouteContext
from agents.core.timers import TimerQueue
from schemas.directory import Directory
from schemas.escalation import Evidence
from schemas.times import rfc3339


@dataclass(slots=True)
class LastWord:
    occurred_at: datetime
    evidence: Evidence


@dataclass(slots=True)
class SilenceWatch:
    last: dict[str, LastWord] = field(default_factory=dict)
    open_silences: dict[str, str] = field(default_factory=dict)  # checkpoint id -> escalation id

    def on_event(self, d: Directory, timers: TimerQueue, checkpoint_id: str, occurred_at: datetime,
                 evidence: Evidence) -> list[Action]:
        known = self.last.get(checkpoint_id)
        if known is not None and occurred_at <= known.occurred_at:
            return []  # a late record says nothing about whether the checkpoint is there now
        self.last[checkpoint_id] = LastWord(occurred_at, evidence)
        timers.schedule(occurred_at + timedelta(minutes=d.rules.checkpoint_silence_minutes), "silence",
                        checkpoint_id)
        esc_id = self.open_silences.pop(checkpoint_id, None)
        return [Resolve(esc_id, evidence)] if esc_id is not None else []

    def on_timer(self, d: Directory, checkpoint_id: str, due: datetime) -> list[Action]:
        minutes = d.rules.checkpoint_silence_minutes
        known = self.last.get(checkpoint_id)
        if known is None or known.occurred_at + timedelta(minutes=minutes) != due:
            return []  # it spoke again since this timer was set
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
