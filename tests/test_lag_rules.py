"""The lag status rules (streams.lag_rules) on synthetic samples: each rule on both sides of its edge."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.lag_rules import (
    GroupSample,
    GroupVerdict,
    PartitionOffsets,
    Status,
    catch_up_s,
    evaluate,
    exit_code,
    time_lag_s,
    worst,
)

pytestmark = pytest.mark.core

TP = ("jpc.intake", 0)
NOW_MS = 1_580_000_000_000  # 2020-01-26: the clock is passed in, never read
GRACE = 15.0


def samples(offsets: list[tuple[int | None, int]], *, state: str = "Stable", members: int = 1,
            assigned: bool | None = True, earliest: int = 0, step_s: float = 1.0) -> list[GroupSample]:
    """One sample per (committed, end), `step_s` apart, of a group reading one partition."""
    return [GroupSample(at_s=i * step_s, state=state, members=members,
                        partitions={TP: PartitionOffsets(committed, earliest, end, assigned)})
            for i, (committed, end) in enumerate(offsets)]


def judge(offsets: list[tuple[int | None, int]], waited_s: float | None = 60.0, **kw: object) -> GroupVerdict:
    stamps = {} if waited_s is None else {TP: NOW_MS - int(waited_s * 1000)}
    return evaluate("g", samples(offsets, **kw), stamps, NOW_MS, stall_after_s=GRACE)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("offsets", "kw", "waited_s", "status"),
    [
        # rule 1: caught up is OK whatever else holds, even with no member left
        pytest.param([(10, 10), (10, 10), (10, 10)], {}, 0.0, Status.OK, id="caught-up"),
        pytest.param([(10, 10)] * 3, {"state": "Empty", "members": 0}, 0.0, Status.OK, id="caught-up-no-member"),
        pytest.param([(5, 12), (9, 12), (12, 12)], {}, 60.0, Status.OK, id="caught-up-at-last-sample"),
        # rule 2: STOP when nothing commits for it any more
        pytest.param([(4, 10)] * 3, {"state": "Empty", "members": 0}, 60.0, Status.STOP, id="empty-group"),
        pytest.param([(None, 10)] * 3, {"state": "Dead", "members": 0}, 60.0, Status.STOP, id="dead-group"),
        pytest.param([(4, 10)] * 3, {"assigned": False}, 1.0, Status.STOP, id="stable-but-unassigned"),
        pytest.param([(4, 10)] * 3, {"assigned": False, "state": "PreparingRebalance"}, 1.0, Status.OK,
                     id="unassigned-while-rebalancing-is-not-stop"),
        pytest.param([(4, 10)] * 3, {"assigned": None}, 1.0, Status.OK, id="assignment-unknown-is-not-stop"),
        # rule 3: STALL when stuck with lag, members present, records waiting beyond the grace
        pytest.param([(4, 10)] * 3, {}, GRACE, Status.STALL, id="stuck-at-grace"),
        pytest.param([(4, 10)] * 3, {}, GRACE - 0.1, Status.OK, id="stuck-within-grace-commit-not-due"),
        pytest.param([(4, 10)] * 3, {}, None, Status.STALL, id="stuck-age-unknown"),
        pytest.param([(None, 10)] * 3, {}, 120.0, Status.STALL, id="member-never-committed"),
        pytest.param([(4, 10), (4, 12), (4, 15)], {}, 60.0, Status.STALL, id="stuck-and-growing"),
        pytest.param([(4, 10)] * 3, {"state": "CompletingRebalance", "assigned": None}, 60.0, Status.STALL,
                     id="stuck-while-rebalancing"),
        pytest.param([(4, 4), (4, 6), (4, 8)], {}, 60.0, Status.OK, id="lag-was-zero-in-window-commit-not-due"),
        # rule 4: WARN when it commits but the lag keeps growing
        pytest.param([(4, 10), (6, 20), (8, 30)], {}, 60.0, Status.WARN, id="commits-lag-grows"),
        pytest.param([(4, 10), (6, 12), (8, 20)], {}, 60.0, Status.WARN, id="commits-lag-flat-then-grows"),
        pytest.param([(4, 10), (6, 20), (18, 30)], {}, 60.0, Status.OK, id="lag-shrank-once"),
        pytest.param([(4, 10), (6, 12), (8, 14)], {}, 60.0, Status.OK, id="commits-lag-steady"),
        pytest.param([(4, 10), (8, 12), (12, 14)], {}, 60.0, Status.OK, id="catching-up"),
    ],
)
def test_partition_status(offsets: list[tuple[int | None, int]], kw: dict[str, object], waited_s: float | None,
                          status: Status) -> None:
    verdict = judge(offsets, waited_s, **kw)
    assert verdict.partitions[0].status is status, verdict.partitions[0].reason
    assert verdict.status is status


def test_reasons_say_what_was_seen() -> None:
    assert judge([(4, 10)] * 3, state="Empty", members=0).partitions[0].reason == \
        "no member commits (group Empty) while 6 records wait"
    assert "stuck at none (never committed) with 10 records waiting 120 s" in \
        judge([(None, 10)] * 3, 120.0).partitions[0].reason
    assert judge([(4, 10), (6, 20), (8, 30)]).partitions[0].reason == "commits but lag grew 6 -> 22"


@pytest.mark.parametrize(
    ("committed", "earliest", "end", "lag"),
    [
        pytest.param(7, 0, 10, 3, id="plain"),
        pytest.param(None, 0, 10, 10, id="never-committed-counts-from-earliest"),
        pytest.param(None, 6, 10, 4, id="never-committed-after-retention"),
        pytest.param(2, 6, 10, 4, id="committed-below-earliest-deleted-records-are-not-lag"),
        pytest.param(15, 0, 10, 0, id="committed-past-end-is-not-negative"),
        pytest.param(0, 0, 0, 0, id="empty-log"),
    ],
)
def test_offset_lag(committed: int | None, earliest: int, end: int, lag: int) -> None:
    assert PartitionOffsets(committed, earliest, end).lag == lag


@given(committed=st.none() | st.integers(-5, 10**12), earliest=st.integers(0, 10**12),
       end=st.integers(0, 10**12))
def test_lag_is_never_negative(committed: int | None, earliest: int, end: int) -> None:
    offsets = PartitionOffsets(committed, earliest, end)
    assert offsets.lag >= 0
    assert offsets.position >= earliest


def test_time_lag() -> None:
    waiting = PartitionOffsets(4, 0, 10)
    assert time_lag_s(waiting, NOW_MS - 90_500, NOW_MS) == 90.5
    assert time_lag_s(PartitionOffsets(10, 0, 10), NOW_MS - 90_500, NOW_MS) == 0.0  # caught up: 0
    assert time_lag_s(waiting, NOW_MS + 3_000, NOW_MS) == 0.0  # a producer's clock ahead of ours
    assert time_lag_s(waiting, None, NOW_MS) is None
    assert judge([(10, 10)] * 3, None).partitions[0].time_lag_s == 0.0


@pytest.mark.parametrize(
    ("lag", "consume", "produce", "eta"),
    [
        pytest.param(0, 0.0, 5.0, 0.0, id="caught-up"),
        pytest.param(100, 30.0, 10.0, 5.0, id="gaining-20-per-s"),
        pytest.param(100, 10.0, 10.0, None, id="even-is-falling-behind"),
        pytest.param(100, 5.0, 10.0, None, id="slower-than-producers"),
        pytest.param(100, 0.0, 0.0, None, id="stopped"),
    ],
)
def test_catch_up_time(lag: int, consume: float, produce: float, eta: float | None) -> None:
    assert catch_up_s(lag, consume, produce) == eta


def test_rates_and_catch_up_from_samples() -> None:
    p = judge([(100, 400), (150, 420), (200, 440)]).partitions[0]  # 2 s: +100 committed, +40 produced
    assert (p.consume_rate, p.produce_rate) == (50.0, 20.0)
    assert p.lag == 240
    assert p.catch_up_s == 8.0
    assert not p.falling_behind
    slow = judge([(100, 400), (101, 450), (102, 500)]).partitions[0]
    assert slow.falling_behind
    assert slow.catch_up_s is None


def test_group_is_its_worst_partition_and_exit_codes() -> None:
    other = ("jpc.case-reports", 3)
    taken = [GroupSample(at_s=float(i), state="Stable", members=1, partitions={
        TP: PartitionOffsets(4 + 2 * i, 0, 10 + 10 * i, True),  # commits, lag grows: WARN
        other: PartitionOffsets(8, 0, 8, True),  # caught up
    }) for i in range(3)]
    warn = evaluate("jpc-bus", taken, {TP: NOW_MS}, NOW_MS)
    assert [p.status for p in warn.partitions] == [Status.OK, Status.WARN]  # sorted by topic, partition
    assert warn.status is Status.WARN
    assert warn.lag == 22
    stop = judge([(4, 10)] * 3, state="Empty", members=0)
    stall = judge([(4, 10)] * 3, 60.0)
    ok = judge([(10, 10)] * 3)
    assert (exit_code([ok]), exit_code([ok, warn]), exit_code([warn, stall]), exit_code([stop, ok])) == (0, 1, 2, 2)
    assert exit_code([]) == 0
    assert worst([Status.STALL, Status.STOP, Status.WARN]) is Status.STOP


def test_group_without_partitions_is_ok() -> None:
    empty = [GroupSample(at_s=float(i), state="Dead", members=0, partitions={}) for i in range(3)]
    verdict = evaluate("jpc.duty.cdc", empty, {}, NOW_MS)
    assert (verdict.status, verdict.partitions, verdict.window_s) == (Status.OK, [], 2.0)


def test_partition_that_appears_mid_window_is_judged_on_its_own_samples() -> None:
    taken = samples([(4, 10), (6, 20), (8, 30)])
    new = ("jpc.escalations.cdc", 0)
    late = [GroupSample(s.at_s, s.state, s.members, {**s.partitions, new: PartitionOffsets(None, 0, 3, True)})
            if s.at_s > 0 else s for s in taken]
    verdict = evaluate("g", late, {TP: NOW_MS, new: NOW_MS - 1000}, NOW_MS)
    fresh = next(p for p in verdict.partitions if (p.topic, p.partition) == new)
    assert (fresh.lag, fresh.status, fresh.produce_rate) == (3, Status.OK, 0.0)  # stuck 1 s < grace


def test_only_transaction_markers_past_the_commit_is_caught_up() -> None:
    # A Faust worker commits the offset after its last record; the commit marker behind it takes offset 40.
    taken = samples([(40, 41)] * 3)
    verdict = evaluate("jpc-bus", taken, {}, NOW_MS, GRACE, only_markers={TP})
    (p,) = verdict.partitions
    assert (p.committed, p.end, p.lag, p.time_lag_s, p.catch_up_s, p.status) == (40, 41, 0, 0.0, 0.0, Status.OK)
    assert p.reason == "caught up; only transaction markers follow"
    assert evaluate("jpc-bus", taken, {}, NOW_MS, GRACE).status is Status.STALL  # without knowing it: age unknown


def test_one_sample_is_refused() -> None:
    with pytest.raises(ValueError, match="at least two"):
        evaluate("g", samples([(4, 10)]), {}, NOW_MS)
