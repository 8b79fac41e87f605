"""Fault tests (issue 6): hostile input on every input topic, and poison events that make a rule raise.

Good events are the deterministic stream of tests/faultgen.py; bad records are interleaved with them
(each right after the good event it follows). Every good one must be processed as `jpc replay` of the
good ones alone processes it; every bad one must reach `jpc.dead-letter` with the field that names what
was wrong; the worker must not crash, stall, or grow without bound.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from agents.core.engine import Engine
from agents.worker import EXIT_OUTPUT_REFUSED, judge_input
from schemas.codec import Refusal, decode_event
from streams.topics import CASE_REPORTS, CHECKPOINT_ALERTS, DEAD_LETTER, catalogue
from tests import faultgen
from tests.conftest import Broker
from tests.test_faults_harness import (
    DIRECTORY,
    SEED,
    UNITS,
    Bus,
    Publisher,
    Record,
    Worker,
    assert_matches_replay,
    dead_letters,
    escalations_seen,
    fault_broker,
    intake_event_keys,
    records_of,
    replay_of,
    report,
    scaled,
    stream,
    write_lines,
)

pytestmark = [pytest.mark.fault]
__all__ = ["fault_broker"]  # the shared broker fixture, imported so pytest finds it here

BIG = 10 * 1024 * 1024  # the 10 MB message
TOPIC_LIMIT = str(16 * 1024 * 1024)  # raised on one topic so that the broker takes it and the intake must cope


async def _set_max_message_bytes(bootstrap: str, topic: str, value: str | None) -> None:
    """Raise (or with None, restore) a topic's record size limit. AlterConfigs replaces every override of
    the topic, so the catalogue's own (retention, cleanup) go along."""
    configs = dict(next(spec.configs for spec in catalogue(UNITS) if spec.name == topic))
    if value is not None:
        configs["max.message.bytes"] = value
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs)])
    finally:
        await admin.close()


Label = faultgen.Hostile | str | None  # bad record, one of the big ones by name, or None for a good event


def hostile_plan(good: list[faultgen.Event], bad: list[faultgen.Hostile]) -> tuple[list[Record], list[Label]]:
    """Good and bad records in publishing order, and what each one is; the big ones a third of the way in."""
    records: list[Record] = []
    labels: list[Label] = []
    for topic, key, value, label in faultgen.interleave(good, bad):
        records.append((topic, key, value))
        labels.append(label)
    big: list[tuple[Record, str]] = [
        # An unknown field named by 600 KB: the dead letter must not carry the name whole.
        ((CASE_REPORTS, b"key", orjson.dumps({**good[0], "k" * 600_000: 1})), "huge-key"),
        # Over the broker's default limit: refused at the producer, never in the log.
        ((CHECKPOINT_ALERTS, b"big", os.urandom(BIG)), "refused-10MB"),
        # The limit raised on this topic: the broker takes it and the intake must refuse it itself.
        ((CASE_REPORTS, b"big", b'{"event_id":"big-1","kind":"case_report","case_id":"' + b"x" * BIG + b'"}'),
         "accepted-10MB"),
        # Under the limit, but its dead letter (raw bytes in base64) would not be.
        ((CHECKPOINT_ALERTS, b"near", b"\xff" + os.urandom(900_000)), "near-limit"),
    ]
    third = len(records) // 3
    records[third:third] = [r for r, _ in big]
    labels[third:third] = [name for _, name in big]
    return records, labels


def padded_good(good: list[faultgen.Event]) -> dict[int, bytes]:
    """Two good events padded to 700 KB with tabs: valid (JSON allows any whitespace) and to be processed,
    though escaped inside an intake record their tabs would take twice the room."""
    return {i: faultgen.padded(orjson.dumps(good[i]), 700_000) for i in (len(good) // 4, len(good) // 2)}


def same_field(letter: str, expected: str) -> bool:
    """A dead letter's field, which a worker may cut short (ending it with an ellipsis) when it is huge."""
    return letter == expected or (letter.endswith("…") and expected.startswith(letter[:-1]))


def test_the_generator_is_deterministic_and_says_where_each_bad_record_is_refused() -> None:
    """No broker: the streams are the same bytes every time, every good event is valid, and each bad record
    the intake should refuse is refused there, naming the field the generator expects."""
    good = stream(400, SEED + 1)
    assert faultgen.lines(good) == faultgen.valid_stream(400, SEED + 1)
    assert not any(isinstance(decode_event(line), Refusal) for line in faultgen.lines(good))
    bad = faultgen.hostile_records(good, 260, SEED)
    now = datetime.now(UTC)
    for b in bad:
        judged = judge_input(b.topic, 0, 0, b.value, now)
        assert judged is not None
        (_, _, value), order = judged
        if b.stage == "intake":
            assert order is None, (b.family, b.value[:200])
            assert same_field(orjson.loads(value)["field"], b.field), (b.family, orjson.loads(value)["reason"])
        else:
            assert order is not None, (b.family, orjson.loads(value)["reason"])  # the engine refuses it


@pytest.mark.timeout(scaled(300, 1500))
def test_hostile_input_is_dead_lettered_and_good_input_processed(fault_broker: Broker, tmp_path: Path) -> None:
    n = scaled(1500, 10_000)
    good = stream(n, SEED + 1)
    bad = faultgen.hostile_records(good, n, SEED)
    padding = padded_good(good)
    good_file = tmp_path / "good.jsonl"
    good_file.write_bytes(b"".join(padding.get(i, orjson.dumps(e)) + b"\n" for i, e in enumerate(good)))
    expected = replay_of(good_file)
    bus = Bus.open(fault_broker, tmp_path, "fault-hostile")
    asyncio.run(_set_max_message_bytes(bus.bootstrap, CASE_REPORTS, TOPIC_LIMIT))
    records, labels = hostile_plan(good, bad)
    good_at = [i for i, label in enumerate(labels) if label is None]  # the j-th good record is good[j]
    for j, value in padding.items():
        topic, key, _ = records[good_at[j]]
        records[good_at[j]] = (topic, key, value)
    worker = bus.worker()
    publisher = Publisher(bus.bootstrap, records, rate=400)
    try:
        publisher.start()
        rss = [_settled_rss(worker)]
        while publisher.is_alive():
            worker.assert_alive()
            rss.append(worker.rss_kib())
            time.sleep(0.5)
        publisher.join_checked(60)
        drain_s = bus.wait_drained(scaled(180, 900), [worker])
        rss.append(worker.rss_kib())

        live = escalations_seen(bus)
        dead = dead_letters(bus)
        letters: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
        for d in dead:
            letters.setdefault((d["topic"], d["partition"], d["offset"]), []).append(d)
        letter_of = {i: letters.get((records[i][0], *publisher.positions[i]), []) for i in publisher.positions}
        named = {label: i for i, label in enumerate(labels) if isinstance(label, str)}
        hostile = [(i, label) for i, label in enumerate(labels) if isinstance(label, faultgen.Hostile)]
        missing = [(b.family, b.field) for i, b in hostile if not letter_of[i]]
        wrong = [(b.family, b.field[:40], letter_of[i][0]["reason"][:200]) for i, b in hostile
                 if letter_of[i] and not same_field(letter_of[i][0]["field"], b.field)]
        intake = intake_event_keys(bus)
        report("hostile input", good_in=n, bad_in=len(bad) + len(named), families=dict(Counter(b.family for b in bad)),
               refused_by_broker=len(publisher.refused), escalations_out=len(live.final()),
               revisions=len(live.revisions), duplicates_dropped_by_reader=live.duplicates,
               conflicting_duplicates=len(live.conflicts), dead_letters=len(dead),
               dead_letter_copies=len(dead) - len(letters), dead_by_field=dict(Counter(d["field"][:24] for d in dead)),
               rss_kib_start=rss[0], rss_kib_peak=max(rss), rss_kib_end=rss[-1], drain_s=round(drain_s, 1))

        assert [i for i, _ in publisher.refused] == [named["refused-10MB"]]
        assert missing == [], missing[:5]
        assert wrong == [], wrong[:5]
        assert "over the 1048576-byte limit" in letter_of[named["accepted-10MB"]][0]["reason"]
        assert letter_of[named["near-limit"]][0]["field"] == "(event)"
        assert letter_of[named["huge-key"]][0]["field"].endswith("…")
        assert all(len(r.value) < 128 * 1024 for r in bus.since_mark(DEAD_LETTER))  # letters stay small
        assert not any(letter_of[i] for i, label in enumerate(labels) if label is None)  # no good one refused
        assert len(letters) == len(hostile) + 3  # every bad record in the log has its letter; nothing else
        assert all(d["reason"] and ("raw" in d or "raw_base64" in d) for d in dead)
        assert all("[redacted]" in d["raw"] for d in dead if d["field"] == "person_ref")
        assert {(e["source_unit"], e["event_id"]) for e in good} <= set(intake)  # every good one reached the engine
        assert_matches_replay(live, expected)
        # Memory: the 10 MB record and thousands of refusals leave the worker about where it started.
        assert rss[-1] < rss[0] + 256 * 1024, f"worker RSS grew from {rss[0]} KiB to {rss[-1]} KiB"
    finally:
        publisher.stop()
        code = worker.stop()
        asyncio.run(_set_max_message_bytes(bus.bootstrap, CASE_REPORTS, None))
    assert code == 0, worker.log_tail()


def _settled_rss(worker: Worker, settle_s: float = 3.0) -> int:
    """RSS once the worker has imported everything and joined (a fresh process is still growing)."""
    time.sleep(settle_s)
    worker.assert_alive()
    return worker.rss_kib()


# ---------------------------------------------------------------------------------------------------
# Poison events: a rule raises; the event is dead-lettered with the error and the partition moves on.

POISON_WRAPPER = '''\
"""Test-only: `jpc` with the fever screening rule raising for the event ids in JPC_FAULTS_POISON, and the
intake's judging raising for records that contain "intake-poison"."""
import os
import sys

from agents.core import screening

POISON = set(os.environ["JPC_FAULTS_POISON"].split(","))
_screen = screening.screen


def screen(directory, event, evidence):
    if event.event_id in POISON:
        raise RuntimeError(f"poisoned for the fault test: {event.event_id}")
    return _screen(directory, event, evidence)


screening.screen = screen

from agents import worker  # noqa: E402

_judge = worker.judge_input


def judge_input(topic, partition, offset, raw, now):
    if raw is not None and b"intake-poison" in raw:
        raise RuntimeError("poisoned for the fault test")
    return _judge(topic, partition, offset, raw, now)


worker.judge_input = judge_input
from agents.cli import main  # noqa: E402

sys.argv[0] = "jpc"
main()
'''


def poison_candidates(events: list[faultgen.Event], count: int) -> tuple[list[int], int]:
    """`count` checkpoint alerts to poison, first those processed just as timers fall due (the rule raises
    after those timers fired: the hardest case for a worker that must leave no trace of the event), then
    plain ones; and how many of the first kind there are."""
    engine = Engine(DIRECTORY, "event")
    at_timers: list[int] = []
    plain: list[int] = []
    for i, event in enumerate(events):
        decoded = decode_event(orjson.dumps(event))
        assert not isinstance(decoded, Refusal)
        if event["kind"] == "checkpoint_alert" and i > len(events) // 5:
            probe = Engine.restore(DIRECTORY, engine.snapshot(), "event")
            (at_timers if probe.advance(decoded.occurred_at) else plain).append(i)
        engine.process(decoded)
    chosen = at_timers[:count]
    return sorted(chosen + plain[: count - len(chosen)]), len(chosen)


@pytest.mark.timeout(scaled(240, 900))
def test_poison_events_are_dead_lettered_and_leave_no_trace(fault_broker: Broker, tmp_path: Path) -> None:
    n = scaled(1500, 5000)
    events = stream(n, SEED + 2)
    poison, at_timers = poison_candidates(events, 3)
    assert len(poison) == 3
    assert at_timers >= 1
    poison_ids = [events[i]["event_id"] for i in poison]
    clean = [e for i, e in enumerate(events) if i not in poison]
    expected = replay_of(write_lines(tmp_path / "without-poison.jsonl", clean))
    wrapper = tmp_path / "poisoned_jpc.py"
    wrapper.write_text(POISON_WRAPPER)
    bus = Bus.open(fault_broker, tmp_path, "fault-poison")
    bus.env["JPC_FAULTS_POISON"] = ",".join(poison_ids)
    worker = bus.worker(python_wrapper=wrapper)
    records = records_of(events)
    records.insert(n // 2, (CHECKPOINT_ALERTS, b"x", b'{"event_id":"intake-poison"}'))  # makes the intake raise
    publisher = Publisher(bus.bootstrap, records, rate=300)
    try:
        publisher.start()
        publisher.join_checked(120)
        bus.wait_drained(scaled(120, 600), [worker])
        live = escalations_seen(bus)
        dead = dead_letters(bus)
        report("poison events", events_in=n, poison_events=len(poison), poisoned_as_timers_fell_due=at_timers,
               intake_poison_records=1,
               escalations_out=len(live.final()),
               revisions=len(live.revisions), duplicates_dropped_by_reader=live.duplicates,
               conflicting_duplicates=len(live.conflicts), dead_letters=len(dead),
               dead_letters_expected_from_replay=len(expected.dead_letters))
        poisoned = [d for d in dead if "rule raised" in d["reason"]]
        assert sorted(d["event_id"] for d in poisoned) == sorted(poison_ids)
        assert all("RuntimeError: poisoned for the fault test" in d["reason"] for d in poisoned)
        at_intake = [d for d in dead if "judging raised" in d["reason"]]
        assert [d["raw"] for d in at_intake] == ['{"event_id":"intake-poison"}']
        # The rest are what replay without them refuses too (acks of the escalations they never opened).
        assert sorted(d["event_id"] for d in dead if d not in poisoned + at_intake) == \
            sorted(d["event_id"] for d in expected.dead_letters)
        assert_matches_replay(live, expected)  # as if the poison events had never been published
        worker.assert_alive()
    finally:
        publisher.stop()
        worker.stop()


# ---------------------------------------------------------------------------------------------------
# A worker that cannot write its outputs stops, rather than looking alive while it processes nothing.

@pytest.mark.timeout(scaled(180, 300))
def test_a_worker_the_broker_refuses_stops_and_its_successor_loses_nothing(fault_broker: Broker,
                                                                          tmp_path: Path) -> None:
    bus = Bus.open(fault_broker, tmp_path, "fault-refused")
    bad = [(CASE_REPORTS, b"bad", b"not an event " + str(i).encode() * 100) for i in range(3)]
    asyncio.run(_set_max_message_bytes(bus.bootstrap, DEAD_LETTER, "200"))  # no dead letter fits
    worker = bus.worker()
    publisher = Publisher(bus.bootstrap, bad, rate=10)
    try:
        publisher.start()
        publisher.join_checked(60)
        deadline = time.monotonic() + 60
        while worker.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        code = worker.process.poll()
    finally:
        publisher.stop()
        asyncio.run(_set_max_message_bytes(bus.bootstrap, DEAD_LETTER, None))
        worker.stop()
    successor = bus.worker()  # what a supervisor does: start it again, once the broker takes the letters
    try:
        bus.wait_drained(scaled(90, 180), [successor])
        dead = dead_letters(bus)
        report("broker refuses the worker's output", bad_in=len(bad), first_worker_exit_code=code,
               dead_letters_after_restart=len(dead))
        assert code == EXIT_OUTPUT_REFUSED, "the worker went on without being able to write"
        assert sorted(d["offset"] for d in dead) == sorted(publisher.positions[i][1] for i in range(len(bad)))
    finally:
        successor.stop()
