"""The benchmark's own broker and the few Kafka moves it makes: publish, drain, watch a group.

The broker is a real single-node Kafka started by deploy/kafka.sh on free loopback ports (as the
tests do), with its data under .cache/bench-kafka, so a benchmark never touches a broker someone
else is using.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
KAFKA_SH = ROOT / "deploy" / "kafka.sh"
Record = tuple[str, bytes, bytes]


@dataclass(frozen=True, slots=True)
class Broker:
    bootstrap: str
    env: dict[str, str]

    def stop(self) -> None:
        subprocess.run(["bash", str(KAFKA_SH), "stop"], env=self.env, check=False, capture_output=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_broker(data: Path) -> Broker:
    port, cport = free_port(), free_port()
    env = {**os.environ, "JPC_KAFKA_PORT": str(port), "JPC_KAFKA_CONTROLLER_PORT": str(cport),
           "JPC_KAFKA_DATA": str(data)}
    subprocess.run(["bash", str(KAFKA_SH), "reset"], env=env, check=False, capture_output=True)
    done = subprocess.run(["bash", str(KAFKA_SH), "start"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"broker did not start: {done.stdout[-1500:]}{done.stderr[-1500:]}")
    return Broker(f"127.0.0.1:{port}", env)


def producer(bootstrap: str) -> AIOKafkaProducer:
    # The bus's own producer settings (streams/client.py): acks=all, idempotent, 5 ms linger.
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
                            max_request_size=2 * 1024 * 1024, max_batch_size=256 * 1024)


async def create_topics(bootstrap: str, names: Sequence[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def publish(bootstrap: str, records: Sequence[Record], in_flight: int = 5000) -> float:
    """Send every record (awaiting the broker's acks in windows); returns seconds taken."""
    async with producer(bootstrap) as p:
        start = time.perf_counter()
        pending: list[asyncio.Future[Any]] = []
        for topic, key, value in records:
            pending.append(await p.send(topic, value, key=key))
            if len(pending) >= in_flight:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return time.perf_counter() - start


async def end_offsets(bootstrap: str, topics: Sequence[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or [])]
        return dict(await consumer.end_offsets(tps)) if tps else {}
    finally:
        await consumer.stop()


async def committed(admin: AIOKafkaAdminClient, group: str, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
    offsets = await admin.list_consumer_group_offsets(group, partitions=list(tps))
    return {tp: (meta.offset if meta is not None and meta.offset >= 0 else 0) for tp, meta in offsets.items()}


async def group_state(admin: AIOKafkaAdminClient, group: str) -> str:
    described = await admin.describe_consumer_groups([group])
    for response in described:
        for entry in getattr(response, "groups", []):
            # (error_code, group_id, state, protocol_type, protocol, members[, authorized_operations])
            return str(entry[2])
    return "Unknown"


async def at_end(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


async def read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of every partition of `topic`, from its start to its end when asked (no group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                max_partition_fetch_bytes=8 << 20)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[Any] = []
        while not await at_end(consumer, ends):
            for recs in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                out += recs
        return out
    finally:
        await consumer.stop()


async def delete_all_topics(bootstrap: str, timeout_s: float = 60.0) -> None:
    """Delete every topic but Kafka's own, and wait until they are gone."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if not t.startswith("__") and t != "jpc.probe"]
        if names:
            await admin.delete_topics(names)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not set(names) & set(await admin.list_topics()):
                return
            await asyncio.sleep(0.5)
        raise RuntimeError("topics not deleted in time")
    finally:
        await admin.close()
