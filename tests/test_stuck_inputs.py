"""Which input partitions the worker reads again from their commit (agents/stuck_inputs.py)."""

from __future__ import annotations

from agents.stuck_inputs import Standing, StuckInputs

AFTER = 20.0


def standing(committed: int = 100, judged: int | None = None, highwater: int | None = 100,
             acked_ahead: bool = False, held_at: int | None = None) -> Standing:
    return Standing(committed=committed, judged=judged, highwater=highwater, acked_ahead=acked_ahead,
                    held_at=held_at)


def looks(watch: StuckInputs, standings: list[Standing], every: float = 5.0) -> list[list[str]]:
    """What the watch reports at each look, one look every `every` seconds, all about partition "p"."""
    return [watch.stuck({"p": s}, k * every) for k, s in enumerate(standings)]


def test_nothing_delivered_since_assignment_with_records_waiting_is_stuck() -> None:
    # The CI stall: records on the broker past the commit, none judged since the partition was assigned.
    reports = looks(StuckInputs(AFTER), [standing(judged=None, highwater=342)] * 6)
    assert reports == [[], [], [], [], ["p"], []]  # once after 20 s, then watched afresh


def test_acked_past_a_record_never_delivered_again_is_stuck() -> None:
    reports = looks(StuckInputs(AFTER), [standing(judged=250, highwater=250, acked_ahead=True)] * 5)
    assert reports[-1] == ["p"]


def test_judging_moving_on_is_not_stuck_though_the_commit_waits() -> None:
    # A commit waiting for a snapshot while the intake keeps reading: progress, not a stall.
    moving = [standing(judged=110 + 10 * k, highwater=400) for k in range(10)]
    assert looks(StuckInputs(AFTER), moving) == [[]] * 10


def test_a_record_held_at_the_commit_is_waited_for() -> None:
    held = [standing(judged=300, highwater=400, acked_ahead=True, held_at=100)] * 10
    assert looks(StuckInputs(AFTER), held) == [[]] * 10


def test_a_hold_past_the_commit_does_not_excuse_it() -> None:
    held_later = [standing(judged=None, highwater=400, held_at=150)] * 5
    assert looks(StuckInputs(AFTER), held_later)[-1] == ["p"]


def test_caught_up_is_not_stuck() -> None:
    caught_up = [standing(committed=400, judged=400, highwater=400)] * 10
    assert looks(StuckInputs(AFTER), caught_up) == [[]] * 10


def test_every_record_judged_and_nothing_acked_ahead_is_not_stuck() -> None:
    # All judged, the commit waits for the intake to release them (held records are not acked ahead).
    judged_all = [standing(judged=400, highwater=400)] * 10
    assert looks(StuckInputs(AFTER), judged_all) == [[]] * 10


def test_a_moving_commit_restarts_the_clock() -> None:
    steps = [standing(committed=100, highwater=400)] * 3 + [standing(committed=120, highwater=400)] * 4
    reports = looks(StuckInputs(AFTER), steps)
    assert reports == [[]] * 7  # 15 s at 100, then 15 s at 120: neither reaches 20 s


def test_a_revoked_partition_is_forgotten() -> None:
    watch = StuckInputs(AFTER)
    stuck = standing(judged=None, highwater=400)
    assert watch.stuck({"p": stuck}, 0.0) == []
    assert watch.stuck({}, 15.0) == []  # revoked
    assert watch.stuck({"p": stuck}, 25.0) == []  # assigned again: watched afresh
    assert watch.stuck({"p": stuck}, 45.0) == ["p"]


def test_unknown_highwater_without_acks_is_not_stuck() -> None:
    # Nothing fetched since assignment and nothing acked: nothing says records are waiting.
    assert looks(StuckInputs(AFTER), [standing(highwater=None)] * 10) == [[]] * 10
