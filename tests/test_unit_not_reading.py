"""The pure parts of `unit_not_reading` outside the engine: reading due times, the intake record, the
lag status of units not reading (no broker)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from agents.reading_monitor import reading_record, report_of
from streams.duty_reading import UnitReading, reading_due
from streams.lag_rules import GroupSample, GroupVerdict, PartitionOffsets, Status, evaluate, exit_code, overall

pytestmark = pytest.mark.core
CST = timezone(timedelta(hours=8))
DEADLINE = datetime(2020, 1, 24, 18, 30, tzinfo=CST)


@pytest.mark.parametrize(("written", "due"), [
    pytest.param(None, DEADLINE, id="no-timestamp"),
    pytest.param(DEADLINE - timedelta(minutes=20), DEADLINE, id="written-well-before-its-deadline"),
    pytest.param(DEADLINE - timedelta(seconds=30), DEADLINE + timedelta(seconds=30), id="written-just-before"),
    pytest.param(DEADLINE + timedelta(hours=1), DEADLINE + timedelta(hours=1, minutes=1), id="written-overdue"),
    pytest.param(DEADLINE + timedelta(milliseconds=1500), DEADLINE + timedelta(minutes=1, seconds=2),
                 id="rounded-up-to-a-second"),
])
def test_a_revision_is_due_at_its_deadline_and_never_within_a_minute_of_being_written(
        written: datetime | None, due: datetime) -> None:
    got = reading_due(DEADLINE, None if written is None else written.astimezone(UTC))
    assert got == due
    assert got.utcoffset() == timedelta(hours=8)  # in the deadline's zone


def test_the_intake_record_round_trips_into_the_engines_report() -> None:
    now = datetime(2020, 1, 24, 11, 0, 5, tzinfo=UTC)
    reading = UnitReading(unit_id="north-town", group="jpc.duty.north-town", topic="jpc.escalations.north-town",
                          committed=None, position=0, end=2, unread=2, overdue=1, unread_since=DEADLINE)
    record = orjson.loads(reading_record(reading, now))
    assert record["reading"]["group"] == "jpc.duty.north-town"
    report = report_of(record["reading"])
    assert (report.unit_id, report.observed_at, report.unread_since) == ("north-town", now, DEADLINE)
    caught_up = report_of({**record["reading"], "unread_since": None})
    assert caught_up.unread_since is None


@pytest.mark.parametrize("bad", [{}, {"unit_id": "u", "observed_at": "2020-01-24T10:00:00", "unread_since": None},
                                 {"unit_id": "u", "observed_at": "yesterday", "unread_since": None}])
def test_a_malformed_reading_record_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"reading report|isoformat|Invalid"):
        report_of(bad)


def test_a_unit_not_reading_makes_lag_warn_but_never_hides_worse() -> None:
    def group(committed: int, end: int, state: str = "Stable", members: int = 1) -> GroupVerdict:
        samples = [GroupSample(at_s=float(i), state=state, members=members,
                               partitions={("t", 0): PartitionOffsets(committed, 0, end, True)}) for i in range(2)]
        return evaluate("g", samples, {("t", 0): 0}, 0)

    ok, stop = group(5, 5), group(1, 5, state="Empty", members=0)
    assert overall([ok]) is Status.OK
    assert (overall([ok], units_not_reading=1), exit_code([ok], 1)) == (Status.WARN, 1)
    assert (overall([stop], units_not_reading=2), exit_code([stop], 2)) == (Status.STOP, 2)
    assert overall([], units_not_reading=1) is Status.WARN
