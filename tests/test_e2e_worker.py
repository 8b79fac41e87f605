"""The live worker on a real broker gives what `jpc replay` gives for the same file."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.conftest import JPC, ROOT, Broker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
SCENARIO = ROOT / "agents" / "scenarios" / "guangyuan-2020-01-24.jsonl"
Final = dict[str, tuple[Any, ...]]


def final_state(revisions: list[dict[str, Any]]) -> Final:
    latest: dict[str, dict[str, Any]] = {}
    for r in revisions:
        if r["escalation_id"] not in latest or latest[r["escalation_id"]]["revision"] < r["revision"]:
            latest[r["escalation_id"]] = r
    return {k: (r["rule"], r["severity"], r["step"], r["status"], tuple(r["routed_to"]), r["revision"])
            for k, r in latest.items()}


def replay(path: Path) -> list[dict[str, Any]]:
    done = subprocess.run([JPC, "replay", "-q", str(path)], capture_output=True, check=True)
    return [json.loads(line) for line in done.stdout.splitlines()]


async def read_topic(bootstrap: str, topic: str) -> list[tuple[int, int, bytes]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[tuple[int, int, bytes]] = []
        while not await _at_end(consumer, ends):
            for records in (await consumer.getmany(timeout_ms=300)).values():
                out += [(r.partition, r.offset, r.value) for r in records]
        return out
    finally:
        await consumer.stop()


async def _at_end(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


def escalations(bootstrap: str, topic: str = "jpc.escalations") -> list[dict[str, Any]]:
    return [json.loads(v) for _, _, v in asyncio.run(read_topic(bootstrap, topic))]


BAD_RECORDS = [
    SCENARIO.read_bytes().splitlines()[122],  # line 123: a phone number where a pseudonym belongs
    b'{"event_id": "x-1", "kind": "checkpoint_alert"',  # cut off
    b'{"event_id":"x-2","kind":"case_report","schema_version":1,"source_unit":"cdc",'
    b'"occurred_at":"2020-01-24T18:00:00+08:00","case_id":"x","status":"suspected","person_ref":"p-x",'
    b'"region":"lizhou"}',  # valid, but a case report on the checkpoint topic
]


async def produce_raw(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


def start_worker(broker: Broker, data_dir: Path, app_id: str = "jpc-e2e") -> subprocess.Popen[bytes]:
    log = (data_dir / "worker.log").open("ab")
    return subprocess.Popen([JPC, "worker", "--brokers", broker.bootstrap, "--clock", "event", "--app-id", app_id,
                             "--data-dir", str(data_dir)], stdout=log, stderr=subprocess.STDOUT, env=broker.env)


def wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1.0)
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}")


def publish(broker: Broker, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([JPC, "publish", "--brokers", broker.bootstrap, str(path)], capture_output=True,
                          text=True, timeout=120)


def test_worker_in_event_clock_mode_matches_replay(fresh_broker: Broker, tmp_path: Path) -> None:
    created = subprocess.run([JPC, "topics", "create", "--brokers", fresh_broker.bootstrap, "--app-id", "jpc-e2e"],
                             capture_output=True, text=True)
    assert created.returncode == 0, created.stderr
    expected = final_state(replay(SCENARIO))
    assert len(expected) >= 10
    worker = start_worker(fresh_broker, tmp_path)
    try:
        asyncio.run(produce_raw(fresh_broker.bootstrap, "jpc.checkpoint-alerts", BAD_RECORDS))
        published = publish(fresh_broker, SCENARIO)
        assert published.returncode == 1  # the scenario carries one line with a phone number in person_ref
        assert "published 245, refused 1" in published.stderr
        wait_for(lambda: final_state(escalations(fresh_broker.bootstrap)) == expected, 120,
                 "the worker's escalations to equal replay's")
        live = escalations(fresh_broker.bootstrap)
        assert final_state(live) == expected
        # Live evidence carries where each input was read from.
        assert all(e["topic"] and e["offset"] is not None for r in live for e in r["evidence"])
        # Every revision routed to a unit is on that unit's topic too.
        lizhou = {(r["escalation_id"], r["revision"]) for r in escalations(fresh_broker.bootstrap,
                                                                           "jpc.escalations.lizhou-hq")}
        assert lizhou == {(r["escalation_id"], r["revision"]) for r in live if "lizhou-hq" in r["routed_to"]}
        assert lizhou
        # Bad records sent around the validating publisher went to the dead-letter topic, and changed nothing.
        wait_for(lambda: len(asyncio.run(read_topic(fresh_broker.bootstrap, "jpc.dead-letter"))) >= 3, 60,
                 "three dead letters")
        dead = [json.loads(v) for _, _, v in asyncio.run(read_topic(fresh_broker.bootstrap, "jpc.dead-letter"))]
        assert sorted(d["field"] for d in dead) == ["(event)", "kind", "person_ref"]
        assert all(d["topic"] == "jpc.checkpoint-alerts" and d["offset"] is not None for d in dead)
        assert "13912345678" not in json.dumps(dead)
        assert any(d.get("raw_base64") for d in dead) is False
        # kill -USR1 logs what the worker is doing (tasks, partitions), with no frame's local variables.
        log_path = tmp_path / "worker.log"
        worker.send_signal(signal.SIGUSR1)
        wait_for(lambda: '"diagnostics"' in log_path.read_text(errors="replace"), 30, "the diagnostics record")
        dump = next(json.loads(line) for line in log_path.read_text(errors="replace").splitlines()
                    if '"diagnostics"' in line)
        assert any("correlate" in line for line in dump["agents"])
        assert any(task.get("stack") for task in dump["tasks"])
        assert "jpc.intake:0" in dump["consumer"]["partitions"]
        assert dump["held"] == 0  # caught up: the intake holds nothing back
        assert "person_ref" not in json.dumps(dump)  # no event, no personal data
        assert worker.poll() is None
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
        assert code == 0, f"worker exited {code}: " + (tmp_path / "worker.log").read_text()[-3000:]


def test_restarted_worker_resumes_from_its_state(fresh_broker: Broker, tmp_path: Path) -> None:
    subprocess.run([JPC, "topics", "create", "--brokers", fresh_broker.bootstrap, "--app-id", "jpc-e2e"],
                   check=True, capture_output=True)
    lines = SCENARIO.read_bytes().splitlines(keepends=True)
    first, rest = tmp_path / "first.jsonl", tmp_path / "rest.jsonl"
    first.write_bytes(b"".join(lines[:150]))
    rest.write_bytes(b"".join(lines[150:]))
    expected_first = final_state(replay(first))
    expected_all = final_state(replay(SCENARIO))

    worker = start_worker(fresh_broker, tmp_path)
    publish(fresh_broker, first)
    wait_for(lambda: final_state(escalations(fresh_broker.bootstrap)) == expected_first, 120, "the first half")
    worker.send_signal(signal.SIGKILL)  # no clean shutdown: state must come back from the changelog
    worker.wait(timeout=30)

    worker = start_worker(fresh_broker, tmp_path)
    try:
        publish(fresh_broker, rest)
        wait_for(lambda: final_state(escalations(fresh_broker.bootstrap)) == expected_all, 120, "the second half")
        live = escalations(fresh_broker.bootstrap)
        by_key: dict[tuple[str, int], bytes] = {}
        for r in live:  # a revision re-sent after the crash is the same bytes, never a different revision
            body = json.dumps({k: v for k, v in r.items() if k != "evidence"}, sort_keys=True).encode()
            assert by_key.setdefault((r["escalation_id"], r["revision"]), body) == body
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
