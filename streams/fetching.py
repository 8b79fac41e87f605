"""Faust's fetch loop, made to lose nothing around a seek.

Faust hands each fetched record to its fetch loop (`Consumer._drain_messages`), which notes the record's
offset as read once delivered and from then on drops any record at a lower offset (it treats them as
stale) and counts a jump in offsets as a gap of offsets that carry no record (transaction markers),
committable as if processed. Around a rebalance that bookkeeping went wrong in two ways, seen with a
trace of every fetch in the pause fault test:

- Faust started delivering records of the new assignment before its seek to the committed offset (table
  recovery resumes the flow first). When the seek ran while a delivery was in flight, the loop then
  noted that stale delivery's offset as read, and dropped every record the seek was meant to read again:
  the partition's commit stalled.
- Faust's `getmany` stops part way through a fetched batch when the generation changes or the flow
  stops, and the records left in the batch are gone: the client's position is already past them. The
  next fetch then looks like a jump, and Faust counted the records it never delivered as a gap to commit
  over (51 events lost in a CI run).

`SeekAwareFetch` keeps count of seeks per partition, from before each fetch (the client runs in a
thread of its own and can hand back a batch it took before a seek). Records of a partition sought since
its batch was fetched are not delivered, and the partition is sought to that offset again; a record left
undelivered in a batch is fetched again (a seek to it) unless a seek or a new assignment set where
reading goes on; a seek or a reassignment during a delivery puts the read offset back to what they set;
a batch fetched across a reassignment is read again from the commits. Records delivered twice are fine:
processing is idempotent. tests/test_fetching.py drives Faust's own fetch loop through each case.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from streams.logging import get_logger

log = get_logger("consumer")


class SeekAwareFetch:
    """Mixed into the worker's Faust consumer (streams.app.ReadCommittedConsumer), before Faust's class."""

    _seeks = 0  # seeks so far, by anyone
    _sought: dict[Any, tuple[int, int]] | None = None  # per partition: (the seek count then, the offset sought)

    def _note_seek(self, tp: Any, offset: int | None) -> None:
        if not offset:
            return  # offset 0 (Faust then clears its read offset), or no commit to seek to: reading runs on
        if self._sought is None:
            self._sought = {}
        self._seeks += 1
        self._sought[tp] = (self._seeks, offset)

    def _sought_since(self, tp: Any, count: int) -> bool:
        return self._sought is not None and self._sought.get(tp, (0, None))[0] > count

    async def seek(self, partition: Any, offset: int) -> None:
        await super().seek(partition, offset)  # type: ignore[misc]
        self._note_seek(partition, offset)

    async def seek_to_committed(self) -> Mapping[Any, int | None]:
        """Faust's perform_seek calls this, then sets its read offsets to what it returns."""
        committed: Mapping[Any, int | None] = await super().seek_to_committed()  # type: ignore[misc]
        for tp, offset in committed.items():
            self._note_seek(tp, offset)  # the client seeks only to a commit above 0
        return committed

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[Any, Any]]:  # noqa: ASYNC109 (Faust's signature)
        """Faust's `Consumer.getmany` (faust-streaming 0.11+), with the seek bookkeeping above."""
        consumer: Any = self
        # Counted before the fetch: the client runs in its own thread, and a batch it took before a seek can
        # come back after it.
        fetched_at, generation_id = self._seeks, consumer.app.consumer_generation_id
        records, active_partitions = await consumer._wait_next_records(timeout)
        if records is None or consumer.should_stop:
            return
        if not consumer.flow_active or consumer.app.consumer_generation_id != generation_id:
            # Fetched while the flow was stopped (as Faust does) or across a reassignment (the batch may be the
            # old assignment's): partitions with a commit read again from it; the others (a table's changelog
            # during recovery) read again from the first record not delivered, below.
            try:
                await consumer.perform_seek()
            except Exception as exc:
                log.warning("seek to the committed offsets failed", error=repr(exc))
            generation_id = consumer.app.consumer_generation_id
        delivered: dict[Any, int] = {}  # per partition: the last offset whose delivery came back
        try:
            for tp, record in consumer.scheduler.iterate(records):
                if not consumer.flow_active or consumer.app.consumer_generation_id != generation_id:
                    break
                if self._sought_since(tp, fetched_at):
                    continue  # the batch may predate the seek: it is sought again below
                if active_partitions is None or tp in active_partitions or tp in consumer._buffered_partitions:
                    consumer.app.monitor.track_tp_end_offset(tp, consumer.highwater(tp))
                    before = self._seeks
                    yield tp, consumer._to_message(tp, record)
                    if self._sought_since(tp, before):
                        # Sought while this record was delivered: the loop has just noted it as read, which
                        # would drop the records the seek is for. Put back what the seek set.
                        consumer._read_offset[tp] = self._sought[tp][1]  # type: ignore[index]  # set by the seek
                    elif consumer.app.consumer_generation_id != generation_id:
                        # Reassigned while it was delivered: the new assignment reads on from the commit
                        # (the client's own reset, no seek of Faust's), so nothing counts as read yet.
                        consumer._read_offset.pop(tp, None)
                    else:
                        delivered[tp] = record.offset
        finally:
            if consumer.app.consumer_generation_id == generation_id:  # else reassigned: read from the commit
                await self._fetch_again(records, delivered, fetched_at)

    async def _fetch_again(self, records: Mapping[Any, list[Any]], delivered: dict[Any, int],
                           fetched_at: int) -> None:
        """Where each partition of the batch reads next. Sought since the fetch: from that seek's offset again
        (what the client returned may predate it). Else from the first record not delivered, if any."""
        consumer: Any = self
        assignment = consumer.assignment()
        for tp, batch in records.items():
            if tp not in assignment:
                continue
            if self._sought_since(tp, fetched_at):
                offset = self._sought[tp][1]  # type: ignore[index]  # set by the seek
            else:
                last = delivered.get(tp)
                left = [r.offset for r in batch if last is None or r.offset > last]
                if not left:
                    continue
                offset = left[0]
                log.info("records fetched and not delivered: reading them again", topic=tp.topic,
                         partition=tp.partition, first=offset, count=len(left))
            try:
                await self.seek(tp, offset)
            except Exception as exc:  # revoked meanwhile: its next owner reads from the commit
                log.warning("records not sought again", topic=tp.topic, partition=tp.partition, error=repr(exc))
