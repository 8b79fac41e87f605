"""The member-unit client: build, validate and publish an event with the bus's guarantees.

    async with MemberUnitClient("127.0.0.1:9092") as bus:
        await bus.publish(CheckpointHeartbeat(...))        # or publish_json(b'{...}')

Idempotent producer with acks=all: a retried send is never written twice, and `publish` returns
only once every in-sync replica has the record.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from schemas.codec import Refusal, decode_event, encode_event
from schemas.events import CaseReport, CheckpointAlert, CheckpointHeartbeat, DutyShift, EscalationAck, InputEvent
from streams.topics import INPUT_TOPIC_OF_KIND


def record_key(event: InputEvent) -> bytes:
    """The contract's key per topic (§6): it decides the partition, and compaction for rosters."""
    match event:
        case CaseReport():
            return event.region.encode()
        case CheckpointAlert() | CheckpointHeartbeat():
            return event.checkpoint_id.encode()
        case DutyShift():
            return event.roster_key.encode()
        case EscalationAck():
            return event.escalation_id.encode()
    raise TypeError(f"not an input event: {type(event).__name__}")


def make_producer(bootstrap: list[str], timeout_s: float = 30.0) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
        request_timeout_ms=int(timeout_s * 1000), linger_ms=5, max_request_size=2 * 1024 * 1024,
    )


class MemberUnitClient:
    def __init__(self, bootstrap: str | list[str], timeout_s: float = 30.0) -> None:
        servers = bootstrap.split(",") if isinstance(bootstrap, str) else bootstrap
        self._producer = make_producer(servers, timeout_s)

    async def __aenter__(self) -> Self:
        await self._producer.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._producer.stop()

    async def publish(self, event: InputEvent) -> RecordMetadata:
        return await self.send(event, encode_event(event))

    async def publish_json(self, raw: bytes) -> RecordMetadata:
        """Validate raw JSON against the contract first; raises ValueError naming the field."""
        decoded = decode_event(raw)
        if isinstance(decoded, Refusal):
            raise ValueError(decoded.reason)
        return await self.send(decoded, raw)

    async def send(self, event: InputEvent, raw: bytes) -> RecordMetadata:
        future = await self.send_soon(event, raw)
        return await future

    async def send_soon(self, event: InputEvent, raw: bytes) -> asyncio.Future[RecordMetadata]:
        """Queue a record; the returned future resolves when the broker has acknowledged it."""
        result: asyncio.Future[RecordMetadata] = await self._producer.send(
            INPUT_TOPIC_OF_KIND[event.kind], value=raw, key=record_key(event))
        return result
