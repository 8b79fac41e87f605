"""The store-and-forward spool: durable, idempotent input; exactly once on the bus whenever it is killed."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import Refusal, decode_event
from schemas.events import InputEvent
from streams.forwarder import ForwardingSession
from streams.spool import START, Admission, Spool, SpoolError, SpoolPosition
from tests.conftest import JPC, KAFKA_SH, ROOT, Broker, free_port
from tests.member_events import Offsets, count_ids, end_offsets, good_event, line


def validated(run: str, numbers: range | list[int]) -> list[tuple[InputEvent, bytes]]:
    out = []
    for i in numbers:
        raw = line(good_event(run, i))
        event = decode_event(raw)
        assert not isinstance(event, Refusal)
        out.append((event, raw))
    return out


def read_all(spool: Spool, start: SpoolPosition = START, max_events: int = 7) -> list[bytes]:
    out, position = [], start
    while batch := spool.read(position, max_events):
        out += [e.raw for e in batch]
        position = batch[-1].end
    return out


def event_ends(spool: Spool) -> list[SpoolPosition]:
    out, position = [], START
    while batch := spool.read(position, 1000):
        out += [e.end for e in batch]
        position = batch[-1].end
    return out


# ---- the spool on its own (no broker) -------------------------------------------------------------


@pytest.mark.core
def test_spooled_events_read_back_in_order_across_segments_and_reopening(tmp_path: Path) -> None:
    events = validated("sp", range(40))
    with Spool(tmp_path, segment_bytes=2000) as spool:
        assert spool.append(events[:25]) == [Admission.SPOOLED] * 25
        assert read_all(spool) == [raw for _, raw in events[:25]]
    assert len(list(tmp_path.glob("*.events"))) > 2  # it rolled segments
    with Spool(tmp_path, segment_bytes=2000) as spool:
        spool.append(events[25:])
        assert read_all(spool) == [raw for _, raw in events]
        middle = event_ends(spool)[9]  # just after the tenth event
        assert read_all(spool, middle) == [raw for _, raw in events[10:]]
        assert spool.waiting(middle) == 30
        assert spool.waiting(spool.end) == 0


@pytest.mark.core
def test_the_same_input_again_is_skipped_and_a_conflict_refused(tmp_path: Path) -> None:
    events = validated("dup", range(5))
    with Spool(tmp_path) as spool:
        spool.append(events[:3])
    with Spool(tmp_path) as spool:  # a publisher killed while spooling is run again on the same file
        reencoded = decode_event(events[1][1].replace(b'","', b'", "'))  # the same JSON, spelled differently
        assert not isinstance(reencoded, Refusal)
        changed_raw = events[2][1].replace(b'"p-2"', b'"p-other"')
        changed = decode_event(changed_raw)
        assert not isinstance(changed, Refusal)
        admissions = spool.append([events[0], (reencoded, events[1][1].replace(b'","', b'", "')),
                                   (changed, changed_raw), *events[3:], events[4]])
        assert admissions == [Admission.DUPLICATE, Admission.DUPLICATE, Admission.CONFLICT, Admission.SPOOLED,
                              Admission.SPOOLED, Admission.DUPLICATE]
        assert read_all(spool) == [raw for _, raw in events]


@pytest.mark.core
def test_a_torn_last_line_is_cut_off_and_can_be_spooled_again(tmp_path: Path) -> None:
    events = validated("torn", range(3))
    with Spool(tmp_path) as spool:
        spool.append(events[:2])
    [segment] = tmp_path.glob("*.events")
    with segment.open("ab") as f:
        f.write(events[2][1][:30])  # a crash in the middle of a write: no newline, never reported spooled
    with Spool(tmp_path) as spool:
        assert read_all(spool) == [raw for _, raw in events[:2]]
        assert spool.append(events[2:]) == [Admission.SPOOLED]
        assert read_all(spool) == [raw for _, raw in events]


@pytest.mark.core
def test_one_process_at_a_time(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool, pytest.raises(SpoolError, match=rf"in use by another process \(pid {os.getpid()}\)"):
        Spool(tmp_path)
    assert spool.spool_id == Spool(tmp_path).spool_id  # released on close, identity kept


@pytest.mark.core
def test_segments_sent_are_compacted_but_still_recognised(tmp_path: Path) -> None:
    events = validated("cmp", range(30))
    journal = [raw for _, raw in events]
    with Spool(tmp_path, segment_bytes=1500) as spool:
        spool.append(events)
        segments = sorted(tmp_path.glob("*.events"))
        assert len(segments) >= 4
        first_of_third = spool.read(SpoolPosition(int(segments[2].stem), 0), 1)[0]
        sent = journal.index(first_of_third.raw) + 1
        spool.mark_sent(first_of_third.end)  # everything up to the third segment's first event is on the bus
        assert sorted(tmp_path.glob("*.events")) == segments[2:]
        assert len(list(tmp_path.glob("*.keys"))) == 2
        assert spool.sent_hint() == first_of_third.end
        assert spool.waiting(first_of_third.end) == 30 - sent
        assert read_all(spool) == journal[sent - 1:]  # from the start: the first event kept
    with Spool(tmp_path, segment_bytes=1500) as spool:
        assert set(spool.append(events)) == {Admission.DUPLICATE}  # compacted ones are still known
        assert spool.waiting(spool.sent_hint()) == 30 - sent


@pytest.mark.core
def test_a_journal_without_identity_is_not_taken_over(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        spool.append(validated("id", range(1)))
    (tmp_path / "spool.json").unlink()
    with pytest.raises(SpoolError, match=r"no spool\.json"):
        Spool(tmp_path)


@pytest.mark.core
@settings(max_examples=40, deadline=None)
@given(batches=st.lists(st.integers(1, 9), min_size=1, max_size=8), segment_bytes=st.integers(200, 3000),
       step=st.integers(1, 12))
def test_any_batching_reads_back_the_same_journal(tmp_path_factory: pytest.TempPathFactory, batches: list[int],
                                                  segment_bytes: int, step: int) -> None:
    directory = tmp_path_factory.mktemp("spool")
    events = validated("prop", range(sum(batches)))
    with Spool(directory, segment_bytes=segment_bytes) as spool:
        taken = 0
        for size in batches:
            spool.append(events[taken:taken + size])
            taken += size
        assert read_all(spool, START, step) == [raw for _, raw in events]
        positions = [START, *event_ends(spool)]
        for done, position in enumerate(positions):  # from the end of the n-th event, the rest
            assert spool.waiting(position) == len(events) - done
            assert read_all(spool, position, step) == [raw for _, raw in events[done:]]


# ---- forwarding on a real broker ------------------------------------------------------------------


@pytest.fixture(scope="module")
def provisioned(broker: Broker) -> Broker:
    done = subprocess.run([JPC, "topics", "create", "--brokers", broker.bootstrap], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return broker


@pytest.mark.broker
@pytest.mark.timeout(120)
async def test_a_session_that_dies_mid_transaction_is_aborted_and_resent_once(provisioned: Broker,
                                                                              tmp_path: Path) -> None:
    run = f"txn-{uuid.uuid4().hex[:8]}"
    starts = await end_offsets(provisioned.bootstrap)
    spool = Spool(tmp_path)
    try:
        spool.append(validated(run, range(20)))
        doomed = ForwardingSession(spool, [provisioned.bootstrap])
        await doomed.open()
        await doomed._producer.begin_transaction()  # half a batch sent, never committed: a crash mid-batch
        for spooled in spool.read(START, 10):
            event = decode_event(spooled.raw)
            assert not isinstance(event, Refusal)
            await (await doomed._producer.send("jpc.checkpoint-alerts" if event.kind.startswith("checkpoint")
                                               else "jpc.case-reports", value=spooled.raw))
        survivor = ForwardingSession(spool, [provisioned.bootstrap])
        await survivor.open()  # fences the first producer and aborts its transaction
        assert survivor.position == START
        assert await survivor.send_available() == 20
        await survivor.close()
        await doomed.close()
    finally:
        spool.close()
    committed = await count_ids(provisioned.bootstrap, starts, run)
    everything = await count_ids(provisioned.bootstrap, starts, run, committed=False)
    assert committed == {f"{run}-{i}": 1 for i in range(20)}
    assert sum(everything.values()) > 20  # the aborted copies are there, for read_uncommitted readers only


def _publisher(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=out, stdin=subprocess.DEVNULL)


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen[bytes], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        if condition():
            return True
        time.sleep(0.005)
    return False


def _spooled_bytes(spool: Path) -> int:
    return sum(p.stat().st_size for p in spool.glob("*.events"))


def _sent_offset(spool: Path) -> int:
    try:
        return int(json.loads((spool / "sent.json").read_bytes())["offset"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.broker
@pytest.mark.timeout(240)
def test_publisher_killed_while_spooling_and_forwarding_delivers_each_event_once(provisioned: Broker,
                                                                                 tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"\nseed {seed}")
    run = f"kill-{uuid.uuid4().hex[:8]}"
    count = 10_000
    path = tmp_path / "events.jsonl"
    data = b"\n".join(line(good_event(run, i)) for i in range(count)) + b"\n"
    path.write_bytes(data)
    spool = tmp_path / "spool"
    args = [JPC, "publish", "--brokers", provisioned.bootstrap, "--spool", str(spool), str(path)]
    starts = asyncio.run(end_offsets(provisioned.bootstrap))
    log = tmp_path / "publisher.log"

    # Kill 1 while the file is being spooled, kill 2 while the spool is being forwarded, kill 3 at a random
    # moment once the restarted publisher is sending again (most of its time is inside transactions).
    landed: list[tuple[bool, int, int]] = []
    for n in range(3):
        publisher = _publisher(args, log)
        if n == 0:
            hit = _wait_for(lambda: _spooled_bytes(spool) > rng.uniform(0.1, 0.6) * len(data), publisher, 60)
        elif n == 1:
            hit = _wait_for(lambda: _sent_offset(spool) > rng.uniform(0.05, 0.35) * len(data), publisher, 60)
            time.sleep(rng.uniform(0.0, 0.1))
            hit = hit and publisher.poll() is None
        else:
            before = landed[-1][2]
            hit = _wait_for(lambda: _sent_offset(spool) > before, publisher, 60)  # noqa: B023 - used at once
            time.sleep(rng.uniform(0.0, 0.15))
            hit = hit and publisher.poll() is None
        publisher.send_signal(signal.SIGKILL)
        publisher.wait(timeout=10)
        landed.append((hit, _spooled_bytes(spool), _sent_offset(spool)))
    assert all(hit for hit, _, _ in landed), landed
    assert landed[0][1] < len(data), landed  # killed with the file partly spooled
    assert 0 < landed[1][2] < len(data), landed  # ...with the spool partly sent
    assert landed[1][2] < landed[2][2] < len(data), landed  # ...and again after sending resumed

    for _ in range(5):  # restarted until drained
        restarted = subprocess.run(args, capture_output=True, text=True, timeout=120)
        if restarted.returncode == 0:
            break
    assert restarted.returncode == 0, restarted.stderr + log.read_text()
    assert restarted.stderr.endswith(f", 0 waiting in {spool}\n")

    counts = asyncio.run(count_ids(provisioned.bootstrap, starts, run))
    assert len(counts) == count  # every event delivered...
    assert set(counts.values()) == {1}  # ...exactly once
    aborted = sum(asyncio.run(count_ids(provisioned.bootstrap, starts, run, committed=False)).values()) - count
    print(f"kills landed at (spooled bytes, sent offset) {[(b, s) for _, b, s in landed]} of {len(data)}; "
          f"aborted copies visible to read_uncommitted: {aborted}")


@pytest.mark.broker
@pytest.mark.timeout(120)
def test_spool_only_then_drain_and_a_broker_out_of_reach(provisioned: Broker, tmp_path: Path) -> None:
    run = f"drain-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(line(good_event(run, i)) for i in range(50)) + b"\n{broken\n")
    spool = tmp_path / "spool"
    starts = asyncio.run(end_offsets(provisioned.bootstrap))

    offline = subprocess.run([JPC, "publish", "--spool", str(spool), "--spool-only", "--json", str(path)],
                             capture_output=True, text=True, timeout=60)
    assert offline.returncode == 1  # the broken line
    summary = json.loads(offline.stdout)
    assert (summary["accepted"], summary["waiting"], summary["sent"]) == (50, 50, None)
    assert [r["line"] for r in summary["refused"]] == [51]

    unreachable = subprocess.run([JPC, "publish", "--brokers", "127.0.0.1:1", "--spool", str(spool), "--drain",
                                  "--give-up-after", "1"], capture_output=True, text=True, timeout=60)
    assert unreachable.returncode == 2
    assert unreachable.stderr.splitlines()[-1] == (
        f"jpc: gave up after 1 s: Kafka at 127.0.0.1:1: not reachable; 50 events stay spooled in {spool}")

    drained = subprocess.run([JPC, "publish", "--brokers", provisioned.bootstrap, "--spool", str(spool), "--drain"],
                             capture_output=True, text=True, timeout=60)
    assert drained.returncode == 0, drained.stderr
    assert drained.stderr == f"jpc publish: published 50 to {provisioned.bootstrap}, 0 waiting in {spool}\n"
    again = subprocess.run([JPC, "publish", "--brokers", provisioned.bootstrap, "--spool", str(spool), str(path)],
                           capture_output=True, text=True, timeout=60)
    assert "spooled 0 (50 already spooled), refused 1 (51 lines); published 0" in again.stderr
    counts = asyncio.run(count_ids(provisioned.bootstrap, starts, run))
    assert counts == {f"{run}-{i}": 1 for i in range(50)}


@pytest.mark.broker
@pytest.mark.timeout(240)
def test_publisher_waits_for_a_broker_that_comes_up_later(tmp_path: Path) -> None:
    """The link is down when the publisher starts; it keeps trying, and sends once the bus is there."""
    port, cport = free_port(), free_port()
    env = {**os.environ, "JPC_KAFKA_PORT": str(port), "JPC_KAFKA_CONTROLLER_PORT": str(cport),
           "JPC_KAFKA_DATA": str(ROOT / ".cache" / "test-kafka" / "spool-late-broker")}
    bootstrap = f"127.0.0.1:{port}"
    run = f"late-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(line(good_event(run, i)) for i in range(30)) + b"\n")
    log = tmp_path / "publisher.log"
    publisher = _publisher([JPC, "publish", "--brokers", bootstrap, "--spool", str(tmp_path / "spool"), str(path)],
                           log)
    subprocess.run(["bash", str(KAFKA_SH), "reset"], env=env, capture_output=True)
    try:
        assert _wait_for(lambda: b"not reachable" in log.read_bytes(), publisher, 30), log.read_text()
        started = subprocess.run(["bash", str(KAFKA_SH), "start"], env=env, capture_output=True, text=True)
        assert started.returncode == 0, started.stdout[-2000:]
        created = subprocess.run([JPC, "topics", "create", "--brokers", bootstrap], capture_output=True, text=True)
        assert created.returncode == 0, created.stderr
        assert publisher.wait(timeout=120) == 0, log.read_text()
        counts = asyncio.run(count_ids(bootstrap, asyncio.run(_beginnings(bootstrap)), run))
        assert counts == {f"{run}-{i}": 1 for i in range(30)}
        assert log.read_text().count("not reachable") == 1  # said once, not at every retry
    finally:
        if publisher.poll() is None:
            publisher.kill()
        subprocess.run(["bash", str(KAFKA_SH), "stop"], env=env, capture_output=True)


async def _beginnings(bootstrap: str) -> Offsets:
    return dict.fromkeys(await end_offsets(bootstrap), 0)
