"""Forwarding a spool to the bus exactly once, whenever the publisher is killed.

An idempotent producer only removes the duplicates of its own retries: a publisher restarted after
a crash is a new producer, and cannot know which of its last records reached the broker. So the
forwarder sends in Kafka transactions, with a transactional id that is the spool's own, and each
transaction carries, besides a batch of events, the spool position just after them, written to the
compacted `jpc.spool-progress` topic under the spool id. The events and the position are committed
together or not at all.

A forwarder that starts (again) first initialises its transactional producer: the broker fences any
earlier producer of the same spool and aborts its open transaction, whose markers are written before
the start returns. It then reads the spool's last position from `jpc.spool-progress` with
isolation_level=read_committed, and sends from there. What was committed is after that position;
what was not was aborted, and is sent again. Readers of the input topics must use read_committed too,
or they would also see the aborted copies (the worker does).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

from schemas.codec import Refusal, decode_event
from streams.keys import record_key
from streams.spool import START, Spool, SpooledEvent, SpoolError, SpoolPosition
from streams.topics import INPUT_TOPIC_OF_KIND, SPOOL_PROGRESS

BATCH_EVENTS = 1000  # per transaction at most: few commits, and still a short hold on read_committed readers
BATCH_BYTES = 1024 * 1024
# An open transaction holds back every read_committed reader of the partitions it touched; a publisher
# that dies mid-transaction and is not restarted holds them back until the broker aborts it, after twice
# the request timeout (60 s by default). A batch is given 1.5 times the request timeout, so that a live
# publisher gives up on a batch before the broker does.
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.5, 30.0


class ForwardingFailed(RuntimeError):
    """Forwarding cannot go on by retrying (topics missing, spool damaged, spool used elsewhere)."""


class TopicsMissing(RuntimeError):
    """The broker answers but lacks the bus's topics: not provisioned yet, so wait as for a link."""


class GaveUp(RuntimeError):
    """The broker stayed out of reach longer than the caller wished to wait; nothing is lost."""


@dataclass(frozen=True, slots=True)
class LinkState:
    up: bool
    error: str | None = None  # why the link is down: a phrase that reads after "Kafka at HOST: "


def _progress_record(spool: Spool, position: SpoolPosition, sent: int) -> bytes:
    return orjson.dumps({"spool_id": spool.spool_id, **position.as_json(), "sent": sent,
                         "committed_at": datetime.now(UTC).isoformat(timespec="seconds")})


class ForwardingSession:
    """One connection's worth of forwarding: a transactional producer and the position it resumes from."""

    def __init__(self, spool: Spool, bootstrap: list[str], timeout_s: float = 30.0,
                 batch_events: int = BATCH_EVENTS) -> None:
        self.spool = spool
        # A link too slow to carry a batch within the timeout gets smaller batches, down to one event, and
        # larger ones again as they get through: progress on any link that carries anything at all.
        self.batch_events = batch_events
        self._bootstrap = bootstrap
        self._timeout_s = timeout_s
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, transactional_id=spool.transactional_id, acks="all",
            enable_idempotence=True, transaction_timeout_ms=int(timeout_s * 2000),
            request_timeout_ms=int(timeout_s * 1000), max_request_size=2 * 1024 * 1024, linger_ms=5,
        )
        self.position = START
        self.sent_total = 0  # events of this spool on the bus, ever

    async def open(self) -> None:
        async with asyncio.timeout(self._timeout_s * 2):
            await self._producer.start()
            await self._check_topics()
            # Waits for the producer id: from here on no earlier producer of this spool can commit, and
            # whatever it left open is aborted.
            await self._producer.begin_transaction()
            await self._producer.commit_transaction()  # empty: nothing goes to the broker
            self.position, self.sent_total = await self._committed_position()
        if self.position > self.spool.end:
            raise ForwardingFailed(
                f"the bus has this spool up to {self.position.as_json()} but {self.spool.directory} ends at "
                f"{self.spool.end.as_json()}: was the spool restored from an older copy? Nothing was sent")
        self.spool.mark_sent(self.position)

    async def _check_topics(self) -> None:
        await self._producer.client.force_metadata_update()
        present = self._producer.client.cluster.topics()
        missing = sorted({*INPUT_TOPIC_OF_KIND.values(), SPOOL_PROGRESS} - present)
        if missing:
            raise TopicsMissing(f"topics missing on the broker: {', '.join(missing)}; run: jpc topics create")

    async def _committed_position(self) -> tuple[SpoolPosition, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, isolation_level="read_committed",
                                    enable_auto_commit=False, request_timeout_ms=int(self._timeout_s * 1000))
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()  # it holds a client even when it never connected
            raise
        try:
            tp = TopicPartition(SPOOL_PROGRESS, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]  # the last stable offset, under read_committed
            key = self.spool.spool_id.encode()
            found: tuple[SpoolPosition, int] = (START, 0)
            while await consumer.position(tp) < end:
                for records in (await consumer.getmany(tp, timeout_ms=500)).values():
                    for record in records:
                        if record.key == key and record.value is not None:
                            value = orjson.loads(record.value)
                            found = (SpoolPosition(value["segment"], value["offset"]), value["sent"])
            return found
        finally:
            await consumer.stop()

    async def send_available(self, on_sent: Callable[[int], None] | None = None) -> int:
        """Send every event spooled so far, one transaction per batch; returns how many were sent."""
        sent = 0
        while batch := self.spool.read(self.position, self.batch_events,
                                       max(1, BATCH_BYTES * self.batch_events // BATCH_EVENTS)):
            # Bounded: a link that dies mid-batch must not hang the commit; the next session aborts it.
            async with asyncio.timeout(self._timeout_s * 1.5):
                await self._send_batch(batch)
            end = batch[-1].end
            self.position = end
            self.sent_total += len(batch)
            sent += len(batch)
            self.spool.mark_sent(end)
            self.batch_events = min(BATCH_EVENTS, self.batch_events * 2)
            if on_sent:
                on_sent(len(batch))
        return sent

    async def _send_batch(self, batch: list[SpooledEvent]) -> None:
        await self._producer.begin_transaction()
        futures = []
        for spooled in batch:
            event = decode_event(spooled.raw)
            if isinstance(event, Refusal):  # it was valid when spooled: the contract changed under it
                raise ForwardingFailed(f"{self.spool.directory}: a spooled event is refused now ({event.reason}); "
                                       "it stays in the spool, and nothing after it is sent")
            futures.append(await self._producer.send(INPUT_TOPIC_OF_KIND[event.kind], value=spooled.raw,
                                                      key=record_key(event)))
        progress = _progress_record(self.spool, batch[-1].end, self.sent_total + len(batch))
        futures.append(await self._producer.send(SPOOL_PROGRESS, key=self.spool.spool_id.encode(), value=progress))
        await self._producer.commit_transaction()
        for future in futures:  # a failed send fails the commit; this only makes sure of it
            future.result()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._timeout_s):
                await self._producer.stop()


@dataclass(slots=True)
class Forwarder:
    """Keeps a spool flowing to the bus: connects, sends, and on any failure backs off and starts over.

    `wake()` after spooling more; `finish()` when no more will come, after which `run()` returns
    once the spool is empty. With `give_up_after_s`, `run()` raises GaveUp when the broker has been
    out of reach that long (the spool keeps everything for the next run).

    Every failure is retried, a fenced producer included: each new session resumes from the position
    committed with the last transaction, so retrying can neither lose nor repeat an event.
    """

    spool: Spool
    bootstrap: list[str]
    timeout_s: float = 30.0
    give_up_after_s: float | None = None
    on_link: Callable[[LinkState], None] | None = None
    on_sent: Callable[[int], None] | None = None
    sent: int = 0
    position: SpoolPosition | None = None  # the last committed position, once known
    batch_events: int = BATCH_EVENTS
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _finished: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        self._wake.set()

    def finish(self) -> None:
        self._finished.set()
        self._wake.set()

    def _nothing_left(self) -> bool:
        known = self.position if self.position is not None else self.spool.sent_hint()
        return self._finished.is_set() and self.spool.waiting(known) == 0

    async def run(self) -> int:
        backoff = BACKOFF_FIRST_S
        down_since: float | None = None
        while not self._nothing_left():  # e.g. a drain of an empty spool needs no broker at all
            session = ForwardingSession(self.spool, self.bootstrap, self.timeout_s, self.batch_events)
            try:
                await session.open()
                self.position = session.position
                if down_since is not None:
                    self._tell(LinkState(up=True))
                down_since, backoff = None, BACKOFF_FIRST_S
                while True:
                    self._wake.clear()
                    self.sent += await session.send_available(self.on_sent)
                    self.position = session.position
                    if self._finished.is_set():
                        return self.sent
                    await self._wake.wait()
            except (KafkaError, OSError, TimeoutError, TopicsMissing) as exc:
                self.batch_events = session.batch_events
                if isinstance(exc, TimeoutError | KafkaTimeoutError):
                    self.batch_events = max(1, self.batch_events // 2)
                now = time.monotonic()
                if down_since is None:
                    down_since = now
                    self._tell(LinkState(up=False, error=_describe(exc)))
                if self.give_up_after_s is not None and now - down_since >= self.give_up_after_s:
                    raise GaveUp(_describe(exc)) from exc
                # finish() cuts the wait short (there may be nothing left to send); more spooling does not,
                # or a long file spooled while the link is down would be a storm of connection attempts.
                delay = backoff * random.uniform(0.8, 1.2)
                if self._finished.is_set():
                    await asyncio.sleep(delay)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._finished.wait(), delay)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
            except SpoolError as exc:
                raise ForwardingFailed(str(exc)) from exc
            finally:
                await session.close()
        return self.sent

    def _tell(self, state: LinkState) -> None:
        if self.on_link:
            self.on_link(state)


def _describe(exc: BaseException) -> str:
    """What went wrong, as a phrase that reads after "Kafka at HOST: "."""
    if isinstance(exc, KafkaConnectionError):
        return "not reachable"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, TopicsMissing):
        return str(exc)
    name, text = exc.__class__.__name__, str(exc)
    text = text.removeprefix(f"{name}: ")  # aiokafka repeats the class name in the message
    return f"{name}: {text}" if text else name
