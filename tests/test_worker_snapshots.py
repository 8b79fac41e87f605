"""The engine stage's snapshot cadence and its rollback, without a broker.

Snapshots are written every few seconds, not after each batch, so a poison event rolls the engine back
to the last snapshot and the records applied since; afterwards it must be as if the event was never
published, whatever the batches and snapshots around it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents import snapshot_child
from agents.core.engine import Engine
from agents.snapshot_child import SnapshotChild
from agents.snapshots import Cadence
from agents.worker import (
    ESCALATIONS,
    INTAKE,
    MAX_BATCHED_BYTES,
    MAX_BATCHED_EVENTS,
    EngineRuntime,
    apply_batch,
    intake_batches,
    intake_entries,
    intake_record,
)
from schemas.directory import load_directory
from streams.topics import INPUT_TOPIC_OF_KIND

pytestmark = [pytest.mark.core]

SCENARIO = Path(__file__).resolve().parent.parent / "agents" / "scenarios" / "guangyuan-2020-01-24.jsonl"
RECEIVED = datetime(2020, 1, 24, 12, tzinfo=UTC)


def intake_records() -> list[tuple[int, bytes, str]]:
    out = []
    for offset, line in enumerate(ln for ln in SCENARIO.read_bytes().splitlines() if ln.strip()):
        event = orjson.loads(line)
        topic = INPUT_TOPIC_OF_KIND.get(event.get("kind"), "jpc.case-reports")
        out.append((offset, intake_record(topic, 0, offset, RECEIVED, line), str(event.get("event_id"))))
    return out


def batched(records: list[tuple[int, bytes, str]], size: int) -> list[tuple[int, bytes, str]]:
    """The records as the intake writes them: `size` events to an intake record (ids joined by spaces)."""
    out = []
    for offset, i in enumerate(range(0, len(records), size)):
        group = records[i:i + size]
        [(_, _, value)] = intake_batches([(INTAKE, b"", value) for _, value, _ in group])
        out.append((offset, value, " ".join(event_id for _, _, event_id in group)))
    return out


def revisions(outputs: list[tuple[str, bytes, bytes]]) -> list[bytes]:
    return [value for topic, _, value in outputs if topic == ESCALATIONS]


def run(records: list[tuple[int, bytes, str]], batch: int, snapshot_every: int,
        in_child: bool = False) -> tuple[list[bytes], EngineRuntime]:
    """Apply the records in batches, snapshotting every few batches; `in_child`: each snapshot taken by a
    forked child and adopted one batch later, as the worker does while the engine goes on."""
    runtime = EngineRuntime(Engine(load_directory(None), "event"))
    outputs = []
    taking: tuple[SnapshotChild, int] | None = None
    for i in range(0, len(records), batch):
        outputs += apply_batch(runtime, [(offset, value) for offset, value, _ in records[i:i + batch]]).outputs
        if taking is not None:
            child, offset = taking
            runtime.adopt(child.collect(), offset)
            taking = None
        if (i // batch) % snapshot_every == snapshot_every - 1:
            if in_child:
                taking = snapshot_child.start(runtime.engine.snapshot), runtime.applied_offset
            else:
                runtime.rebase()
    if taking is not None:
        taking[0].collect()
    return revisions(outputs), runtime


@pytest.mark.parametrize("in_child", [False, True])
@pytest.mark.parametrize(("batch", "snapshot_every"), [(1, 1), (7, 3), (50, 2), (1000, 1)])
@pytest.mark.parametrize("per_record", [1, 9])
def test_a_poison_event_leaves_no_trace_between_snapshots(monkeypatch: pytest.MonkeyPatch, batch: int,
                                                          snapshot_every: int, in_child: bool, per_record: int) -> None:
    """`per_record` events to an intake record: 1 as the intake wrote them before batches, 9 as it batches
    them now (each poison event is then one of several in its record, the others applied)."""
    singles = intake_records()
    poison_ids = {singles[len(singles) // 3][2], singles[len(singles) // 2][2]}
    clean, _ = run([r for r in singles if r[2] not in poison_ids], batch, snapshot_every)
    records = batched(singles, per_record)
    process = Engine.process

    def raising(self: Engine, event: Any, *args: Any, **kwargs: Any) -> Any:
        if event.event_id in poison_ids:
            raise RuntimeError("a rule raised")
        return process(self, event, *args, **kwargs)

    monkeypatch.setattr(Engine, "process", raising)
    poisoned, runtime = run(records, batch, snapshot_every, in_child)
    assert poisoned == clean
    assert runtime.applied_offset == records[-1][0]
    assert len(clean) > 10


def test_cadence_waits_for_time_or_records_and_bounds_the_snapshot_share() -> None:
    cadence = Cadence(every_s=2.0, every_records=100)
    assert not cadence.due(0.0)  # nothing applied
    cadence.applied(10, 1.0)
    assert not cadence.due(2.9)
    assert cadence.due(3.0)  # 2 s after the first record not covered
    cadence.written(3.0, took=0.5)
    cadence.applied(200, 3.1)
    assert not cadence.due(7.9)  # 200 records waiting, but the last snapshot took 0.5 s: not before 8.0
    assert cadence.due(8.0)
    cadence.forget()
    assert not cadence.due(100.0)


def test_the_intake_packs_events_in_order_within_its_bounds() -> None:
    entries = [(INTAKE, b"", intake_record("jpc.checkpoint-alerts", 0, n, RECEIVED, b'{"n":%d}' % n))
               for n in range(MAX_BATCHED_EVENTS * 2 + 3)]
    packed = intake_batches(entries)
    assert [len(intake_entries(orjson.loads(value))) for _, _, value in packed] == [MAX_BATCHED_EVENTS] * 2 + [3]
    unpacked = [entry for _, _, value in packed for entry in intake_entries(orjson.loads(value))]
    assert unpacked == [orjson.loads(value) for _, _, value in entries]
    assert {topic for topic, _, _ in packed} == {INTAKE}
    large = [(INTAKE, b"", b'{"event":"%s"}' % (b"x" * (MAX_BATCHED_BYTES // 3))) for _ in range(7)]
    sizes = [len(intake_entries(orjson.loads(value))) for _, _, value in intake_batches(large)]
    assert sizes == [2, 2, 2, 1]
    assert all(len(value) <= MAX_BATCHED_BYTES + 64 for _, _, value in intake_batches(large))


def test_batched_and_single_intake_records_give_the_same_escalations() -> None:
    singles = intake_records()
    one_by_one, _ = run(singles, 50, 2)
    mixed = singles[:40] + [(40 + offset, value, ids) for offset, value, ids in batched(singles[40:], 13)]
    in_batches, runtime = run(mixed, 50, 2)
    assert in_batches == one_by_one
    assert runtime.events_applied == len(singles)
