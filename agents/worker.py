"""`jpc worker`: the live bus. Faust agents host the same pure core that `jpc replay` drives.

Two stages:
  intake  - consumes the input topics (any number of partitions), validates each record, sends
            refusals to `jpc.dead-letter` and valid events to `jpc.intake`, one partition: the
            one order in which the engine sees them (as replay sees the lines of a file). Events
            released together travel as one record (`intake_batches`).
  engine  - consumes `jpc.intake` and runs the core; every revision goes to `jpc.escalations` and
            to `jpc.escalations.<unit>` for each unit it is routed to. Its state is a snapshot in
            a changelog-backed table, written every few seconds (JPC_SNAPSHOT_EVERY_S, or
            JPC_SNAPSHOT_EVERY_RECORDS), a timer seeing to it when no batch comes; intake records
            are acked only once a snapshot includes them.

Delivery is at-least-once: outputs, and the snapshot's changelog writes, are awaited until the broker
acknowledges them before the events that caused them are acked, and the consumer never commits past a
record still held (streams/app.py). A restarted engine resumes from its snapshot, skips intake records
it includes and applies the later ones again; a record processed twice re-sends byte-identical
revisions, which readers drop by (escalation_id, revision). An event that makes a rule raise is dead-
lettered and leaves no other trace. Anything else that fails a batch, or outputs the broker does not
acknowledge, stops the process (exit 70, or 75) before the batch is acked: run the worker under a
supervisor that starts it again (systemd Restart=on-failure, a Kubernetes pod), and it resumes from the
last commit.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import json
import os
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NamedTuple, NoReturn

import faust
import orjson
from faust.types import TP

from agents import snapshot_child
from agents.core.engine import ClockMode, Engine, Source
from agents.reading_monitor import ReadingMonitor, report_of
from agents.snapshot_child import SnapshotChild, SnapshotFailed
from agents.snapshots import META, Cadence, compress, pack_compressed, unpack_compressed
from agents.stuck_inputs import Standing, StuckInputs
from agents.worker_diagnostics import install_dump_on_sigusr1
from agents.worker_web import install as install_watch
from schemas.codec import Refusal, decode_event
from schemas.dead_letter import DeadLetter
from schemas.directory import Directory
from schemas.escalation import Escalation, revision_json
from schemas.personal_data import redact_identifiers
from streams.app import RawRecords, lowest_offsets, make_app
from streams.logging import get_logger
from streams.settings import Settings
from streams.topics import DEAD_LETTER, ESCALATIONS, INPUT_TOPIC_OF_KIND, INPUT_TOPICS, INTAKE, unit_topic

log = get_logger("worker")
Output = tuple[str, bytes, bytes]  # topic, key, value
EXIT_OUTPUT_REFUSED = 75  # EX_TEMPFAIL: the broker did not take what the worker had to write; start it again
EXIT_FAILED = 70  # EX_SOFTWARE: a batch could not be processed (see stop_worker)
# Each agent takes what has arrived, up to TAKE_MAX records, waiting at most TAKE_WITHIN_S for more: under a
# backlog batches fill at once, and when records trickle in each of the two stages adds at most this wait to
# an alert's way through (0.05 s made about 100 ms of the latency at 800 events/s).
TAKE_MAX, TAKE_WITHIN_S = 1000, 0.01


class Applied(NamedTuple):
    """An intake record the engine applied, as a rewind applies it again."""

    offset: int
    value: bytes
    poisoned: Mapping[int, Output]  # its events that made a rule raise (by place in the record): their dead letters


_NONE: Mapping[int, Output] = MappingProxyType({})  # no event of the record was poison


@dataclass(slots=True)
class EngineRuntime:
    engine: Engine
    applied_offset: int = -1
    # The last snapshot, compressed as stored (None: a new engine): what a poison event rolls back to (kept
    # compressed: a rollback is rare, and a snapshot taken by a child arrives compressed)...
    packed: bytes | None = None
    blob_offset: int = -1  # ...the last intake offset it includes...
    since: list[Applied] = field(default_factory=list)  # ...and the records applied after it
    events_applied: int = 0  # events applied (an intake record carries many): what the cadence counts

    def rewind(self) -> None:
        """Back to the state before the current batch: the last snapshot, and the records applied since."""
        engine = self.engine
        self.engine = (Engine.restore(engine.directory, zlib.decompress(self.packed), engine.mode)
                       if self.packed is not None else Engine(engine.directory, engine.mode))
        self.applied_offset = self.blob_offset
        for offset, value, poisoned in self.since:
            apply_intake(self, offset, value, poisoned)  # outputs already sent; poison events skipped again

    def rebase(self) -> bytes:
        """A new snapshot of the engine as it is, compressed: what the next rewind starts from."""
        self.packed, self.blob_offset = compress(self.engine.snapshot()), self.applied_offset
        self.since.clear()
        return self.packed

    def adopt(self, packed: bytes, offset: int) -> None:
        """A snapshot taken when the engine had applied up to `offset` (by a child, while the engine went on):
        what the next rewind starts from, the records applied after it then applied again."""
        self.packed, self.blob_offset = packed, offset
        self.since = [applied for applied in self.since if applied.offset > offset]


# Records this worker writes must fit in a Kafka record (the broker's default limit is about 1 MB) whatever
# came in: escaped in JSON (or in base64) a record's bytes take up to six times their size.
MAX_CARRIED_BYTES = 64 * 1024  # of a refused record's bytes in its dead letter
MAX_LETTER_TEXT = 1024  # characters of a dead letter's field and reason (an unknown field's name is free text)


def intake_record(topic: str, partition: int, offset: int, received_at: datetime, raw: bytes) -> bytes:
    text = raw.decode("utf-8")
    if len(raw) > MAX_CARRIED_BYTES:
        # A valid event is small, but JSON allows any amount of whitespace, and tabs or newlines escaped in
        # this record would double a 1 MB event past the limit: carry a large one without its whitespace
        # (the stdlib keeps what pydantic accepted; the original bytes stay in the input topic).
        with suppress(ValueError, RecursionError):
            text = json.dumps(json.loads(text), separators=(",", ":"))
    return orjson.dumps({"topic": topic, "partition": partition, "offset": offset,
                         "received_at": received_at.isoformat(), "event": text})


# The intake records released together travel as one record of `jpc.intake`, up to these bounds: the engine
# stage then takes one record from Faust per batch, not one per event (Faust's per-record delivery cost more
# than the engine's work on it; docs/DECISIONS.md). Well under the broker's 1 MB limit on a record.
MAX_BATCHED_EVENTS, MAX_BATCHED_BYTES = 500, 256 * 1024


def intake_batches(entries: list[Output]) -> list[Output]:
    """Intake records (as `intake_record` makes them) packed in order into `{"events": [...]}` records."""
    out: list[Output] = []
    batch: list[bytes] = []
    size = 0
    for _, _, value in entries:
        if batch and (len(batch) >= MAX_BATCHED_EVENTS or size + len(value) > MAX_BATCHED_BYTES):
            out.append(_batched(batch))
            batch, size = [], 0
        batch.append(value)
        size += len(value) + 1
    if batch:
        out.append(_batched(batch))
    return out


def _batched(values: list[bytes]) -> Output:
    return INTAKE, b"events", b'{"events":[' + b",".join(values) + b"]}"


def intake_entries(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The events an intake record carries: a batch, or one event (as the intake wrote them before batches)."""
    events = record.get("events")
    return events if isinstance(events, list) else [record]


def tick_record(at: datetime) -> bytes:
    return orjson.dumps({"tick": at.isoformat()})


def dead_letter_output(source: Source, raw: bytes, field: str | None, reason: str,
                       event_id: str | None = None, source_unit: str | None = None) -> Output:
    reason = _clip(reason) or ""
    if len(raw) > MAX_CARRIED_BYTES:  # a letter too large to send would stop the intake (see above)
        reason += f" (the dead letter carries the first {MAX_CARRIED_BYTES} of its {len(raw)} bytes)"
        raw = _text_prefix(raw, MAX_CARRIED_BYTES)
    letter = DeadLetter(reason=reason, field=_clip(field), topic=source.topic, partition=source.partition,
                        offset=source.offset, event_id=event_id, source_unit=source_unit, **DeadLetter.carry(raw))
    return DEAD_LETTER, (source.topic or "").encode(), orjson.dumps(letter.model_dump(exclude_none=True))


def _clip(text: str | None) -> str | None:
    return text if text is None or len(text) <= MAX_LETTER_TEXT else text[:MAX_LETTER_TEXT] + "…"


def _text_prefix(raw: bytes, size: int) -> bytes:
    """The first `size` bytes, backed off to a character boundary so that UTF-8 text stays text."""
    for end in range(size, max(size - 4, 0), -1):
        try:
            raw[:end].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return raw[:end]
    return raw[:size]


def revision_outputs(revision: Escalation) -> list[Output]:
    key = revision.escalation_id.encode()
    value = revision_json(revision)
    return [(ESCALATIONS, key, value)] + [(unit_topic(u), key, value) for u in revision.routed_to]


SortKey = tuple[float, str, str]


def judge_input(topic: str, partition: int, offset: int, raw: bytes | None, now: datetime
                ) -> tuple[Output, SortKey | None] | None:
    """The intake stage for one record: a dead letter, or an intake record with the key that orders it
    among the others (when it was reported, then its id); None for a compaction tombstone."""
    source = Source(topic=topic, partition=partition, offset=offset)
    if raw is None:
        return None  # a tombstone on the compacted roster topic: nothing to correlate
    decoded = decode_event(raw)
    if isinstance(decoded, Refusal):
        return dead_letter_output(source, decoded.raw, decoded.field, decoded.reason,
                                  decoded.event_id, decoded.source_unit), None
    if INPUT_TOPIC_OF_KIND[decoded.kind] != topic:
        return dead_letter_output(source, raw, "kind", f"kind: a {decoded.kind} does not belong on {topic} "
                                  f"(publish it to {INPUT_TOPIC_OF_KIND[decoded.kind]})",
                                  decoded.event_id, decoded.source_unit), None
    order = (decoded.reported.timestamp(), decoded.event_id, decoded.source_unit)
    return (INTAKE, topic.encode(), intake_record(topic, partition, offset, now, raw)), order


def judge_safely(topic: str, partition: int, offset: int, raw: bytes | None, now: datetime
                 ) -> tuple[Output, SortKey | None] | None:
    """judge_input, with a record that makes it raise dead-lettered like any refusal: one hostile record
    must not stop the intake (the intake's poison event)."""
    try:
        return judge_input(topic, partition, offset, raw, now)
    except Exception as exc:
        log.exception("judging raised", topic=topic, partition=partition, offset=offset)
        source = Source(topic=topic, partition=partition, offset=offset)
        # Nothing tells its `phone` from a guarded field here: redact every identifier, as for unparsed bytes.
        text = redact_identifiers((raw or b"").decode("utf-8", errors="surrogateescape"))
        return dead_letter_output(source, text.encode("utf-8", errors="surrogateescape"), None,
                                  f"(intake): judging raised {exc.__class__.__name__}"), None


class _Held(NamedTuple):
    # Compared as a tuple, in C (the heap compares on every push and pop): `order` ends with a unique
    # sequence number, so the other fields are never compared.
    order: tuple[SortKey, int]
    release_at: float
    output: Output
    event: Any  # its offset is acked only once the intake record is on the broker


class ReorderBuffer:
    """Puts records from many partitions back into reporting order before the engine sees them.

    Partitions are fetched in parallel, so arrival order is not the order sources reported in. In
    event-clock mode that order moves the clock, so records wait `window_s` here and leave sorted by
    (reported time, event id): a file published in reporting order reaches the engine in file order,
    as `jpc replay` reads it. Held records are not acked, so a crash loses none of them.
    """

    MAX_STEP_S = 0.25  # of running time between two looks at the clock (the release timer runs every 0.1 s)

    def __init__(self, window_s: float, highwater: Callable[[Any], int | None] = lambda tp: None,
                 assigned: Callable[[], Iterable[tuple[Any, int | None]]] = tuple) -> None:
        self.window_s = window_s
        # The input partitions this worker reads, each with its committed offset (None: not known yet).
        self._assigned = assigned
        # A partition that stays behind this long no longer holds the others back (a broker gone for good).
        self.max_wait_s = max(30.0, 5 * window_s)
        self._heap: list[_Held] = []
        self._seq = 0
        self._highwater = highwater
        # Per input partition: the next offset to judge, and the order key of the last valid record judged.
        self._frontier: dict[Any, tuple[int, SortKey | None]] = {}
        self._running = 0.0
        self._last_look: float | None = None
        self.lock = asyncio.Lock()

    def clock(self, now: float) -> float:
        """Running time: the monotonic clock less the time the worker did not run (SIGSTOP, a frozen VM,
        the event loop blocked on one record). Windows are counted in it, since while the worker does not
        run no other partition can catch up either (found by the fault tests: after a pause every held
        record was overdue, and left ahead of records fetched only after the pause)."""
        if self._last_look is not None:
            self._running += min(max(now - self._last_look, 0.0), self.MAX_STEP_S)
        self._last_look = now
        return self._running

    def forget(self, partitions: set[Any]) -> list[Any]:
        """Drop the held records of partitions a rebalance took away; their messages. They were never acked,
        so whoever gets the partition reads them again, in order with the rest; sent now, they would
        overtake records of other partitions still unread. (So Faust must not wait for them:
        stream_wait_empty.)"""
        dropped = [h.event.message for h in self._heap if h.event.message.tp in partitions]
        self._heap = [h for h in self._heap if h.event.message.tp not in partitions]
        heapq.heapify(self._heap)
        for tp in partitions:
            self._frontier.pop(tp, None)
        return dropped

    def judged_up_to(self, tp: Any) -> int | None:
        """The next offset of `tp` to judge, since it was assigned (None: nothing judged yet)."""
        frontier = self._frontier.get(tp)
        return None if frontier is None else frontier[0]

    def judged(self, tp: Any, offset: int, order: SortKey | None) -> None:
        """Every record the intake judged, held or not: how far each partition has been read."""
        next_offset, last = self._frontier.get(tp, (0, None))
        self._frontier[tp] = (max(next_offset, offset + 1), order if order is not None else last)

    def hold(self, order: SortKey, output: Output, event: Any, now: float) -> None:
        self._seq += 1
        event.message.incref()  # keep its offset from being committed while it waits here
        heapq.heappush(self._heap, _Held((order, self._seq), now + self.window_s, output, event))

    def due(self, now: float) -> list[_Held]:
        # The window alone is not enough: when the intake stalls (a 10 MB record takes seconds to refuse, a
        # restart meets a backlog) records of other partitions wait unjudged in the consumer for longer than
        # the window, and releasing on time alone would let later reports overtake them. So a record also
        # waits while a partition with unjudged records (behind its high watermark) was last seen at an
        # earlier report: that partition may still hold one that comes first (found by the fault tests).
        if not self._heap or self._heap[0].release_at > now:
            return []
        behind = self._behind() if self.window_s > 0 else []  # wall-clock mode does not reorder
        out = []
        while self._heap and self._heap[0].release_at <= now:
            head = self._heap[0]
            overdue = now >= head.release_at - self.window_s + self.max_wait_s
            if not overdue and any(last is None or last < head.order[0] for last in behind):
                break
            out.append(heapq.heappop(self._heap))
        return out

    def _behind(self) -> list[SortKey | None]:
        """The last key seen on each partition that still has records to judge (None: none seen yet)."""
        out = []
        for tp, (next_offset, last) in self._frontier.items():
            highwater = self._highwater(tp)
            if highwater is not None and next_offset < highwater:
                out.append(last)
        # A partition with records to judge and none judged yet holds back every record: after a restart
        # its first batch may come seconds after the others' (found by the fault tests on a loaded machine:
        # records of the partitions fetched first left ahead of its earlier ones).
        for tp, committed in self._assigned():
            if tp not in self._frontier:
                highwater = self._highwater(tp)
                if highwater is None or highwater > (committed or 0):
                    out.append(None)
        return out

    def held_messages(self) -> list[Any]:
        return [h.event.message for h in self._heap]

    def describe(self) -> dict[str, Any]:
        """What it holds, for people (the SIGUSR1 diagnostics). Looking does not move the running clock."""
        oldest = min((h.release_at - self.window_s for h in self._heap), default=None)
        return {"held": len(self._heap), "held_oldest_s": None if oldest is None else round(self._running - oldest, 1),
                "partitions_behind": len(self._behind()), "lock_held": self.lock.locked()}

    def __len__(self) -> int:
        return len(self._heap)


# The engine's snapshot lives in two slots of the table, and SLOT names the one that is whole. A snapshot is
# several entries (chunks, then their meta) and a crash can land between two of them: overwriting the only
# copy in place left a meta that did not match its chunks, and the worker could not start again (found by
# the fault tests, kill -9 mid-write). Changelog writes reach the broker in order, so the pointer, written
# last, is on the log only if the slot it names is. Tables written before slots existed have no SLOT.
SLOT = "slot"


def snapshot_reader(get: Callable[[str], bytes | None]) -> Callable[[str], bytes | None]:
    """The table getter seen through the slot that holds the last whole snapshot."""
    slot = get(SLOT)
    if slot is None:
        return get  # no snapshot yet, or one written before slots
    prefix = slot.decode() + "/"
    return lambda key: get(prefix + key)


def slot_entries(entries: dict[str, bytes], get: Callable[[str], bytes | None]) -> list[tuple[str, bytes]]:
    """The table writes for a new snapshot, in order: the slot not in use, then the pointer to it."""
    slot = "b" if get(SLOT) == b"a" else "a"
    return [(f"{slot}/{key}", value) for key, value in entries.items()] + [(SLOT, slot.encode())]


def snapshot_offset(get: Callable[[str], bytes | None]) -> int:
    meta = get(META)
    return int(orjson.loads(meta)["applied_offset"]) if meta else -1


def restore_runtime(directory: Directory, clock: ClockMode, get: Callable[[str], bytes | None]) -> EngineRuntime:
    restored = unpack_compressed(get)
    if restored is None:
        return EngineRuntime(Engine(directory, clock))
    packed, applied = restored
    runtime = EngineRuntime(Engine.restore(directory, zlib.decompress(packed), clock), applied, packed, applied)
    log.info("engine restored", applied_offset=applied, clock=str(runtime.engine.clock))
    return runtime


def apply_intake(runtime: EngineRuntime, offset: int, value: bytes,
                 poisoned: Mapping[int, Output] = _NONE) -> list[Output]:
    """The engine stage for one intake record: a batch of events (or one, as written before batches), a clock
    tick or a reading report. `poisoned` are the record's events that made a rule raise, by their place in
    it: their dead letters go out in their stead."""
    if offset <= runtime.applied_offset:
        return []  # already in the snapshot: re-delivered after a restart
    runtime.applied_offset = offset
    record: dict[str, Any] = orjson.loads(value)
    engine = runtime.engine
    entries = intake_entries(record)
    runtime.events_applied += max(len(entries), 1)  # a tick or a reading report counts as one
    if "tick" in record:
        return [o for r in engine.advance(datetime.fromisoformat(record["tick"])) for o in revision_outputs(r)]
    if "reading" in record:  # a unit's duty group as the reading monitor saw it (agents/reading_monitor.py)
        try:
            report = report_of(record["reading"])
        except ValueError:
            log.warning("intake record is no reading report; skipped", offset=offset)
            return []
        return [o for r in engine.observe_reading(report, Source(INTAKE, 0, offset)) for o in revision_outputs(r)]
    outputs: list[Output] = []
    for place, entry in enumerate(entries):
        letter = poisoned.get(place)
        if letter is not None:
            outputs.append(letter)
        else:
            outputs += _apply_event(engine, offset, place, entry)
    return outputs


def _apply_event(engine: Engine, offset: int, place: int, entry: dict[str, Any]) -> list[Output]:
    raw = entry["event"].encode("utf-8")
    source = Source(topic=entry["topic"], partition=entry["partition"], offset=entry["offset"])
    decoded = decode_event(raw)
    if isinstance(decoded, Refusal):  # intake judged it valid; only a contract change could get here
        return [dead_letter_output(source, decoded.raw, decoded.field, decoded.reason)]
    try:
        outcome = engine.process(decoded, source, datetime.fromisoformat(entry["received_at"]))
    except Exception as exc:  # a poison event: dead-letter it with the error, keep the partition moving
        log.exception("rule raised", event_id=decoded.event_id, topic=source.topic, offset=source.offset)
        raise PoisonEvent(offset, place, dead_letter_output(
            source, raw, None, f"(engine): rule raised {exc.__class__.__name__}: {exc}", decoded.event_id,
            decoded.source_unit)) from exc
    outputs = [o for r in outcome.revisions for o in revision_outputs(r)]
    if outcome.refused is not None:
        field, reason = outcome.refused
        outputs.append(dead_letter_output(source, raw, field, reason, decoded.event_id, decoded.source_unit))
    return outputs


@dataclass(slots=True)
class EngineStage:
    """The correlate agent's runtime, shared with the timer that snapshots it and the rebalance handler."""

    cadence: Cadence
    runtime: EngineRuntime | None = None
    held: list[Any] = field(default_factory=list)  # intake events applied since the last snapshot: not acked
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    gap: IntakeGap | None = None
    fork: bool = False  # snapshots taken by a forked child (agents/snapshot_child.py)
    writing: asyncio.Future[None] | None = None  # a snapshot being taken by a child, then written...
    covering: list[Any] = field(default_factory=list)  # ...and the events it covers, acked once it is written


@dataclass(slots=True)
class IntakeGap:
    """Intake records the engine needs next and was not given: since when, and when it last sought them."""

    first_missing: int
    since: float
    sought_at: float = float("-inf")


GAP_SEEK_EVERY_S = 2.0
GAP_GIVE_UP_S = 120.0  # only records deleted by retention stay missing this long: go on without them


def in_sequence(applied_offset: int, batch: list[Any]) -> tuple[list[Any], int | None]:
    """The events of `batch` the engine applies next: those right after `applied_offset`, in an unbroken run;
    and the first offset missing when a later record came instead (None: no gap).

    `jpc.intake` has no holes (one idempotent producer, no transactions, nothing compacted), so a record
    further on means records before it were not delivered. Around a rebalance Faust can deliver records
    from where the fetcher had got to instead of the committed offset it seeks to, and commits past records
    it never delivered again (found by the fault tests: the engine restored its snapshot at 899 and was given
    973 onwards, 938-972 lost). So the engine takes its position from its own snapshot, not from Faust's
    commits, and never applies a record before every record ahead of it."""
    run: list[Any] = []
    expected = applied_offset + 1
    for event in batch:
        offset = event.message.offset
        if offset < expected:
            continue  # in the snapshot already, or applied in this run
        if offset > expected:
            return run, expected
        run.append(event)
        expected += 1
    return run, None


class PoisonEvent(Exception):
    """A rule raised on the event at `place` in the intake record at `offset`; `letter` is its dead letter."""

    def __init__(self, offset: int, place: int, letter: Output) -> None:
        super().__init__(offset, place)
        self.offset, self.place, self.letter = offset, place, letter


class BatchApplied(NamedTuple):
    outputs: list[Output]
    carried: list[int]  # the events each record carried (0: applied before), for the per-event latency


def apply_batch(runtime: EngineRuntime, records: list[tuple[int, bytes]]) -> BatchApplied:
    """The engine stage for a batch of intake records (offset, value), a poison event leaving no trace.

    A rule that raises does so part-way through the engine's handling of the event: timers due before it
    have already fired (their revisions are lost with the exception) and its key is marked as seen. So
    the engine goes back to its state at the start of the batch (the last snapshot, then the records
    applied since) and runs the batch again without that event, which is dead-lettered: afterwards the
    state is as if it had never been published, as replay of the file without it would leave it (found by
    tests/test_faults_hostile.py).
    """
    start_offset = runtime.applied_offset
    poisoned: dict[int, dict[int, Output]] = {}  # offset -> place in the record -> dead letter
    while True:
        try:
            outputs: list[Output] = []
            carried: list[int] = []
            for offset, value in records:
                before = runtime.events_applied
                outputs += apply_intake(runtime, offset, value, poisoned.get(offset, _NONE))
                carried.append(runtime.events_applied - before)
            runtime.since += [Applied(offset, value, poisoned.get(offset, _NONE))
                              for offset, value in records if offset > start_offset]
            return BatchApplied(outputs, carried)
        except PoisonEvent as poison:
            poisoned.setdefault(poison.offset, {})[poison.place] = poison.letter
            runtime.rewind()


async def send_all(app: faust.App, outputs: list[Output]) -> None:
    """Send and wait until the broker has acknowledged every record (acks=all)."""
    try:
        # The client itself, not Faust's wrapper around it (signals and header handling we do not use: a few
        # per cent of the worker's time, each record sent once by the intake and again for every escalation).
        send = app.producer._ensure_producer().send  # type: ignore[attr-defined]
        futures = [await send(topic, value, key=key) for topic, key, value in outputs]
        if futures:
            await asyncio.gather(*futures)
    except Exception as exc:
        # A record the broker refuses, or a broker gone past the producer's timeout: the idempotent producer is
        # then out of sequence for good, and every later send would fail while the worker looked alive.
        stop_worker("outputs not acknowledged by the broker", exc, EXIT_OUTPUT_REFUSED)


def stop_worker(what: str, exc: BaseException, code: int) -> NoReturn:
    """Stop the process at once. An agent that raised has its batch acked all the same (Faust's take_events
    acks in a `finally`) and committed, so the batch would be lost while the worker went on as if nothing
    happened (found by the fault tests). Stopping first leaves it unacked: whoever restarts the worker
    (systemd, Kubernetes, the operator) resumes from the last commit."""
    log.error(f"{what}: the worker stops", error=repr(exc), exit_code=code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def build_worker(settings: Settings, directory: Directory, clock: ClockMode, reorder_s: float) -> faust.App:
    app = make_app(settings)
    watch = install_watch(app, settings)  # /metrics and /health (agents/worker_web.py)
    inputs = app.topic(*INPUT_TOPICS, schema=RawRecords())
    intake = app.topic(INTAKE, schema=RawRecords(), partitions=1)
    table = app.Table("engine", partitions=1, key_type=str, value_type=bytes, use_partitioner=True)

    def highwater(tp: Any) -> int | None:
        try:
            return app.consumer.highwater(tp)  # type: ignore[no-any-return]
        except Exception:  # not assigned (any more), or nothing fetched yet
            return None

    def assigned() -> list[tuple[Any, int | None]]:
        consumer: Any = app.consumer
        try:  # Faust's committed offsets are not in ConsumerT; they are set once it has sought to them
            return [(tp, consumer._committed_offset.get(tp)) for tp in consumer.assignment()
                    if tp.topic in INPUT_TOPICS]
        except Exception:  # no assignment yet
            return []

    reorder = ReorderBuffer(reorder_s, highwater, assigned)

    def state() -> dict[str, Any]:
        """The worker's part of the SIGUSR1 diagnostics (agents/worker_diagnostics.py)."""
        return {**reorder.describe(), "engine_held": len(stage.held), "engine_lock_held": stage.lock.locked()}

    app.jpc_state = state  # type: ignore[attr-defined]

    def held_on_purpose() -> dict[Any, int]:
        """The lowest offset per partition of the records the agents hold (sorting them, until a snapshot)."""
        return lowest_offsets([*reorder.held_messages(), *(event.message for event in stage.held),
                               *(event.message for event in stage.covering)])

    def holding() -> dict[Any, int]:
        """What the agents hold unacked on purpose, lowest offset per partition: the commit stops there.

        And an input partition's commit never passes what the intake has judged since it was assigned:
        Faust's stream acks a record it skips as stale (fetched before a rebalance, still queued after it),
        and the ack counts for the offset in the new assignment too, which could commit the record before
        its copy is read again. (Found reading Faust's code while chasing a loss in the pause fault test;
        that loss had another cause: records delivered in bursts, docs/DECISIONS.md.)"""
        held = held_on_purpose()
        for tp, committed in assigned():
            judged = reorder.judged_up_to(tp)
            limit = judged if judged is not None else committed or 0
            held[tp] = min(held.get(tp, limit), limit)
        return held

    app.jpc_holding = holding  # type: ignore[attr-defined]  # read by streams.app's consumer

    async def release() -> None:
        async with reorder.lock:  # one releaser at a time keeps the intake log in sorted order
            held = reorder.due(reorder.clock(time.monotonic()))
            await send_all(app, intake_batches([h.output for h in held]))
            watch.released(h.event for h in held)
            for h in held:
                h.event.ack()

    @app.agent(inputs)
    async def judge(stream: faust.StreamT[bytes]) -> None:
        async for batch in stream.take_events(TAKE_MAX, within=TAKE_WITHIN_S):
            try:
                now, mono = datetime.now(UTC), reorder.clock(time.monotonic())
                dead: list[Output] = []
                for event in batch:
                    m = event.message
                    judged = judge_safely(m.topic, m.partition, m.offset, event.value, now)
                    reorder.judged(m.tp, m.offset, judged[1] if judged is not None else None)
                    watch.judged(judged)
                    if judged is None:
                        continue
                    output, order = judged
                    if order is None:
                        dead.append(output)
                    else:
                        reorder.hold(order, output, event, mono)
                await send_all(app, dead)
                await release()
            except Exception as exc:
                stop_worker("intake failed on a batch", exc, EXIT_FAILED)

    @app.on_partitions_revoked.connect
    async def forget_revoked(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        async with reorder.lock:
            dropped = reorder.forget(revoked)
        if dropped:
            log.info("held records left to the partitions' next owner", dropped=len(dropped))

    stuck = StuckInputs()

    @app.timer(interval=5.0)
    async def reread_stuck_partitions() -> None:
        """Input partitions that stopped moving with work left are read again from their commit
        (agents/stuck_inputs.py)."""
        consumer: Any = app.consumer  # Faust's bookkeeping below is not in ConsumerT
        try:
            if app.rebalancing or app.in_recovery:  # Faust seeks every partition to its commit after these
                stuck.stuck({}, time.monotonic())
                return
            # Only what the agents hold; not holding()'s cap at the judged offset, which would make a partition
            # that nothing was delivered from since its assignment look held at its commit (suspected in a CI stall).
            held = held_on_purpose()
            pairs = assigned()
            marks = {tp: highwater(tp) for tp, _ in pairs}
            # Faust keeps no commit for a partition committed at 0 or never: it is read from the log's start.
            fresh = [tp for tp, committed in pairs if committed is None and (marks[tp] or 0) > 0]
            starts = await consumer.earliest_offsets(*fresh) if fresh else {}
            standings = {}
            for tp, committed in pairs:
                start = committed if committed is not None else starts.get(tp, 0)
                standings[tp] = Standing(
                    committed=start, judged=reorder.judged_up_to(tp), highwater=marks[tp],
                    acked_ahead=any(o > start for o in consumer._acked.get(tp, ())), held_at=held.get(tp))
            for tp in stuck.stuck(standings, time.monotonic()):
                s = standings[tp]
                log.warning("input partition stuck: reading it again from its commit", topic=tp.topic,
                            partition=tp.partition, committed=s.committed, judged=s.judged,
                            highwater=s.highwater, acked_ahead=s.acked_ahead)
                await consumer.seek(tp, s.committed)
        except Exception:
            log.exception("stuck partitions not checked")

    if reorder_s > 0:
        @app.timer(interval=min(0.1, reorder_s))
        async def release_held() -> None:
            try:
                await release()
            except Exception:
                log.exception("held records not released")

    stage = EngineStage(Cadence(settings.snapshot_every_s, settings.snapshot_every_records),
                        fork=settings.snapshot_in_child and snapshot_child.AVAILABLE)

    async def write_snapshot() -> None:
        """Snapshot the engine into the table, wait until the broker has acknowledged every changelog write,
        then ack the intake records it covers (their outputs are acknowledged already): an offset is
        committed only once a snapshot including its record can be restored. Faust's flush before a commit
        is not enough: it gives up after 0.1 s without a send and commits with writes queued (found by the
        fault tests). Runs under stage.lock; with `stage.fork` it only starts a child that takes the snapshot
        (agents/snapshot_child.py) and returns, the rest done by `finish_in_child`."""
        runtime = stage.runtime
        if runtime is None or stage.writing is not None:
            return
        started = time.monotonic()
        covered = list(stage.held)
        if stage.fork:
            try:
                child = snapshot_child.start(runtime.engine.snapshot)
            except OSError as exc:  # no memory for the child's page tables, no more processes
                log.warning("snapshot child not started: snapshotting in process", error=repr(exc))
            else:
                stage.held.clear()
                stage.covering = covered
                stage.cadence.forget()  # what is applied from now on waits for the next snapshot
                stage.writing = asyncio.ensure_future(finish_in_child(runtime, child, runtime.applied_offset, started))
                return
        packed = runtime.rebase()
        stage.held.clear()
        sent = put_snapshot(packed, runtime.applied_offset)
        worked = time.monotonic() - started  # the cadence spaces snapshots by their work, not the broker's wait
        await acknowledged(sent)
        for event in covered:
            event.ack()
        stage.cadence.written(time.monotonic(), worked)

    def put_snapshot(packed: bytes, offset: int) -> list[asyncio.Future[Any]]:
        """Set the snapshot's table entries; the changelog writes, to be awaited."""
        sent = []
        for key, value in slot_entries(pack_compressed(packed, offset), table.get):
            table.data[key] = value  # what table[key] = value does, with the changelog write's future kept
            sent.append(table.send_changelog(None, key, value))
        return sent

    async def acknowledged(sent: list[asyncio.Future[Any]]) -> None:
        """Wait for the broker to acknowledge a snapshot's writes (then the records it covers can be acked)."""
        try:
            await asyncio.wait_for(asyncio.gather(*sent), settings.request_timeout_s)
        except Exception as exc:
            stop_worker("snapshot not acknowledged by the broker", exc, EXIT_OUTPUT_REFUSED)

    async def finish_in_child(runtime: EngineRuntime, child: SnapshotChild, offset: int, started: float) -> None:
        """Collect what the child took, then write it as an in-process snapshot is written (acking
        `stage.covering`). The engine goes on meanwhile."""
        covered = stage.covering
        try:
            try:
                packed = await asyncio.to_thread(child.collect)  # reading the pipe releases the GIL
            except (SnapshotFailed, OSError) as exc:
                log.error("snapshot child failed: snapshotting in process from now on", error=repr(exc))
                async with stage.lock:
                    stage.fork = False
                    if stage.runtime is runtime:
                        stage.held[:0] = covered  # still unacked: the next snapshot covers them
                        stage.cadence.applied(len(covered), time.monotonic())
                return
            async with stage.lock:
                if stage.runtime is not runtime:
                    return  # the partition was revoked or restored meanwhile: its records are applied again
                runtime.adopt(packed, offset)
                sent = put_snapshot(packed, offset)
            # Its work: fork to the writes queued. Not the wait for the broker, which after a broker restart
            # took 17 s and spaced the next snapshot, and with it the intake's commit, 170 s later (found by
            # the broker fault test, whose drain took 150-165 s: the "commit hang" of sessions 3 and 4).
            worked = time.monotonic() - started
            await acknowledged(sent)  # outside the lock: the engine need not wait for the broker
            if stage.runtime is runtime:  # else revoked meanwhile: the partition's next owner reads them again
                for event in covered:
                    event.ack()
            stage.cadence.finished(time.monotonic(), worked)
        except Exception as exc:
            stop_worker("engine snapshot failed", exc, EXIT_FAILED)
        finally:
            stage.writing, stage.covering = None, []

    async def next_in_sequence(runtime: EngineRuntime, batch: list[Any]) -> list[Any]:
        """The batch's events the engine can apply now (see in_sequence); on a gap, read the intake again
        from the first record missing."""
        if runtime.packed is None and runtime.applied_offset < 0:
            # A new engine (no snapshot): it starts where the group's offset put it, not at the topic's start
            # (the intake may hold another app id's records, or none that retention kept).
            runtime.applied_offset = min(e.message.offset for e in batch) - 1
        run, missing = in_sequence(runtime.applied_offset, batch)
        if missing is None:
            stage.gap = None
            return run
        now = time.monotonic()
        if stage.gap is None or stage.gap.first_missing != missing:
            stage.gap = IntakeGap(missing, now)
        gap = stage.gap
        if now - gap.since > GAP_GIVE_UP_S:
            beyond = min(e.message.offset for e in batch if e.message.offset > missing)
            log.error("intake records missing for good (deleted by retention?); going on without them",
                      first_missing=missing, next_present=beyond)
            runtime.applied_offset = beyond - 1
            stage.gap = None
            return run + in_sequence(runtime.applied_offset, batch)[0]
        if now - gap.sought_at >= GAP_SEEK_EVERY_S:
            log.warning("intake records not delivered; reading the intake again from the first missing",
                        first_missing=missing, delivered=batch[-1].message.offset)
            await app.consumer.seek(TP(INTAKE, 0), missing)
            gap.sought_at = now
        return run

    @app.agent(intake)
    async def correlate(stream: faust.StreamT[bytes]) -> None:
        # Snapshot writes pick their changelog partition from producer metadata (use_partitioner, since
        # they happen outside per-event iteration); fetch it once up front.
        await app.producer._ensure_producer().partitions_for(table.changelog_topic.get_topic_name())
        async for batch in stream.take_events(TAKE_MAX, within=TAKE_WITHIN_S):
            async with stage.lock:
                try:
                    # Restore here, not before the loop: the agent body starts before Faust has recovered
                    # the table from its changelog, and events flow only once recovery is complete. Checking
                    # on every batch also picks up state another worker advanced while it held the partition.
                    runtime = stage.runtime
                    if runtime is None or snapshot_offset(snapshot_reader(table.get)) > runtime.applied_offset:
                        for event in stage.held:  # the newer snapshot includes them
                            event.ack()
                        stage.held.clear()
                        stage.cadence.forget()
                        runtime = stage.runtime = restore_runtime(directory, clock, snapshot_reader(table.get))
                        gc.freeze()  # the restored state is long-lived: keep the collector from scanning it again
                    run = await next_in_sequence(runtime, batch)
                    if not run:
                        continue
                    watch.engine_batch(runtime)
                    outputs, carried = apply_batch(runtime, [(event.message.offset, event.value) for event in run])
                    await send_all(app, outputs)
                    watch.engine_sent(runtime, run, carried, outputs)
                    for event in run:
                        event.message.incref()  # take_events acks the batch; the offset waits for a snapshot
                    stage.held += run
                    stage.cadence.applied(sum(carried), time.monotonic())
                    if stage.cadence.due(time.monotonic()):
                        await write_snapshot()
                except Exception as exc:
                    stop_worker("engine failed on a batch", exc, EXIT_FAILED)

    @app.timer(interval=min(0.2, settings.snapshot_every_s / 4))
    async def snapshot_when_due() -> None:
        """Idle or not, records applied wait at most about snapshot_every_s for their snapshot and commit."""
        async with stage.lock:
            try:
                if stage.cadence.due(time.monotonic()):
                    await write_snapshot()
            except Exception as exc:
                stop_worker("engine snapshot failed", exc, EXIT_FAILED)

    @app.on_partitions_revoked.connect
    async def leave_engine(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        # Records applied since the last snapshot are not committed; whoever gets the partition (this worker
        # again, most often) restores the snapshot and applies them again, re-sending identical outputs.
        if not any(tp.topic in (INTAKE, table.changelog_topic.get_topic_name()) for tp in revoked):
            return
        async with stage.lock:
            if stage.held:
                log.info("engine records left to the partition's next owner", records=len(stage.held))
            stage.held.clear()
            stage.cadence.forget()
            stage.runtime = None

    if clock == "wall":
        @app.timer(interval=1.0)
        async def tick() -> None:
            try:  # an exception escaping a timer would stop the whole worker
                await app.send(intake, key=b"tick", value=tick_record(datetime.now(UTC)))
            except Exception:
                log.exception("clock tick not sent")

    if clock == "wall" and settings.reading_every_s > 0:
        async def send_reading(key: bytes, value: bytes) -> None:
            await (await app.send(intake, key=key, value=value))  # awaited: a lost report is not sent again

        monitor = ReadingMonitor(directory, settings.bootstrap, send_reading,
                                 timeout_s=min(settings.request_timeout_s, 10.0))

        # Not on_leader: Faust's leader election needs a topic of its own we do not provision. Two workers
        # looking both write what they see; the rule is idempotent, so the engine raises one episode.
        @app.timer(interval=settings.reading_every_s)
        async def watch_reading() -> None:
            await monitor.check()  # logs and carries on when the broker is slow; never raises

    return app


def run_worker(settings: Settings, directory: Directory, clock: ClockMode, reorder_s: float) -> int:
    # Each event allocates hundreds of short-lived objects and the engine holds millions of long-lived ones:
    # with the default thresholds the cyclic collector runs every 700 allocations and rescans the state
    # (measured: +36 % events per CPU second in the engine stage with these and gc.freeze after restore).
    gc.set_threshold(50_000, 50, 100)
    if settings.uvloop:
        with suppress(ImportError):
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    app = build_worker(settings, directory, clock, reorder_s)
    app.finalize()
    gc.freeze()  # modules, the directory, Faust's objects: here for the life of the process
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True, redirect_stdouts=False,
                          override_logging=False)
    worker.spinner = None
    install_dump_on_sigusr1(worker, app)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
