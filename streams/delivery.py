"""Faust's fetch loop, without four tasks per record.

Faust hands each fetched record to the streams with `wait_first(callback(message), suspend_flow.wait())`:
the delivery must give way when the flow is suspended (a rebalance) while it waits for room in a full
stream buffer. That makes four tasks per record (the delivery, the suspension, the consumer's stopped and
crashed events) and an `asyncio.wait`, about a sixth of the live worker's time in a profile, although
almost every delivery finishes at once: the buffer has room.

`DirectDelivery` runs the delivery in place until it first has to wait. Done by then (the usual case),
nothing else is created; otherwise the rest of it runs as a task under Faust's own `wait_first`, with the
same give-way as before. The loop is Faust's `Consumer._drain_messages` (faust-streaming 0.15.3, pinned)
with only that call changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Coroutine, Generator
from typing import Any, cast

from faust.transport.consumer import CONSUMER_FETCHING


class _Rest:
    """The rest of a coroutine that has run up to its first wait, on `pending`, as an awaitable a task runs.

    A task drives an awaitable by sending None and throwing in what cancels it; this passes both on to the
    coroutine, and hands the task whatever the coroutine waits on next (a future, or None for a bare yield).
    """

    __slots__ = ("_coro", "_pending")

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self._coro, self._pending = coro, pending

    def __await__(self) -> Generator[Any, None, Any]:
        pending = self._pending
        while True:
            try:
                try:
                    yield pending
                except BaseException as exc:  # cancellation included: the coroutine decides what it means
                    pending = self._coro.throw(exc)
                else:
                    pending = self._coro.send(None)
            except StopIteration as stop:  # finished (raised here, it would become a RuntimeError)
                return stop.value

    async def run(self) -> Any:
        try:
            return await self
        finally:
            self._coro.close()  # a coroutine cancelled part way releases what it holds (its lock)


def _run_rest(coro: Coroutine[Any, Any, Any], pending: Any) -> Coroutine[Any, Any, Any]:
    return _Rest(coro, pending).run()


def start(coro: Coroutine[Any, Any, Any]) -> tuple[bool, Any]:
    """Run `coro` up to its first wait: (True, its result) when it finished, (False, what it waits on)."""
    try:
        pending = coro.send(None)
    except StopIteration as stop:
        return True, stop.value
    return False, pending


class DirectDelivery:
    """Mixed into the worker's Faust consumer (streams.app.ReadCommittedConsumer), before Faust's class."""

    async def _deliver(self, delivery: Awaitable[Any]) -> None:
        consumer: Any = self
        flow, stopped, crashed = consumer.suspend_flow, consumer._stopped, consumer._crashed
        if not asyncio.iscoroutine(delivery) or flow.is_set() or stopped.is_set() or crashed.is_set():
            await consumer.wait_first(delivery, flow.wait())  # Faust's way: let the waits decide
            return
        finished, pending = start(delivery)
        if finished:
            return
        # The delivery waits (a full stream buffer, a lock): go on as Faust does, as a task that gives way to a
        # suspension of the flow.
        rest = asyncio.ensure_future(_run_rest(delivery, pending))
        await consumer.wait_first(rest, flow.wait())

    async def _drain_messages(self, fetcher: Any) -> None:
        # Faust's Consumer._drain_messages, the delivery aside (see the module's docstring).
        consumer: Any = self
        callback = consumer.callback
        getmany = consumer.getmany
        consumer_should_stop = consumer._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set

        get_read_offset = consumer._read_offset.__getitem__
        set_read_offset = consumer._read_offset.__setitem__
        set_flag = consumer.diag.set_flag
        unset_flag = consumer.diag.unset_flag
        commit_every = consumer._commit_every
        acks_enabled_for = consumer.app.topics.acks_enabled_for
        deliver = self._deliver

        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                ait = cast(AsyncIterator[Any], getmany(timeout=1.0))
                await consumer.sleep(0)
                if not consumer.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await consumer._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and consumer._n_acked >= commit_every:
                                consumer._n_acked = 0
                                await consumer.commit()
                            await deliver(callback(message))
                            set_read_offset(tp, offset)
                    unset_flag(CONSUMER_FETCHING)
        except consumer.consumer_stopped_errors:
            if consumer.transport.app.should_stop:
                consumer.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if consumer.transport.app.should_stop:
                consumer.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            consumer.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)
