"""Events for the member-unit tests, and counting them on the input topics.

Every event of a run carries the run's unique prefix in its `event_id`, so a test on the shared broker
counts its own records, from end offsets taken before it published.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.topics import INPUT_TOPICS

CST = timezone(timedelta(hours=8))
T0 = datetime(2020, 1, 24, 18, 0, tzinfo=CST)
Offsets = dict[TopicPartition, int]


def good_event(run: str, i: int) -> dict[str, Any]:
    """The i-th valid event of a run, of all five kinds in turn."""
    at = T0 + timedelta(seconds=i)
    base: dict[str, Any] = {"event_id": f"{run}-{i}", "schema_version": 1, "occurred_at": at.isoformat()}
    match i % 5:
        case 0:
            return {**base, "kind": "checkpoint_heartbeat", "source_unit": "transport",
                    "checkpoint_id": "gy-east-toll", "screened": i}
        case 1:
            return {**base, "kind": "checkpoint_alert", "source_unit": "railway", "checkpoint_id": "gy-rail",
                    "person_ref": f"p-{i}", "reason": "fever", "temperature_c": 38.1, "direction": "inbound",
                    "action": "referred"}
        case 2:
            return {**base, "kind": "case_report", "source_unit": "cdc", "case_id": f"{run}-c{i}",
                    "status": "suspected", "person_ref": f"p-{i}", "region": "lizhou", "township": "东坝街道"}
        case 3:
            return {**base, "kind": "duty_shift", "source_unit": "lizhou-hq", "unit_id": "lizhou-hq",
                    "post": "duty_officer", "officer_id": f"{run}-o{i}", "officer_name": "褚建平",
                    "phone": "0839-3200000", "shift_start": at.isoformat(),
                    "shift_end": (at + timedelta(hours=12)).isoformat(), "status": "scheduled"}
        case _:
            return {**base, "kind": "escalation_ack", "source_unit": "health",
                    "escalation_id": "esc-0123456789abcdef0123", "unit_id": "health", "officer_id": "wjw-03",
                    "action": "acknowledge"}


def line(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()


def bad_line(run: str, i: int, fault: int) -> tuple[bytes, str]:
    """A refused line of one of a dozen faults, and the field its reason must name."""
    event = good_event(run, i)
    event["event_id"] = f"{run}-bad-{i}"
    heartbeat = {**good_event(run, 0), "event_id": f"{run}-bad-{i}"}
    alert = {**good_event(run, 1), "event_id": f"{run}-bad-{i}"}
    faults: list[tuple[bytes, str]] = [
        (line(event)[:-7], "(event)"),  # cut off
        (b"\xff\xfe" + line(event)[2:], "(event)"),  # not UTF-8
        (line({**event, "kind": "case_reprot"}), "kind"),
        (line({k: v for k, v in alert.items() if k != "direction"}), "direction"),
        (line({**event, "occurred_at": "2020-01-24T18:00:00"}), "occurred_at"),  # naive
        (line({**alert, "person_ref": "13912345678"}), "person_ref"),  # a mobile number
        (line({**alert, "temperature_c": 45.5}), "temperature_c"),
        (line({**event, "extra": 1}), "extra"),
        (line({**event, "schema_version": 2}), "schema_version"),
        (line({k: v for k, v in alert.items() if k != "temperature_c"}), "temperature_c"),  # fever, no reading
        (line({**heartbeat, "reported_at": (T0 - timedelta(hours=1)).isoformat()}), "reported_at"),
        (line({**heartbeat, "event_id": "has space"}), "event_id"),
        (b"[1, 2, 3]", "(event)"),
    ]
    return faults[fault % len(faults)]


def mixed_file(run: str, lines: int, bad: int, seed: int) -> tuple[bytes, dict[int, str], set[str]]:
    """`lines` lines, `bad` of them refused at random places: the bytes, bad line number → field, good ids."""
    rng = random.Random(seed)
    bad_numbers = set(rng.sample(range(1, lines + 1), bad))
    out, expected, good = [], {}, set()
    for number in range(1, lines + 1):
        if number in bad_numbers:
            raw, field = bad_line(run, number, rng.randrange(1000))
            expected[number] = field
        else:
            event = good_event(run, number)
            raw = line(event)
            good.add(event["event_id"])
        out.append(raw)
    return b"\n".join(out) + b"\n", expected, good


async def end_offsets(bootstrap: str, topics: tuple[str, ...] = INPUT_TOPICS) -> Offsets:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or [])]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def count_ids(bootstrap: str, starts: Offsets, run: str, *, committed: bool = True,
                    timeout_s: float = 90.0) -> collections.Counter[str]:
    """How often each event id of `run` (`run` itself or `run-...`) is on the topics, from `starts` to the end
    offsets as of now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                isolation_level="read_committed" if committed else "read_uncommitted")
    pattern = re.compile(rb'"event_id":"(' + re.escape(run.encode()) + rb'(?:-[^"]*)?)"')
    counts: collections.Counter[str] = collections.Counter()
    await consumer.start()
    try:
        consumer.assign(list(starts))
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        ends = await consumer.end_offsets(list(starts))
        async with asyncio.timeout(timeout_s):
            while any([await consumer.position(tp) < end for tp, end in ends.items()]):
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        if record.value is not None and (found := pattern.search(record.value)):
                            counts[found.group(1).decode()] += 1
    finally:
        await consumer.stop()
    return counts
