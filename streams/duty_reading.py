"""Whether each unit's duty officers read their escalations, read from Kafka.

A unit's officers read `jpc.escalations.<unit>` as the consumer group `jpc.duty.<unit>` (`jpc watch
--unit`), which commits how far they got. A revision is due to be read by its acknowledgement
deadline, and never sooner than `READ_GRACE` after it reached the topic: a revision written when its
escalation is already overdue (new evidence, another unit's ack, a resolve, a timer fired for the
past) could not have been read by a deadline that had gone by, and a healthy reader needs a moment
to fetch it and commit. A unit is behind when a revision at or after its group's committed offset
is past that due time; `unread_since` is the earliest such due time. A group that never committed
reads from the earliest offset the topic still keeps (as `jpc lag` counts it): everything there is
unread, and becomes overdue only as each revision's due time passes.

Kafka only, no rules: the worker turns these readings into reports for the engine
(`agents.reading_monitor`), and `jpc lag` lists the units that are behind.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams.topics import unit_topic

DUTY_GROUP_PREFIX = "jpc.duty."  # duty officers' consumers read their unit's topic under this group
READ_GRACE = timedelta(minutes=1)


def duty_group(unit_id: str) -> str:
    return DUTY_GROUP_PREFIX + unit_id


def reading_due(ack_deadline: datetime, written_at: datetime | None, grace: timedelta = READ_GRACE) -> datetime:
    """When a revision must have been read: its acknowledgement deadline, but not before `grace` after
    it was written; whole seconds (rounded up), as deadlines are."""
    # In the deadline's zone (the directory's), whichever of the two it is.
    due = ack_deadline if written_at is None else \
        max(ack_deadline, (written_at + grace).astimezone(ack_deadline.tzinfo))
    return due if due.microsecond == 0 else due.replace(microsecond=0) + timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class UnitReading:
    """A unit's duty group on its escalation topic at one moment."""

    unit_id: str
    group: str
    topic: str
    committed: int | None  # None: the group never committed on the topic
    position: int  # where its officers resume: the committed offset, or the earliest offset kept
    end: int
    unread: int  # records between the position and the end
    overdue: int  # unread revisions past their reading due time
    unread_since: datetime | None  # the earliest due time among those; None when none is overdue
    complete: bool = True  # False: not every unread record could be fetched in time; nothing to conclude

    @property
    def behind(self) -> bool:
        return self.complete and self.unread_since is not None


class DutyReadingProbe:
    """An admin client and a group-less consumer (it never commits, so looking is not reading), kept
    open across scans. Due times of unread revisions are remembered per partition, so a unit far
    behind costs one read of its backlog, not one per scan."""

    def __init__(self, bootstrap: list[str], timeout_s: float = 10.0, grace: timedelta = READ_GRACE) -> None:
        self._bootstrap = bootstrap
        self._timeout_s = timeout_s
        self._grace = grace
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
        self._consumer: AIOKafkaConsumer | None = None
        self._dues: dict[TopicPartition, list[tuple[int, datetime]]] = {}  # (offset, due) of revisions read
        self._read_to: dict[TopicPartition, int] = {}  # next offset to read, per partition

    async def __aenter__(self) -> DutyReadingProbe:
        await self._admin.start()
        try:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap, group_id=None, enable_auto_commit=False,
                isolation_level="read_committed", request_timeout_ms=int(self._timeout_s * 1000))
            try:
                await consumer.start()
            except BaseException:
                await consumer.stop()
                raise
            self._consumer = consumer
        except BaseException:
            await self._admin.close()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        try:
            if self._consumer is not None:
                await asyncio.sleep(0)  # see streams.reading.topic_reader: let start-up tasks run once
                await self._consumer.stop()
        finally:
            await self._admin.close()

    async def scan(self, unit_ids: Iterable[str], now: datetime) -> list[UnitReading]:
        """Every unit whose escalation topic exists, in the order given."""
        consumer = self._consumer
        assert consumer is not None, "use the probe as an async context manager"
        existing = await consumer.topics()
        tps: dict[str, list[TopicPartition]] = {}
        for unit in dict.fromkeys(unit_ids):
            topic = unit_topic(unit)
            if topic in existing:
                tps[unit] = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
        every = [tp for parts in tps.values() for tp in parts]
        if not every:
            return []
        earliest = await consumer.beginning_offsets(every)
        end = await consumer.end_offsets(every)
        # Only units with records are asked about their group: most topics are empty most of the time.
        with_records = [u for u, parts in tps.items() if any(end[tp] > earliest[tp] for tp in parts)]
        committed = await self._committed(with_records, tps)
        positions = {tp: max(committed.get(tp, earliest[tp]), earliest[tp]) for tp in every}
        complete = await self._read_unread({tp: (positions[tp], end[tp]) for tp in every if positions[tp] < end[tp]})
        out = []
        for unit, parts in tps.items():
            dues = [due for tp in parts for offset, due in self._dues.get(tp, []) if offset >= positions[tp]]
            overdue = [due for due in dues if due <= now]
            done = all(tp in complete or positions[tp] >= end[tp] for tp in parts)
            out.append(UnitReading(
                unit_id=unit, group=duty_group(unit), topic=parts[0].topic,
                committed=min((committed[tp] for tp in parts if tp in committed), default=None),
                position=min(positions[tp] for tp in parts), end=max(end[tp] for tp in parts),
                unread=sum(max(0, end[tp] - positions[tp]) for tp in parts), overdue=len(overdue),
                unread_since=min(overdue, default=None), complete=done))
        return out

    async def _committed(self, units: list[str], tps: dict[str, list[TopicPartition]]) -> dict[TopicPartition, int]:
        """Committed offsets of the units' duty groups; a group the broker does not know has none."""
        if not units:
            return {}
        known = {str(g[0]) for g in await self._admin.list_consumer_groups()}
        asked = [u for u in units if duty_group(u) in known]
        answers = await asyncio.gather(*(
            self._admin.list_consumer_group_offsets(duty_group(u), partitions=tps[u]) for u in asked))
        committed: dict[TopicPartition, int] = {}
        for offsets in answers:
            for tp, meta in offsets.items():
                if meta is not None and meta.offset >= 0:  # -1: never committed there
                    committed[tp] = meta.offset
        return committed

    async def _read_unread(self, ranges: dict[TopicPartition, tuple[int, int]]) -> set[TopicPartition]:
        """Learn the due time of every revision in [position, end) not read before; the partitions
        whose range is now wholly known."""
        consumer = self._consumer
        assert consumer is not None
        pending: dict[TopicPartition, int] = {}
        for tp, (position, end) in ranges.items():
            if self._read_to.get(tp, 0) > end:  # the topic was truncated or made again: start over
                self._dues.pop(tp, None)
                self._read_to.pop(tp, None)
            self._dues[tp] = [(o, d) for o, d in self._dues.get(tp, []) if o >= position]
            start = max(position, self._read_to.get(tp, position))
            self._read_to[tp] = start
            if start < end:
                pending[tp] = end
        if not pending:
            return set(ranges)
        consumer.assign(list(pending))
        for tp in pending:
            consumer.seek(tp, self._read_to[tp])
        try:
            async with asyncio.timeout(self._timeout_s):
                while pending:
                    batch = await consumer.getmany(*pending, timeout_ms=200)
                    for tp, records in batch.items():
                        for record in records:
                            if record.offset >= pending.get(tp, 0) or record.offset < self._read_to[tp]:
                                continue
                            due = self._due(record.value, record.timestamp)
                            if due is not None:
                                self._dues[tp].append((record.offset, due))
                            self._read_to[tp] = record.offset + 1
                    for tp in list(pending):
                        position = await consumer.position(tp)
                        if position >= pending[tp]:  # markers take offsets without records
                            self._read_to[tp] = max(self._read_to[tp], pending.pop(tp))
        except TimeoutError:
            pass  # what was read is remembered; the rest next time
        finally:
            # Paused, not unassigned (see streams.lag: aiokafka's fetcher and stop()).
            consumer.pause(*consumer.assignment())
        return {tp for tp in ranges if tp not in pending}

    def _due(self, value: bytes | None, timestamp_ms: int | None) -> datetime | None:
        if not value:
            return None
        try:
            deadline = datetime.fromisoformat(orjson.loads(value)["ack_deadline"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None  # not a revision: nothing to read by a deadline
        if deadline.tzinfo is None:
            return None
        written = None if timestamp_ms is None or timestamp_ms < 0 else \
            datetime.fromtimestamp(math.floor(timestamp_ms) / 1000, UTC)
        return reading_due(deadline, written, self._grace)
