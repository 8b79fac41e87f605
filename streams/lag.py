"""Consumer lag, read from Kafka: the groups, their committed offsets, the logs' ends, the first
unconsumed record of each lagging partition. The judging is `streams.lag_rules` (pure).

Which partitions a group is measured on: every partition of the topics it is expected to read (the
worker's group: the input topics and `jpc.intake`; a duty officers' group `jpc.duty.<unit>`: its
unit's escalation topic), of the topics it has committed offsets on, and of the topics assigned to
its members (except a Faust worker's table changelogs, which it replays but never commits on).
Offsets are then fetched for those partitions explicitly, so a partition the group
never committed on is reported (counted from the earliest offset) instead of left out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from streams.lag_rules import STALL_AFTER_S, GroupSample, GroupVerdict, PartitionOffsets, evaluate
from streams.topics import INPUT_TOPICS, INTAKE, unit_topic

DUTY_GROUP_PREFIX = "jpc.duty."  # duty officers' consumers read their unit's topic under this group


class UnknownGroup(LookupError):
    """A group named explicitly has no member, no committed offset and no topic we know it reads."""


@dataclass(frozen=True, slots=True)
class _Group:
    state: str
    members: int
    assigned: frozenset[TopicPartition] | None  # None: not known (rebalancing, or another protocol)


def expected_topics(group: str, app_id: str) -> tuple[str, ...]:
    """The topics our own consumers read under a group, by its name."""
    if group == app_id:
        return (*INPUT_TOPICS, INTAKE)
    if group.startswith(DUTY_GROUP_PREFIX):
        return (unit_topic(group.removeprefix(DUTY_GROUP_PREFIX)),)
    return ()


def _is_table_changelog(topic: str, group: str) -> bool:
    # A Faust worker is assigned its tables' changelogs, but only replays them to restore state and
    # never commits there: an offset lag on them is no backlog of the group.
    return topic.startswith(f"{group}-") and topic.endswith("-changelog")


class LagProbe:
    """One admin client and one throwaway consumer (no group: it never commits), kept open across
    measurements so `jpc lag --watch` does not reconnect every few seconds."""

    def __init__(self, bootstrap: list[str], timeout_s: float = 30.0,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self._bootstrap = bootstrap
        self._timeout_ms = int(timeout_s * 1000)
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=self._timeout_ms)
        self._wall_clock = wall_clock

    async def __aenter__(self) -> LagProbe:
        await self._admin.start()
        try:
            # Built only once the broker answered: an unstarted consumer warns when collected.
            # Small fetches: only the first record at each position is wanted, for its timestamp.
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap, group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest", max_partition_fetch_bytes=64 * 1024,
                request_timeout_ms=self._timeout_ms)
            try:
                await self._consumer.start()
            except BaseException:
                await self._consumer.stop()
                raise
        except BaseException:
            await self._admin.close()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        try:
            await self._consumer.stop()
        finally:
            await self._admin.close()

    async def default_groups(self, app_id: str) -> list[str]:
        """The worker's group and every duty officers' group the broker knows."""
        listed = await self._admin.list_consumer_groups()
        duty = sorted({str(g[0]) for g in listed if str(g[0]).startswith(DUTY_GROUP_PREFIX)})
        return [app_id, *duty]

    async def measure(self, groups: Iterable[str], app_id: str, window_s: float, samples: int,
                      stall_after_s: float = STALL_AFTER_S, explicit: bool = False,
                      fetch_timeout_s: float = 3.0) -> list[GroupVerdict]:
        """Sample every group `samples` times across `window_s` seconds and judge each."""
        if samples < 2:
            raise ValueError("samples: at least two, the rules compare them")
        partitions: dict[str, list[TopicPartition]] = {}
        for group in groups:
            found = await self._partitions_of(group, app_id)
            if not found and explicit and (await self._group(group)).state == "Dead":
                raise UnknownGroup(f"no consumer group {group!r}: no member, no committed offset")
            partitions[group] = found
        every = sorted({tp for tps in partitions.values() for tp in tps})
        history: dict[str, list[GroupSample]] = {g: [] for g in partitions}
        await self._log_offsets(every)  # the first call fetches metadata: keep it out of the window
        started = time.monotonic()
        for i in range(samples):
            # Evenly spread: sample i is due window * i / (samples - 1) after the first.
            await asyncio.sleep(max(0.0, started + window_s * i / (samples - 1) - time.monotonic()))
            earliest, end = await self._log_offsets(every)
            for group, tps in partitions.items():
                history[group].append(await self._sample(group, tps, earliest, end))
        now_ms = int(self._wall_clock() * 1000)
        verdicts = []
        for group, taken in history.items():
            waiting = {tp: (o.position, o.end) for tp, o in taken[-1].partitions.items() if o.lag > 0}
            stamps, only_markers = await self._first_unconsumed(waiting, fetch_timeout_s)
            verdicts.append(evaluate(group, taken, stamps, now_ms, stall_after_s, only_markers))
        return verdicts

    async def _group(self, group: str) -> _Group:
        # One group per request: aiokafka 0.14 misreads a DescribeGroups response that holds a Dead
        # group after another one (the Dead entry comes back with its fields shifted).
        (response,) = await self._admin.describe_consumer_groups([group])
        described = response.to_object()["groups"][0]
        members = described["members"]
        assigned: set[TopicPartition] | None = set()
        if described["state"] != "Stable" or described["protocol_type"] != "consumer":
            assigned = None
        for member in members:
            if assigned is None:
                break
            try:
                decoded = ConsumerProtocolMemberAssignment.decode(member["member_assignment"])
            except Exception:  # another client's format: we cannot say who owns what
                assigned = None
                break
            assigned.update(TopicPartition(t, p) for t, parts in decoded.assignment for p in parts)
        return _Group(described["state"], len(members), None if assigned is None else frozenset(assigned))

    async def _partitions_of(self, group: str, app_id: str) -> list[TopicPartition]:
        topics = set(expected_topics(group, app_id))
        topics |= {tp.topic for tp in await self._admin.list_consumer_group_offsets(group)}
        described = await self._group(group)
        topics |= {tp.topic for tp in described.assigned or () if not _is_table_changelog(tp.topic, group)}
        if not topics:
            return []
        shapes = await self._admin.describe_topics(sorted(topics))
        return sorted(TopicPartition(t["topic"], p["partition"])
                      for t in shapes if t.get("error_code", 0) == 0 for p in t["partitions"])

    async def _log_offsets(self, tps: list[TopicPartition]) -> tuple[dict[TopicPartition, int],
                                                                     dict[TopicPartition, int]]:
        if not tps:
            return {}, {}
        # The admin client has no ListOffsets; the consumer asks the partition leaders.
        earliest = await self._consumer.beginning_offsets(tps)
        end = await self._consumer.end_offsets(tps)
        return earliest, end

    async def _sample(self, group: str, tps: list[TopicPartition], earliest: dict[TopicPartition, int],
                      end: dict[TopicPartition, int]) -> GroupSample:
        described = await self._group(group)
        committed = await self._admin.list_consumer_group_offsets(group, partitions=tps) if tps else {}
        offsets = {}
        for tp in tps:
            at = committed.get(tp)
            offsets[(tp.topic, tp.partition)] = PartitionOffsets(
                committed=at.offset if at is not None and at.offset >= 0 else None,  # -1: never committed
                earliest=earliest[tp], end=end[tp],
                assigned=None if described.assigned is None else tp in described.assigned,
            )
        return GroupSample(at_s=time.monotonic(), state=described.state, members=described.members,
                           partitions=offsets)

    async def _first_unconsumed(self, waiting: dict[tuple[str, int], tuple[int, int]], timeout_s: float
                                ) -> tuple[dict[tuple[str, int], int], set[tuple[str, int]]]:
        """For each partition's (position, end): the timestamp (ms) of the first record at or after the
        position, or, when the fetch passed the end without a record, the partition among those where
        only transaction markers follow. A partition that gives neither within the timeout is in
        neither (its time lag is unknown)."""
        stamps: dict[tuple[str, int], int] = {}
        only_markers: set[tuple[str, int]] = set()
        if not waiting:
            return stamps, only_markers
        tps = {TopicPartition(t, p): (position, end) for (t, p), (position, end) in waiting.items()}
        self._consumer.assign(list(tps))
        for tp, (position, _) in tps.items():
            self._consumer.seek(tp, position)
        deadline = time.monotonic() + timeout_s
        try:
            while len(stamps) + len(only_markers) < len(tps) and time.monotonic() < deadline:
                batches = await self._consumer.getmany(timeout_ms=200)
                for tp, records in batches.items():
                    if records and (tp.topic, tp.partition) not in stamps:
                        stamps[(tp.topic, tp.partition)] = records[0].timestamp
                        self._consumer.pause(tp)  # one record is all we need from it
                for tp, (_, end) in tps.items():
                    key = (tp.topic, tp.partition)
                    # The fetcher steps over control batches without a record to show for them.
                    if key not in stamps and key not in only_markers and await self._consumer.position(tp) >= end:
                        only_markers.add(key)
                        self._consumer.pause(tp)
        finally:
            # Paused, not unsubscribed: aiokafka 0.14's fetcher swallows the cancellation of `stop()`
            # while it is dropping an assignment, and the command then hangs on exit.
            self._consumer.pause(*tps)
        return stamps, only_markers
