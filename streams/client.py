"""The member-unit client: build, validate and publish an event with the bus's guarantees.

    async with MemberUnitClient("127.0.0.1:9092", source_unit="transport") as bus:
        heartbeat = bus.event("checkpoint_heartbeat", checkpoint_id="gy-east-toll", screened=42)
        await bus.publish(heartbeat)

`event()` fills the envelope (a fresh `event_id`, `schema_version`, the client's `source_unit`,
`occurred_at` now, with the local offset) and validates the result exactly as the bus will; a
refusal raises `EventRefused` naming the field. `publish()` returns only once every in-sync replica
has the record (acks=all), and the producer is idempotent: its own retries are never written twice.

On a poor link, spool first with `jpc publish --spool DIR` (store and forward, exactly once even if
the process is killed; streams/spool.py and streams/forwarder.py).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from schemas.codec import Refusal, decode_event, encode_event
from schemas.events import InputEvent
from streams.keys import record_key
from streams.topics import INPUT_TOPIC_OF_KIND

__all__ = ["EventRefused", "MemberUnitClient", "build_event", "record_key"]

Clock = Callable[[], datetime]


class EventRefused(ValueError):
    """The event breaks the contract; `field` and `reason` say where and why, as a dead letter would."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def local_now() -> datetime:
    """Now, with this machine's offset (+08:00 in Guangyuan), to the second."""
    return datetime.now().astimezone().replace(microsecond=0)


def build_event(kind: str, source_unit: str, clock: Clock = local_now, **fields: Any) -> InputEvent:
    """An event of `kind` with its envelope filled in, validated as the bus validates the wire.

    `event_id` and `occurred_at` may be given in `fields`; datetimes become RFC 3339 text.
    """
    envelope: dict[str, Any] = {"event_id": uuid.uuid4().hex, "kind": kind, "schema_version": 1,
                                "source_unit": source_unit, "occurred_at": clock()}
    raw = orjson.dumps({**envelope, **fields})
    return validate_json(raw)


def validate_json(raw: bytes) -> InputEvent:
    decoded = decode_event(raw)
    if isinstance(decoded, Refusal):
        raise EventRefused(decoded.field, decoded.reason)
    return decoded


def make_producer(bootstrap: list[str], timeout_s: float = 30.0) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
        request_timeout_ms=int(timeout_s * 1000), linger_ms=5, max_request_size=2 * 1024 * 1024,
    )


def _servers(bootstrap: str | list[str]) -> list[str]:
    listed = bootstrap.split(",") if isinstance(bootstrap, str) else bootstrap
    return [b.strip() for b in listed if b.strip()]


class MemberUnitClient:
    """Publishes straight to the bus: idempotent producer, acks=all. Use as `async with`."""

    def __init__(self, bootstrap: str | list[str], timeout_s: float = 30.0, *, source_unit: str | None = None,
                 clock: Clock = local_now) -> None:
        self._producer = make_producer(_servers(bootstrap), timeout_s)
        self.source_unit = source_unit
        self._clock = clock

    async def __aenter__(self) -> Self:
        try:
            await self._producer.start()
        except BaseException:
            await self._producer.stop()  # else it is left half-open, and says so when collected
            raise
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._producer.stop()

    def event(self, kind: str, **fields: Any) -> InputEvent:
        """Build and validate an event from this client's unit; raises EventRefused."""
        return build_event(kind, _unit(self.source_unit, fields), self._clock, **fields)

    async def publish(self, event: InputEvent) -> RecordMetadata:
        return await self.send(event, encode_event(event))

    async def publish_json(self, raw: bytes) -> RecordMetadata:
        """Validate raw JSON against the contract first; raises EventRefused (a ValueError) naming the field."""
        return await self.send(validate_json(raw), raw)

    async def send(self, event: InputEvent, raw: bytes) -> RecordMetadata:
        future = await self.send_soon(event, raw)
        return await future

    async def send_soon(self, event: InputEvent, raw: bytes) -> asyncio.Future[RecordMetadata]:
        """Queue a record; the returned future resolves when the broker has acknowledged it."""
        result: asyncio.Future[RecordMetadata] = await self._producer.send(
            INPUT_TOPIC_OF_KIND[event.kind], value=raw, key=record_key(event))
        return result


def _unit(source_unit: str | None, fields: dict[str, Any]) -> str:
    unit = fields.pop("source_unit", None) or source_unit
    if not unit:
        raise EventRefused("source_unit", "source_unit: required field missing (give it to the client or the event)")
    return str(unit)
