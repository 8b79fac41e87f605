"""Properties of the core over random event streams (Hypothesis).

A stream is drawn one event at a time while a first engine runs it, so acknowledgements can name the
escalations produced so far and the units they were routed to. The stream (a plain list of events) is
then run again in fresh engines: once more, with every event fed twice, and with a snapshot/restore
in the middle; all must say exactly what the first run said.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.core.engine import Engine
from schemas.directory import Directory
from schemas.escalation import Escalation, revision_json
from schemas.events import InputEvent
from tests.builders import (
    CHECKPOINTS,
    REGIONS,
    T0,
    UNITS,
    ack,
    alert,
    case,
    expected_id,
    heartbeat,
    shift,
    small_directory,
)

pytestmark = pytest.mark.core

DIRECTORY = small_directory()
END = T0 + timedelta(days=4)  # every stream is advanced to here at the end, so pending timers fire

PERSONS = ["p-1", "p-2", "p-3"]
CASES = ["c-1", "c-2", "c-3", "c-4", "c-5"]
TOWNSHIPS = ["t-1", "t-2"]
# Weighted towards what makes clusters and contacts (and undoes them), so those rules are exercised too.
STATUSES = ["confirmed", "confirmed", "confirmed", "asymptomatic", "asymptomatic", "excluded", "excluded",
            "suspected", "close_contact", "recovered", "deceased"]
OFFICERS = ["o-1", "o-2", "o-3"]
SETTINGS = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Stream:
    events: list[InputEvent] = field(default_factory=list)
    revisions: list[Escalation] = field(default_factory=list)


def when(data: st.DataObject) -> datetime:
    # Minutes over three days, from an hour before T0: enough to cross deadlines, silences and shifts, and
    # drawn independently, so events arrive out of order as they do in life.
    return T0 + timedelta(minutes=data.draw(st.integers(-60, 3 * 24 * 60), label="minute"))


def draw_event(data: st.DataObject, stream: Stream) -> InputEvent:
    kind = data.draw(st.sampled_from(["case", "cluster", "alert", "alert", "heartbeat", "shift", "shift",
                                      "ack", "ack", "again", "reuse-id"]), label="kind")
    if kind == "again" and stream.events:  # the same event once more (a producer's retry)
        return data.draw(st.sampled_from(stream.events), label="repeat")
    event_id = None
    if kind == "reuse-id" and stream.events:  # an event_id already used, different content
        event_id = data.draw(st.sampled_from(stream.events), label="reused").event_id
        kind = "alert"
    occurred = when(data)
    match kind:
        case "cluster":  # a case where clusters form, so that they open, grow, shrink and reopen
            return case(data.draw(st.sampled_from(CASES), label="case_id"),
                        data.draw(st.sampled_from(["confirmed", "asymptomatic", "excluded"]), label="status"),
                        person=data.draw(st.sampled_from(PERSONS), label="person"), region="north",
                        township=TOWNSHIPS[0], occurred=occurred, event_id=event_id)
        case "case":
            status = data.draw(st.sampled_from(STATUSES), label="status")
            travel = data.draw(st.lists(st.tuples(st.sampled_from(["hubei-wuhan", "sichuan-chengdu"]),
                                                  st.integers(0, 20)), max_size=2), label="travel")
            delay = data.draw(st.sampled_from([None, 60, 120, 121, 600]), label="delay")
            return case(
                data.draw(st.sampled_from(CASES), label="case_id"), status,
                person=data.draw(st.sampled_from(PERSONS), label="person"),
                region=data.draw(st.sampled_from(["north", "north", *REGIONS]), label="region"),
                township=data.draw(st.sampled_from([None, *TOWNSHIPS, TOWNSHIPS[0]]), label="township"),
                travel=[(r, occurred - timedelta(days=d)) for r, d in travel],
                occurred=occurred,
                reported=occurred + timedelta(minutes=delay) if delay is not None else None,
                source=data.draw(st.sampled_from(["hospital", "cdc"]), label="source"), event_id=event_id,
            )
        case "alert" | "reuse-id":
            return alert(
                data.draw(st.sampled_from(PERSONS), label="person"),
                checkpoint=data.draw(st.sampled_from(CHECKPOINTS), label="checkpoint"),
                temperature=data.draw(st.sampled_from([None, 36.5, 37.2, 37.3, 39.1]), label="temperature"),
                origin=data.draw(st.sampled_from([None, "hubei-wuhan", "sichuan-chengdu"]), label="origin"),
                destination=data.draw(st.sampled_from([None, "north", "south", "lake", "xian"]),
                                      label="destination"),
                direction=data.draw(st.sampled_from(["inbound", "outbound"]), label="direction"),
                occurred=occurred, event_id=event_id,
            )
        case "heartbeat":
            return heartbeat(data.draw(st.sampled_from(CHECKPOINTS), label="checkpoint"), occurred=occurred)
        case "shift":
            start = when(data)
            return shift(
                # Often a unit high in the tree, so that fallbacks have somebody to fall back on.
                data.draw(st.sampled_from(["hq-office", "north-hq", *UNITS]), label="unit"),
                data.draw(st.sampled_from(["principal", "in_charge", "duty_officer"]), label="post"),
                data.draw(st.sampled_from(OFFICERS), label="officer"),
                start=start, end=start + timedelta(hours=data.draw(st.integers(1, 30), label="hours")),
                status=data.draw(st.sampled_from(["scheduled", "scheduled", "cancelled"]),
                                 label="shift_status"),
                occurred=occurred,
            )
        case _:
            return draw_ack(data, stream, occurred)


def draw_ack(data: st.DataObject, stream: Stream, occurred: datetime) -> InputEvent:
    latest = {r.escalation_id: r for r in stream.revisions}
    if latest and data.draw(st.sampled_from([True, True, True, False]), label="known"):
        target = latest[data.draw(st.sampled_from(sorted(latest)), label="escalation")]
        esc_id = target.escalation_id
        # cdc is routed for some rules and not for others: acks from units not routed are drawn too.
        unit = data.draw(st.sampled_from([*sorted(target.routed_to), "cdc"]), label="unit")
    else:
        esc_id = "esc-" + data.draw(st.sampled_from(["0" * 20, "f" * 20]), label="unknown")
        unit = data.draw(st.sampled_from(UNITS), label="unit")
    action = data.draw(st.sampled_from(["acknowledge", "acknowledge", "resolve"]), label="action")
    return ack(esc_id, unit, data.draw(st.sampled_from(OFFICERS), label="officer"), action=action,
               occurred=occurred)


def draw_stream(data: st.DataObject, max_events: int = 40) -> Stream:
    """Draw events while a first engine runs them (this is also the no-crash property)."""
    engine = Engine(DIRECTORY)
    stream = Stream()
    for _ in range(data.draw(st.integers(3, max_events), label="length")):
        event = draw_event(data, stream)
        stream.events.append(event)
        stream.revisions += engine.process(event).revisions
    stream.revisions += engine.advance(END)
    return stream


def run(directory: Directory, events: list[InputEvent]) -> list[Escalation]:
    engine = Engine(directory)
    out: list[Escalation] = []
    for event in events:
        out += engine.process(event).revisions
    return out + engine.advance(END)


def as_bytes(revisions: list[Escalation]) -> bytes:
    return b"".join(revision_json(r) + b"\n" for r in revisions)


# ---- properties -----------------------------------------------------------------------------------------

@SETTINGS
@given(st.data())
def test_every_revision_is_well_formed(data: st.DataObject) -> None:
    stream = draw_stream(data)
    fed = {(e.source_unit, e.event_id) for e in stream.events}
    units = set(UNITS)
    numbers: dict[str, list[int]] = defaultdict(list)
    steps: dict[str, list[int]] = defaultdict(list)
    times: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for rev in stream.revisions:
        assert rev.routed_to, "every revision routes to at least one unit"
        assert set(rev.routed_to) <= units
        assert len(set(rev.routed_to)) == len(rev.routed_to)
        assert set(rev.assignees) == set(rev.routed_to)
        assert set(rev.fallback) <= set(rev.routed_to)
        assert set(rev.fallback.values()) <= set(rev.routed_to)
        assert set(rev.acked_by) <= set(rev.routed_to)
        for item in rev.evidence:
            assert (item.source_unit, item.event_id) in fed, "evidence points at an input that was fed"
        assert rev.escalation_id == expected_id(rev.rule, rev.subject)
        numbers[rev.escalation_id].append(rev.revision)
        steps[rev.escalation_id].append(rev.step)
        times[rev.escalation_id].append((rev.opened_at, rev.updated_at))
    for esc_id, revs in numbers.items():
        assert revs == list(range(1, len(revs) + 1)), f"{esc_id} numbered {revs}"
        assert steps[esc_id] == sorted(steps[esc_id]), f"{esc_id} steps went back: {steps[esc_id]}"
        assert len({opened for opened, _ in times[esc_id]}) == 1, f"{esc_id} opened twice"
        updated = [u for _, u in times[esc_id]]
        assert updated == sorted(updated), f"{esc_id} went back in time: {updated}"


@SETTINGS
@given(st.data())
def test_same_stream_same_bytes(data: st.DataObject) -> None:
    stream = draw_stream(data)
    first = as_bytes(run(DIRECTORY, stream.events))
    assert first == as_bytes(stream.revisions)
    assert as_bytes(run(DIRECTORY, stream.events)) == first


@SETTINGS
@given(st.data())
def test_every_event_fed_twice_adds_nothing(data: st.DataObject) -> None:
    stream = draw_stream(data)
    doubled = [e for event in stream.events for e in (event, event)]
    assert as_bytes(run(DIRECTORY, doubled)) == as_bytes(stream.revisions)


@SETTINGS
@given(st.data())
def test_snapshot_and_restore_midway_changes_nothing(data: st.DataObject) -> None:
    stream = draw_stream(data)
    cut = data.draw(st.integers(0, len(stream.events)), label="cut")
    engine = Engine(DIRECTORY)
    out: list[Escalation] = []
    for event in stream.events[:cut]:
        out += engine.process(event).revisions
    engine = Engine.restore(DIRECTORY, engine.snapshot())
    for event in stream.events[cut:]:
        out += engine.process(event).revisions
    out += engine.advance(END)
    assert as_bytes(out) == as_bytes(stream.revisions)
