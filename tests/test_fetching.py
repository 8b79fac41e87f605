"""Faust's own fetch loop (`Consumer._drain_messages`) over a fake partition, with the worker's consumer
(streams/fetching.py): around a seek, no record is dropped as already read and none is skipped as a gap.

Both failures were seen with a trace of every fetch in the pause fault test (a stall and, in CI, a loss)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP
from faust.types.tuples import Message

from streams.app import make_app
from streams.settings import Settings

pytestmark = pytest.mark.core
TOPIC = TP("jpc.case-reports", 0)
END = 110  # the partition holds offsets 100-109; the commit is at 100
BATCH = 6


def run_fetch_loop(tmp_path: Any, during: Callable[[Any, int, list[int]], Any],
                   while_fetching: Callable[[Any, int], Any] | None = None) -> list[int]:
    """Every offset the loop delivered, in order; `during(consumer, offset, delivered)` runs inside each
    delivery (where a rebalance can happen), `while_fetching(consumer, fetch_number)` after the client took
    a batch and before the loop gets it (the client runs in a thread of its own)."""
    app = make_app(Settings(app_id="fetch-test", data_dir=tmp_path))
    app.topics.acks_enabled_for = lambda topic: True
    consumer: Any = app.consumer
    log = {"position": 100, "generation": app.consumer_generation_id}
    delivered: list[int] = []
    fetcher = SimpleNamespace(_stopped=asyncio.Event())

    async def next_records(timeout: float) -> tuple[Any, Any]:  # noqa: ASYNC109 (Faust's signature)
        if log["generation"] != app.consumer_generation_id:  # a new assignment reads on from the commit
            log["generation"], log["position"] = app.consumer_generation_id, 100
        first = log["position"]
        log["position"] = min(first + BATCH, END)  # the client's position moves past what it returns
        log["fetches"] = log.get("fetches", 0) + 1
        if while_fetching is not None:
            await while_fetching(consumer, log["fetches"])
        return {TOPIC: [SimpleNamespace(offset=o) for o in range(first, first + BATCH) if o < END]}, None

    async def seek_client(tp: TP, offset: int) -> None:
        log["position"] = offset

    def to_message(tp: TP, record: Any) -> Message:
        return Message(tp.topic, tp.partition, record.offset, 0.0, 0, None, b"k", b"v", None, tp=tp,
                       generation_id=app.consumer_generation_id)

    async def on_message(message: Message) -> None:
        delivered.append(message.offset)
        await during(consumer, message.offset, delivered)
        if set(range(100, END)) <= set(delivered) or len(delivered) > 60:
            fetcher._stopped.set()

    async def wait_first(delivery: Any, suspended: Any) -> None:  # mode's needs the service's own loop
        suspended.close()
        await delivery

    consumer._wait_next_records = next_records
    consumer._seek = seek_client
    consumer._to_message = to_message
    consumer.highwater = lambda tp: END
    consumer.assignment = lambda: {TOPIC}
    consumer.callback = on_message
    consumer.wait_first = wait_first
    consumer._committed_offset[TOPIC] = 100
    consumer._read_offset[TOPIC] = 100

    async def main() -> None:
        runs = 0
        while not fetcher._stopped.is_set() and runs < 20:  # Faust's fetcher restarts its loop likewise
            runs += 1
            await asyncio.wait_for(consumer._drain_messages(fetcher), 10)

    asyncio.run(main())
    return delivered


def test_a_seek_during_a_delivery_does_not_drop_the_records_it_reads_again(tmp_path: Any) -> None:
    async def during(consumer: Any, offset: int, delivered: list[int]) -> None:
        if offset == 103 and delivered.count(103) == 1:  # the rebalance's seek to the commit, meanwhile
            await consumer.seek(TOPIC, 100)

    delivered = run_fetch_loop(tmp_path, during)
    after_seek = delivered[delivered.index(103) + 1:]
    assert after_seek == list(range(100, END))


def test_a_reassignment_during_a_delivery_does_not_drop_the_records_read_again(tmp_path: Any) -> None:
    async def during(consumer: Any, offset: int, delivered: list[int]) -> None:
        if offset == 103 and delivered.count(103) == 1:  # a new assignment meanwhile, no seek of Faust's
            consumer.app.consumer_generation_id += 1

    delivered = run_fetch_loop(tmp_path, during)
    after = delivered[delivered.index(103) + 1:]
    assert after == list(range(100, END))


def test_records_left_in_a_batch_stopped_part_way_are_fetched_again(tmp_path: Any) -> None:
    async def during(consumer: Any, offset: int, delivered: list[int]) -> None:
        if offset == 102 and delivered.count(102) == 1:  # the flow stops for a moment (same assignment)
            consumer.stop_flow()
            asyncio.get_running_loop().call_soon(consumer.resume_flow)

    delivered = run_fetch_loop(tmp_path, during)
    assert delivered == list(range(100, END))  # 103-105 were fetched with 102: not skipped as a gap


def test_a_batch_taken_before_a_seek_and_returned_after_it_is_not_delivered(tmp_path: Any) -> None:
    async def during(consumer: Any, offset: int, delivered: list[int]) -> None:
        pass

    async def while_fetching(consumer: Any, fetch: int) -> None:
        if fetch == 2:  # the client took 106-109; meanwhile the rebalance's seek back to the commit
            await consumer.seek(TOPIC, 100)

    delivered = run_fetch_loop(tmp_path, during, while_fetching)
    assert delivered == [*range(100, 106), *range(100, END)]


def test_a_reassignment_during_a_fetch_keeps_the_records_of_a_partition_without_a_commit(tmp_path: Any) -> None:
    # A table's changelog during recovery has no commit to read again from: its records must be delivered
    # (dropping them stalled the table's recovery for good).
    async def during(consumer: Any, offset: int, delivered: list[int]) -> None:
        pass

    async def while_fetching(consumer: Any, fetch: int) -> None:
        if fetch == 2:
            async def no_commits() -> dict[Any, int | None]:
                return {}
            consumer._thread = SimpleNamespace(seek_to_committed=no_commits)
            consumer.app.consumer_generation_id += 1

    delivered = run_fetch_loop(tmp_path, during, while_fetching)
    assert delivered[:10] == list(range(100, END))
