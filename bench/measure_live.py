"""The bus on a real broker: the limit Kafka allows, the live worker's throughput, its latency at a
steady load, and how long a restarted worker takes to resume.

Everything runs the real programs (`jpc topics create`, `jpc worker`) as a person would; the
benchmark only publishes, reads topics and asks the broker where the worker's group has got to.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from agents.worker import intake_entries
from bench.kafka import (
    Broker,
    Record,
    committed,
    create_topics,
    end_offsets,
    group_state,
    producer,
    publish,
    read_all,
)
from bench.loadgen import CST, LoadSpec, records
from bench.measure_core import JPC
from bench.system import cpu_seconds, load_average, memory_mb
from schemas.directory import Directory
from streams.topics import ESCALATIONS, INPUT_TOPICS, INTAKE, changelog_topic

LIMIT_IN, LIMIT_OUT = "bench.limit.in", "bench.limit.out"
TRIGGERS = {"fever_at_checkpoint", "high_risk_arrival", "imported_case", "late_report"}  # opened by one event


# ---- limit: a plain consume -> produce pass-through ----
async def measure_limit(bootstrap: str, load: Sequence[Record]) -> dict[str, Any]:
    await create_topics(bootstrap, [LIMIT_IN, LIMIT_OUT], partitions=4)
    publish_s = await publish(bootstrap, [(LIMIT_IN, key, value) for _, key, value in load])
    before = load_average()
    consumer = AIOKafkaConsumer(LIMIT_IN, bootstrap_servers=bootstrap, group_id="bench-limit",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=4 << 20, fetch_max_bytes=64 << 20)
    await consumer.start()
    out = producer(bootstrap)
    await out.start()
    try:
        while not consumer.assignment():  # noqa: ASYNC110 - aiokafka offers no event for "assigned"
            await asyncio.sleep(0.05)
        moved, pending, samples = 0, [], []
        start = last_commit = time.perf_counter()
        while moved < len(load):
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for recs in batch.values():
                for r in recs:
                    pending.append(await out.send(LIMIT_OUT, r.value, key=r.key))
                moved += len(recs)
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
            now = time.perf_counter()
            if now - last_commit >= 1.0:  # as Faust does: outputs acknowledged, then offsets, once a second
                await asyncio.gather(*pending)
                pending.clear()
                await consumer.commit()
                last_commit = now
            samples.append((round(now - start, 3), moved))
        await asyncio.gather(*pending)
        await consumer.commit()
        seconds = time.perf_counter() - start
    finally:
        await consumer.stop()
        await out.stop()
    return {"events": len(load), "seconds": round(seconds, 3), "events_per_s": round(len(load) / seconds),
            "publish_events_per_s": round(len(load) / publish_s), "samples": samples,
            "load_before": before, "load_after": load_average(),
            "how": "aiokafka consumer (group, getmany 5000) -> idempotent acks=all producer, 4 -> 4 partitions, "
                   "commit every second after the outputs are acknowledged"}


# ---- the worker as a child process ----
class Worker:
    def __init__(self, broker: Broker, directory: Path, app_id: str, clock: str, data_dir: Path,
                 profile: bool = False) -> None:
        self.broker, self.app_id = broker, app_id
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = data_dir / "worker.log"
        # --profile: cProfile (stdlib) around the worker; each run writes worker-<n>.prof when it stops cleanly.
        self._profile = data_dir if profile else None
        self._runs = 0
        self.cmd = [*JPC, "worker", "--brokers", broker.bootstrap, "--directory", str(directory), "--clock", clock,
                    "--app-id", app_id, "--data-dir", str(data_dir)]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def command(self) -> str:
        return "jpc " + " ".join(self.cmd[3:])

    def start(self) -> float:
        cmd = self.cmd
        self._runs += 1
        if self._profile is not None:
            cmd = [cmd[0], "-m", "cProfile", "-o", str(self._profile / f"worker-{self._runs}.prof"), *cmd[1:]]
        with self.log.open("ab") as log:
            started = time.time()
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={
                **self.broker.env, "JPC_LOG_FORMAT": "json", "JPC_LOG_LEVEL": "WARNING"})
        return started

    def memory(self) -> dict[str, float]:
        return memory_mb(self.proc.pid) if self.proc else {}

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)  # a graceful stop is not what is measured
            except subprocess.TimeoutExpired:
                self.kill()

    def cpu_seconds(self) -> float | None:
        return cpu_seconds(self.proc.pid) if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def provision(broker: Broker, directory: Path, app_id: str) -> None:
    done = subprocess.run([*JPC, "topics", "create", "--brokers", broker.bootstrap, "--directory", str(directory),
                           "--app-id", app_id], capture_output=True, text=True, env=broker.env)
    if done.returncode != 0:
        raise RuntimeError(f"jpc topics create failed: {done.stderr.strip()}")


async def wait_stable(bootstrap: str, worker: Worker, timeout_s: float = 90.0) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not worker.alive():
                raise RuntimeError(f"worker exited; see {worker.log}")
            if await group_state(admin, worker.app_id) == "Stable":
                return
            await asyncio.sleep(0.5)
        raise RuntimeError(f"worker group {worker.app_id} not stable after {timeout_s:.0f}s; see {worker.log}")
    finally:
        await admin.close()


# ---- live: publish the load into a running worker, until its last escalation is written ----
async def measure_live(broker: Broker, worker: Worker, load: Sequence[Record], timeout_s: float) -> dict[str, Any]:
    bootstrap = broker.bootstrap
    await wait_stable(bootstrap, worker)
    before = load_average()
    cpu_before = worker.cpu_seconds()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    intake_tp = TopicPartition(INTAKE, 0)
    input_tps = list(await end_offsets(bootstrap, INPUT_TOPICS))
    samples: list[tuple[float, int, int]] = []  # seconds since publish start, intake-stage and engine-stage events
    start = time.time()
    publisher = asyncio.create_task(publish(bootstrap, load))
    published_at: float | None = None
    finished = False
    peak = 0.0
    try:
        while time.time() - start < timeout_s:
            await asyncio.sleep(0.5)
            if publisher.done() and published_at is None:
                publisher.result()
                published_at = time.time()
            done_in = await committed(admin, worker.app_id, input_tps)
            done_engine = (await committed(admin, worker.app_id, [intake_tp]))[intake_tp]
            samples.append((round(time.time() - start, 2), sum(done_in.values()), done_engine))
            peak = max(peak, worker.memory().get("rss_mb", 0.0))
            if published_at is not None and sum(done_in.values()) >= len(load):
                ends = await end_offsets(bootstrap, [INTAKE])
                if done_engine >= ends.get(intake_tp, 0) and (len(samples) > 2 and samples[-3][2] == done_engine):
                    finished = True
                    break
            if not worker.alive():
                raise RuntimeError(f"worker exited during the live run; see {worker.log}")
    finally:
        if not publisher.done():
            publisher.cancel()
        await admin.close()
    cpu = worker.cpu_seconds()
    cpu_used = round(cpu - cpu_before, 2) if cpu is not None and cpu_before is not None else None
    written = await _escalation_times(bootstrap)
    last = max((t for t, _ in written), default=start * 1000) / 1000
    # The engine's commit counts intake records, and the intake packs many events into one: count events.
    events_before = await _events_before_offsets(bootstrap)
    samples = [(t, judged, events_before(offset)) for t, judged, offset in samples]
    processed = samples[-1][2] if samples else 0
    seconds = (last - start) if finished else (time.time() - start)
    events = len(load) if finished else processed
    return {
        "command": worker.command, "events": len(load), "finished": finished, "events_processed": processed,
        "seconds": round(seconds, 2), "events_per_s": round(events / seconds) if seconds > 0 else 0,
        "publish_seconds": round((published_at or time.time()) - start, 2), "revisions_written": len(written),
        # CPU the worker used (both stages) until the run ended: events per CPU second is the figure that other
        # processes on a shared machine move least.
        "worker_cpu_s": cpu_used, "events_per_cpu_s": round(processed / cpu_used) if cpu_used else None,
        "worker_rss_mb": worker.memory().get("rss_mb"), "worker_peak_rss_mb": worker.memory().get("peak_rss_mb"),
        "samples": samples, "load_before": before, "load_after": load_average(),
    }


async def _events_before_offsets(bootstrap: str) -> Callable[[int], int]:
    """How many events the intake records before an offset of `jpc.intake` carry (a batch record carries many)."""
    carried = {r.offset: len(intake_entries(orjson.loads(r.value)))
               for r in await read_all(bootstrap, INTAKE) if r.value is not None}
    before = [0]
    for offset in range(max(carried, default=-1) + 1):
        before.append(before[-1] + carried.get(offset, 0))
    return lambda offset: before[min(max(offset, 0), len(before) - 1)]


async def _escalation_times(bootstrap: str) -> list[tuple[int, bytes]]:
    return [(r.timestamp, r.value) for r in await read_all(bootstrap, ESCALATIONS) if r.value is not None]


# ---- recovery: kill the worker, restart it on its state, time until it processes an event again ----
async def measure_recovery(broker: Broker, worker: Worker, directory: Directory, last_event_at: datetime
                           ) -> dict[str, Any]:
    bootstrap = broker.bootstrap
    held = worker.memory()
    changelog = changelog_topic(worker.app_id, "engine")
    state_records = sum((await end_offsets(bootstrap, [changelog])).values())
    worker.kill()
    checkpoint = directory.checkpoints[0]
    probe_id = f"bench-probe-{int(time.time())}"
    probe = orjson.dumps({
        "event_id": probe_id, "kind": "checkpoint_alert", "schema_version": 1, "source_unit": checkpoint.unit,
        "occurred_at": (last_event_at + timedelta(seconds=1)).isoformat(), "checkpoint_id": checkpoint.id,
        "person_ref": "PROBE0000001", "reason": "fever", "temperature_c": 38.6, "direction": "inbound",
        "action": "referred"})
    ends = await end_offsets(bootstrap, [ESCALATIONS])
    started = worker.start()
    await publish(bootstrap, [("jpc.checkpoint-alerts", checkpoint.id.encode(), probe)])
    before = load_average()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    resumed: float | None = None
    try:
        consumer.assign(list(ends))
        for tp, end in ends.items():
            consumer.seek(tp, end)
        deadline = time.time() + 600
        while resumed is None and time.time() < deadline and worker.alive():
            for recs in (await consumer.getmany(timeout_ms=500)).values():
                # The first revision the restarted engine writes: the probe's, or, when the live run left a
                # backlog, the first of the backlog's (either way the engine has its state back and works).
                first = min((r.timestamp for r in recs if r.value), default=None)
                if first is not None:
                    resumed = first / 1000 if resumed is None else min(resumed, first / 1000)
    finally:
        await consumer.stop()
    return {
        "command": f"kill -9 the worker, then {worker.command}", "state_records_in_changelog": state_records,
        "worker_rss_mb_before_kill": held.get("rss_mb"), "seconds": round(resumed - started, 2) if resumed else None,
        "load_before": before, "load_after": load_average(),
        "how": "from spawning the restarted worker to the first revision it writes: a probe alert's, published "
               "right after the restart, or the first of the backlog the live run left (Faust start-up, changelog "
               "recovery, snapshot restore, the 2 s reorder hold of --clock event)",
    }


# ---- latency: publish -> escalation on the unit's topic at a steady offered load, wall clock ----
async def measure_latency(broker: Broker, worker: Worker, directory: Directory, rate: int, seconds: float,
                          seed: int) -> dict[str, Any]:
    bootstrap = broker.bootstrap
    await wait_stable(bootstrap, worker)
    # Stamped from now, sending once they are generated (the wall-clock worker times events by when it
    # receives them). Steady: the offered rate must not depend on the hour it runs (the hourly profile made a
    # run at night offer about 230 of 2,000 events/s). Sent evenly paced, in reporting order.
    start = datetime.now(CST).replace(microsecond=0)
    spec = LoadSpec(events=int(rate * seconds), per_minute=rate * 60, seed=seed + 1, start=start, steady=True)
    load = list(records(directory, spec))
    schedule = [i / rate for i in range(len(load))]
    event_ids = [orjson.loads(value)["event_id"] for _, _, value in load]
    sent: dict[str, float] = {}
    arrivals: list[tuple[float, float]] = []  # (sent since start, latency)
    t0 = time.time()
    # A short fetch wait: the client's default (500 ms) can hold a unit's partition back behind a fetch for
    # the quiet ones, and that is the reader's delay, not the bus's (streams/app.py: FETCH_MAX_WAIT_MS).
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=f"bench-latency-{os.getpid()}",
                              auto_offset_reset="earliest", enable_auto_commit=False, metadata_max_age_ms=2000,
                              fetch_max_wait_ms=10)
    reader.subscribe(pattern=r"^jpc\.escalations\..+")
    await reader.start()
    stop = asyncio.Event()

    async def read() -> None:
        while not stop.is_set():
            batch = await reader.getmany(timeout_ms=100)
            now = time.time()
            for recs in batch.values():
                for r in recs:
                    revision = orjson.loads(r.value)
                    if revision["revision"] != 1 or revision["rule"] not in TRIGGERS:
                        continue
                    at = sent.get(revision["evidence"][0]["event_id"])
                    if at is not None:
                        arrivals.append((at - t0, now - at))

    before = load_average()
    reading = asyncio.create_task(read())
    while not reader.assignment():  # noqa: ASYNC110 - aiokafka offers no event for "assigned"
        await asyncio.sleep(0.1)
    late = 0
    async with producer(bootstrap) as out:
        t0 = time.time()
        pending: list[asyncio.Future[Any]] = []
        i = 0
        while i < len(load):  # whatever is due goes now; then sleep (the loop's clock ticks in milliseconds)
            while i < len(load) and t0 + schedule[i] <= time.time():
                topic, key, value = load[i]
                pending.append(await out.send(topic, value, key=key))
                sent[event_ids[i]] = now = time.time()
                late += now - (t0 + schedule[i]) > 0.010
                i += 1
            if len(pending) >= 2000:
                pending = [f for f in pending if not f.done()]
            if i < len(load):
                await asyncio.sleep(max(0.002, t0 + schedule[i] - time.time()))
        await asyncio.gather(*pending)
        offered_s = time.time() - t0
    # The last escalations: a worker that falls behind the offered load delivers them late, which is the
    # point of the figure, so wait until they stop coming (bounded).
    deadline = time.time() + 120
    while time.time() < deadline:
        count = len(arrivals)
        await asyncio.sleep(3.0)
        if len(arrivals) == count:
            break
    stop.set()
    await reading
    await reader.stop()
    warm_up = min(2.0, seconds / 4)
    steady = sorted(lat for at, lat in arrivals if at >= warm_up)
    return {
        "command": worker.command, "offered_events_per_s": round(len(load) / offered_s), "target_events_per_s": rate,
        "events": len(load), "seconds": round(offered_s, 2), "sends_late_over_10ms": late,
        "samples": len(steady), "p50_ms": _pct(steady, 50), "p99_ms": _pct(steady, 99), "p999_ms": _pct(steady, 99.9),
        "max_ms": round(steady[-1] * 1000, 1) if steady else None,
        "latencies_ms": [round(x * 1000, 2) for x in steady], "series": [(round(a, 2), round(b * 1000, 1))
                                                                          for a, b in arrivals],
        "worker_peak_rss_mb": worker.memory().get("peak_rss_mb"), "load_before": before, "load_after": load_average(),
        "how": "wall-clock worker (the production mode: no reorder hold); a steady load (the same mix at every "
               "hour) sent evenly paced; latency = the revision's arrival on a unit topic (jpc.escalations.<unit>) "
               "minus the send time of the alert or report that opened it; the first 2 s (quick: 1 s) discarded",
    }


def _pct(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    index = min(len(values) - 1, math.ceil(pct / 100 * len(values)) - 1)
    return round(values[max(0, index)] * 1000, 1)
