"""Reading escalation topics: each (escalation_id, revision) shown once, however often delivered."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from schemas.escalation import Escalation


class SeenRevisions:
    """At-least-once delivery means a revision may arrive twice; a reader shows it once."""

    def __init__(self) -> None:
        self._latest: dict[str, int] = {}

    def is_new(self, revision: Escalation) -> bool:
        if self._latest.get(revision.escalation_id, 0) >= revision.revision:
            return False
        self._latest[revision.escalation_id] = revision.revision
        return True


async def revisions(bootstrap: list[str], topic: str, group: str | None, from_beginning: bool,
                    stop_at_end: bool = False) -> AsyncIterator[Escalation]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=group is not None, auto_commit_interval_ms=1000,
        auto_offset_reset="earliest" if from_beginning else "latest", isolation_level="read_committed",
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            raise LookupError(f"topic {topic} does not exist (run: jpc topics create)")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if group is not None:
            consumer.subscribe([topic])
        else:
            consumer.assign(tps)
            if from_beginning:
                await consumer.seek_to_beginning(*tps)
            else:
                await consumer.seek_to_end(*tps)
        ends = await consumer.end_offsets(tps) if stop_at_end else {}
        seen = SeenRevisions()
        while True:
            if stop_at_end and await _all_reached(consumer, ends):
                return
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    if record.value is None:
                        continue
                    try:
                        revision = Escalation.model_validate_json(record.value)
                    except ValidationError:
                        continue  # not an escalation revision; nothing a duty officer can act on
                    if seen.is_new(revision):
                        yield revision
    finally:
        await consumer.stop()


async def _all_reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    # A group member has no position until the group has assigned it its partitions.
    assigned = consumer.assignment()
    if not assigned:
        return False
    for tp, end in ends.items():
        if tp not in assigned:
            continue  # another member of the unit's group reads it
        if await consumer.position(tp) < end:
            return False
    return True
