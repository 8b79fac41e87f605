"""The eight rules of contract §3, each on both sides of each of its thresholds."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from schemas.events import CaseReport, CaseStatus
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

DAY = timedelta(days=1)


# ---- fever_at_checkpoint --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("temperature", "origin", "fires", "severity", "public_security"),
    [
        pytest.param(37.2, None, False, None, False, id="37.2-below-line"),
        pytest.param(37.3, None, True, "IV", False, id="37.3-on-the-line"),
        pytest.param(39.0, "sichuan-chengdu", True, "IV", False, id="origin-not-high-risk"),
        pytest.param(37.3, "hubei-wuhan", True, "III", True, id="high-risk-origin-III-and-police"),
        pytest.param(37.2, "hubei-wuhan", False, None, False, id="37.2-from-wuhan-is-no-fever"),
    ],
)
def test_fever_threshold(temperature: float, origin: str | None, fires: bool, severity: str | None,
                         public_security: bool) -> None:
    run = Run()
    run.feed(alert("p-1", checkpoint="cp-rail", temperature=temperature, origin=origin))
    fevers = run.of_rule("fever_at_checkpoint")
    if not fires:
        assert fevers == []
        return
    (rev,) = fevers
    assert rev.severity == severity
    assert rev.subject == {"checkpoint_id": "cp-rail", "person_ref": "p-1", "date": "2020-01-24"}
    assert rev.escalation_id == expected_id("fever_at_checkpoint", rev.subject)
    assert rev.routed_to == (["north-hq", "health", "public-security"] if public_security
                             else ["north-hq", "health"])
    assert rev.region == "north"


def test_fever_date_is_the_local_date_of_the_directory_zone() -> None:
    # 16:30 UTC on the 24th is 00:30 on the 25th in Asia/Shanghai.
    run = Run()
    run.feed(alert("p-1", temperature=38.0, occurred=T0.replace(hour=23) + timedelta(minutes=30)))
    run.feed(alert("p-2", temperature=38.0, occurred=T0 + timedelta(hours=6, minutes=30)))
    dates = {r.subject["person_ref"]: r.subject["date"] for r in run.of_rule("fever_at_checkpoint")}
    assert dates == {"p-1": "2020-01-24", "p-2": "2020-01-25"}


def test_fever_same_person_same_day_is_one_escalation_with_a_new_revision() -> None:
    run = Run()
    first = alert("p-1", temperature=37.8, occurred=at(0))
    second = alert("p-1", temperature=38.4, occurred=at(40))
    run.feed(first, second)
    revs = run.of_rule("fever_at_checkpoint")
    assert [r.revision for r in revs] == [1, 2]
    assert len({r.escalation_id for r in revs}) == 1
    assert [e.event_id for e in revs[-1].evidence] == [first.event_id, second.event_id]


def test_fever_later_alert_from_high_risk_origin_raises_severity_and_adds_police() -> None:
    run = Run()
    run.feed(alert("p-1", temperature=37.8, occurred=at(0)),
             alert("p-1", temperature=37.9, origin="hubei-wuhan", occurred=at(5)))
    latest = run.only("fever_at_checkpoint")
    assert latest.severity == "III"
    assert "public-security" in latest.routed_to


def test_fever_is_not_also_a_high_risk_arrival() -> None:
    run = Run()
    run.feed(alert("p-1", temperature=38.0, origin="hubei-wuhan", destination="south"))
    assert run.of_rule("high_risk_arrival") == []
    assert run.only("fever_at_checkpoint").severity == "III"


# ---- high_risk_arrival ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("kwargs", "fires"),
    [
        pytest.param({"origin": "hubei-wuhan", "direction": "inbound"}, True, id="inbound-from-wuhan"),
        pytest.param({"origin": "hubei-wuhan", "direction": "inbound", "temperature": None}, True,
                     id="inbound-no-temperature-taken"),
        pytest.param({"origin": "hubei-wuhan", "direction": "inbound", "temperature": 37.2}, True,
                     id="inbound-37.2-is-no-fever"),
        pytest.param({"origin": "hubei-wuhan", "direction": "outbound"}, False, id="outbound"),
        pytest.param({"origin": "hubei-wuhan", "direction": "inbound", "temperature": 37.3}, False,
                     id="with-fever-it-is-a-fever-instead"),
        pytest.param({"origin": "sichuan-chengdu", "direction": "inbound"}, False, id="origin-not-high-risk"),
        pytest.param({"origin": None, "direction": "inbound"}, False, id="no-origin"),
    ],
)
def test_high_risk_arrival_fires_only_inbound_without_fever(kwargs: dict[str, object], fires: bool) -> None:
    run = Run()
    run.feed(alert("p-9", destination="north", **kwargs))  # type: ignore[arg-type]
    arrivals = run.of_rule("high_risk_arrival")
    assert len(arrivals) == (1 if fires else 0)
    if fires:
        (rev,) = arrivals
        assert rev.severity == "IV"
        assert rev.subject == {"person_ref": "p-9", "date": "2020-01-24"}


@pytest.mark.parametrize(
    ("checkpoint", "destination", "routed"),
    [
        pytest.param("cp-rail", "south", ["south-hq"], id="known-destination-its-county-hq"),
        pytest.param("cp-rail", "north", ["north-hq"], id="destination-same-region"),
        pytest.param("cp-toll", "xian", ["south-hq"], id="unknown-destination-checkpoint-unit"),
        pytest.param("cp-road", None, ["north-town"], id="no-destination-checkpoint-unit"),
        pytest.param("cp-rail", "lake", ["hq-office"], id="known-region-without-hq-skipped-to-root"),
    ],
)
def test_high_risk_arrival_routes_to_destination_hq(checkpoint: str, destination: str | None,
                                                    routed: list[str]) -> None:
    run = Run()
    run.feed(alert("p-9", checkpoint=checkpoint, origin="hubei-wuhan", destination=destination))
    assert run.only("high_risk_arrival").routed_to == routed


# ---- imported_case --------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("left_before", "fires"),
    [
        pytest.param(timedelta(days=0), True, id="left-today"),
        pytest.param(timedelta(days=14), True, id="left-exactly-14-days-before"),
        pytest.param(timedelta(days=14, seconds=1), False, id="14-days-and-a-second"),
        pytest.param(timedelta(days=15), False, id="left-15-days-before"),
    ],
)
def test_imported_case_travel_window(left_before: timedelta, fires: bool) -> None:
    run = Run()
    run.feed(case("c-1", "confirmed", travel=[("hubei-wuhan", T0 - left_before)]))
    found = run.of_rule("imported_case")
    assert len(found) == (1 if fires else 0)
    if fires:
        (rev,) = found
        assert rev.severity == "III"
        assert rev.subject == {"case_id": "c-1"}
        assert rev.routed_to == ["health", "cdc", "north-hq", "public-security"]


@pytest.mark.parametrize(
    ("status", "fires"),
    [("suspected", True), ("confirmed", True), ("asymptomatic", True), ("close_contact", False),
     ("excluded", False), ("recovered", False), ("deceased", False)],
)
def test_imported_case_statuses(status: CaseStatus, fires: bool) -> None:
    run = Run()
    run.feed(case("c-1", status, travel=[("hubei-wuhan", T0 - 3 * DAY)]))
    assert len(run.of_rule("imported_case")) == (1 if fires else 0)


def test_imported_case_needs_a_high_risk_region() -> None:
    run = Run()
    run.feed(case("c-1", "confirmed", travel=[("sichuan-chengdu", T0 - DAY), ("beijing", T0 - 2 * DAY)]))
    run.feed(case("c-2", "confirmed", travel=[]))
    run.feed(case("c-3", "confirmed"))
    assert run.of_rule("imported_case") == []


def test_imported_case_any_high_risk_entry_counts() -> None:
    run = Run()
    run.feed(case("c-1", "suspected", travel=[("hubei-wuhan", T0 - 20 * DAY), ("sichuan-chengdu", T0 - DAY),
                                              ("hubei-wuhan", T0 - 5 * DAY)]))
    assert run.only("imported_case").subject == {"case_id": "c-1"}


def test_imported_case_in_region_without_hq_skips_that_target() -> None:
    run = Run()
    run.feed(case("c-1", "confirmed", region="lake", travel=[("hubei-wuhan", T0 - DAY)]))
    assert run.only("imported_case").routed_to == ["health", "cdc", "public-security"]


# ---- case_cluster ---------------------------------------------------------------------------------------

def cluster_case(case_id: str, day: float, *, status: CaseStatus = "confirmed",
                 township: str | None = "north-town", region: str = "north") -> CaseReport:
    return case(case_id, status, township=township, region=region, occurred=T0 + timedelta(days=day))


def test_cluster_one_case_is_no_cluster() -> None:
    run = Run()
    run.feed(cluster_case("c-1", 0))
    assert run.of_rule("case_cluster") == []


def test_cluster_two_cases_open_it() -> None:
    run = Run()
    run.feed(cluster_case("c-1", 0), cluster_case("c-2", 1))
    rev = run.only("case_cluster")
    assert rev.severity == "II"
    assert rev.subject == {"region": "north", "township": "north-town", "first_case_id": "c-1"}
    assert rev.routed_to == ["health", "cdc", "north-hq", "hq-office"]
    assert rev.status == "open"


@pytest.mark.parametrize(
    ("apart", "fires"),
    [
        pytest.param(timedelta(days=14), True, id="14-days-apart"),
        pytest.param(timedelta(days=14, seconds=1), False, id="14-days-and-a-second"),
        pytest.param(timedelta(days=15), False, id="15-days-apart"),
    ],
)
def test_cluster_window(apart: timedelta, fires: bool) -> None:
    run = Run()
    run.feed(case("c-1", "confirmed", township="north-town", occurred=T0),
             case("c-2", "confirmed", township="north-town", occurred=T0 + apart))
    assert len(run.of_rule("case_cluster")) == (1 if fires else 0)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param({"township": "north-town"}, {"township": "other-town"}, id="different-townships"),
        pytest.param({"township": None}, {"township": None}, id="no-township"),
        pytest.param({"region": "north"}, {"region": "south"}, id="same-township-name-other-region"),
        pytest.param({"status": "suspected"}, {}, id="suspected-does-not-count"),
        pytest.param({"status": "close_contact"}, {}, id="close-contact-does-not-count"),
    ],
)
def test_cluster_needs_two_qualifying_cases_in_one_township(first: dict[str, object],
                                                            second: dict[str, object]) -> None:
    run = Run()
    run.feed(cluster_case("c-1", 0, **first), cluster_case("c-2", 1, **second))  # type: ignore[arg-type]
    assert run.of_rule("case_cluster") == []


def test_cluster_asymptomatic_counts() -> None:
    run = Run()
    run.feed(cluster_case("c-1", 0, status="asymptomatic"), cluster_case("c-2", 1))
    assert run.only("case_cluster").subject["first_case_id"] == "c-1"


def test_cluster_first_case_id_is_the_earliest_whatever_the_arrival_order() -> None:
    run = Run()
    run.feed(cluster_case("c-late", 3), cluster_case("c-early", 1))
    assert run.only("case_cluster").subject["first_case_id"] == "c-early"


def test_cluster_severity_follows_the_count() -> None:
    run = Run()
    run.feed(*[cluster_case(f"c-{n}", n * 0.1) for n in range(1, 5)])
    assert run.only("case_cluster").severity == "II"  # 4 cases
    run.feed(cluster_case("c-5", 0.6))
    assert run.only("case_cluster").severity == "I"  # cluster_severe_cases
    run.feed(case("c-5", "excluded", township="north-town", occurred=at(days=1)))
    assert run.only("case_cluster").severity == "II"  # back to 4


def test_cluster_severity_threshold_comes_from_the_directory() -> None:
    run = Run(small_directory(cluster_severe_cases=3))
    run.feed(cluster_case("c-1", 0), cluster_case("c-2", 1))
    assert run.only("case_cluster").severity == "II"
    run.feed(cluster_case("c-3", 2))
    assert run.only("case_cluster").severity == "I"


def test_cluster_absorbs_cases_within_the_window_of_its_latest_case() -> None:
    run = Run()
    run.feed(cluster_case("c-1", 0), cluster_case("c-2", 10))
    # 20 days after the first case but 10 after the latest: the same cluster grows.
    run.feed(cluster_case("c-3", 20))
    # 14 days after the latest (c-3): still in.
    run.feed(cluster_case("c-4", 34))
    clusters = run.escalations("case_cluster")
    assert len(clusters) == 1
    revs = next(iter(clusters.values()))
    assert [r.revision for r in revs] == [1, 2, 3]
    assert {e.event_id for e in revs[-1].evidence} >= {e.event_id for e in revs[0].evidence}
    assert "4例" in revs[-1].title


def test_cluster_case_beyond_the_window_of_the_latest_case_is_not_absorbed() -> None:
    run = Run()
    run.feed(cluster_case("c-1", 0), cluster_case("c-2", 10))
    run.feed(cluster_case("c-3", 25))  # 15 days after the latest
    revs = run.of_rule("case_cluster")
    assert [r.revision for r in revs] == [1]
    # ... and with a partner it opens a cluster of its own.
    run.feed(cluster_case("c-4", 26))
    subjects = [r.subject["first_case_id"] for r in run.of_rule("case_cluster")]
    assert subjects == ["c-1", "c-3"]


def test_cluster_excluded_case_resolves_then_reopens_with_a_new_revision() -> None:
    run = Run(small_directory())
    run.feed(staffed("health", "cdc", "north-hq", "hq-office"))
    run.feed(cluster_case("c-1", 0), cluster_case("c-2", 1))
    opened = run.only("case_cluster")
    run.feed(ack(opened.escalation_id, "hq-office", occurred=at(days=1, hours=1)))
    assert run.only("case_cluster").status == "acknowledged"

    exclusion = case("c-2", "excluded", township="north-town", occurred=at(days=2))
    run.feed(exclusion)
    resolved = run.only("case_cluster")
    assert resolved.status == "resolved"
    assert resolved.revision == 3
    assert exclusion.event_id in {e.event_id for e in resolved.evidence}

    run.feed(cluster_case("c-3", 3))
    reopened = run.only("case_cluster")
    assert reopened.escalation_id == opened.escalation_id
    assert reopened.subject == opened.subject
    assert (reopened.revision, reopened.status) == (4, "open")
    assert reopened.acked_by == {}  # everyone must acknowledge the reopened cluster again


def test_cluster_exclusion_that_leaves_enough_cases_keeps_it_open() -> None:
    run = Run()
    run.feed(cluster_case("c-1", 0), cluster_case("c-2", 1), cluster_case("c-3", 2))
    run.feed(case("c-1", "excluded", township="north-town", occurred=at(days=3)))
    rev = run.only("case_cluster")
    assert rev.status == "open"
    assert "2例" in rev.title
    assert rev.subject["first_case_id"] == "c-1"  # the subject names the case that opened it, for good


def test_cluster_exclusion_of_a_case_outside_any_cluster_changes_nothing() -> None:
    run = Run()
    run.feed(cluster_case("c-1", 0))
    assert run.feed(case("c-1", "excluded", township="north-town", occurred=at(days=1))) == []
    run.feed(cluster_case("c-2", 2))
    assert run.of_rule("case_cluster") == []


def test_cluster_excluded_latest_case_no_longer_stretches_the_window() -> None:
    # c-1 (day 0), c-2 (day 1), c-3 (day 10) form a cluster; c-3 is then excluded, so the latest case is
    # c-2 at day 1. A case at day 20 is 19 days after it: outside the window of the cluster's latest case.
    run = Run()
    run.feed(cluster_case("c-1", 0), cluster_case("c-2", 1), cluster_case("c-3", 10))
    run.feed(case("c-3", "excluded", township="north-town", occurred=at(days=11)))
    before = len(run.of_rule("case_cluster"))
    run.feed(cluster_case("c-4", 20))
    assert len(run.of_rule("case_cluster")) == before


# ---- checkpoint_contact ---------------------------------------------------------------------------------

@pytest.mark.parametrize("alert_first", [True, False], ids=["alert-arrives-first", "case-arrives-first"])
def test_contact_either_arrival_order(alert_first: bool) -> None:
    sighting = alert("p-7", checkpoint="cp-toll", occurred=at(days=-3))
    report = case("c-7", "confirmed", person="p-7", occurred=T0)
    run = Run()
    run.feed(*((sighting, report) if alert_first else (report, sighting)))
    rev = run.only("checkpoint_contact")
    assert rev.subject == {"case_id": "c-7", "checkpoint_id": "cp-toll"}
    assert rev.severity == "III"
    assert rev.routed_to == ["public-security", "transport", "south-hq"]
    assert {e.event_id for e in rev.evidence} == {sighting.event_id, report.event_id}


@pytest.mark.parametrize(
    ("sighting_before_case", "fires"),
    [
        pytest.param(timedelta(0), True, id="same-moment"),
        pytest.param(timedelta(days=14), True, id="exactly-14-days-before"),
        pytest.param(timedelta(days=14, seconds=1), False, id="14-days-and-a-second-before"),
        pytest.param(timedelta(days=15), False, id="15-days-before"),
        pytest.param(-timedelta(hours=1), False, id="after-the-case"),
    ],
)
@pytest.mark.parametrize("alert_first", [True, False], ids=["alert-first", "case-first"])
def test_contact_window(sighting_before_case: timedelta, fires: bool, alert_first: bool) -> None:
    sighting = alert("p-7", checkpoint="cp-rail", occurred=T0 - sighting_before_case)
    report = case("c-7", "asymptomatic", person="p-7", occurred=T0)
    run = Run()
    run.feed(*((sighting, report) if alert_first else (report, sighting)))
    assert len(run.of_rule("checkpoint_contact")) == (1 if fires else 0)


@pytest.mark.parametrize("status", ["suspected", "close_contact", "recovered"])
def test_contact_needs_an_infected_case(status: CaseStatus) -> None:
    run = Run()
    run.feed(alert("p-7", occurred=at(days=-1)), case("c-7", status, person="p-7"))
    assert run.of_rule("checkpoint_contact") == []


def test_contact_other_person_does_not_match() -> None:
    run = Run()
    run.feed(alert("p-8", occurred=at(days=-1)), case("c-7", "confirmed", person="p-7"))
    assert run.of_rule("checkpoint_contact") == []


def test_contact_one_escalation_per_checkpoint() -> None:
    run = Run()
    run.feed(alert("p-7", checkpoint="cp-rail", occurred=at(days=-2)),
             alert("p-7", checkpoint="cp-toll", occurred=at(days=-1)),
             case("c-7", "confirmed", person="p-7"))
    subjects = sorted(e[-1].subject["checkpoint_id"] for e in run.escalations("checkpoint_contact").values())
    assert subjects == ["cp-rail", "cp-toll"]


# ---- late_report ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("delay", "fires"),
    [
        pytest.param(None, False, id="no-reported_at"),
        pytest.param(timedelta(minutes=120), False, id="120-minutes"),
        pytest.param(timedelta(minutes=120, seconds=1), True, id="120-minutes-and-a-second"),
        pytest.param(timedelta(minutes=121), True, id="121-minutes"),
    ],
)
def test_late_report_threshold(delay: timedelta | None, fires: bool) -> None:
    run = Run()
    run.feed(case("c-1", "confirmed", occurred=T0, reported=T0 + delay if delay is not None else None))
    found = run.of_rule("late_report")
    assert len(found) == (1 if fires else 0)
    if fires:
        (rev,) = found
        assert (rev.severity, rev.subject, rev.routed_to) == ("IV", {"case_id": "c-1"}, ["health", "cdc"])


@pytest.mark.parametrize(
    ("status", "fires"),
    [("suspected", True), ("confirmed", True), ("asymptomatic", True), ("close_contact", False),
     ("excluded", False), ("recovered", False), ("deceased", False)],
)
def test_late_report_statuses(status: CaseStatus, fires: bool) -> None:
    run = Run()
    run.feed(case("c-1", status, occurred=T0, reported=T0 + timedelta(hours=5)))
    assert len(run.of_rule("late_report")) == (1 if fires else 0)


# ---- duty_gap -------------------------------------------------------------------------------------------

def test_duty_gap_grace_zero_clock_exactly_at_gap_start_is_no_gap() -> None:
    run = Run()
    run.feed(shift("north-town", "principal", start=at(0), end=at(hours=2)),
             shift("north-town", "in_charge", start=at(0), end=at(hours=6)))
    assert run.advance(at(hours=2)) == []
    revs = run.advance(at(hours=2, seconds=1))
    (rev,) = revs
    assert rev.rule == "duty_gap"
    assert rev.subject == {"unit_id": "north-town", "post": "principal",
                           "gap_start": "2020-01-24T20:00:00+08:00"}
    assert rev.severity == "III"
    assert rev.routed_to == ["north-hq", "hq-office"]
    assert rev.opened_at == rev.updated_at == at(hours=2)  # routing time: gap start + grace


@pytest.mark.parametrize("how", ["advance", "event"])
def test_duty_gap_grace_period(how: str) -> None:
    run = Run(small_directory(duty_grace_minutes=10))
    run.feed(shift("north-town", "principal", start=at(0), end=at(hours=2)),
             shift("north-town", "in_charge", start=at(0), end=at(hours=6)))

    def move(to: datetime) -> None:
        if how == "advance":
            run.advance(to)
        else:  # an unrelated event moves the engine clock just as well
            run.feed(heartbeat("cp-toll", occurred=to))

    move(at(hours=2, minutes=10))
    assert run.of_rule("duty_gap") == []
    move(at(hours=2, minutes=10, seconds=1))
    rev = run.only("duty_gap")
    assert rev.subject["gap_start"] == "2020-01-24T20:00:00+08:00"
    assert rev.updated_at == at(hours=2, minutes=10)


def test_duty_gap_routing_time_is_gap_start_plus_grace_even_when_the_clock_jumps() -> None:
    run = Run(small_directory(duty_grace_minutes=10))
    run.feed(shift("north-town", "principal", start=at(0), end=at(hours=2)),
             shift("north-town", "in_charge", start=at(0), end=at(hours=6)),
             # north-hq's officer is on duty at 20:10 but not at 23:00, when the clock next moves.
             shift("north-hq", "duty_officer", "nh-early", start=at(0), end=at(hours=3)),
             shift("north-hq", "duty_officer", "nh-late", start=at(hours=4), end=at(hours=8)))
    run.advance(at(hours=5))
    (rev,) = [r for r in run.of_rule("duty_gap") if r.subject["unit_id"] == "north-town"]
    assert rev.subject["post"] == "principal"
    assert rev.updated_at == at(hours=2, minutes=10)
    assert rev.assignees["north-hq"] == ["nh-early"]


def test_duty_gap_at_watch_start_for_a_post_never_covered() -> None:
    run = Run()
    run.feed(shift("north-town", "principal", start=at(0), end=at(hours=12), occurred=at(-60)))
    assert run.advance(at(0)) == []
    run.advance(at(1))
    rev = run.only("duty_gap")
    assert rev.subject == {"unit_id": "north-town", "post": "in_charge",
                           "gap_start": "2020-01-24T18:00:00+08:00"}


def test_duty_gap_watch_starts_at_the_earliest_shift_start() -> None:
    run = Run()
    # Published at 12:00 for a shift from 18:00: before 18:00 the unit is not watched yet.
    run.feed(shift("north-town", "principal", start=at(0), end=at(hours=12), occurred=at(hours=-6)),
             shift("north-town", "in_charge", start=at(0), end=at(hours=12), occurred=at(hours=-6)))
    run.advance(at(hours=11))
    assert run.of_rule("duty_gap") == []


def test_duty_gap_after_a_shift_ends_and_resolution_when_the_next_one_starts() -> None:
    run = Run()
    run.feed(shift("north-town", "principal", "a", start=at(0), end=at(hours=2)),
             shift("north-town", "principal", "b", start=at(hours=3), end=at(hours=9)),
             shift("north-town", "in_charge", start=at(0), end=at(hours=9)))
    run.advance(at(hours=2, minutes=30))
    opened = run.only("duty_gap")
    assert opened.subject["gap_start"] == "2020-01-24T20:00:00+08:00"
    assert opened.status == "open"
    assert run.advance(at(hours=2, minutes=59)) == []
    (resolved,) = run.advance(at(hours=3))
    assert resolved.escalation_id == opened.escalation_id
    assert (resolved.status, resolved.revision) == ("resolved", 2)
    assert resolved.updated_at == at(hours=3)


def test_duty_gap_resolved_by_a_newly_published_shift() -> None:
    run = Run()
    run.feed(shift("north-town", "principal", start=at(0), end=at(hours=2)),
             shift("north-town", "in_charge", start=at(0), end=at(hours=9)))
    run.advance(at(hours=2, minutes=30))
    opened = run.only("duty_gap")
    cover = shift("north-town", "principal", "stand-in", start=at(hours=2, minutes=30), end=at(hours=9),
                  occurred=at(hours=2, minutes=40))
    revs = run.feed(cover)
    assert [(r.escalation_id, r.status) for r in revs] == [(opened.escalation_id, "resolved")]
    assert cover.event_id in {e.event_id for e in revs[0].evidence}


def test_duty_gap_newly_published_future_shift_resolves_when_it_starts() -> None:
    run = Run()
    run.feed(shift("north-town", "principal", start=at(0), end=at(hours=2)),
             shift("north-town", "in_charge", start=at(0), end=at(hours=9)))
    run.advance(at(hours=2, minutes=30))
    assert run.feed(shift("north-town", "principal", "stand-in", start=at(hours=4), end=at(hours=9),
                          occurred=at(hours=2, minutes=40))) == []
    revs = run.advance(at(hours=4))
    assert [(r.rule, r.status) for r in revs] == [("duty_gap", "resolved")]


def test_duty_gap_new_gap_after_cover_is_a_new_escalation() -> None:
    run = Run()
    run.feed(shift("north-town", "principal", "a", start=at(0), end=at(hours=2)),
             shift("north-town", "principal", "b", start=at(hours=3), end=at(hours=5)),
             shift("north-town", "in_charge", start=at(0), end=at(hours=9)))
    run.advance(at(hours=6))
    gaps = run.escalations("duty_gap")
    assert sorted(v[0].subject["gap_start"][11:16] for v in gaps.values()) == ["20:00", "23:00"]
    statuses = {v[0].subject["gap_start"][11:16]: v[-1].status for v in gaps.values()}
    assert statuses == {"20:00": "resolved", "23:00": "open"}


def test_duty_gap_opened_by_a_roster_change_still_waits_until_strictly_past_its_start() -> None:
    # A gap that the roster moves onto the very time a "cover" timer was set for (here 22:00, when shift b
    # was due to take over before it was cancelled) must not escalate with the clock exactly at 22:00.
    run = Run()
    run.feed(shift("north-town", "principal", "a", start=at(0), end=at(hours=2)),
             shift("north-town", "principal", "b", start=at(hours=4), end=at(hours=9)),
             shift("north-town", "in_charge", start=at(0), end=at(hours=9)))
    run.advance(at(hours=2, minutes=30))  # the 20:00 gap opens; its cover is expected at 22:00
    run.feed(shift("north-town", "principal", "c", start=at(hours=2), end=at(hours=4),
                   occurred=at(hours=2, minutes=40)),
             shift("north-town", "principal", "b", start=at(hours=4), end=at(hours=9), status="cancelled",
                   occurred=at(hours=2, minutes=50)))
    assert [r.status for r in run.of_rule("duty_gap")] == ["open", "resolved"]
    assert run.advance(at(hours=4)) == []
    (rev,) = run.advance(at(hours=4, seconds=1))
    assert rev.subject["gap_start"] == "2020-01-24T22:00:00+08:00"
    assert rev.updated_at == at(hours=4)


def test_duty_gap_still_open_weeks_later_keeps_its_start() -> None:
    # A unit that stays unstaffed for a month: its shifts are long past eviction, yet the open gap still
    # began when the last shift ended, and a shift published for later does not turn it into another gap.
    run = Run()
    run.feed(shift("north-town", "principal", start=at(0), end=at(hours=2)),
             shift("north-town", "in_charge", start=at(0), end=at(hours=2)))
    run.advance(at(hours=3))
    opened = run.escalations("duty_gap")
    run.advance(at(days=30))
    run.feed(shift("north-town", "principal", "x", start=at(days=31), end=at(days=31, hours=8),
                   occurred=at(days=30, minutes=1)))
    gaps = run.escalations("duty_gap")
    assert gaps.keys() == opened.keys()
    assert {revs[-1].status for revs in gaps.values()} == {"open"}
    run.advance(at(days=31))
    principal = [revs[-1] for revs in run.escalations("duty_gap").values()
                 if revs[-1].subject["post"] == "principal"]
    assert [(r.subject["gap_start"], r.status) for r in principal] == [
        ("2020-01-24T20:00:00+08:00", "resolved")]


def test_duty_gap_acknowledged_long_ago_is_not_raised_again_as_revision_one() -> None:
    run = Run()
    run.feed(shift("north-town", "principal", start=at(0), end=at(hours=2)),
             shift("north-town", "in_charge", start=at(0), end=at(hours=9)))
    run.advance(at(hours=3))
    (gap,) = run.escalations("duty_gap")
    run.feed(ack(gap, "hq-office", occurred=at(hours=3, minutes=5)))
    run.advance(at(days=30))  # the book forgets what is acknowledged and untouched for weeks
    run.feed(shift("north-town", "principal", "x", start=at(days=31), end=at(days=31, hours=8),
                   occurred=at(days=30, minutes=1)))
    numbers = [r.revision for r in run.revisions if r.escalation_id == gap]
    assert numbers == sorted(set(numbers)), f"revision numbers of {gap} repeat: {numbers}"


def test_duty_gap_cancelled_shift_does_not_cover() -> None:
    run = Run()
    run.feed(shift("north-town", "principal", "a", start=at(0), end=at(hours=2)),
             shift("north-town", "principal", "b", start=at(hours=2), end=at(hours=9), status="cancelled"),
             shift("north-town", "in_charge", start=at(0), end=at(hours=9)))
    run.advance(at(hours=2, minutes=1))
    assert run.only("duty_gap").subject["gap_start"] == "2020-01-24T20:00:00+08:00"


def test_duty_gap_cancelling_the_only_shift_opens_a_gap_from_watch_start() -> None:
    run = Run()
    first = shift("north-town", "principal", "a", start=at(0), end=at(hours=9), occurred=at(-60))
    run.feed(first, shift("north-town", "in_charge", start=at(0), end=at(hours=9), occurred=at(-60)))
    run.advance(at(30))
    assert run.of_rule("duty_gap") == []
    # The same roster key, now cancelled: the last one published wins.
    run.feed(shift("north-town", "principal", "a", start=at(0), end=at(hours=9), status="cancelled",
                   occurred=at(40)))
    rev = run.only("duty_gap")
    assert rev.subject == {"unit_id": "north-town", "post": "principal",
                           "gap_start": "2020-01-24T18:00:00+08:00"}


def test_duty_gap_duty_officer_post_is_not_watched() -> None:
    run = Run()
    run.feed(staffed("north-town", start=at(0), hours=9),
             shift("north-town", "duty_officer", start=at(0), end=at(hours=1)))
    run.advance(at(hours=3))
    assert run.of_rule("duty_gap") == []


def test_duty_gap_unit_without_duty_required_is_not_watched() -> None:
    run = Run()
    run.feed(shift("hospital", "principal", start=at(0), end=at(hours=1)))
    run.advance(at(hours=5))
    assert run.of_rule("duty_gap") == []


def test_duty_gap_unit_that_never_published_is_not_watched() -> None:
    run = Run()
    run.feed(staffed("north-town", start=at(0), hours=9))
    run.advance(at(hours=5))
    assert run.of_rule("duty_gap") == []


def test_duty_gap_city_unit_routes_to_root_once() -> None:
    run = Run()
    run.feed(shift("health", "principal", start=at(0), end=at(hours=9)))
    run.advance(at(1))
    assert run.only("duty_gap").routed_to == ["hq-office"]


def test_duty_gap_of_the_root_goes_to_the_root() -> None:
    run = Run()
    run.feed(shift("hq-office", "principal", start=at(0), end=at(hours=9)))
    run.advance(at(1))
    assert run.only("duty_gap").routed_to == ["hq-office"]


# ---- checkpoint_silent ----------------------------------------------------------------------------------

def test_silence_fires_after_the_silence_minutes() -> None:
    run = Run()
    last = heartbeat("cp-rail", occurred=at(0))
    run.feed(last)
    assert run.advance(at(29, seconds=59)) == []
    (rev,) = run.advance(at(30))
    assert rev.rule == "checkpoint_silent"
    assert rev.subject == {"checkpoint_id": "cp-rail", "silent_since": "2020-01-24T18:00:00+08:00"}
    assert rev.severity == "III"
    assert rev.routed_to == ["north-hq", "transport"]
    assert rev.updated_at == at(30)
    assert [e.event_id for e in rev.evidence] == [last.event_id]


def test_silence_threshold_comes_from_the_directory() -> None:
    run = Run(small_directory(checkpoint_silence_minutes=45))
    run.feed(heartbeat("cp-rail", occurred=at(0)))
    assert run.advance(at(44)) == []
    assert len(run.advance(at(45))) == 1


def test_silence_any_event_of_the_checkpoint_counts_as_a_word() -> None:
    run = Run()
    run.feed(heartbeat("cp-rail", occurred=at(0)), alert("p-1", checkpoint="cp-rail", occurred=at(20)))
    assert run.advance(at(49)) == []
    (rev,) = run.advance(at(50))
    assert rev.subject["silent_since"] == "2020-01-24T18:20:00+08:00"


def test_silence_never_for_a_checkpoint_that_never_reported() -> None:
    run = Run()
    run.feed(heartbeat("cp-rail", occurred=at(0)))
    run.advance(at(hours=5))
    assert {r.subject["checkpoint_id"] for r in run.of_rule("checkpoint_silent")} == {"cp-rail"}


def test_silence_resolved_when_it_reports_again() -> None:
    run = Run()
    run.feed(heartbeat("cp-rail", occurred=at(0)))
    (opened,) = run.advance(at(35))
    back = heartbeat("cp-rail", occurred=at(45))
    (resolved,) = run.feed(back)
    assert resolved.escalation_id == opened.escalation_id
    assert (resolved.status, resolved.revision) == ("resolved", 2)
    assert back.event_id in {e.event_id for e in resolved.evidence}
    # And it is watched again from its new last word.
    (again,) = run.advance(at(75))
    assert again.subject["silent_since"] == "2020-01-24T18:45:00+08:00"
    assert again.escalation_id != opened.escalation_id


def test_silence_a_late_older_record_does_not_resolve_it() -> None:
    run = Run()
    run.feed(heartbeat("cp-rail", occurred=at(0)))
    (opened,) = run.advance(at(40))
    late = heartbeat("cp-rail", occurred=at(-10))  # an old record arriving now
    assert run.feed(late) == []
    assert run.latest(opened.escalation_id).status == "open"


def test_silence_report_at_the_due_time_fires_first_then_resolves() -> None:
    # Timers due at or before an event's time fire before the event is processed (contract §3, Clock).
    run = Run()
    run.feed(heartbeat("cp-rail", occurred=at(0)))
    revs = run.feed(heartbeat("cp-rail", occurred=at(30)))
    assert [(r.rule, r.status) for r in revs] == [("checkpoint_silent", "open"),
                                                  ("checkpoint_silent", "resolved")]


def test_silence_each_checkpoint_on_its_own() -> None:
    run = Run()
    run.feed(heartbeat("cp-rail", occurred=at(0)), heartbeat("cp-toll", occurred=at(0)))
    for minute in range(10, 60, 10):
        run.feed(heartbeat("cp-toll", occurred=at(minute)))
    silent = {r.subject["checkpoint_id"] for r in run.of_rule("checkpoint_silent")}
    assert silent == {"cp-rail"}


# ---- the shipped directory ------------------------------------------------------------------------------

def test_guangyuan_fever_at_the_airport_from_wuhan() -> None:
    run = Run(guangyuan())
    run.feed(alert("p-1", checkpoint="gy-airport", temperature=38.2, origin="hubei-wuhan",
                   destination="gy-edz", source="airport"))
    rev = run.only("fever_at_checkpoint")
    assert (rev.severity, rev.region) == ("III", "gy-edz")
    assert rev.routed_to == ["gy-edz-hq", "health", "public-security"]


@pytest.mark.parametrize(
    ("origin", "destination", "routed"),
    [
        pytest.param("hubei-xiaogan", "cangxi", ["cangxi-hq"], id="xiaogan-to-cangxi"),
        pytest.param("hubei-wuhan", "jiange", ["jiange-hq"], id="wuhan-to-jiange"),
        pytest.param("hubei-enshi", "chongqing", ["chaotian-hq"], id="unknown-destination-checkpoint-unit"),
    ],
)
def test_guangyuan_high_risk_arrival_at_qipanguan(origin: str, destination: str, routed: list[str]) -> None:
    run = Run(guangyuan())
    run.feed(alert("p-1", checkpoint="qipanguan-g5", origin=origin, destination=destination))
    assert run.only("high_risk_arrival").routed_to == routed


def test_guangyuan_cluster_in_dongba_street() -> None:
    run = Run(guangyuan())
    run.feed(case("gy-1", "confirmed", region="lizhou", township="lizhou-dongba", source="central-hospital"),
             case("gy-2", "asymptomatic", region="lizhou", township="lizhou-dongba", occurred=at(hours=3),
                  source="third-hospital"))
    rev = run.only("case_cluster")
    assert rev.routed_to == ["health", "cdc", "lizhou-hq", "hq-office"]
    assert rev.title.startswith("利州区东坝街道")


def test_guangyuan_duty_gap_in_a_street_goes_to_the_district_hq() -> None:
    run = Run(guangyuan())
    run.feed(shift("lizhou-dongba", "principal", start=at(0), end=at(hours=14)))
    run.advance(at(1))
    rev = run.only("duty_gap")
    assert rev.subject["post"] == "in_charge"
    assert rev.routed_to == ["lizhou-hq", "hq-office"]


def test_guangyuan_rules_are_the_contract_defaults() -> None:
    rules = guangyuan().rules
    assert (rules.fever_celsius, rules.high_risk_window_days, rules.contact_window_days,
            rules.cluster_min_cases, rules.cluster_window_days, rules.cluster_severe_cases,
            rules.report_deadline_minutes, rules.checkpoint_silence_minutes,
            rules.duty_grace_minutes) == (37.3, 14, 14, 2, 14, 5, 120, 30, 0)
    assert rules.ack_minutes == {"I": 5, "II": 15, "III": 30, "IV": 60}
