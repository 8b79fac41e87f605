"""`jpc replay`: the correlation core driven offline from a JSON-lines file.

Escalation revisions go to stdout as JSON lines, byte-identical for the same input; refused lines
go to the dead-letter output with their line number. This is the record-keeper's tool: rebuild any
escalation from the log, or backtest a threshold on last month's events.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO

import orjson

from agents.core.engine import Engine, Source
from schemas.codec import Refusal, decode_event
from schemas.dead_letter import DeadLetter
from schemas.directory import Directory
from schemas.escalation import Escalation, revision_json


@dataclass(slots=True)
class ReplayReport:
    lines: int = 0
    revisions: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    escalations: set[str] = field(default_factory=set)


def dead_letter_for_line(line_no: int, raw: bytes, field_name: str | None, reason: str,
                         event_id: str | None = None, source_unit: str | None = None) -> DeadLetter:
    return DeadLetter(reason=reason, field=field_name, line=line_no, event_id=event_id,
                      source_unit=source_unit, **DeadLetter.carry(raw))


def replay_lines(engine: Engine, lines: Iterable[bytes]) -> Iterator[Escalation | DeadLetter]:
    """Feed numbered lines to the engine; yield its revisions and the dead letters, in order."""
    for line_no, line in enumerate(lines, start=1):
        raw = line.rstrip(b"\r\n")
        if not raw.strip():
            continue  # blank lines separate nothing and mean nothing
        decoded = decode_event(raw)
        if isinstance(decoded, Refusal):
            yield dead_letter_for_line(line_no, decoded.raw, decoded.field, decoded.reason,
                                       decoded.event_id, decoded.source_unit)
            continue
        outcome = engine.process(decoded, Source(line=line_no))
        yield from outcome.revisions
        if outcome.refused is not None:
            field_name, reason = outcome.refused
            yield dead_letter_for_line(line_no, raw, field_name, reason, decoded.event_id, decoded.source_unit)


def replay(directory: Directory, lines: Iterable[bytes], out: BinaryIO, dead: BinaryIO,
           until: datetime | None = None) -> ReplayReport:
    engine = Engine(directory, clock="event")
    report = ReplayReport()
    results: Iterable[Escalation | DeadLetter] = replay_lines(engine, _counting(lines, report))
    # The engine keeps most of what it allocates (a fortnight of sightings and keys), and its state has
    # few cycles: collecting every 700 allocations walks that growing state again and again for nothing.
    thresholds = gc.get_threshold()
    gc.set_threshold(50_000, 20, 100)
    try:
        for item in results:
            if isinstance(item, Escalation):
                _emit(out, item, report)
            else:
                report.dead_letters += 1
                dead.write(orjson.dumps(item.model_dump(exclude_none=True)) + b"\n")
        if until is not None:
            for revision in engine.advance(until):
                _emit(out, revision, report)
    finally:
        gc.set_threshold(*thresholds)
    report.duplicates = engine.counters["duplicates"]
    return report


def _emit(out: BinaryIO, revision: Escalation, report: ReplayReport) -> None:
    out.write(revision_json(revision) + b"\n")
    report.revisions += 1
    report.escalations.add(revision.escalation_id)


def _counting(lines: Iterable[bytes], report: ReplayReport) -> Iterator[bytes]:
    for line in lines:
        report.lines += 1
        yield line
