"""`jpc lag` against a real broker: stopped, slow, stuck and caught-up consumers, each on topics and a
group of its own; and the worker's own group before and after it stops."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.provision import provision
from streams.topics import TopicSpec
from tests.conftest import JPC, ROOT, Broker, free_port

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]
PARTITION_KEYS = {"topic", "partition", "committed", "earliest", "end", "lag", "time_lag_s", "consume_rate",
                  "produce_rate", "catch_up_s", "falling_behind", "status", "reason"}


def unique(what: str) -> str:
    return f"lagtest.{what}.{uuid.uuid4().hex[:8]}"


async def make_topic(broker: Broker, partitions: int = 1) -> str:
    name = unique("topic")
    await provision([broker.bootstrap], [TopicSpec(name, partitions, "test")], replication=1)
    return name


async def produce(broker: Broker, topic: str, count: int, partition: int = 0, age_s: float = 0.0) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        stamp = int((time.time() - age_s) * 1000)
        for i in range(count):
            await producer.send(topic, b"r%d" % i, partition=partition, timestamp_ms=stamp)
        await producer.flush()
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def member(broker: Broker, group: str, topic: str) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def consume(consumer: AIOKafkaConsumer, count: int, timeout_s: float = 30.0) -> None:
    got, deadline = 0, time.monotonic() + timeout_s
    while got < count:
        assert time.monotonic() < deadline, f"only {got} of {count} records came within {timeout_s}s"
        got += sum(len(r) for r in (await consumer.getmany(timeout_ms=500)).values())


async def jpc_lag(broker: Broker, *args: str, timeout_s: float = 60.0) -> tuple[int, str, str]:
    """Run `jpc lag` as ops would, while this test's consumers keep running in this event loop."""
    proc = await asyncio.create_subprocess_exec(JPC, "lag", "--brokers", broker.bootstrap, *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    finally:
        if proc.returncode is None:  # it hung: leave nothing behind
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def lag_json(broker: Broker, group: str, *args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = await jpc_lag(broker, "--json", "--group", group, *args)
    assert out, err
    return code, json.loads(out)


async def test_stopped_consumer_with_lag_is_stop_exit_2(broker: Broker) -> None:
    topic, group = await make_topic(broker, partitions=2), unique("stopped")
    await produce(broker, topic, 10, partition=0, age_s=30)
    await produce(broker, topic, 10, partition=1, age_s=30)
    async with member(broker, group, topic) as consumer:
        await consume(consumer, 20)
        await consumer.commit({TopicPartition(topic, 0): 4, TopicPartition(topic, 1): 10})
    # The member left: nobody commits, 6 records wait on partition 0.
    code, report = await lag_json(broker, group)
    assert code == 2
    assert report["status"] == "STOP"
    assert report["exit_code"] == 2
    seen = report["groups"][group]
    assert (seen["status"], seen["state"], seen["members"], seen["lag"]) == ("STOP", "Empty", 0, 6)
    p0, p1 = seen["partitions"]
    assert (p0["topic"], p0["partition"], p0["committed"], p0["end"], p0["lag"]) == (topic, 0, 4, 10, 6)
    assert (p0["status"], p0["falling_behind"], p0["catch_up_s"]) == ("STOP", True, None)
    assert 25 <= p0["time_lag_s"] < 120  # the records were stamped 30 s ago
    assert (p1["committed"], p1["lag"], p1["time_lag_s"], p1["status"]) == (10, 0, 0.0, "OK")

    # The table says the same, for people.
    code, out, _ = await jpc_lag(broker, "--group", group)
    assert code == 2
    assert out.splitlines()[0].startswith(f"{group}  STOP  (Empty, 0 members, lag 6;")
    assert "no member commits (group Empty) while 6 records wait" in out


async def test_json_shape(broker: Broker) -> None:
    topic, group = await make_topic(broker), unique("shape")
    await produce(broker, topic, 3)
    async with member(broker, group, topic) as consumer:
        await consume(consumer, 3)
        await consumer.commit()
    code, report = await lag_json(broker, group, "--window", "0.5", "--samples", "2")
    assert code == 0
    assert set(report) == {"brokers", "at", "status", "exit_code", "not_reading", "groups"}
    assert report["brokers"] == broker.bootstrap
    assert set(report["groups"]) == {group}
    seen = report["groups"][group]
    assert set(seen) == {"status", "state", "members", "lag", "samples", "window_s", "partitions"}
    assert seen["samples"] == 2
    assert 0.3 <= seen["window_s"] <= 5
    assert [set(p) for p in seen["partitions"]] == [PARTITION_KEYS]


async def test_caught_up_consumer_is_ok_with_time_lag_0(broker: Broker) -> None:
    topic, group = await make_topic(broker, partitions=2), unique("caught-up")
    await produce(broker, topic, 4, partition=0, age_s=60)
    await produce(broker, topic, 2, partition=1, age_s=60)
    async with member(broker, group, topic) as consumer:
        await consume(consumer, 6)
        await consumer.commit()
        code, report = await lag_json(broker, group)
    assert code == 0
    seen = report["groups"][group]
    assert (seen["status"], seen["state"], seen["members"], seen["lag"]) == ("OK", "Stable", 1, 0)
    assert [(p["committed"], p["end"], p["lag"], p["time_lag_s"], p["catch_up_s"], p["status"])
            for p in seen["partitions"]] == [(4, 4, 0, 0.0, 0.0, "OK"), (2, 2, 0, 0.0, 0.0, "OK")]


async def test_commit_before_a_transaction_marker_is_caught_up(broker: Broker) -> None:
    """`jpc publish --spool` writes in transactions; a Faust worker commits the offset after its last
    record, which is the commit marker's: lag 1 by the offsets, nothing left to read."""
    topic, group = await make_topic(broker), unique("transactional")
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=unique("tx"), acks="all",
                                enable_idempotence=True)
    await producer.start()
    try:
        async with producer.transaction():
            for i in range(3):
                await producer.send(topic, b"t%d" % i, partition=0, timestamp_ms=int((time.time() - 120) * 1000))
    finally:
        await producer.stop()
    async with member(broker, group, topic) as consumer:
        await consume(consumer, 3)
        await consumer.commit({TopicPartition(topic, 0): 3})  # after the last record, as Faust does
        code, report = await lag_json(broker, group)
    (p,) = report["groups"][group]["partitions"]
    assert (code, p["committed"], p["end"], p["lag"], p["time_lag_s"], p["status"]) == (0, 3, 4, 0, 0.0, "OK")


async def test_member_that_never_commits_is_stall_exit_2(broker: Broker) -> None:
    topic, group = await make_topic(broker), unique("stuck")
    await produce(broker, topic, 10, age_s=120)  # waiting two minutes: far beyond the stall grace
    async with member(broker, group, topic) as consumer:
        await consume(consumer, 10)  # reads them, and never commits
        code, report = await lag_json(broker, group)
    assert code == 2
    seen = report["groups"][group]
    assert (seen["status"], seen["state"], seen["members"]) == ("STALL", "Stable", 1)
    (p,) = seen["partitions"]
    assert (p["committed"], p["earliest"], p["end"], p["lag"], p["consume_rate"]) == (None, 0, 10, 10, 0.0)
    assert p["time_lag_s"] >= 110
    assert "stuck at none (never committed)" in p["reason"]


async def test_slow_consumer_that_commits_but_falls_behind_is_warn_exit_1(broker: Broker) -> None:
    topic, group = await make_topic(broker), unique("slow")
    await produce(broker, topic, 20)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks=1)
    await producer.start()
    commits = 0
    stop = asyncio.Event()

    async def produce_fast() -> None:  # about 100 records a second
        while not stop.is_set():
            for _ in range(10):
                await producer.send(topic, b"more", partition=0)
            await producer.flush()
            await asyncio.sleep(0.1)

    async def consume_slowly(consumer: AIOKafkaConsumer) -> None:  # about 3 a second, each committed
        nonlocal commits
        while not stop.is_set():
            if (await consumer.getmany(timeout_ms=500, max_records=1)):
                await consumer.commit()
                commits += 1
            await asyncio.sleep(0.3)

    try:
        async with member(broker, group, topic) as consumer:
            tasks = [asyncio.create_task(produce_fast()), asyncio.create_task(consume_slowly(consumer))]
            deadline = time.monotonic() + 30
            while commits < 2:  # the member has joined and commits
                assert time.monotonic() < deadline, "the slow consumer never committed"
                await asyncio.sleep(0.2)
            code, report = await lag_json(broker, group)
            stop.set()
            await asyncio.gather(*tasks)
    finally:
        await producer.stop()
    seen = report["groups"][group]
    (p,) = seen["partitions"]
    assert (code, seen["status"], p["status"]) == (1, "WARN", "WARN"), p["reason"]
    assert 0 < p["consume_rate"] < p["produce_rate"]
    assert p["falling_behind"] is True
    assert p["lag"] > 20


async def test_watch_refreshes_until_interrupted(broker: Broker) -> None:
    topic, group = await make_topic(broker), unique("watched")
    await produce(broker, topic, 5, age_s=30)
    async with member(broker, group, topic) as consumer:
        await consume(consumer, 5)
        await consumer.commit({TopicPartition(topic, 0): 2})
    # The member left with 3 records unread: STOP at every refresh.
    proc = await asyncio.create_subprocess_exec(
        JPC, "lag", "--brokers", broker.bootstrap, "--group", group, "--json", "--watch", "--window", "0.5",
        "--samples", "2", "--every", "0.2", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        reports = [json.loads(await asyncio.wait_for(proc.stdout.readline(), 30)) for _ in range(2)]
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert [r["groups"][group]["lag"] for r in reports] == [3, 3]
    assert reports[0]["at"] <= reports[1]["at"]
    assert code == 2  # the status of the last refresh: STOP


def test_unreachable_broker_is_one_line() -> None:
    address = f"127.0.0.1:{free_port()}"
    done = subprocess.run([JPC, "lag", "--brokers", address], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert f"cannot reach Kafka at {address}" in done.stderr


async def test_unknown_group_is_refused(broker: Broker) -> None:
    group = unique("nobody")
    code, out, err = await jpc_lag(broker, "--group", group)
    assert (code, out) == (2, "")
    assert err.strip() == f"jpc: --group: no consumer group {group!r}: no member, no committed offset on " \
                          f"{broker.bootstrap}"


# ---- the worker's own group ------------------------------------------------------------------------------

SCENARIO = ROOT / "agents" / "scenarios" / "guangyuan-2020-01-24.jsonl"


def run_lag(broker: Broker, app_id: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([JPC, "lag", "--brokers", broker.bootstrap, "--app-id", app_id, "--json"],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_lag_of_a_real_worker_caught_up_then_stopped(fresh_broker: Broker, tmp_path: Path) -> None:
    app_id = "jpc-lagtest"
    subprocess.run([JPC, "topics", "create", "--brokers", fresh_broker.bootstrap, "--app-id", app_id],
                   check=True, capture_output=True, timeout=60)
    lines = SCENARIO.read_bytes().splitlines(keepends=True)
    first, more = tmp_path / "first.jsonl", tmp_path / "more.jsonl"
    first.write_bytes(b"".join(lines[:40]))
    more.write_bytes(b"".join(lines[40:60]))
    log = (tmp_path / "worker.log").open("ab")
    worker = subprocess.Popen([JPC, "worker", "--brokers", fresh_broker.bootstrap, "--clock", "event",
                               "--app-id", app_id, "--data-dir", str(tmp_path)],
                              stdout=log, stderr=subprocess.STDOUT, env=fresh_broker.env)
    try:
        subprocess.run([JPC, "publish", "--brokers", fresh_broker.bootstrap, str(first)], check=True,
                       capture_output=True, timeout=60)
        deadline = time.monotonic() + 120
        while True:  # the worker joins, reads the 40 events, passes them through jpc.intake and commits
            code, report = run_lag(fresh_broker, app_id)
            seen = report["groups"][app_id]
            intake = [p for p in seen["partitions"] if p["topic"] == "jpc.intake"]
            judged = sum(p["committed"] or 0 for p in seen["partitions"] if p["topic"] != "jpc.intake")
            # The intake packs events into fewer records: caught up is every one of them committed.
            if (code == 0 and seen["members"] == 1 and judged == 40 and intake
                    and intake[0]["committed"] == intake[0]["end"] > 0):
                break
            assert time.monotonic() < deadline, f"worker never caught up: {json.dumps(seen)[:2000]}"
            time.sleep(2)
        assert set(report["groups"]) == {app_id}  # no duty officer reads yet
        assert seen["status"] == "OK"
        assert seen["state"] == "Stable"
        assert {p["topic"] for p in seen["partitions"]} == {"jpc.case-reports", "jpc.checkpoint-alerts",
                                                           "jpc.duty-rosters", "jpc.escalation-acks", "jpc.intake"}
        assert all(p["lag"] == 0 and p["time_lag_s"] == 0.0 for p in seen["partitions"])
        assert sum(p["committed"] or 0 for p in seen["partitions"] if p["topic"] != "jpc.intake") == 40
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, (tmp_path / "worker.log").read_text()[-3000:]
    subprocess.run([JPC, "publish", "--brokers", fresh_broker.bootstrap, str(more)], check=True,
                   capture_output=True, timeout=60)
    code, report = run_lag(fresh_broker, app_id)
    seen = report["groups"][app_id]
    assert (code, seen["status"], seen["state"], seen["members"], seen["lag"]) == (2, "STOP", "Empty", 0, 20)
