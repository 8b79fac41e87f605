"""The intake's reorder buffer (agents/worker.py): records leave in reporting order, and no record leaves
while a partition that may still hold an earlier one has not been read that far."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from agents.worker import ReorderBuffer, SortKey

pytestmark = pytest.mark.core
WINDOW = 2.0


@dataclass
class FakeMessage:
    tp: str
    offset: int
    refs: int = 0

    def incref(self) -> None:
        self.refs += 1


@dataclass
class FakeEvent:
    message: FakeMessage


@dataclass
class Partitions:
    """What the consumer would say: high watermarks, assignment and committed offsets."""

    highwater: dict[str, int | None] = field(default_factory=dict)
    committed: dict[str, int | None] = field(default_factory=dict)

    def buffer(self) -> ReorderBuffer:
        return ReorderBuffer(WINDOW, self.highwater.get, lambda: list(self.committed.items()))


def key(t: float, event_id: str = "e") -> SortKey:
    return (t, event_id, "")


def judge(buf: ReorderBuffer, tp: str, offset: int, order: SortKey, now: float) -> FakeEvent:
    event = FakeEvent(FakeMessage(tp, offset))
    buf.judged(tp, offset, order)
    buf.hold(order, ("jpc.intake", b"k", f"{tp}@{offset}".encode()), event, now)
    return event


def released(buf: ReorderBuffer, now: float) -> list[str]:
    return [h.output[2].decode() for h in buf.due(now)]


def test_records_leave_in_reporting_order_once_their_window_has_passed() -> None:
    parts = Partitions({"a": 2, "b": 1}, {"a": 0, "b": 0})
    buf = parts.buffer()
    judge(buf, "a", 0, key(10), 0.0)
    judge(buf, "a", 1, key(30), 0.0)
    event = judge(buf, "b", 0, key(20), 0.5)
    assert event.message.refs == 1  # held: its offset may not be committed
    assert released(buf, 1.9) == []
    assert released(buf, 2.0) == ["a@0"]  # b@0 was held later: its window has not passed yet
    assert released(buf, 2.5) == ["b@0", "a@1"]
    assert len(buf) == 0


def test_a_partition_read_only_part_way_holds_back_later_reports() -> None:
    parts = Partitions({"a": 2, "b": 5}, {"a": 0, "b": 0})
    buf = parts.buffer()
    judge(buf, "a", 0, key(10), 0.0)
    judge(buf, "a", 1, key(30), 0.0)
    judge(buf, "b", 0, key(20), 0.0)  # b has 4 more records, reported at 20 or later
    assert released(buf, 3.0) == ["a@0", "b@0"]  # a@1 (30) waits: b may still hold a report before it
    judge(buf, "b", 4, key(25), 3.0)  # b read to its end
    assert released(buf, 5.0) == ["b@4", "a@1"]


def test_an_assigned_partition_not_read_yet_holds_back_every_record() -> None:
    # After a restart, partition b's first batch comes later than a's.
    parts = Partitions({"a": 11, "b": 20}, {"a": 10, "b": 15})
    buf = parts.buffer()
    judge(buf, "a", 10, key(10), 0.0)
    assert released(buf, 5.0) == []
    judge(buf, "b", 15, key(5), 5.0)
    judge(buf, "b", 19, key(40), 5.0)
    assert released(buf, 7.0) == ["b@15", "a@10", "b@19"]


def test_an_assigned_partition_with_nothing_to_read_holds_nothing_back() -> None:
    parts = Partitions({"a": 12, "b": 15}, {"a": 10, "b": 15})
    buf = parts.buffer()
    judge(buf, "a", 10, key(10), 0.0)
    assert released(buf, 2.0) == ["a@10"]


def test_a_partition_that_stays_behind_holds_back_no_longer_than_max_wait() -> None:
    parts = Partitions({"a": 1, "b": None}, {"a": 0, "b": None})  # b: nothing fetched, ever
    buf = parts.buffer()
    judge(buf, "a", 0, key(10), 0.0)
    assert released(buf, buf.max_wait_s - 0.1) == []
    assert released(buf, buf.max_wait_s) == ["a@0"]


def test_revoked_partitions_drop_their_held_records_unacked() -> None:
    parts = Partitions({"a": 1, "b": 1}, {"a": 0, "b": 0})
    buf = parts.buffer()
    judge(buf, "a", 0, key(10), 0.0)
    kept = judge(buf, "b", 0, key(20), 0.0)
    assert [m.offset for m in buf.forget({"a"})] == [0]  # a@0, left for the next owner
    parts.committed.pop("a")
    assert released(buf, 2.0) == ["b@0"]
    assert kept.message.refs == 1  # acking is the releaser's job, after the intake record is on the broker


def test_the_running_clock_leaves_out_time_the_worker_did_not_run() -> None:
    buf = ReorderBuffer(WINDOW)
    assert buf.clock(100.0) == 0.0
    assert buf.clock(100.1) == pytest.approx(0.1)
    assert buf.clock(160.0) == pytest.approx(0.1 + ReorderBuffer.MAX_STEP_S)  # paused a minute: one step


def test_wall_clock_mode_does_not_reorder_or_wait() -> None:
    parts = Partitions({"a": 1, "b": 9}, {"a": 0, "b": 0})
    buf = ReorderBuffer(0.0, parts.highwater.get, lambda: list(parts.committed.items()))
    judge(buf, "a", 0, key(10), 0.0)
    assert released(buf, 0.0) == ["a@0"]


def test_how_far_each_partition_was_judged_since_it_was_assigned() -> None:
    """What caps an input partition's commit (the worker's `holding`): a record Faust acked as stale without
    it being judged in this assignment must not be committed over."""
    buffer = Partitions(committed={"a": 10}).buffer()
    assert buffer.judged_up_to("a") is None  # nothing judged yet: the commit stays where it is
    buffer.judged("a", 10, None)  # a tombstone or a dead letter: judged, not held
    buffer.judged("a", 12, (1.0, "e-12", "u"))
    buffer.judged("a", 11, (1.0, "e-11", "u"))  # (a partition is read in order, but the frontier only grows)
    assert buffer.judged_up_to("a") == 13
    buffer.forget({"a"})  # revoked: whatever comes next is judged afresh
    assert buffer.judged_up_to("a") is None
