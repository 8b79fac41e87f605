"""`jpc worker --web` on a real broker: /metrics counts what the worker did, /health says when it stalls,
and the worker reads its inputs read_committed (an aborted transaction never reaches the engine)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from agents.worker import intake_entries
from tests.conftest import JPC, Broker, free_port
from tests.test_e2e_worker import BAD_RECORDS, SCENARIO, escalations, final_state, produce_raw, read_topic, replay

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
APP_ID = "jpc-metrics"
SAMPLE = re.compile(r'^(\w+)(?:\{(.*)\})? (\S+)$')


def create_topics(broker: Broker) -> None:
    created = subprocess.run([JPC, "topics", "create", "--brokers", broker.bootstrap, "--app-id", APP_ID],
                             capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stderr


def start_worker(broker: Broker, data_dir: Path, port: int, **env: str) -> subprocess.Popen[bytes]:
    log = (data_dir / "worker.log").open("ab")
    return subprocess.Popen([JPC, "worker", "--brokers", broker.bootstrap, "--clock", "event", "--app-id", APP_ID,
                             "--data-dir", str(data_dir), "--web", "--web-port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env={**broker.env, **env})


def get(port: int, path: str) -> tuple[int, str, str]:
    """(status, content type, body) of a page of the worker; status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, "", ""


def samples(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, content_type, body = get(port, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    out = {}
    for line in body.splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
            out[(match.group(1), labels)] = float(match.group(3))
    return out


def by(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, *keys: str) -> dict[Any, float]:
    """The non-zero samples of one metric, keyed by the values of `keys`."""
    return {tuple(dict(labels)[k] for k in keys) if len(keys) > 1 else dict(labels)[keys[0]]: value
            for (n, labels), value in metrics.items() if n == name and value}


def wait_for(predicate: Any, timeout_s: float, what: str, worker: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if worker.poll() is not None:
            pytest.fail(f"worker exited {worker.returncode} while waiting for {what}: {log.read_text()[-3000:]}")
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}")


def stop(worker: subprocess.Popen[bytes]) -> int:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    try:
        return worker.wait(timeout=60)
    except subprocess.TimeoutExpired:
        worker.kill()
        return worker.wait(timeout=30)


def test_metrics_count_what_the_worker_did(fresh_broker: Broker, tmp_path: Path) -> None:
    create_topics(fresh_broker)
    port, log = free_port(), tmp_path / "worker.log"
    worker = start_worker(fresh_broker, tmp_path, port)
    try:
        wait_for(lambda: get(port, "/health")[0] == 200, 120, "/health to answer", worker, log)
        asyncio.run(produce_raw(fresh_broker.bootstrap, "jpc.checkpoint-alerts", BAD_RECORDS))
        published = subprocess.run([JPC, "publish", "--brokers", fresh_broker.bootstrap, str(SCENARIO)],
                                   capture_output=True, text=True, timeout=120)
        assert "published 245, refused 1" in published.stderr
        expected = final_state(replay(SCENARIO))
        health: list[int] = []

        def caught_up() -> bool:
            health.append(get(port, "/health")[0])  # polled all along while the worker consumes
            return final_state(escalations(fresh_broker.bootstrap)) == expected

        wait_for(caught_up, 120, "the worker's escalations to equal replay's", worker, log)
        # An event sent twice: accepted by the intake (it is valid), ignored by the engine as a duplicate.
        again = SCENARIO.read_bytes().splitlines()[134]  # a case report
        asyncio.run(produce_raw(fresh_broker.bootstrap, "jpc.case-reports", [again]))
        wait_for(lambda: samples(port).get(("jpc_duplicates_ignored_total", frozenset())) == 1.0, 60,
                 "the duplicate to be counted", worker, log)
        wait_for(lambda: sum(by(samples(port), "jpc_consumer_lag", "topic").values()) == 0, 30,
                 "consumer lag 0", worker, log)

        metrics = samples(port)
        lines = [json.loads(raw) for i, raw in enumerate(SCENARIO.read_bytes().splitlines()) if i != 122]
        assert by(metrics, "jpc_events_in_total", "kind") == Counter(e["kind"] for e in [*lines, json.loads(again)])
        # Refused by the intake: a phone number in person_ref, a cut-off record, a case report on the wrong topic.
        assert by(metrics, "jpc_dead_letters_total", "field") == {"person_ref": 1, "(event)": 1, "kind": 1}

        live = escalations(fresh_broker.bootstrap)
        assert by(metrics, "jpc_escalation_revisions_total", "rule", "severity") == Counter(
            (r["rule"], r["severity"]) for r in live)
        assert by(metrics, "jpc_escalations_opened_total", "rule", "severity") == Counter(
            (r["rule"], r["severity"]) for r in live if r["revision"] == 1)
        latest = {r["escalation_id"]: r for r in sorted(live, key=lambda r: r["revision"])}
        assert by(metrics, "jpc_open_escalations", "rule") == Counter(
            r["rule"] for r in latest.values() if r["status"] == "open")
        status: dict[str, str] = {}
        acked = Counter()
        for r in sorted(live, key=lambda r: (r["escalation_id"], r["revision"])):
            if r["status"] == "acknowledged" and status.get(r["escalation_id"]) == "open":
                acked[r["rule"]] += 1
            status[r["escalation_id"]] = r["status"]
        assert acked  # the scenario's acknowledgements close some escalations
        assert by(metrics, "jpc_time_to_acknowledge_seconds_count", "rule") == acked
        # One latency per valid input record (246 lines, one refused, one sent twice) at each stage.
        assert by(metrics, "jpc_processing_latency_seconds_count", "stage") == {"intake": 246, "engine": 246}
        lag_series = {(t, p) for (n, labels), _ in metrics.items() if n == "jpc_consumer_lag"
                      for t, p in [(dict(labels)["topic"], dict(labels)["partition"])]}
        assert ("jpc.intake", "0") in lag_series
        assert ("jpc.case-reports", "3") in lag_series
        assert not any(t.startswith(APP_ID) for t, _ in lag_series)  # not the table's changelog
        assert metrics[("jpc_healthy", frozenset())] == 1.0
        assert health
        assert set(health) == {200}
        assert get(port, "/health")[1:] == ("application/json", '{"status": "healthy"}')
    finally:
        code = stop(worker)
    assert code == 0, log.read_text()[-3000:]


async def delete_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


def test_health_turns_503_when_the_engine_cannot_write(fresh_broker: Broker, tmp_path: Path) -> None:
    """The engine's output topic is gone: its sends wait for the broker, records pile up on jpc.intake,
    and /health says so once they have waited JPC_HEALTH_STALL_S; the worker then stops with 75 when the
    send times out (JPC_REQUEST_TIMEOUT_S), as documented, for its supervisor to start it again."""
    create_topics(fresh_broker)
    port, log = free_port(), tmp_path / "worker.log"
    worker = start_worker(fresh_broker, tmp_path, port, JPC_HEALTH_STALL_S="4", JPC_REQUEST_TIMEOUT_S="25")
    try:
        wait_for(lambda: get(port, "/health")[0] == 200, 120, "/health to answer", worker, log)
        asyncio.run(delete_topic(fresh_broker.bootstrap, "jpc.escalations"))
        subprocess.run([JPC, "publish", "--brokers", fresh_broker.bootstrap, str(SCENARIO)], capture_output=True,
                       timeout=120)
        blocked_at = time.monotonic()
        wait_for(lambda: get(port, "/health")[0] == 503, 25, "/health to say 503", worker, log)
        status, content_type, body = get(port, "/health")
        assert status == 503
        assert content_type == "application/json"
        problems = json.loads(body)["problems"]
        assert problems
        assert all(p.startswith("engine stalled: records wait (jpc.intake/0: ") for p in problems)
        assert "nothing was processed for" in problems[0]
        assert samples(port)[("jpc_healthy", frozenset())] == 0.0  # /metrics still answers
        assert time.monotonic() - blocked_at < 25
        assert worker.wait(timeout=90) == 75, log.read_text()[-3000:]
    finally:
        stop(worker)


async def transaction(bootstrap: str, topic: str, value: bytes, *, commit: bool) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"test-{os.getpid()}-{commit}",
                                enable_idempotence=True, acks="all")
    await producer.start()
    try:
        await producer.begin_transaction()
        await producer.send_and_wait(topic, value)
        if commit:
            await producer.commit_transaction()
        else:
            await producer.abort_transaction()
    finally:
        await producer.stop()


def test_an_aborted_transaction_never_reaches_the_engine(fresh_broker: Broker, tmp_path: Path) -> None:
    lines = SCENARIO.read_bytes().splitlines(keepends=True)
    aborted, committed = lines[134], lines[151]  # two case reports, each opening an escalation on its own
    (tmp_path / "aborted.jsonl").write_bytes(aborted)
    (tmp_path / "committed.jsonl").write_bytes(committed)
    would_open, expected = replay(tmp_path / "aborted.jsonl"), final_state(replay(tmp_path / "committed.jsonl"))
    assert would_open
    assert expected
    assert not {r["escalation_id"] for r in would_open} & set(expected)
    create_topics(fresh_broker)
    port, log = free_port(), tmp_path / "worker.log"
    worker = start_worker(fresh_broker, tmp_path, port)
    try:
        wait_for(lambda: get(port, "/health")[0] == 200, 120, "/health to answer", worker, log)
        asyncio.run(transaction(fresh_broker.bootstrap, "jpc.case-reports", aborted.strip(), commit=False))
        asyncio.run(transaction(fresh_broker.bootstrap, "jpc.case-reports", committed.strip(), commit=True))
        wait_for(lambda: final_state(escalations(fresh_broker.bootstrap)) == expected, 90,
                 "the committed report's escalation", worker, log)
        intake = [json.loads(entry["event"])["event_id"]
                  for _, _, v in asyncio.run(read_topic(fresh_broker.bootstrap, "jpc.intake"))
                  for entry in intake_entries(json.loads(v))]
        assert intake == [json.loads(committed)["event_id"]]
        assert final_state(escalations(fresh_broker.bootstrap)) == expected  # nothing of the aborted one
        assert by(samples(port), "jpc_events_in_total", "kind") == {"case_report": 1}
    finally:
        code = stop(worker)
    assert code == 0, log.read_text()[-3000:]
