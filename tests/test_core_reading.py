"""Reading escalations is a duty obligation: the engine's side of `unit_not_reading` (no broker)."""

from __future__ import annotations

from datetime import datetime

import pytest

from agents.core.engine import Engine, Source
from agents.core.ids import escalation_id
from agents.core.reading import ReadingReport
from schemas.escalation import Escalation
from tests.builders import at, small_directory

pytestmark = pytest.mark.core
INTAKE = "jpc.intake"


def report(unit: str, observed: datetime, unread_since: datetime | None) -> ReadingReport:
    return ReadingReport(unit_id=unit, observed_at=observed, unread_since=unread_since)


def observe(engine: Engine, unit: str, observed: datetime, unread_since: datetime | None,
            offset: int = 0) -> list[Escalation]:
    return engine.observe_reading(report(unit, observed, unread_since), Source(INTAKE, 0, offset))


def wall_engine() -> Engine:
    return Engine(small_directory(), clock="wall")


def not_reading(revisions: list[Escalation]) -> list[Escalation]:
    return [r for r in revisions if r.rule == "unit_not_reading"]


@pytest.mark.parametrize(("observed", "escalated"), [
    pytest.param(at(29, seconds=59), False, id="a-second-before-the-deadline"),
    pytest.param(at(30), True, id="at-the-deadline"),
    pytest.param(at(45), True, id="past-the-deadline"),
])
def test_a_unit_is_escalated_once_a_revision_is_unread_at_its_deadline(observed: datetime, escalated: bool) -> None:
    engine = wall_engine()
    revisions = observe(engine, "north-town", observed, unread_since=at(30))
    if not escalated:
        assert revisions == []
        return
    (opened,) = revisions
    assert opened.rule == "unit_not_reading"
    assert opened.severity == "III"
    assert opened.status == "open"
    assert opened.step == 0
    assert opened.revision == 1
    # To its parent and the HQ office (schemas: route [$parent, $root]).
    assert opened.routed_to == ["north-hq", "hq-office"]
    assert opened.subject == {"unit_id": "north-town", "unread_since": "2020-01-24T18:30:00+08:00"}
    assert opened.escalation_id == escalation_id("unit_not_reading", opened.subject)
    assert opened.region == "north"
    assert opened.opened_at == observed
    assert opened.ack_deadline == observed + (at(30) - at(0))  # III: 30 minutes from routing
    (evidence,) = opened.evidence
    assert (evidence.kind, evidence.source_unit, evidence.topic, evidence.partition, evidence.offset) == (
        "reading_report", "north-town", INTAKE, 0, 0)
    assert evidence.occurred_at == observed


def test_one_escalation_per_episode_however_often_the_unit_is_seen_behind() -> None:
    engine = wall_engine()
    (opened,) = observe(engine, "north-town", at(31), unread_since=at(30), offset=1)
    assert observe(engine, "north-town", at(32), unread_since=at(30), offset=2) == []
    # Still behind, now on a later revision (it read the first one but not the next): the same episode.
    assert observe(engine, "north-town", at(40), unread_since=at(35), offset=3) == []
    assert engine.state.reading.not_reading == {"north-town": opened.escalation_id}


def test_resolved_when_the_group_catches_up_and_a_new_episode_is_a_new_escalation() -> None:
    engine = wall_engine()
    (opened,) = observe(engine, "north-town", at(31), unread_since=at(30), offset=1)
    (resolved,) = observe(engine, "north-town", at(33), unread_since=None, offset=2)
    assert (resolved.escalation_id, resolved.revision, resolved.status) == (opened.escalation_id, 2, "resolved")
    assert [e.offset for e in resolved.evidence] == [1, 2]  # the report that showed it caught up is cited
    assert observe(engine, "north-town", at(34), unread_since=None, offset=3) == []  # nothing open: nothing
    (again,) = observe(engine, "north-town", at(70), unread_since=at(65), offset=4)
    assert again.escalation_id != opened.escalation_id
    assert (again.revision, again.status, again.subject["unread_since"]) == (1, "open", "2020-01-24T19:05:00+08:00")


def test_a_report_whose_deadline_is_still_ahead_counts_as_reading() -> None:
    engine = wall_engine()
    (opened,) = observe(engine, "north-town", at(31), unread_since=at(30))
    # The worker only reports deadlines that have passed; should one still be ahead, nothing is overdue.
    (resolved,) = observe(engine, "north-town", at(32), unread_since=at(50), offset=1)
    assert (resolved.escalation_id, resolved.status) == (opened.escalation_id, "resolved")


def test_parent_and_root_coincide_for_a_county_and_the_root_reports_to_itself() -> None:
    engine = wall_engine()
    (county,) = observe(engine, "north-hq", at(31), unread_since=at(30))
    assert county.routed_to == ["hq-office"]
    (root,) = observe(engine, "hq-office", at(31), unread_since=at(30))
    assert root.routed_to == ["hq-office"]  # no parent: an escalation left with no target goes to the root


def test_the_escalation_climbs_the_ladder_like_any_other() -> None:
    engine = wall_engine()
    (opened,) = observe(engine, "north-village", at(31), unread_since=at(30))
    assert opened.routed_to == ["north-town", "hq-office"]
    climbed = [r for r in engine.advance(at(61)) if r.escalation_id == opened.escalation_id]
    assert [(r.step, r.routed_to) for r in climbed] == [(1, ["north-town", "hq-office", "north-hq"])]


@pytest.mark.parametrize("unit", ["no-such-unit", "hospital"], ids=["unknown-unit", "duty-not-required"])
def test_units_without_a_reading_duty_are_ignored(unit: str) -> None:
    engine = wall_engine()
    assert observe(engine, unit, at(31), unread_since=at(30)) == []
    assert observe(engine, unit, at(32), unread_since=None) == []
    assert engine.state.reading.not_reading == {}


def test_the_event_clock_does_not_judge_reading() -> None:
    engine = Engine(small_directory(), clock="event")
    assert observe(engine, "north-town", at(31), unread_since=at(30)) == []
    assert engine.clock is None  # a report does not move the event clock either
    assert engine.counters["reading_reports_ignored"] == 1


def test_a_report_moves_the_wall_clock_and_fires_timers_due_first() -> None:
    engine = wall_engine()
    (opened,) = observe(engine, "north-village", at(31), unread_since=at(30))
    assert engine.clock == at(31)
    later = observe(engine, "north-hq", at(62), unread_since=at(60))
    # The first escalation's deadline (18:61) comes before the second report: its ladder step comes first.
    first, *_ = later
    assert (first.escalation_id, first.step) == (opened.escalation_id, 1)
    assert not_reading(later)[-1].subject["unit_id"] == "north-hq"


def test_snapshot_and_restore_keep_the_reading_watch() -> None:
    engine = wall_engine()
    (opened,) = observe(engine, "north-town", at(31), unread_since=at(30))
    restored = Engine.restore(engine.directory, engine.snapshot(), clock="wall")
    assert restored.state.reading.not_reading == {"north-town": opened.escalation_id}
    # Still behind after the restart: no second escalation for the same episode.
    assert observe(restored, "north-town", at(32), unread_since=at(30), offset=1) == []
    # Both resolve the same escalation with the same revision, byte for byte.
    assert observe(restored, "north-town", at(33), unread_since=None, offset=2) == \
        observe(engine, "north-town", at(33), unread_since=None, offset=2)
    assert restored.state.reading.not_reading == engine.state.reading.not_reading == {}
