"""`jpc worker`: the live bus. Faust agents host the same pure core that `jpc replay` drives.

Two stages:
  intake  - consumes the input topics (any number of partitions), validates each record, sends
            refusals to `jpc.dead-letter` and valid events to `jpc.intake`, one partition: the
            one order in which the engine sees them (as replay sees the lines of a file).
  engine  - consumes `jpc.intake` and runs the core; every revision goes to `jpc.escalations` and
            to `jpc.escalations.<unit>` for each unit it is routed to. Its state is a snapshot in
            a changelog-backed table, written after each batch and before the batch is acked.

Delivery is at-least-once: outputs are awaited until the broker acknowledges them before the
events that caused them are acked, and Faust flushes the producer (the snapshot included) before
it commits. A restarted engine resumes from its snapshot and skips intake records it already
applied; a record processed twice re-sends byte-identical revisions, which readers drop by
(escalation_id, revision).
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import faust
import orjson

from agents.core.engine import ClockMode, Engine, Source
from agents.snapshots import META, pack, unpack
from schemas.codec import Refusal, decode_event
from schemas.dead_letter import DeadLetter
from schemas.directory import Directory
from schemas.escalation import Escalation, revision_json
from streams.app import make_app
from streams.logging import get_logger
from streams.settings import Settings
from streams.topics import DEAD_LETTER, ESCALATIONS, INPUT_TOPIC_OF_KIND, INPUT_TOPICS, INTAKE, unit_topic

log = get_logger("worker")
Output = tuple[str, bytes, bytes]  # topic, key, value


@dataclass(slots=True)
class EngineRuntime:
    engine: Engine
    applied_offset: int = -1


def intake_record(topic: str, partition: int, offset: int, received_at: datetime, raw: bytes) -> bytes:
    return orjson.dumps({"topic": topic, "partition": partition, "offset": offset,
                         "received_at": received_at.isoformat(), "event": raw.decode("utf-8")})


def tick_record(at: datetime) -> bytes:
    return orjson.dumps({"tick": at.isoformat()})


def dead_letter_output(source: Source, raw: bytes, field: str | None, reason: str,
                       event_id: str | None = None, source_unit: str | None = None) -> Output:
    letter = DeadLetter(reason=reason, field=field, topic=source.topic, partition=source.partition,
                        offset=source.offset, event_id=event_id, source_unit=source_unit, **DeadLetter.carry(raw))
    return DEAD_LETTER, (source.topic or "").encode(), orjson.dumps(letter.model_dump(exclude_none=True))


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


@dataclass(order=True, slots=True)
class _Held:
    order: tuple[SortKey, int]
    release_at: float = field(compare=False)
    output: Output = field(compare=False)
    event: Any = field(compare=False)  # its offset is acked only once the intake record is on the broker


class ReorderBuffer:
    """Puts records from many partitions back into reporting order before the engine sees them.

    Partitions are fetched in parallel, so arrival order is not the order sources reported in. In
    event-clock mode that order moves the clock, so records wait `window_s` here and leave sorted by
    (reported time, event id): a file published in reporting order reaches the engine in file order,
    as `jpc replay` reads it. Held records are not acked, so a crash loses none of them.
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._heap: list[_Held] = []
        self._seq = 0
        self.lock = asyncio.Lock()

    def hold(self, order: SortKey, output: Output, event: Any, now: float) -> None:
        self._seq += 1
        event.message.incref()  # keep its offset from being committed while it waits here
        heapq.heappush(self._heap, _Held((order, self._seq), now + self.window_s, output, event))

    def due(self, now: float) -> list[_Held]:
        out = []
        while self._heap and self._heap[0].release_at <= now:
            out.append(heapq.heappop(self._heap))
        return out

    def __len__(self) -> int:
        return len(self._heap)


def snapshot_offset(get: Callable[[str], bytes | None]) -> int:
    meta = get(META)
    return int(orjson.loads(meta)["applied_offset"]) if meta else -1


def restore_runtime(directory: Directory, clock: ClockMode, get: Callable[[str], bytes | None]) -> EngineRuntime:
    restored = unpack(get)
    if restored is None:
        return EngineRuntime(Engine(directory, clock))
    blob, applied = restored
    runtime = EngineRuntime(Engine.restore(directory, blob, clock), applied)
    log.info("engine restored", applied_offset=applied, clock=str(runtime.engine.clock))
    return runtime


def apply_intake(runtime: EngineRuntime, offset: int, value: bytes) -> list[Output]:
    """The engine stage for one intake record."""
    if offset <= runtime.applied_offset:
        return []  # already in the snapshot: re-delivered after a restart
    runtime.applied_offset = offset
    record: dict[str, Any] = orjson.loads(value)
    engine = runtime.engine
    if "tick" in record:
        return [o for r in engine.advance(datetime.fromisoformat(record["tick"])) for o in revision_outputs(r)]
    raw = record["event"].encode("utf-8")
    source = Source(topic=record["topic"], partition=record["partition"], offset=record["offset"])
    decoded = decode_event(raw)
    if isinstance(decoded, Refusal):  # intake judged it valid; only a contract change could get here
        return [dead_letter_output(source, decoded.raw, decoded.field, decoded.reason)]
    try:
        outcome = engine.process(decoded, source, datetime.fromisoformat(record["received_at"]))
    except Exception as exc:  # a poison event: dead-letter it with the error, keep the partition moving
        log.exception("rule raised", event_id=decoded.event_id, topic=source.topic, offset=source.offset)
        return [dead_letter_output(source, raw, None, f"(engine): rule raised {exc.__class__.__name__}: {exc}",
                                   decoded.event_id, decoded.source_unit)]
    outputs = [o for r in outcome.revisions for o in revision_outputs(r)]
    if outcome.refused is not None:
        field, reason = outcome.refused
        outputs.append(dead_letter_output(source, raw, field, reason, decoded.event_id, decoded.source_unit))
    return outputs


async def send_all(app: faust.App, outputs: list[Output]) -> None:
    """Send and wait until the broker has acknowledged every record (acks=all)."""
    futures = [await app.producer.send(topic, key, value, None, None, None) for topic, key, value in outputs]
    if futures:
        await asyncio.gather(*futures)


def build_worker(settings: Settings, directory: Directory, clock: ClockMode, reorder_s: float) -> faust.App:
    app = make_app(settings)
    inputs = app.topic(*INPUT_TOPICS, key_type=bytes, value_type=bytes, value_serializer="raw")
    intake = app.topic(INTAKE, key_type=bytes, value_type=bytes, value_serializer="raw", partitions=1)
    table = app.Table("engine", partitions=1, key_type=str, value_type=bytes, use_partitioner=True)

    reorder = ReorderBuffer(reorder_s)

    async def release() -> None:
        async with reorder.lock:  # one releaser at a time keeps the intake log in sorted order
            held = reorder.due(time.monotonic())
            await send_all(app, [h.output for h in held])
            for h in held:
                h.event.ack()

    @app.agent(inputs)
    async def judge(stream: faust.StreamT[bytes]) -> None:
        async for batch in stream.take_events(1000, within=0.05):
            now, mono = datetime.now(UTC), time.monotonic()
            dead: list[Output] = []
            for event in batch:
                m = event.message
                judged = judge_input(m.topic, m.partition, m.offset, event.value, now)
                if judged is None:
                    continue
                output, order = judged
                if order is None:
                    dead.append(output)
                else:
                    reorder.hold(order, output, event, mono)
            await send_all(app, dead)
            await release()

    if reorder_s > 0:
        @app.timer(interval=min(0.1, reorder_s))
        async def release_held() -> None:
            try:
                await release()
            except Exception:
                log.exception("held records not released")

    @app.agent(intake)
    async def correlate(stream: faust.StreamT[bytes]) -> None:
        # Snapshot writes pick their changelog partition from producer metadata (use_partitioner, since
        # they happen after a batch, outside per-event iteration); fetch it once up front.
        await app.producer._ensure_producer().partitions_for(table.changelog_topic.get_topic_name())
        runtime: EngineRuntime | None = None
        async for batch in stream.take_events(1000, within=0.05):
            # Restore here, not before the loop: the agent body starts before Faust has recovered the
            # table from its changelog, and events flow only once recovery is complete. Checking on
            # every batch also picks up state another worker advanced while it held the partition.
            if runtime is None or snapshot_offset(table.get) > runtime.applied_offset:
                runtime = restore_runtime(directory, clock, table.get)
            outputs: list[Output] = []
            for event in batch:
                outputs += apply_intake(runtime, event.message.offset, event.value)
            await send_all(app, outputs)
            for key, value in pack(runtime.engine.snapshot(), runtime.applied_offset).items():
                table[key] = value

    if clock == "wall":
        @app.timer(interval=1.0)
        async def tick() -> None:
            try:  # an exception escaping a timer would stop the whole worker
                await app.send(intake, key=b"tick", value=tick_record(datetime.now(UTC)))
            except Exception:
                log.exception("clock tick not sent")

    return app


def run_worker(settings: Settings, directory: Directory, clock: ClockMode, reorder_s: float) -> int:
    app = build_worker(settings, directory, clock, reorder_s)
    app.finalize()
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True, redirect_stdouts=False,
                          override_logging=False)
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
