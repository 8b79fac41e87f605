"""Reading topics as they stand: a whole topic up to its end, or the latest records of one key.

Duty officers' commands ask "what is the state now?", not "what arrives next": they read from the
beginning to the end offsets taken when they start, and stop. No consumer group, nothing committed:
reading state must not look like (or hide) a unit's duty obligation to read its escalations.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.partitioner import murmur2

# Each step back reads twice as far as the last: an open escalation is usually recent, so most
# lookups read one small chunk, and an old one costs about twice a scan of its partition.
FIRST_CHUNK = 256


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as Java, Faust and aiokafka use) gives `key`."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


@asynccontextmanager
async def topic_reader(bootstrap: list[str], timeout_s: float = 30.0) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        request_timeout_ms=int(timeout_s * 1000), isolation_level="read_committed",
    )
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()  # a consumer that never connected still holds a client to close
        raise
    try:
        yield consumer
    finally:
        # Let the consumer's own start-up tasks run once: aiokafka's stop() fails with CancelledError
        # on a task it cancels before that task ever ran (a read that needed no fetch at all).
        await asyncio.sleep(0)
        await consumer.stop()


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The topic's partitions; LookupError naming the topic when it does not exist."""
    found = consumer.partitions_for_topic(topic)
    if not found:
        await consumer._client.force_metadata_update()
        found = consumer.partitions_for_topic(topic)
    if not found:
        raise LookupError(f"topic {topic} does not exist (run: jpc topics create)")
    return [TopicPartition(topic, p) for p in sorted(found)]


async def read_to_end(bootstrap: list[str], topic: str, timeout_s: float = 60.0) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` up to the end offsets taken at start, partition by partition in offset
    order (the order that decides "the last one wins" for a key). TimeoutError past `timeout_s`."""
    async with topic_reader(bootstrap) as consumer:
        tps = await partitions_of(consumer, topic)
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, starts[tp])
        async with asyncio.timeout(timeout_s):
            got = await _read_ranges(consumer, {tp: ends[tp] for tp in tps if ends[tp] > starts[tp]})
    return [r for tp in tps for r in got.get(tp, [])]


async def last_records(bootstrap: list[str], topic: str,
                       timeout_s: float = 30.0) -> list[ConsumerRecord[bytes, bytes]]:
    """The last record of each partition that has one: what was written most recently, cheaply."""
    async with topic_reader(bootstrap) as consumer:
        tps = await partitions_of(consumer, topic)
        consumer.assign(tps)
        firsts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        found: list[ConsumerRecord[bytes, bytes]] = []
        async with asyncio.timeout(timeout_s):
            for tp in tps:
                low, step = ends[tp], 1
                # Transaction markers and compaction take offsets too: step back until a record turns up.
                while low > firsts[tp]:
                    low = max(firsts[tp], low - step)
                    consumer.seek(tp, low)
                    records = (await _read_ranges(consumer, {tp: ends[tp]})).get(tp, [])
                    if records:
                        found.append(records[-1])
                        break
                    step *= 2
    return found


async def latest_of_key(bootstrap: list[str], topic: str, key: bytes,
                        timeout_s: float = 60.0) -> list[ConsumerRecord[bytes, bytes]]:
    """The records of `key` in the newest stretch of its partition that holds any, oldest first; empty
    when the partition holds none. Reads backwards in growing chunks, so recent keys are found fast."""
    async with topic_reader(bootstrap) as consumer:
        tps = await partitions_of(consumer, topic)
        tp = TopicPartition(topic, partition_of(key, len(tps)))
        consumer.assign([tp])
        first = (await consumer.beginning_offsets([tp]))[tp]
        high = (await consumer.end_offsets([tp]))[tp]
        chunk = FIRST_CHUNK
        async with asyncio.timeout(timeout_s):
            while high > first:
                low = max(first, high - chunk)
                consumer.seek(tp, low)
                records = (await _read_ranges(consumer, {tp: high})).get(tp, [])
                mine = [r for r in records if r.key == key and r.offset < high]
                if mine:
                    return mine
                high, chunk = low, chunk * 2
    return []


async def _read_ranges(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]
                       ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
    """Fetch from the current positions until each partition reaches its end offset."""
    got: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {tp: [] for tp in ends}
    pending = dict(ends)
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=500)
        for tp, records in batch.items():
            got[tp] += [r for r in records if r.offset < ends[tp]]
        for tp in list(pending):
            # Compaction and transaction markers leave offsets without records: the position, not the
            # last record seen, says whether the end is reached.
            if await consumer.position(tp) >= pending[tp]:
                del pending[tp]
    return got
