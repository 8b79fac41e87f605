"""The correlation engine: one event in, the escalation revisions and refusals that follow out.

Pure: no Faust, no Kafka, no wall clock. Time arrives with the input (the event's own time, or the
receipt time the live driver stamps in `--clock wall` mode), so the same input always yields the
same output, under the live worker and under `jpc replay` alike.
"""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from agents.core import cases, screening
from agents.core.clusters import ClusterWatch
from agents.core.contacts import ContactIndex
from agents.core.duty import DutyWatch
from agents.core.ladder import AckRefused, Action, EscalationBook, Finding, Resolve
from agents.core.proof import Proof
from agents.core.reading import ReadingReport, ReadingWatch
from agents.core.roster import DutyRoster
from agents.core.seen import SeenKeys, fingerprint
from agents.core.silence import SilenceWatch
from agents.core.timers import TimerKind, TimerQueue
from schemas.directory import Directory
from schemas.escalation import Escalation
from schemas.events import (
    KINDS,
    CaseReport,
    CheckpointAlert,
    CheckpointHeartbeat,
    DutyShift,
    EscalationAck,
    InputEvent,
)

ClockMode = Literal["event", "wall"]
MAX_AHEAD_OF_WALL = timedelta(minutes=10)
EVICT_EVERY = timedelta(hours=1)
_EVENT_COUNTER = {kind: f"events.{kind}" for kind in KINDS}  # built once, not per event


@dataclass(frozen=True, slots=True)
class Source:
    """Where an event was read: a Kafka record (topic/partition/offset) or a file line."""

    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    line: int | None = None


@dataclass(slots=True)
class Outcome:
    revisions: list[Escalation] = field(default_factory=list)
    refused: tuple[str, str] | None = None  # (field, reason) when the event was dead-lettered
    duplicate: bool = False


@dataclass(slots=True)
class _State:
    clock: datetime | None = None
    next_eviction: datetime | None = None  # EVICT_EVERY after the last one (checked twice per event)
    timers: TimerQueue = field(default_factory=TimerQueue)
    roster: DutyRoster = field(default_factory=DutyRoster)
    seen: SeenKeys = field(default_factory=SeenKeys)
    clusters: ClusterWatch = field(default_factory=ClusterWatch)
    contacts: ContactIndex = field(default_factory=ContactIndex)
    duty: DutyWatch = field(default_factory=DutyWatch)
    silence: SilenceWatch = field(default_factory=SilenceWatch)
    counters: Counter[str] = field(default_factory=Counter)
    # Last, so that a snapshot pickled before it existed still restores (see Engine.restore).
    reading: ReadingWatch = field(default_factory=ReadingWatch)


class Engine:
    def __init__(self, directory: Directory, clock: ClockMode = "event") -> None:
        self.directory = directory
        self.mode: ClockMode = clock
        self.state = _State()
        self.book = EscalationBook(directory, self.state.roster, self.state.timers)

    # ---- persistence (the live worker keeps this in a changelog-backed table) ----
    def snapshot(self) -> bytes:
        return pickle.dumps((self.state, self.book.escalations, self.book.forgotten), protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(cls, directory: Directory, blob: bytes, clock: ClockMode = "event") -> Engine:
        engine = cls(directory, clock)
        engine.state, escalations, forgotten = pickle.loads(blob)  # our own snapshot, never foreign bytes
        if not hasattr(engine.state, "reading"):  # a snapshot from before units' reading was watched
            engine.state.reading = ReadingWatch()
        engine.book = EscalationBook(directory, engine.state.roster, engine.state.timers, escalations, forgotten)
        return engine

    @property
    def clock(self) -> datetime | None:
        return self.state.clock

    @property
    def counters(self) -> Counter[str]:
        return self.state.counters

    # ---- driving ----
    def process(self, event: InputEvent, source: Source | None = None,
                received_at: datetime | None = None) -> Outcome:
        refusal = self._refusal(event, received_at)
        state = self.state
        counters = state.counters
        if refusal is not None:
            counters["dead_letters"] += 1
            return Outcome(refused=refusal)
        # Read once: a field of an event model is an attribute lookup through pydantic's `__getattr__` hook.
        source_unit, event_id, kind, occurred_at = event.source_unit, event.event_id, event.kind, event.occurred_at
        # Remembered from when the bus saw it (the engine clock), not from when it occurred: a report that
        # arrives weeks late must still be recognised when its producer retries it (contract §3, Duplicates).
        clock = state.clock
        seen_at = occurred_at if clock is None or occurred_at > clock else clock  # max(), without the call
        verdict = state.seen.admit(source_unit, event_id, fingerprint(event), seen_at)
        if verdict != "new":
            if verdict == "duplicate":
                counters["duplicates"] += 1
                return Outcome(duplicate=True)
            counters["dead_letters"] += 1
            return Outcome(refused=("event_id", "event_id: conflicting duplicate: this source_unit already "
                                                "sent this event_id with different content"))
        counters[_EVENT_COUNTER[kind]] += 1
        now = occurred_at if self.mode == "event" else (received_at or occurred_at)
        outcome = Outcome(revisions=self.advance(now))
        at = state.clock
        assert at is not None  # advance() always sets it
        checkpoint_id = event.checkpoint_id if type(event) is CheckpointAlert else None
        evidence = (Proof(source_unit, event_id, kind, occurred_at, checkpoint_id=checkpoint_id) if source is None else
                    Proof(source_unit, event_id, kind, occurred_at, source.topic, source.partition, source.offset,
                          checkpoint_id))
        try:
            actions = self._apply(event, evidence, at)
        except AckRefused as refused:
            # Dead-lettered, so not processed (contract §1): forget its key, or the unit's corrected resend
            # under the same event_id would be refused as a conflicting duplicate, and a resend of the
            # same ack once its escalation exists would be ignored as a duplicate.
            state.seen.forget(source_unit, event_id)
            counters["dead_letters"] += 1
            outcome.refused = (refused.field, str(refused))
            return outcome
        if actions:
            outcome.revisions += self._carry_out(actions, at)
        if state.timers.due(at):  # timers set in the past by a late event fire now
            outcome.revisions += self.advance(at)
        return outcome

    def advance(self, to: datetime) -> list[Escalation]:
        """Move the engine clock forward to `to`, firing every timer due on the way in order."""
        state = self.state
        clock = state.clock
        if clock is not None and to < clock:
            to = clock
        revisions: list[Escalation] = []
        timers = state.timers
        while (timer := timers.pop_due(to)) is not None:
            state.clock = max(state.clock or timer.due, timer.due)
            revisions += self._fire(timer.kind, timer.key, timer.due)
        state.clock = to
        if state.next_eviction is None or to >= state.next_eviction:  # once an hour: spares a call per event
            self._maybe_evict(to)
        return revisions

    def observe_reading(self, report: ReadingReport, source: Source | None = None) -> list[Escalation]:
        """What the live worker saw of a unit's duty consumer group (its place in the intake log is
        `source`): a unit leaving revisions unread past their deadline is escalated, and resolved
        once it reads. Judged on the wall clock only: in event-clock mode (replay, backfills) the bus's
        time is not the time officers read at, so reports are ignored."""
        if self.mode != "wall":
            self.counters["reading_reports_ignored"] += 1
            return []
        self.counters["reading_reports"] += 1
        revisions = self.advance(report.observed_at)
        at = self.state.clock
        assert at is not None  # advance() always sets it
        evidence = Proof(report.unit_id, f"reading:{report.unit_id}@{report.observed_at.isoformat()}",
                         "reading_report", report.observed_at, *(
                             (source.topic, source.partition, source.offset) if source is not None else ()))
        revisions += self._carry_out(self.state.reading.on_report(self.directory, report, evidence), at)
        return revisions

    # ---- internals ----
    def _refusal(self, event: InputEvent, received_at: datetime | None) -> tuple[str, str] | None:
        d = self.directory
        if event.source_unit not in d.unit_by_id:
            return "source_unit", f"source_unit: unknown unit {event.source_unit!r}"
        if (self.mode == "wall" and received_at is not None
                and event.occurred_at > received_at + MAX_AHEAD_OF_WALL):
            return "occurred_at", "occurred_at: more than 10 minutes ahead of the wall clock"
        # By exact class (nothing subclasses the event models), not by class pattern: `match` asks each
        # class in turn through ABCMeta's instance check, on every event.
        if type(event) is CheckpointAlert or type(event) is CheckpointHeartbeat:
            if event.checkpoint_id not in d.checkpoint_by_id:
                return "checkpoint_id", f"checkpoint_id: unknown checkpoint {event.checkpoint_id!r}"
        elif type(event) is CaseReport:
            if event.region not in d.region_by_id:
                return "region", f"region: unknown region {event.region!r}"
        elif (type(event) is DutyShift or type(event) is EscalationAck) and event.unit_id not in d.unit_by_id:
            return "unit_id", f"unit_id: unknown unit {event.unit_id!r}"
        return None

    def _apply(self, event: InputEvent, evidence: Proof, at: datetime) -> list[Action | Escalation]:
        d, s = self.directory, self.state
        actions: list[Action | Escalation] = []
        if type(event) is CheckpointAlert:  # most events: an alert or a heartbeat (see `_refusal` on why not match)
            actions += screening.screen(d, event, evidence)
            actions += s.contacts.on_sighting(d, event, evidence)
            actions += s.silence.on_event(d, s.timers, event.checkpoint_id, event.occurred_at, evidence)
        elif type(event) is CheckpointHeartbeat:
            actions += s.silence.on_event(d, s.timers, event.checkpoint_id, event.occurred_at, evidence)
        elif type(event) is CaseReport:
            for rule in (cases.imported_case, cases.late_report):
                finding = rule(d, event, evidence)
                if finding is not None:
                    actions.append(finding)
            actions += s.clusters.on_report(d, event, evidence)
            actions += s.contacts.on_case(d, event, evidence)
        elif type(event) is DutyShift:
            s.roster.publish(event, evidence)
            actions += s.duty.on_roster(d, s.roster, s.timers, event.unit_id, at)
        elif type(event) is EscalationAck:
            revision = self.book.acknowledge(event, at)
            if revision is None and self.book.status(event.escalation_id) == "resolved":
                self.counters["acks_ignored"] += 1
            return [revision] if revision is not None else []
        return actions

    def _fire(self, kind: TimerKind, key: str, due: datetime) -> list[Escalation]:
        d, s = self.directory, self.state
        if kind == "ack":
            revision = self.book.on_deadline(key, due)
            return [revision] if revision is not None else []
        if kind == "silence":
            return self._carry_out(s.silence.on_timer(d, s.timers, key, due), due)
        return self._carry_out(s.duty.on_timer(d, s.roster, s.timers, key, due=due, kind=kind), due)

    def _carry_out(self, actions: Sequence[Action | Escalation], at: datetime) -> list[Escalation]:
        revisions: list[Escalation] = []
        for action in actions:
            revision: Escalation | None
            if isinstance(action, Escalation):  # acknowledgements go to the book directly
                revision = action
            elif isinstance(action, Finding):
                revision = self.book.raise_finding(action, at)
            else:
                assert isinstance(action, Resolve)
                revision = self.book.auto_resolve(action.escalation_id, at, action.evidence)
            if revision is not None:
                revisions.append(revision)
                self.counters[f"revisions.{revision.rule}"] += 1
        return revisions

    def _maybe_evict(self, now: datetime) -> None:
        s = self.state
        if s.next_eviction is not None and now < s.next_eviction:
            return
        s.next_eviction = now + EVICT_EVERY
        rules = self.directory.rules
        longest = timedelta(days=rules.longest_window_days)
        # Duplicates are recognised within the longest window (contract §3); joins keep twice that so
        # a report arriving up to a window late still meets what it should.
        s.seen.evict(now - longest)
        s.clusters.evict(now - 2 * longest)
        s.contacts.evict(now - 2 * longest)
        s.roster.evict(now - 2 * longest)
        self.book.evict(now - 2 * longest)

