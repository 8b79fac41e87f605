"""The harness of the fault tests (issue 6): brokers, workers, publishers and readers, and replay to compare.

No tests here: the test_faults*.py modules import it. Each test streams a deterministic event file
(tests/faultgen.py) into a real broker while it injects its fault, waits until the worker has drained
every input (the group's committed offsets reach the end of every input partition and of `jpc.intake`),
then checks what a reader sees against `jpc replay` of the same file: the latest revision of every
escalation, and every (escalation_id, revision) with its body. Readers dedupe by (escalation_id,
revision); the tests count the copies they drop and require that no two copies of a revision differ.

Short by default (CI); JPC_FAULTS_LONG=1 runs the long version (20,000 events, 5 kills, 10,000 hostile
records). JPC_FAULTS_SEED picks the streams and the moments of the faults. Each test prints one
`[fault]` line with what it injected and what it counted (shown with pytest -s).

The tests share one broker of their own (`fault_broker`; JPC_FAULTS_BROKERS reuses a running one): each
provisions the catalogue, starts its worker under an app id of its own and commits that group's offsets
at the current end of the input and intake topics first, so it sees only its own records; its readers
start at the same marks.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from agents.worker import EXIT_OUTPUT_REFUSED, intake_entries
from schemas.directory import load_directory
from streams.topics import DEAD_LETTER, ESCALATIONS, INPUT_TOPICS, INTAKE, catalogue
from tests import faultgen
from tests.conftest import JPC, KAFKA_SH, Broker, start_broker

LONG = os.environ.get("JPC_FAULTS_LONG", "") not in ("", "0")
SEED = int(os.environ.get("JPC_FAULTS_SEED", "2020"))
Record = tuple[str, bytes | None, bytes]  # topic, key, value


def scaled(short: int, long: int) -> int:
    return long if LONG else short


def report(title: str, **figures: Any) -> None:
    """One line per test with what was injected and counted (the figures of the issue's note)."""
    print(f"\n[fault] {title}: " + ", ".join(f"{k}={v}" for k, v in figures.items()), file=sys.stderr)


# ---------------------------------------------------------------------------------------------------
# The broker the fault tests share: started once however many test_faults* modules ask for it.

_SHARED: dict[str, Broker] = {}


@pytest.fixture(scope="session")
def fault_broker() -> Iterator[Broker]:
    given = os.environ.get("JPC_FAULTS_BROKERS")  # a running single node (with its JPC_KAFKA_* env) to reuse
    if given:
        yield Broker(given, dict(os.environ))
        return
    if "broker" not in _SHARED:
        _SHARED["broker"] = start_broker("faults")
    yield _SHARED["broker"]
    shared = _SHARED.pop("broker", None)
    if shared is not None:
        shared.stop()


def broker_pid(broker: Broker, node: str = "node1") -> int:
    return int((Path(broker.env["JPC_KAFKA_DATA"]) / node / "kafka.pid").read_text().strip())


def kafka_sh(broker: Broker, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(KAFKA_SH), *args], env=broker.env, capture_output=True, text=True,
                          timeout=timeout)


# ---------------------------------------------------------------------------------------------------
# Kafka plumbing: offsets, reading from a mark, committing a fresh group's start.

DIRECTORY = load_directory(None)
UNITS = [u.id for u in DIRECTORY.units]


def topic_names(app_id: str) -> list[str]:
    return [spec.name for spec in catalogue(UNITS, app_id=app_id)]


async def _end_offsets(bootstrap: str, topics: Sequence[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        # Topics just created on a cluster just started can take a moment to show in every node's metadata.
        deadline = time.monotonic() + 60
        while True:
            await consumer._client.force_metadata_update()
            known = {t: consumer.partitions_for_topic(t) for t in topics}
            if all(known.values()) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        tps = [TopicPartition(t, p) for t, parts in known.items() for p in sorted(parts or [])]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


def end_offsets(bootstrap: str, topics: Sequence[str]) -> dict[TopicPartition, int]:
    return asyncio.run(_end_offsets(bootstrap, topics))


async def _read_from(bootstrap: str, marks: dict[TopicPartition, int]) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                max_partition_fetch_bytes=16 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    try:
        consumer.assign(list(marks))
        for tp, offset in marks.items():
            consumer.seek(tp, offset)
        ends = await consumer.end_offsets(list(marks))
        out: list[Any] = []
        pending = {tp for tp in marks if ends[tp] > marks[tp]}
        deadline = time.monotonic() + 180
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {sorted(pending)} did not reach the end within 180 s")
            for records in (await consumer.getmany(*pending, timeout_ms=500)).values():
                out += records
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
        return out
    finally:
        await consumer.stop()


def read_from(bootstrap: str, marks: dict[TopicPartition, int]) -> list[Any]:
    """Every record from each partition's mark to its end now (aiokafka ConsumerRecords)."""
    return asyncio.run(_read_from(bootstrap, marks))


async def _commit(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
    finally:
        await consumer.stop()


async def _committed(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {tp: meta.offset for tp, meta in (await admin.list_consumer_group_offsets(group)).items()}
    finally:
        await admin.close()


# ---------------------------------------------------------------------------------------------------
# A bus under test: its topics, its marks, its worker(s).

@dataclass
class Bus:
    broker: Broker
    app_id: str
    work: Path
    marks: dict[TopicPartition, int]  # where each topic ended when the test began
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def open(cls, broker: Broker, work: Path, name: str, replication: int = 1) -> Bus:
        # An app id of its own: its state changelog must not hold another run's engine.
        app_id = f"{name}-{os.getpid()}-{time.monotonic_ns() % 10**9}"
        created = subprocess.run([JPC, "topics", "create", "--brokers", broker.bootstrap, "--app-id", app_id,
                                  "--replication", str(replication)], capture_output=True, text=True, timeout=120)
        assert created.returncode == 0, created.stderr
        marks = end_offsets(broker.bootstrap, topic_names(app_id))
        # A fresh group would start at the earliest offset and see earlier tests' records: start it here.
        start = {tp: o for tp, o in marks.items() if tp.topic in (*INPUT_TOPICS, INTAKE)}
        asyncio.run(_commit(broker.bootstrap, app_id, start))
        env = {**broker.env, "JPC_REPLICATION_FACTOR": str(replication), "JPC_LOG_FORMAT": "json"}
        return cls(broker, app_id, work, marks, env)

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def since_mark(self, *topics: str) -> list[Any]:
        return read_from(self.bootstrap, {tp: o for tp, o in self.marks.items() if tp.topic in topics})

    def worker(self, extra: Sequence[str] = (), python_wrapper: Path | None = None) -> Worker:
        return Worker(self, list(extra), python_wrapper)

    def drained(self) -> bool:
        """Every input and intake record has been processed and committed by the worker's group."""
        ends = end_offsets(self.bootstrap, [*INPUT_TOPICS, INTAKE])
        committed = asyncio.run(_committed(self.bootstrap, self.app_id))
        return all(committed.get(tp, -1) >= end for tp, end in ends.items())

    def wait_drained(self, timeout_s: float, workers: Sequence[Worker | Supervised] = ()) -> float:
        started = time.monotonic()
        deadline = started + timeout_s
        while time.monotonic() < deadline:
            for w in workers:
                w.assert_alive()
            try:
                if self.drained():
                    return time.monotonic() - started
            except Exception as exc:  # a broker on its way back: ask again
                print(f"drain check failed: {exc!r}", file=sys.stderr)
            time.sleep(1.0)
        pytest.fail(f"worker did not drain its inputs within {timeout_s}s (a stall)\n{self.stall_report(workers)}")

    def stall_report(self, workers: Sequence[Worker | Supervised]) -> str:
        """Where each partition stands, and what each worker is doing (its SIGUSR1 diagnostics record)."""
        try:
            ends = end_offsets(self.bootstrap, [*INPUT_TOPICS, INTAKE])
            committed = asyncio.run(_committed(self.bootstrap, self.app_id))
            offsets = "; ".join(f"{tp.topic}:{tp.partition} end={end} committed={committed.get(tp)}"
                                for tp, end in sorted(ends.items()))
        except Exception as exc:
            offsets = f"offsets not read: {exc!r}"
        for w in workers:
            w.diagnose()
        time.sleep(2.0)  # the dump is written by the worker's event loop
        return offsets + "\n" + "".join(w.log_tail(12000) for w in workers)


class Worker:
    """`jpc worker --clock event` as a subprocess we can kill -9, pause and resume."""

    def __init__(self, bus: Bus, extra: list[str], python_wrapper: Path | None) -> None:
        self.bus = bus
        self.log_path = bus.work / f"worker-{bus.app_id}.log"
        command = [JPC] if python_wrapper is None else [sys.executable, str(python_wrapper)]
        command += ["worker", "--brokers", bus.bootstrap, "--clock", "event", "--app-id", bus.app_id,
                    "--data-dir", str(bus.work / "data"), *extra]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=bus.env)
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def assert_alive(self) -> None:
        code = self.process.poll()
        assert code is None, f"worker exited {code}\n{self.log_tail()}"

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it does not finish in time; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused worker cannot act on SIGTERM
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
                return -9
        return self.process.returncode

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def diagnose(self) -> None:
        if self.process.poll() is None and time.monotonic() - self.started > 10:  # its handler is installed
            self.process.send_signal(signal.SIGUSR1)


class Supervised:
    """A worker started again whenever it stops because the broker did not take its outputs (exit 75), as
    systemd's Restart=on-failure or a Kubernetes pod would; any other exit fails the test."""

    def __init__(self, bus: Bus, extra: Sequence[str] = ()) -> None:
        self.bus, self.extra = bus, extra
        self.worker = bus.worker(extra)
        self.restarts = 0

    def assert_alive(self) -> None:
        code = self.worker.process.poll()
        if code == EXIT_OUTPUT_REFUSED:
            self.restarts += 1
            self.worker = self.bus.worker(self.extra)
        else:
            self.worker.assert_alive()

    def log_tail(self, chars: int = 4000) -> str:
        return self.worker.log_tail(chars)

    def diagnose(self) -> None:
        self.worker.diagnose()

    def stop(self) -> int:
        return self.worker.stop()


# ---------------------------------------------------------------------------------------------------
# Publishing while faults happen: a producer thread that keeps every record it was told is acknowledged.

class Publisher(threading.Thread):
    """Publishes records in order at about `rate` per second; a record that fails (broker gone) is sent
    again until the broker acknowledges it, so a retry may duplicate an ambiguous write (readers of the
    input dedupe by event id) but never skips one. `acked` counts records acknowledged so far."""

    def __init__(self, bootstrap: str, records: Sequence[Record], rate: float, chunk: int = 50,
                 deadline_s: float = 600) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.records, self.rate, self.chunk = bootstrap, records, rate, chunk
        self.deadline = time.monotonic() + deadline_s
        self.acked = 0
        self.retries = 0
        self.refused: list[tuple[int, str]] = []  # (index, error) of records the broker will never take
        self.error: BaseException | None = None
        self.positions: dict[int, tuple[int, int]] = {}  # index -> (partition, offset)
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Stop publishing (a test that failed half-way must not feed the next test's topics)."""
        self._stopping.set()
        if self.is_alive():
            self.join(30)

    def run(self) -> None:
        try:
            asyncio.run(self._publish())
        except BaseException as exc:  # reported by join_checked
            self.error = exc

    async def _producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True,
                                    request_timeout_ms=10_000, linger_ms=5, max_request_size=16 * 1024 * 1024)
        await producer.start()
        return producer

    async def _publish(self) -> None:
        from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError

        producer = await self._producer()
        started = time.monotonic()
        try:
            i = 0
            while i < len(self.records) and not self._stopping.is_set():
                chunk = range(i, min(i + self.chunk, len(self.records)))
                pending = list(chunk)
                while pending and not self._stopping.is_set():
                    if time.monotonic() > self.deadline:
                        raise TimeoutError(f"publisher stuck at record {pending[0]}")
                    futures = [await producer.send(*self._record(j)) for j in pending]
                    results = await asyncio.gather(*futures, return_exceptions=True)
                    failed = []
                    for j, result in zip(pending, results, strict=True):
                        if isinstance(result, (MessageSizeTooLargeError, RecordTooLargeError)):
                            self.refused.append((j, type(result).__name__))
                        elif isinstance(result, BaseException):
                            failed.append(j)
                        else:
                            self.positions[j] = (result.partition, result.offset)
                    self.acked += len(pending) - len(failed)
                    if failed:  # the broker went away: a new producer, the failed records again, in order
                        self.retries += len(failed)
                        await asyncio.sleep(1.0)
                        await producer.stop()
                        producer = await self._connect_again()
                    pending = failed
                i = chunk.stop
                ahead = started + i / self.rate - time.monotonic()
                if ahead > 0:
                    await asyncio.to_thread(self._stopping.wait, ahead)
        finally:
            await producer.stop()

    async def _connect_again(self) -> AIOKafkaProducer:
        while True:
            try:
                return await self._producer()
            except Exception:
                if time.monotonic() > self.deadline:
                    raise
                await asyncio.sleep(1.0)

    def _record(self, j: int) -> tuple[str, bytes, bytes | None]:
        topic, key, value = self.records[j]
        return topic, value, key

    def join_checked(self, timeout_s: float) -> None:
        self.join(timeout_s)
        assert not self.is_alive(), f"publisher still running after {timeout_s}s ({self.acked} acknowledged)"
        if self.error is not None:
            raise self.error


def records_of(events: Sequence[faultgen.Event]) -> list[Record]:
    return [(faultgen.topic_of(e), faultgen.key_of(e), orjson.dumps(e)) for e in events]


def write_lines(path: Path, events: Sequence[faultgen.Event]) -> Path:
    path.write_bytes(b"".join(value + b"\n" for _, _, value in records_of(events)))
    return path


# ---------------------------------------------------------------------------------------------------
# What a reader sees, and what replay says it should see.

def normalized(body: dict[str, Any]) -> bytes:
    """A revision without where its evidence was read (Kafka positions live, nothing in replay)."""
    evidence = [{k: v for k, v in e.items() if k not in ("topic", "partition", "offset", "line")}
                for e in body["evidence"]]
    return json.dumps({**body, "evidence": evidence}, sort_keys=True, ensure_ascii=False).encode()


@dataclass
class Seen:
    """Revisions as a reader that dedupes by (escalation_id, revision) keeps them."""

    copies: int = 0
    revisions: dict[tuple[str, int], bytes] = field(default_factory=dict)
    conflicts: list[tuple[str, int]] = field(default_factory=list)  # same key, different bytes
    dead_letters: list[dict[str, Any]] = field(default_factory=list)  # replay's, when this is replay's output

    @classmethod
    def of(cls, values: Sequence[bytes]) -> Seen:
        seen = cls()
        for value in values:
            seen.copies += 1
            body = json.loads(value)
            key = (body["escalation_id"], body["revision"])
            first = seen.revisions.setdefault(key, value)
            if first != value:
                seen.conflicts.append(key)
        return seen

    @property
    def duplicates(self) -> int:
        return self.copies - len(self.revisions)

    def normalized(self) -> dict[tuple[str, int], bytes]:
        return {k: normalized(json.loads(v)) for k, v in self.revisions.items()}

    def final(self) -> dict[str, bytes]:
        latest: dict[str, tuple[int, bytes]] = {}
        for (eid, rev), body in self.normalized().items():
            if eid not in latest or latest[eid][0] < rev:
                latest[eid] = (rev, body)
        return {eid: body for eid, (_, body) in latest.items()}


def replay_of(path: Path) -> Seen:
    dead = path.with_suffix(".dead.jsonl")
    done = subprocess.run([JPC, "replay", "-q", str(path), "--dead-letter", str(dead)], capture_output=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = Seen.of(done.stdout.splitlines())
    seen.dead_letters = [json.loads(line) for line in dead.read_bytes().splitlines()]
    return seen


def escalations_seen(bus: Bus) -> Seen:
    return Seen.of([r.value for r in bus.since_mark(ESCALATIONS)])


def dead_letters(bus: Bus) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in bus.since_mark(DEAD_LETTER)]


def intake_event_keys(bus: Bus) -> Counter[tuple[str, str]]:
    """(source_unit, event_id) of every event the intake passed to the engine, with its copies."""
    keys: Counter[tuple[str, str]] = Counter()
    for r in bus.since_mark(INTAKE):
        for entry in intake_entries(json.loads(r.value)):
            if "event" in entry:  # not a clock tick or a reading report
                event = json.loads(entry["event"])
                keys[(event["source_unit"], event["event_id"])] += 1
    return keys


def watched_revisions(bus: Bus) -> Counter[tuple[str, int]]:
    """How often `jpc watch --json` shows each (escalation_id, revision) of everything on the topic."""
    done = subprocess.run([JPC, "watch", "--brokers", bus.bootstrap, "--json", "--from-beginning", "--exit-at-end"],
                          capture_output=True, timeout=180, env=bus.env)
    assert done.returncode == 0, done.stderr[-2000:]
    return Counter((r["escalation_id"], r["revision"]) for r in map(json.loads, done.stdout.splitlines()))


def assert_matches_replay(live: Seen, expected: Seen) -> None:
    assert not live.conflicts, f"{len(live.conflicts)} revisions seen with different bodies: {live.conflicts[:5]}"
    assert live.final() == expected.final(), _difference(live.final(), expected.final())
    assert live.normalized() == expected.normalized(), _difference(live.normalized(), expected.normalized())


def _difference(live: dict[Any, bytes], expected: dict[Any, bytes]) -> str:
    missing = sorted(set(expected) - set(live), key=str)
    extra = sorted(set(live) - set(expected), key=str)
    changed = sorted((k for k in set(live) & set(expected) if live[k] != expected[k]), key=str)
    first = changed[0] if changed else None
    detail = f"\n live:     {live[first]!r}\n expected: {expected[first]!r}" if first is not None else ""
    detail += "".join(f"\n extra:    {live[k]!r}" for k in extra[:2])
    detail += "".join(f"\n missing:  {expected[k]!r}" for k in missing[:2])
    return (f"live differs from replay: {len(missing)} missing {missing[:3]}, {len(extra)} extra {extra[:3]}, "
            f"{len(changed)} changed{detail}")


def stream(n: int, seed: int = SEED) -> list[faultgen.Event]:
    return faultgen.valid_events(n, seed)
