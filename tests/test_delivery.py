"""How the worker's consumer hands a fetched record to the streams (streams/delivery.py): in place when the
delivery does not wait, else as a task that gives way to a suspension of the flow, as Faust's loop does."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from streams.app import make_app
from streams.settings import Settings

pytestmark = pytest.mark.core


def with_consumer(tmp_path: Path, body: Callable[[Any], Awaitable[None]]) -> None:
    async def main() -> None:
        app = make_app(Settings(app_id="delivery-test", data_dir=tmp_path))
        await asyncio.wait_for(body(app.consumer), 5)

    asyncio.run(main())


def counting_wait_first(consumer: Any) -> list[int]:
    """Calls of the consumer's wait_first (Faust's way of delivering), counted, the call going through."""
    calls: list[int] = []
    original = consumer.wait_first

    async def wait_first(*coros: Any, **kwargs: Any) -> Any:
        calls.append(len(coros))
        return await original(*coros, **kwargs)

    consumer.wait_first = wait_first
    return calls


def test_a_delivery_that_does_not_wait_runs_in_place(tmp_path: Path) -> None:
    async def body(consumer: Any) -> None:
        calls = counting_wait_first(consumer)
        delivered: list[str] = []
        tasks_before = len(asyncio.all_tasks())

        async def delivery() -> None:
            delivered.append("record")
            assert len(asyncio.all_tasks()) == tasks_before  # no task of its own

        await consumer._deliver(delivery())
        assert delivered == ["record"]
        assert calls == []

    with_consumer(tmp_path, body)


def test_a_delivery_that_waits_is_finished_before_the_loop_goes_on(tmp_path: Path) -> None:
    async def body(consumer: Any) -> None:
        calls = counting_wait_first(consumer)
        room = asyncio.get_running_loop().create_future()
        steps: list[str] = []

        async def delivery() -> None:
            steps.append("waiting for room")
            await room
            await asyncio.sleep(0)  # and more than once
            steps.append("delivered")

        asyncio.get_running_loop().call_later(0.05, room.set_result, None)
        await consumer._deliver(delivery())
        assert steps == ["waiting for room", "delivered"]
        assert calls == [2]  # the rest of it, and the flow's suspension

    with_consumer(tmp_path, body)


def test_a_waiting_delivery_gives_way_when_the_flow_is_suspended(tmp_path: Path) -> None:
    async def body(consumer: Any) -> None:
        lock = asyncio.Lock()
        seen: list[str] = []

        async def delivery() -> None:
            async with lock:
                try:
                    await asyncio.get_running_loop().create_future()  # a stream buffer that never drains
                except asyncio.CancelledError:
                    seen.append("cancelled")
                    raise

        asyncio.get_running_loop().call_later(0.05, consumer.suspend_flow.set)
        await consumer._deliver(delivery())
        for _ in range(3):  # a task cancelled runs its cancellation on a later turn of the loop
            await asyncio.sleep(0)
        assert seen == ["cancelled"]
        assert not lock.locked()

    with_consumer(tmp_path, body)


def test_while_the_flow_is_suspended_deliveries_go_Fausts_way(tmp_path: Path) -> None:
    async def body(consumer: Any) -> None:
        calls = counting_wait_first(consumer)
        consumer.suspend_flow.set()
        delivered: list[str] = []

        async def delivery() -> None:
            delivered.append("record")

        await consumer._deliver(delivery())
        assert calls == [2]

    with_consumer(tmp_path, body)


@pytest.mark.parametrize("waits", [False, True])
def test_an_error_in_a_delivery_reaches_the_fetch_loop(tmp_path: Path, waits: bool) -> None:
    async def body(consumer: Any) -> None:
        async def delivery() -> None:
            if waits:
                await asyncio.sleep(0.01)
            raise ValueError("the stream refused it")

        with pytest.raises(ValueError, match="refused"):
            await consumer._deliver(delivery())

    with_consumer(tmp_path, body)


def test_a_delivery_returns_what_it_returned_after_waiting(tmp_path: Path) -> None:
    """The task's result is the coroutine's (Faust's loop ignores it, but the rest must finish the coroutine
    rather than drop it part way)."""
    from streams.delivery import _run_rest, start

    async def body(consumer: Any) -> None:
        async def delivery() -> str:
            await asyncio.sleep(0.01)
            return "done"

        coro = delivery()
        finished, pending = start(coro)
        assert not finished
        assert await asyncio.ensure_future(_run_rest(coro, pending)) == "done"

    with_consumer(tmp_path, body)
