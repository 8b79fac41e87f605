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
from agents.worker import ESCALATIONS, EngineRuntime, apply_batch, intake_record
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
        outputs += apply_batch(runtime, [(offset, value) for offset, value, _ in records[i:i + batch]])
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
def test_a_poison_event_leaves_no_trace_between_snapshots(monkeypatch: pytest.MonkeyPatch, batch: int,
                                                          snapshot_every: int, in_child: bool) -> None:
    records = intake_records()
    poison_ids = {records[len(records) // 3][2], records[len(records) // 2][2]}
    clean, _ = run([r for r in records if r[2] not in poison_ids], batch, snapshot_every)
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
