"""Duty officers' tools without a broker: judging an ack as the engine would, the order of the board,
officers' times, and the roster view built on the core's coverage."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.officer_state import (
    AckAllowed,
    AckRefused,
    AlreadyResolved,
    build_ack,
    in_order,
    judge_ack,
    latest_revisions,
)
from agents.officer_time import parse_officer_time, span
from agents.roster_view import RosterBook
from agents.watching import SeenRevisions
from schemas.codec import Refusal
from schemas.escalation import Escalation, Evidence
from schemas.events import DutyShift
from tests.builders import Run, ack, alert, at, shift, small_directory, staffed

pytestmark = pytest.mark.core
CST = timezone(timedelta(hours=8))


def fever_escalation(run: Run) -> Escalation:
    """A fever at cp-road (north-town's checkpoint): routed to north-town and health."""
    (rev,) = [r for r in run.feed(alert("p-1", checkpoint="cp-road", temperature=38.2, occurred=at(0)))
              if r.rule == "fever_at_checkpoint"]
    return rev


def engine_accepts(run: Run, esc_id: str, unit: str, action: str = "acknowledge") -> bool:
    return run.one(ack(esc_id, unit, action=action, occurred=at(1))).refused is None


# ---- judging an ack: the same answer as the engine ------------------------------------------------------

@pytest.mark.parametrize(("unit", "allowed"), [
    ("north-town", True),  # routed
    ("health", True),  # routed
    ("north-hq", False),  # north-town's parent, but not routed itself
    ("north-village", False),  # below a routed unit
    ("cdc", False),  # unrelated
])
def test_an_ack_is_judged_as_the_engine_judges_it(unit: str, allowed: bool) -> None:
    run = Run()
    run.feed(staffed("north-town", "health", "north-hq", "hq-office"))
    rev = fever_escalation(run)
    verdict = judge_ack(rev.escalation_id, rev, unit, run.directory)
    assert isinstance(verdict, AckAllowed) is allowed
    assert engine_accepts(run, rev.escalation_id, unit) is allowed
    if not allowed:
        assert isinstance(verdict, AckRefused)
        assert f"not routed to {unit}" in verdict.reason
        assert "north-town, health" in verdict.reason


def test_an_ancestor_may_ack_once_the_ladder_routes_it() -> None:
    run = Run()
    run.feed(staffed("north-town", "health", "north-hq", "hq-office"))
    rev = fever_escalation(run)
    refused = judge_ack(rev.escalation_id, rev, "north-hq", run.directory)
    assert isinstance(refused, AckRefused)
    assert "north-hq is above north-town" in refused.reason
    climbed = run.advance(rev.ack_deadline)  # nobody acknowledged: north-town's parent and the root join
    latest = latest_revisions(climbed)[rev.escalation_id]
    assert "north-hq" in latest.routed_to
    assert isinstance(judge_ack(rev.escalation_id, latest, "north-hq", run.directory), AckAllowed)
    assert engine_accepts(run, rev.escalation_id, "north-hq")


def test_unknown_and_resolved_escalations() -> None:
    run = Run()
    run.feed(staffed("north-town", "health"))
    rev = fever_escalation(run)
    unknown = judge_ack("esc-00000000000000000000", None, "health", run.directory)
    assert isinstance(unknown, AckRefused)
    assert "unknown escalation 'esc-00000000000000000000'" in unknown.reason
    (resolved,) = run.feed(ack(rev.escalation_id, "health", action="resolve", occurred=at(2)))
    verdict = judge_ack(rev.escalation_id, resolved, "north-town", run.directory)
    assert isinstance(verdict, AlreadyResolved)
    # ...and the engine would indeed ignore it: no revision, no dead letter.
    outcome = run.one(ack(rev.escalation_id, "north-town", occurred=at(3)))
    assert outcome.refused is None
    assert outcome.revisions == []


def test_a_unit_covered_by_an_ack_is_told_so() -> None:
    run = Run()
    run.feed(staffed("north-town", "health"))
    rev = fever_escalation(run)
    (acked,) = run.feed(ack(rev.escalation_id, "north-town", "nt-1", occurred=at(1)))
    verdict = judge_ack(rev.escalation_id, acked, "north-town", run.directory)
    assert isinstance(verdict, AckAllowed)
    assert verdict.covered_by == "north-town"
    other = judge_ack(rev.escalation_id, acked, "health", run.directory)
    assert isinstance(other, AckAllowed)
    assert other.covered_by is None


def test_the_ack_event_is_the_contracts_and_a_phone_number_in_the_note_is_refused() -> None:
    d = small_directory()
    built = build_ack("esc-0123456789abcdef0123", "health", "wjw-1", "resolve", "已派流调队",
                      datetime(2020, 1, 24, 21, 5, tzinfo=CST), d)
    assert not isinstance(built, Refusal)
    event, raw = built
    assert event.event_id.startswith("ack-")
    assert len(event.event_id) == 36  # ack- and 32 hex digits of a uuid4
    assert (event.source_unit, event.unit_id, event.officer_id, event.action) == (
        "health", "health", "wjw-1", "resolve")
    assert b'"occurred_at":"2020-01-24T21:05:00+08:00"' in raw
    refused = build_ack("esc-0123456789abcdef0123", "health", "wjw-1", "acknowledge", "回电13912345678",
                        datetime(2020, 1, 24, 21, 5, tzinfo=CST), d)
    assert isinstance(refused, Refusal)
    assert refused.field == "note"
    assert "phone" in refused.reason
    assert b"13912345678" not in refused.raw


# ---- the board ------------------------------------------------------------------------------------------

def revision(esc_id: str, number: int, status: str, opened_minutes: int) -> Escalation:
    opened = datetime(2020, 1, 24, 18, 0, tzinfo=CST) + timedelta(minutes=opened_minutes)
    return Escalation(
        escalation_id=esc_id, revision=number, step=number - 1, rule="late_report", severity="IV",
        status=status, region=None, subject={"case_id": esc_id}, title="t", summary="s",  # type: ignore[arg-type]
        routed_to=["health"], assignees={"health": []}, fallback={},
        evidence=[Evidence(source_unit="cdc", event_id=f"e-{esc_id}", kind="case_report", occurred_at=opened)],
        opened_at=opened, updated_at=opened + timedelta(minutes=number), ack_deadline=opened + timedelta(hours=1),
        acked_by={},
    )


def test_the_board_shows_the_latest_revision_of_each_oldest_unacknowledged_first() -> None:
    revisions = [
        revision("esc-b", 1, "open", 30), revision("esc-a", 1, "open", 10),
        revision("esc-a", 2, "acknowledged", 10), revision("esc-c", 1, "open", 50),
        revision("esc-a", 1, "open", 10),  # re-sent after a restart, later than revision 2: not the latest
        revision("esc-d", 1, "resolved", 0), revision("esc-e", 1, "open", 5),
    ]
    latest = latest_revisions(revisions)
    assert {k: r.revision for k, r in latest.items()} == {"esc-a": 2, "esc-b": 1, "esc-c": 1, "esc-d": 1, "esc-e": 1}
    assert [r.escalation_id for r in in_order(latest.values())] == ["esc-e", "esc-b", "esc-c", "esc-a", "esc-d"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["esc-a", "esc-b", "esc-c"]), st.integers(1, 5)), max_size=40))
def test_seen_revisions_shows_each_revision_at_most_once(deliveries: list[tuple[str, int]]) -> None:
    seen = SeenRevisions()
    shown = [(e, n) for e, n in deliveries if seen.is_new(revision(e, n, "open", 0))]
    assert len(shown) == len(set(shown))
    # Whatever arrives, the newest revision of each escalation delivered in order is shown.
    for esc in {e for e, _ in deliveries}:
        assert max(n for e, n in shown if e == esc) == max(n for e, n in deliveries if e == esc)


# ---- officers' times ------------------------------------------------------------------------------------

NOW = datetime(2020, 1, 25, 9, 30, tzinfo=CST)


@pytest.mark.parametrize(("text", "expected"), [
    ("02:13", datetime(2020, 1, 25, 2, 13, tzinfo=CST)),  # earlier today
    ("23:00", datetime(2020, 1, 24, 23, 0, tzinfo=CST)),  # later than now: yesterday's
    ("09:30", NOW),
    ("2020-01-24T20:05", datetime(2020, 1, 24, 20, 5, tzinfo=CST)),  # no offset: the directory's zone
    ("2020-01-24 20:05:00", datetime(2020, 1, 24, 20, 5, tzinfo=CST)),
    ("2020-01-24T12:05:00Z", datetime(2020, 1, 24, 20, 5, tzinfo=CST)),
])
def test_officer_times(text: str, expected: datetime) -> None:
    assert parse_officer_time(text, CST, NOW) == expected


@pytest.mark.parametrize("text", ["25:00", "12:75", "yesterday", "2020-13-01T00:00"])
def test_officer_times_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a time"):
        parse_officer_time(text, CST, NOW)


@pytest.mark.parametrize(("delta", "text"), [
    (timedelta(seconds=45), "45s"), (timedelta(minutes=12, seconds=59), "12m"),
    (timedelta(hours=2, minutes=5), "2h05m"), (timedelta(days=3, hours=4, minutes=1), "3d04h"),
    (-timedelta(minutes=38), "38m"),
])
def test_spans(delta: timedelta, text: str) -> None:
    assert span(delta) == text


# ---- the roster view ------------------------------------------------------------------------------------

def book_of(*shifts: DutyShift) -> RosterBook:
    book = RosterBook()
    for s in shifts:
        book.add(s)
    return book


def test_who_was_on_duty_and_the_gaps_ahead() -> None:
    d = small_directory()
    book = book_of(
        shift("north-hq", "principal", "p-1", start=at(0), end=at(hours=8)),
        shift("north-hq", "principal", "p-2", start=at(hours=10), end=at(hours=20)),
        shift("north-hq", "in_charge", "c-1", start=at(0), end=at(hours=12)),
        shift("north-hq", "in_charge", "c-1", start=at(0), end=at(hours=12), status="cancelled"),  # last wins
        shift("north-hq", "in_charge", "c-2", start=at(hours=1), end=at(hours=40)),
        shift("north-hq", "duty_officer", "d-1", start=at(hours=1), end=at(hours=3)),
    )
    report = book.unit_duty(d, "north-hq", at(hours=2, minutes=13))
    assert [(o.post, o.officer_id) for o in report.on_duty] == [
        ("principal", "p-1"), ("in_charge", "c-2"), ("duty_officer", "d-1")]
    assert report.on_duty[0].officer_name == "值班员"
    assert [(g.post, g.start, g.end) for g in report.gaps] == [
        ("principal", at(hours=8), at(hours=10)),
        ("principal", at(hours=20), None),
    ]
    # Half an hour in, in_charge is not yet covered (c-1 was cancelled): a gap open since watching began.
    early = book.unit_duty(d, "north-hq", at(30))
    assert [o.officer_id for o in early.on_duty] == ["p-1"]
    assert ("in_charge", at(0), at(hours=1)) in [(g.post, g.start, g.end) for g in early.gaps]


def test_units_without_duty_are_not_watched_for_gaps() -> None:
    d = small_directory()
    book = book_of(shift("hospital", "principal", "h-1", start=at(0), end=at(hours=1)))
    report = book.unit_duty(d, "hospital", at(10))
    assert [o.officer_id for o in report.on_duty] == ["h-1"]
    assert report.watched is False
    assert report.gaps == []
