"""The worker's consumer never commits past a record an agent still holds (streams/app.py ReadCommittedConsumer).

Faust's own rule does: with 100 committed, 101 and 102 acked and 100 held (in the intake's reorder buffer,
or until the engine's next snapshot), it commits 103, and a crash then loses 100.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP
from faust.types.tuples import Message

from streams.app import lowest_offsets, make_app
from streams.settings import Settings

pytestmark = pytest.mark.core
TOPIC = TP("jpc.case-reports", 0)


@pytest.fixture
def consumer(tmp_path: Any) -> Any:
    app = make_app(Settings(app_id="commit-test", data_dir=tmp_path))
    app.topics.acks_enabled_for = lambda topic: True  # as for every topic an agent reads
    held: list[Message] = []
    app.jpc_holding = lambda: lowest_offsets(m for m in held if not m.acked)  # what the worker's agents hold
    consumer = app.consumer
    consumer.held = held
    consumer._committed_offset[TOPIC] = 100
    return consumer


def delivered(consumer: Any, offset: int, tp: TP = TOPIC) -> Message:
    message = Message(tp.topic, tp.partition, offset, 0.0, 0, None, b"k", b"v", None, tp=tp)
    consumer.track_message(message)  # what Faust's conductor does before an agent sees it
    return message


def held(consumer: Any, offset: int, tp: TP = TOPIC) -> Message:
    message = delivered(consumer, offset, tp)
    consumer.held.append(message)
    return message


def test_a_held_record_stops_the_commit_until_it_is_acked(consumer: Any) -> None:
    record = held(consumer, 100)
    for offset in (101, 102):
        consumer.ack(delivered(consumer, offset))
    assert consumer._new_offset(TOPIC) is None
    consumer.ack(record)
    assert consumer._new_offset(TOPIC) == 103


def test_the_commit_goes_up_to_the_held_record(consumer: Any) -> None:
    waiting = held(consumer, 103)
    for offset in (100, 101, 102, 104, 105):
        consumer.ack(delivered(consumer, offset))
    assert consumer._new_offset(TOPIC) == 103
    consumer._committed_offset[TOPIC] = 103
    consumer.ack(waiting)
    assert consumer._new_offset(TOPIC) == 106


def test_offsets_that_carry_no_record_do_not_stop_it(consumer: Any) -> None:
    # 100 is a transaction marker: never delivered, never acked. Faust's leniency stays.
    for offset in (101, 102):
        consumer.ack(delivered(consumer, offset))
    assert consumer._new_offset(TOPIC) == 103


def test_a_record_held_on_another_partition_does_not_stop_this_one(consumer: Any) -> None:
    held(consumer, 100, TP("jpc.case-reports", 1))
    for offset in (100, 101):
        consumer.ack(delivered(consumer, offset))
    assert consumer._new_offset(TOPIC) == 102


def test_a_message_faust_dropped_unacked_does_not_stop_it(consumer: Any) -> None:
    # Delivered before a rebalance and discarded from a queue by Faust itself; read again and acked.
    stale = delivered(consumer, 100)
    for offset in (100, 101):
        consumer.ack(delivered(consumer, offset))
    assert stale.acked is False
    assert consumer._new_offset(TOPIC) == 102


def test_the_commit_faust_makes_holds_back_the_same_way(consumer: Any) -> None:
    other = TP("jpc.case-reports", 1)
    consumer._committed_offset[other] = 0
    record = held(consumer, 100)
    for offset in (101, 102):
        consumer.ack(delivered(consumer, offset))
    for offset in (0, 1):
        consumer.ack(delivered(consumer, offset, other))
    assert consumer._filter_committable_offsets([TOPIC, other]) == {other: 2}
    consumer.ack(record)
    assert consumer._filter_committable_offsets([TOPIC]) == {TOPIC: 103}


def test_a_commit_that_hangs_is_given_up_so_the_next_one_can_carry_it(consumer: Any, monkeypatch: Any) -> None:
    # After a broker restart the client's commit hung for minutes, and every commit after it.
    async def hangs(offsets: Any) -> bool:
        await asyncio.sleep(3600)
        return True

    async def works(offsets: Any) -> bool:
        committed.append(dict(offsets))
        return True

    committed: list[dict[Any, int]] = []
    monkeypatch.setattr("streams.app.COMMIT_TIMEOUT_S", 0.2)
    consumer.assignment = lambda: {TOPIC}
    consumer._thread = SimpleNamespace(commit=hangs)
    assert asyncio.run(asyncio.wait_for(consumer._commit({TOPIC: 101}), 5)) is False
    # Faust counts 101 as committed all the same; with nothing acked since, the next commit carries it.
    assert consumer._filter_committable_offsets([]) == {TOPIC: 101}
    consumer._thread = SimpleNamespace(commit=works)
    assert asyncio.run(consumer._commit({TOPIC: 101})) is True
    assert committed == [{TOPIC: 101}]
    assert consumer._filter_committable_offsets([]) == {}


def test_the_fetch_loop_never_commits_inline(consumer: Any) -> None:
    # A hung inline commit stopped fetching altogether; commits come from Faust's timer only.
    assert consumer._commit_every >= 2**62
