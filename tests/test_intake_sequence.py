"""The engine applies intake records in an unbroken run after its snapshot (agents/worker.py in_sequence)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from agents.worker import in_sequence

pytestmark = pytest.mark.core


@dataclass
class Message:
    offset: int


@dataclass
class Event:
    message: Message


def events(*offsets: int) -> list[Event]:
    return [Event(Message(o)) for o in offsets]


def offsets(run: list[Event]) -> list[int]:
    return [e.message.offset for e in run]


def test_records_in_the_snapshot_are_skipped_and_the_rest_applied() -> None:
    run, missing = in_sequence(899, events(898, 899, 900, 901))
    assert offsets(run) == [900, 901]
    assert missing is None


def test_a_record_past_a_hole_is_not_applied_and_the_hole_is_named() -> None:
    # Restored at 899, given 973 onwards (records 900-972 not delivered): nothing is applied.
    run, missing = in_sequence(899, events(973, 974))
    assert run == []
    assert missing == 900


def test_the_run_stops_at_the_first_hole() -> None:
    run, missing = in_sequence(9, events(10, 11, 13, 14))
    assert offsets(run) == [10, 11]
    assert missing == 12


def test_duplicates_inside_a_batch_are_applied_once() -> None:
    run, missing = in_sequence(-1, events(0, 1, 1, 2, 0))
    assert offsets(run) == [0, 1, 2]
    assert missing is None
