"""Routing, the acknowledgement ladder, escalation ids, duplicates, refusals and the engine clock."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest

from agents.core.engine import Engine
from agents.core.ids import escalation_id
from schemas.codec import Refusal, decode_event, encode_event
from schemas.escalation import Escalation
from schemas.events import DutyShift, InputEvent
from tests.builders import (
    T0,
    Run,
    ack,
    alert,
    at,
    case,
    expected_id,
    guangyuan,
    heartbeat,
    shift,
    small_directory,
    staffed,
)

pytestmark = pytest.mark.core


def fever(person: str = "p-1", checkpoint: str = "cp-road", minute: float = 0,
          **kwargs: object) -> InputEvent:
    return alert(person, checkpoint=checkpoint, temperature=38.0, occurred=at(minute), **kwargs)  # type: ignore[arg-type]


def open_fever(run: Run, checkpoint: str = "cp-road", minute: float = 0) -> Escalation:
    """A IV fever escalation at `minute`, routed to the checkpoint's unit and health."""
    (rev,) = fevers(run.feed(fever(checkpoint=checkpoint, minute=minute)))
    return rev


def fevers(revisions: list[Escalation]) -> list[Escalation]:
    """Only the fever escalations (a fever alert also starts its checkpoint's silence watch)."""
    return [r for r in revisions if r.rule == "fever_at_checkpoint"]


def on_duty(unit: str, officer: str) -> list[DutyShift]:
    """`officer` holds both watched posts of `unit` from 16:00 to 02:00 (so no duty gap gets in the way)."""
    return [shift(unit, post, officer, start=at(-120), end=at(480), occurred=at(-180))
            for post in ("principal", "in_charge")]


# ---- routing: placeholders ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("events", "rule", "routed"),
    [
        pytest.param([alert("p-1", checkpoint="cp-toll", temperature=38.0)], "fever_at_checkpoint",
                     ["south-hq", "health"], id="$checkpoint_unit"),
        pytest.param([case("c-1", travel=[("hubei-wuhan", T0 - timedelta(days=2))], region="south")],
                     "imported_case", ["health", "cdc", "south-hq", "public-security"], id="$region_hq"),
        pytest.param([alert("p-1", checkpoint="cp-road", origin="hubei-wuhan", destination="south")],
                     "high_risk_arrival", ["south-hq"], id="$destination_hq"),
        pytest.param([case("c-1", township="t"), case("c-2", township="t")], "case_cluster",
                     ["health", "cdc", "north-hq", "hq-office"], id="$root"),
        pytest.param([shift("north-village", start=at(-30), occurred=at(-60))], "duty_gap",
                     ["north-town", "hq-office"], id="$parent"),
        pytest.param([heartbeat("cp-road", occurred=at(-40))], "checkpoint_silent",
                     ["north-town", "transport"], id="$checkpoint_unit-silence"),
    ],
)
def test_placeholders_resolve(events: list[InputEvent], rule: str, routed: list[str]) -> None:
    run = Run()
    run.feed(*events)
    run.advance(at(1))
    (first, *_) = run.escalations(rule).values()
    assert first[0].routed_to == routed


def test_unresolvable_target_is_skipped() -> None:
    run = Run()
    run.feed(case("c-1", region="lake", travel=[("hubei-wuhan", T0 - timedelta(days=2))]))
    assert run.only("imported_case").routed_to == ["health", "cdc", "public-security"]


@pytest.mark.parametrize(
    ("routes", "event", "rule"),
    [
        pytest.param({"late_report": ["$region_hq"]},
                     case("c-1", region="lake", reported=T0 + timedelta(hours=3)), "late_report",
                     id="region-without-hq"),
        pytest.param({"fever_at_checkpoint": ["$parent", "$destination_hq"]},
                     alert("p-1", checkpoint="cp-rail", temperature=38.0, destination="lake"),
                     "fever_at_checkpoint", id="no-unit-concerned-and-hq-less-destination"),
    ],
)
def test_escalation_left_without_target_goes_to_root(routes: dict[str, list[str]], event: InputEvent,
                                                    rule: str) -> None:
    run = Run(small_directory(routes=routes))
    run.feed(event)
    assert run.only(rule).routed_to == ["hq-office"]


def test_duty_gap_of_root_skips_its_missing_parent() -> None:
    run = Run()
    run.feed(shift("hq-office", "principal", start=at(-30), occurred=at(-60)))
    run.advance(at(1))
    assert run.only("duty_gap").routed_to == ["hq-office"]


def test_route_targets_are_not_repeated() -> None:
    run = Run(small_directory(routes={"fever_at_checkpoint": ["$checkpoint_unit", "north-hq", "$region_hq"]}))
    run.feed(alert("p-1", checkpoint="cp-rail", temperature=38.0))
    assert run.only("fever_at_checkpoint").routed_to == ["north-hq"]


# ---- routing: assignees and fallback --------------------------------------------------------------------

@pytest.mark.parametrize(
    ("minute", "on_duty"),
    [
        pytest.param(-1, ["early"], id="before-the-handover"),
        pytest.param(0, ["late"], id="at-the-handover-end-is-exclusive-start-inclusive"),
        pytest.param(30, ["late", "overlap"], id="two-shifts-overlap"),
    ],
)
def test_assignees_are_officers_whose_shifts_cover_the_routing_time(minute: float,
                                                                    on_duty: list[str]) -> None:
    run = Run()
    run.feed(shift("north-town", "duty_officer", "early", start=at(-120), end=at(0), occurred=at(-180)),
             shift("north-town", "duty_officer", "late", start=at(0), end=at(120), occurred=at(-180)),
             shift("north-town", "duty_officer", "overlap", start=at(15), end=at(60), occurred=at(-180)),
             shift("north-town", "duty_officer", "cancelled", start=at(-120), end=at(120), status="cancelled",
                   occurred=at(-180)),
             staffed("health", "north-hq", "hq-office", start=at(-180)))
    (rev,) = [r for r in run.feed(fever(minute=minute)) if r.rule == "fever_at_checkpoint"]
    assert rev.assignees["north-town"] == on_duty
    assert rev.assignees["health"] == ["health-in_charge", "health-principal"]
    assert rev.fallback == {}


def test_assignees_follow_the_roster_key_last_published_wins() -> None:
    run = Run(small_directory(routes={"fever_at_checkpoint": ["$checkpoint_unit"]}))
    run.feed(shift("north-town", "duty_officer", "a", start=at(-60), end=at(60), occurred=at(-120)),
             shift("north-town", "duty_officer", "a", start=at(-60), end=at(60), status="cancelled",
                   occurred=at(-90)),
             on_duty("north-hq", "nh-1"))
    rev = open_fever(run)
    assert rev.assignees["north-town"] == []
    assert rev.fallback == {"north-town": "north-hq"}


def test_fallback_nearest_ancestor_with_somebody_on_duty() -> None:
    run = Run()
    run.feed(on_duty("hq-office", "hq-1"), on_duty("north-hq", "nh-1"), on_duty("health", "h-1"))
    rev = open_fever(run)  # routed: north-town (nobody on duty), health
    assert rev.routed_to == ["north-town", "health", "north-hq"]
    assert rev.fallback == {"north-town": "north-hq"}
    assert rev.assignees == {"north-town": [], "health": ["h-1"], "north-hq": ["nh-1"]}


def test_fallback_skips_ancestors_with_nobody_and_reaches_the_root() -> None:
    run = Run()
    run.feed(on_duty("hq-office", "hq-1"))
    rev = open_fever(run)
    assert rev.routed_to == ["north-town", "health", "hq-office"]
    assert rev.fallback == {"north-town": "hq-office", "health": "hq-office"}
    assert rev.assignees["hq-office"] == ["hq-1"]


def test_fallback_to_a_unit_already_routed_is_not_added_twice() -> None:
    run = Run()
    run.feed(on_duty("hq-office", "hq-1"))
    run.feed(case("c-1", township="t"), case("c-2", township="t"))
    rev = run.only("case_cluster")
    assert rev.routed_to == ["health", "cdc", "north-hq", "hq-office"]
    assert rev.fallback == {"health": "hq-office", "cdc": "hq-office", "north-hq": "hq-office"}


def test_nobody_on_duty_anywhere_leaves_assignees_empty() -> None:
    run = Run()
    rev = open_fever(run)
    assert rev.routed_to == ["north-town", "health"]
    assert rev.fallback == {}
    assert all(officers == [] for officers in rev.assignees.values())


def test_routing_time_of_a_late_event_is_the_engine_clock() -> None:
    run = Run(small_directory(routes={"fever_at_checkpoint": ["health"]}))
    run.feed(shift("health", "duty_officer", "day", start=at(-600), end=at(60), occurred=at(-700)),
             shift("health", "duty_officer", "night", start=at(60), end=at(600), occurred=at(-700)),
             heartbeat("cp-toll", occurred=at(90)))
    rev = open_fever(run)  # occurred at 18:00, processed with the clock at 19:30
    assert rev.updated_at == rev.opened_at == at(90)
    assert rev.assignees["health"] == ["night"]


# ---- joint acknowledgement ------------------------------------------------------------------------------

def test_joint_acknowledgement_needs_every_routed_unit() -> None:
    run = Run()
    opened = open_fever(run, checkpoint="cp-toll")  # south-hq, health
    (first,) = run.feed(ack(opened.escalation_id, "south-hq", "s-1", occurred=at(5)))
    assert (first.status, first.acked_by, first.revision) == ("open", {"south-hq": "s-1"}, 2)
    (second,) = run.feed(ack(opened.escalation_id, "health", "h-1", occurred=at(6)))
    assert (second.status, second.acked_by) == ("acknowledged", {"south-hq": "s-1", "health": "h-1"})


def test_ancestor_acknowledgement_covers_descendants() -> None:
    run = Run()
    run.feed(case("c-1", township="t"), case("c-2", township="t"))  # health, cdc, north-hq, hq-office
    opened = run.only("case_cluster")
    (rev,) = run.feed(ack(opened.escalation_id, "hq-office", occurred=at(1)))
    assert rev.status == "acknowledged"
    assert rev.acked_by == {"hq-office": "hq-office-officer"}


def test_ancestor_acknowledgement_covers_only_its_own_subtree() -> None:
    run = Run(small_directory(routes={"fever_at_checkpoint": ["$checkpoint_unit", "north-hq", "health"]}))
    opened = open_fever(run)  # north-town, north-hq, health
    (rev,) = run.feed(ack(opened.escalation_id, "north-hq", occurred=at(1)))
    assert rev.status == "open"  # north-town is covered by north-hq, health is not
    (rev,) = run.feed(ack(opened.escalation_id, "health", occurred=at(2)))
    assert rev.status == "acknowledged"


def test_repeated_acknowledgement_by_the_same_unit_is_no_new_revision() -> None:
    run = Run()
    opened = open_fever(run)
    run.feed(ack(opened.escalation_id, "north-town", occurred=at(1)))
    outcome = run.one(ack(opened.escalation_id, "north-town", "someone-else", occurred=at(2)))
    assert (outcome.revisions, outcome.refused) == ([], None)


def test_ack_for_an_unknown_escalation_is_refused_naming_escalation_id() -> None:
    run = Run()
    outcome = run.one(ack("esc-00000000000000000000", "health"))
    assert outcome.revisions == []
    assert outcome.refused is not None
    assert outcome.refused[0] == "escalation_id"
    assert outcome.refused[1].startswith("escalation_id:")


def test_ack_from_a_unit_not_routed_is_refused_naming_unit_id() -> None:
    run = Run()
    opened = open_fever(run)  # north-town, health
    outcome = run.one(ack(opened.escalation_id, "cdc", occurred=at(1)))
    assert outcome.revisions == []
    assert outcome.refused is not None
    assert outcome.refused[0] == "unit_id"
    assert outcome.refused[1].startswith("unit_id:")
    assert run.engine.book.status(opened.escalation_id) == "open"


def test_refused_ack_is_not_remembered_so_a_corrected_resend_goes_through() -> None:
    # A dead-lettered event was not processed (contract §1), so its key is not "seen": the unit may fix the
    # ack and send it again under the same event_id, which must not be taken for a conflicting duplicate.
    run = Run()
    opened = open_fever(run)
    wrong = ack(opened.escalation_id, "cdc", event_id="ack-1", occurred=at(1))
    assert run.one(wrong).refused is not None
    fixed = ack(opened.escalation_id, "health", event_id="ack-1", source="cdc", occurred=at(2))
    outcome = run.one(fixed)
    assert outcome.refused is None
    assert [r.acked_by for r in outcome.revisions] == [{"health": "health-officer"}]


def test_ack_on_a_resolved_escalation_is_ignored() -> None:
    run = Run()
    opened = open_fever(run)
    (resolved,) = run.feed(ack(opened.escalation_id, "health", action="resolve", occurred=at(1)))
    assert resolved.status == "resolved"
    for late in (ack(opened.escalation_id, "north-town", occurred=at(2)),
                 ack(opened.escalation_id, "health", action="resolve", occurred=at(3)),
                 ack(opened.escalation_id, "cdc", occurred=at(4))):  # not routed, but it is over anyway
        outcome = run.one(late)
        assert (outcome.revisions, outcome.refused, outcome.duplicate) == ([], None, False)
    assert run.engine.counters["acks_ignored"] == 3


def test_resolve_by_any_routed_unit_ends_it_and_is_final() -> None:
    run = Run()
    opened = open_fever(run)
    (resolved,) = run.feed(ack(opened.escalation_id, "north-town", "nt-1", action="resolve", occurred=at(1)))
    assert (resolved.status, resolved.acked_by, resolved.revision) == ("resolved", {"north-town": "nt-1"}, 2)
    # A further alert about the same subject, the deadline passing, time going by: nothing reopens it.
    assert fevers(run.feed(fever(minute=10))) == []
    assert fevers(run.advance(at(hours=5))) == []
    assert run.engine.book.status(opened.escalation_id) == "resolved"


def test_officer_resolve_is_final_even_where_the_condition_would_reopen_it() -> None:
    run = Run()
    run.feed(case("c-1", township="t"), case("c-2", township="t"))
    cluster = run.only("case_cluster")
    run.feed(ack(cluster.escalation_id, "hq-office", action="resolve", occurred=at(5)))
    run.feed(case("c-2", "excluded", township="t", occurred=at(6)), case("c-3", township="t", occurred=at(7)),
             case("c-4", township="t", occurred=at(8)))
    assert [r.status for r in run.of_rule("case_cluster")] == ["open", "resolved"]


def test_replayed_events_do_not_reopen_a_resolved_escalation() -> None:
    first = fever(minute=0, event_id="f-1")
    run = Run()
    (opened,) = run.feed(first)
    run.feed(ack(opened.escalation_id, "health", action="resolve", occurred=at(1)))
    again = run.one(first)
    assert again.duplicate
    assert again.revisions == []
    # Re-sent by another system under a new id: the same subject, still over.
    assert run.feed(fever(minute=0, event_id="f-2")) == []


def test_auto_resolved_silence_is_not_final() -> None:
    # A resolution by the condition ending (not an officer's resolve) lets the same subject reopen.
    run = Run()
    run.feed(case("c-1", township="t"), case("c-2", township="t"))
    run.feed(case("c-2", "excluded", township="t", occurred=at(1)))
    run.feed(case("c-3", township="t", occurred=at(2)))
    assert [r.status for r in run.of_rule("case_cluster")] == ["open", "resolved", "open"]


# ---- the ladder -----------------------------------------------------------------------------------------

def test_deadline_is_routing_time_plus_ack_minutes_of_severity() -> None:
    run = Run()
    iv = open_fever(run)
    (iii,) = fevers(run.feed(alert("p-2", checkpoint="cp-rail", temperature=38.0, origin="hubei-wuhan",
                                   occurred=at(1))))
    run.feed(case("c-1", township="t", occurred=at(2)), case("c-2", township="t", occurred=at(2)))
    ii = run.only("case_cluster")
    assert iv.ack_deadline - iv.updated_at == timedelta(minutes=60)
    assert iii.ack_deadline - iii.updated_at == timedelta(minutes=30)
    assert ii.ack_deadline - ii.updated_at == timedelta(minutes=15)


def test_ladder_at_the_deadline_adds_parents_and_root() -> None:
    run = Run()
    opened = open_fever(run)  # IV: deadline 19:00; routed north-town, health
    assert fevers(run.advance(at(59, seconds=59))) == []
    (climbed,) = fevers(run.advance(at(60)))
    assert climbed.escalation_id == opened.escalation_id
    assert climbed.routed_to == ["north-town", "health", "north-hq", "hq-office"]
    assert (climbed.step, climbed.revision, climbed.status) == (1, 2, "open")
    assert climbed.updated_at == at(60)
    assert climbed.ack_deadline == at(120)  # due + ack_minutes[IV]
    assert climbed.opened_at == opened.opened_at


def test_ladder_adds_only_for_uncovered_units() -> None:
    run = Run(small_directory(routes={"fever_at_checkpoint": ["$checkpoint_unit", "north-village"]}))
    opened = open_fever(run)  # north-town, north-village
    run.feed(ack(opened.escalation_id, "north-town", occurred=at(10)))  # covers north-village too
    assert fevers(run.advance(at(hours=3))) == []

    run = Run()
    opened = open_fever(run)  # north-town, health
    run.feed(ack(opened.escalation_id, "north-town", occurred=at(10)))
    (climbed,) = fevers(run.advance(at(60)))
    assert climbed.routed_to == ["north-town", "health", "hq-office"]  # health's parent is the root


def test_ladder_climbs_step_by_step_until_nothing_is_left_to_add() -> None:
    run = Run(small_directory(routes={"fever_at_checkpoint": ["north-village"]}))
    open_fever(run)
    steps = fevers(run.advance(at(hours=10)))
    assert [(r.step, r.routed_to, r.updated_at) for r in steps] == [
        (1, ["north-village", "north-town", "hq-office"], at(60)),
        (2, ["north-village", "north-town", "hq-office", "north-hq"], at(120)),
    ]
    assert steps[-1].ack_deadline == at(180)
    assert steps[-1].status == "open"  # nobody left to add: it stays open at the top of the tree


def test_ladder_stops_once_covered() -> None:
    run = Run()
    opened = open_fever(run)
    run.advance(at(60))
    (acked,) = run.feed(ack(opened.escalation_id, "hq-office", occurred=at(70)))
    assert acked.status == "acknowledged"
    assert fevers(run.advance(at(hours=10))) == []


def test_ladder_nothing_to_add_when_root_is_the_only_target() -> None:
    run = Run(small_directory(routes={"fever_at_checkpoint": ["$root"]}))
    open_fever(run)
    assert fevers(run.advance(at(hours=5))) == []


def test_ladder_new_units_are_staffed_with_fallback() -> None:
    run = Run()
    run.feed(on_duty("hq-office", "hq-1"))
    open_fever(run)
    (climbed,) = fevers(run.advance(at(60)))
    assert climbed.assignees["hq-office"] == ["hq-1"]
    assert climbed.fallback == {"north-town": "hq-office", "health": "hq-office", "north-hq": "hq-office"}


def test_further_event_keeps_step_and_deadline() -> None:
    run = Run()
    first = fever(minute=0)
    run.feed(first)
    (climbed,) = fevers(run.advance(at(60)))
    second = fever(minute=75)
    (rev,) = fevers(run.feed(second))
    assert (rev.revision, rev.step, rev.ack_deadline) == (3, climbed.step, climbed.ack_deadline)
    assert [e.event_id for e in rev.evidence] == [first.event_id, second.event_id]
    assert rev.updated_at == at(75)


def test_deadline_after_a_further_event_still_fires_at_the_original_time() -> None:
    run = Run()
    open_fever(run)
    run.feed(fever(minute=50))
    (climbed,) = fevers(run.advance(at(60)))
    assert climbed.step == 1


# ---- escalation ids -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("rule", "subject"),
    [
        ("imported_case", {"case_id": "gy-2020-001"}),
        ("fever_at_checkpoint",
         {"checkpoint_id": "gy-airport", "person_ref": "p-wh-101", "date": "2020-01-24"}),
        ("case_cluster", {"region": "lizhou", "township": "东坝街道", "first_case_id": "c-1"}),
        ("duty_gap", {"unit_id": "x", "post": "principal", "gap_start": "2020-01-24T18:00:00+08:00"}),
    ],
    ids=["ascii", "three-keys-sorted", "non-ascii-utf8", "time-subject"],
)
def test_escalation_id_is_sha256_of_canonical_json(rule: str, subject: dict[str, str]) -> None:
    canonical = json.dumps([rule, subject], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert escalation_id(rule, subject) == "esc-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:20]
    assert escalation_id(rule, dict(reversed(list(subject.items())))) == escalation_id(rule, subject)


def test_escalation_ids_of_engine_output_match_their_subjects() -> None:
    run = Run()
    run.feed(case("c-1", township="东坝街道", travel=[("hubei-wuhan", T0)], reported=at(180)),
             case("c-2", township="东坝街道", person="p-1"),
             alert("p-1", temperature=38.0, origin="hubei-wuhan", occurred=at(-5)))
    assert {r.rule for r in run.revisions} >= {"case_cluster", "imported_case", "late_report",
                                                 "fever_at_checkpoint", "checkpoint_contact"}
    for rev in run.revisions:
        assert rev.escalation_id == expected_id(rev.rule, rev.subject)


# ---- duplicates -----------------------------------------------------------------------------------------

def test_same_event_twice_is_a_duplicate() -> None:
    run = Run()
    event = fever(event_id="dup-1")
    assert len(run.one(event).revisions) == 1
    outcome = run.one(event)
    assert (outcome.duplicate, outcome.revisions, outcome.refused) == (True, [], None)
    assert run.engine.counters["duplicates"] == 1


def test_duplicate_compared_as_parsed_json_not_bytes() -> None:
    event = fever(event_id="dup-1")
    raw = encode_event(event)
    reordered = json.dumps(dict(reversed(list(json.loads(raw).items()))), ensure_ascii=False, indent=1)
    again = decode_event(reordered.encode("utf-8"))
    assert not isinstance(again, Refusal)
    run = Run()
    run.one(event)
    assert run.one(again).duplicate


def test_same_key_different_content_is_a_conflicting_duplicate() -> None:
    run = Run()
    run.one(fever(event_id="dup-1"))
    outcome = run.one(fever(minute=1, event_id="dup-1"))
    assert outcome.revisions == []
    assert not outcome.duplicate
    assert outcome.refused is not None
    assert outcome.refused[0] == "event_id"
    assert "conflicting duplicate" in outcome.refused[1]


def test_same_event_id_from_another_source_is_no_duplicate() -> None:
    run = Run()
    run.one(fever(person="p-1", event_id="e-1", source="transport"))
    outcome = run.one(fever(person="p-2", event_id="e-1", source="public-security"))
    assert (outcome.duplicate, outcome.refused, len(outcome.revisions)) == (False, None, 1)


def test_duplicate_does_not_move_the_clock_or_fire_timers() -> None:
    run = Run()
    late = fever(minute=0, event_id="e-1")
    run.feed(late, heartbeat("cp-toll", occurred=at(10)))
    assert run.one(late).duplicate
    assert run.engine.clock == at(10)


def test_duplicate_numbers_compared_as_parsed_json() -> None:
    # 38 and 38.0 are the same JSON number once parsed.
    raw = encode_event(fever(event_id="dup-2")).replace(b'"temperature_c":38.0', b'"temperature_c":38')
    assert b'"temperature_c":38,' in raw
    again = decode_event(raw)
    assert not isinstance(again, Refusal)
    run = Run()
    run.one(fever(event_id="dup-2"))
    assert run.one(again).duplicate


def test_duplicate_of_a_late_event_is_recognised_after_the_clock_moved_on() -> None:
    # A report that occurred 20 days before the clock is seen now; its producer's retry two hours later is
    # a duplicate, although the report itself lies outside the window counted back from the clock.
    run = Run()
    run.feed(heartbeat("cp-rail", occurred=at(days=20)))
    late = case("c-1", occurred=at(0), event_id="late-1")
    run.feed(late)
    run.advance(at(days=20, hours=2))  # eviction of old duplicate keys runs as the clock moves
    assert run.one(late).duplicate


def test_duplicate_forgotten_after_the_longest_window() -> None:
    run = Run()
    event = fever(event_id="e-1")
    run.feed(event)
    run.advance(at(days=15))
    outcome = run.one(event)
    assert (outcome.duplicate, outcome.refused) == (False, None)


def test_escalation_forgotten_by_eviction_never_restarts_at_revision_one() -> None:
    run = Run()
    (opened,) = run.feed(case("c-1", "suspected", travel=[("hubei-wuhan", T0)]))
    run.feed(ack(opened.escalation_id, "health", action="resolve", occurred=at(10)))
    run.advance(at(days=30))
    # The confirmation of the same case, 30 days late: the resolved escalation must not come back.
    late = run.feed(case("c-1", "confirmed", travel=[("hubei-wuhan", T0)], occurred=at(5)))
    assert [r for r in late if r.escalation_id == opened.escalation_id] == []


# ---- refusals -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("event", "field"),
    [
        pytest.param(alert("p-1", source="nobody"), "source_unit", id="unknown-source-unit"),
        pytest.param(alert("p-1", checkpoint="cp-nowhere"), "checkpoint_id", id="unknown-checkpoint-alert"),
        pytest.param(heartbeat("cp-nowhere"), "checkpoint_id", id="unknown-checkpoint-heartbeat"),
        pytest.param(case("c-1", region="atlantis"), "region", id="unknown-region"),
        pytest.param(shift("ghost-unit", source="health"), "unit_id", id="unknown-shift-unit"),
        pytest.param(ack("esc-00000000000000000000", "ghost-unit", source="health"), "unit_id",
                     id="unknown-ack-unit"),
    ],
)
def test_unknown_references_are_refused_naming_the_field(event: InputEvent, field: str) -> None:
    run = Run()
    outcome = run.one(event)
    assert outcome.revisions == []
    assert outcome.refused is not None
    assert outcome.refused[0] == field
    assert outcome.refused[1].startswith(f"{field}:")
    assert run.engine.counters["dead_letters"] == 1


def test_refused_event_does_not_move_the_clock() -> None:
    run = Run()
    run.feed(heartbeat("cp-rail", occurred=at(0)))
    run.one(heartbeat("cp-nowhere", occurred=at(hours=5)))
    assert run.engine.clock == at(0)
    assert run.of_rule("checkpoint_silent") == []


def test_refused_event_is_not_remembered_as_seen() -> None:
    run = Run()
    assert run.one(case("c-1", region="atlantis", event_id="e-1")).refused is not None
    fixed = run.one(case("c-1", region="north", event_id="e-1", travel=[("hubei-wuhan", T0)]))
    assert (fixed.refused, fixed.duplicate) == (None, False)
    assert [r.rule for r in fixed.revisions] == ["imported_case"]


# ---- the engine clock and timers ------------------------------------------------------------------------

def test_timers_fire_before_the_event_in_order_of_due_time() -> None:
    run = Run()
    run.feed(heartbeat("cp-rail", occurred=at(0)),  # silent at 18:30, its III deadline 19:00
             case("c-0", reported=at(5 + 180), occurred=at(5)),  # late: IV, deadline 19:05
             heartbeat("cp-toll", occurred=at(10)))  # silent at 18:40, its III deadline 19:10
    assert [r.rule for r in run.revisions] == ["late_report"]
    revs = run.feed(case("c-1", travel=[("hubei-wuhan", T0)], occurred=at(70)))  # 19:10
    assert [(r.rule, r.subject.get("checkpoint_id"), r.step, r.updated_at) for r in revs] == [
        ("checkpoint_silent", "cp-rail", 0, at(30)),
        ("checkpoint_silent", "cp-toll", 0, at(40)),
        ("checkpoint_silent", "cp-rail", 1, at(60)),
        ("late_report", None, 1, at(65)),
        ("checkpoint_silent", "cp-toll", 1, at(70)),  # due exactly at the event's time: fires first
        ("imported_case", None, 0, at(70)),
    ]


def test_timer_due_exactly_at_the_event_time_fires_first() -> None:
    run = Run()
    opened = open_fever(run)  # deadline 19:00
    revs = fevers(run.feed(ack(opened.escalation_id, "hq-office", occurred=at(60))))
    # The ladder adds hq-office at 19:00 first, so the ack at 19:00 is from a routed unit.
    assert [(r.step, r.status) for r in revs] == [(1, "open"), (1, "acknowledged")]


def test_advance_fires_pending_timers_and_drops_nothing() -> None:
    events: list[InputEvent] = [heartbeat("cp-rail", occurred=at(0)), fever(minute=5),
                                shift("north-town", start=at(0), end=at(hours=1), occurred=at(-30))]
    plain = Run()
    plain.feed(*events)
    advanced = Run()
    advanced.feed(*events)
    extra = advanced.advance(at(hours=3))
    assert advanced.revisions[:len(plain.revisions)] == plain.revisions
    assert {r.rule for r in extra} == {"checkpoint_silent", "fever_at_checkpoint", "duty_gap"}
    assert advanced.engine.clock == at(hours=3)
    assert [r.updated_at for r in extra] == sorted(r.updated_at for r in extra)


def test_advance_never_moves_the_clock_back() -> None:
    run = Run()
    run.feed(heartbeat("cp-rail", occurred=at(60)))
    assert run.advance(at(0)) == []
    assert run.engine.clock == at(60)


def test_late_event_does_not_move_the_clock_back() -> None:
    run = Run()
    run.feed(heartbeat("cp-rail", occurred=at(60)), heartbeat("cp-toll", occurred=at(0)))
    assert run.engine.clock == at(60)


def test_snapshot_and_restore_keep_pending_timers() -> None:
    run = Run()
    opened = open_fever(run)
    blob = run.engine.snapshot()
    restored = Engine.restore(run.directory, blob)
    climbed = restored.advance(at(60))
    assert [(r.escalation_id, r.step, r.revision) for r in fevers(climbed)] == [(opened.escalation_id, 1, 2)]
    assert run.engine.advance(at(60)) == climbed


# ---- wall-clock mode ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("ahead", "refused"),
    [
        pytest.param(timedelta(minutes=10), False, id="10-minutes-ahead"),
        pytest.param(timedelta(minutes=10, seconds=1), True, id="10-minutes-and-a-second-ahead"),
    ],
)
def test_wall_mode_refuses_events_from_the_future(ahead: timedelta, refused: bool) -> None:
    engine = Engine(small_directory(), clock="wall")
    outcome = engine.process(fever(minute=0), received_at=at(0) - ahead)
    assert (outcome.refused is not None) == refused
    if refused:
        assert outcome.refused is not None
        assert outcome.refused[0] == "occurred_at"


def test_wall_mode_clock_is_the_receipt_time() -> None:
    engine = Engine(small_directory(), clock="wall")
    revs = fevers(engine.process(fever(minute=0), received_at=at(45)).revisions)
    assert [r.updated_at for r in revs] == [at(45)]
    assert engine.clock == at(45)
    # The deadline runs from the routing time (receipt), not from when the fever was measured.
    assert revs[0].ack_deadline == at(105)


# ---- the shipped directory ------------------------------------------------------------------------------

def test_guangyuan_fallback_and_ladder_for_a_street() -> None:
    run = Run(guangyuan())
    run.feed(on_duty("lizhou-hq", "lz-01"), on_duty("hq-office", "hq-01"))
    run.feed(alert("p-1", checkpoint="gy-east-toll", temperature=38.0, source="transport"))
    opened = run.only("fever_at_checkpoint")
    # lizhou-hq holds the toll station and has somebody on duty; health has nobody: the HQ office covers it.
    assert opened.routed_to == ["lizhou-hq", "health", "hq-office"]
    assert opened.fallback == {"health": "hq-office"}
    assert opened.assignees == {"lizhou-hq": ["lz-01"], "health": [], "hq-office": ["hq-01"]}
    run.feed(ack(opened.escalation_id, "lizhou-hq", "lz-01", occurred=at(10)))
    assert fevers(run.advance(at(60))) == []  # health is covered by no one yet, but its parent is routed
    (acked,) = run.feed(ack(opened.escalation_id, "hq-office", "hq-01", occurred=at(61)))
    assert acked.status == "acknowledged"


def test_guangyuan_scenario_acks_name_escalations_the_engine_opens() -> None:
    # The demo computes its ack ids from subjects in advance; they must be the ids the engine gives.
    from agents.scenario import lines as scenario_lines

    produced: set[str] = set()
    acked: set[str] = set()
    engine = Engine(guangyuan())
    for raw in scenario_lines():
        event = decode_event(raw)
        if isinstance(event, Refusal):
            continue
        outcome = engine.process(event)
        if event.kind == "escalation_ack":
            acked.add(event.escalation_id)
            assert outcome.refused is None, outcome.refused
        produced |= {r.escalation_id for r in outcome.revisions}
    assert len(acked) >= 5
    assert acked <= produced


def test_evicted_escalation_continues_its_numbering_when_the_condition_returns() -> None:
    run = Run()
    (opened,) = run.feed(case("c-1", "suspected", travel=[("hubei-wuhan", T0)]))
    run.advance(at(31))  # the ladder adds the root, whose acknowledgement covers every routed unit
    acked = run.feed(ack(opened.escalation_id, "hq-office", occurred=at(40)))
    assert acked[-1].status == "acknowledged"
    run.advance(at(days=40))  # acknowledged, untouched for more than twice the longest window: evicted
    assert opened.escalation_id not in run.engine.book.escalations
    late = [r for r in run.feed(case("c-1", "confirmed", travel=[("hubei-wuhan", at(days=39))],
                                     occurred=at(days=40))) if r.escalation_id == opened.escalation_id]
    assert [r.revision for r in late] == [max(r.revision for r in run.revisions
                                              if r.escalation_id == opened.escalation_id and r not in late) + 1]
