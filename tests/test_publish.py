"""`jpc publish` against a real broker: every valid line on its topic once, every refused line reported."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import JPC, Broker
from tests.member_events import count_ids, end_offsets, good_event, line, mixed_file

pytestmark = [pytest.mark.broker, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def provisioned(broker: Broker) -> Broker:
    done = subprocess.run([JPC, "topics", "create", "--brokers", broker.bootstrap], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return broker


def test_ten_thousand_lines_with_a_hundred_bad_ones(provisioned: Broker, tmp_path: Path) -> None:
    run = f"pub-{uuid.uuid4().hex[:8]}"
    data, bad, good = mixed_file(run, 10_000, 100, seed=4)
    path = tmp_path / "events.jsonl"
    path.write_bytes(data)
    starts = asyncio.run(end_offsets(provisioned.bootstrap))
    began = time.monotonic()
    done = subprocess.run([JPC, "publish", "--brokers", provisioned.bootstrap, str(path)],
                          capture_output=True, text=True, timeout=180)
    elapsed = time.monotonic() - began
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stdout == ""
    refused = [ln for ln in done.stderr.splitlines() if ln.startswith("line ")]
    reported = {int(ln.split(":")[0].removeprefix("line ")): ln.split(": ", 1)[1] for ln in refused}
    assert len(refused) == 100
    assert set(reported) == set(bad)
    for number, field in bad.items():  # each reason starts with the field it names
        assert reported[number].startswith(f"{field}:"), (number, reported[number])
    assert "13912345678" not in done.stderr  # a refused phone number is not echoed back
    assert done.stderr.splitlines()[-1] == (f"jpc publish: published 9900, refused 100 (10000 lines) "
                                            f"to {provisioned.bootstrap}")
    counts = asyncio.run(count_ids(provisioned.bootstrap, starts, run))
    assert set(counts) == good  # no refused line got through, no valid one was left out
    assert sum(counts.values()) == 9900  # and none twice
    print(f"\n10,000 lines (100 refused) published in {elapsed:.1f} s")


def test_json_summary_lists_each_refused_line(provisioned: Broker, tmp_path: Path) -> None:
    run = f"pubj-{uuid.uuid4().hex[:8]}"
    data, bad, _ = mixed_file(run, 40, 4, seed=7)
    path = tmp_path / "events.jsonl"
    path.write_bytes(data)
    done = subprocess.run([JPC, "publish", "--json", "--brokers", provisioned.bootstrap, str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr == ""  # everything is in the JSON
    summary = json.loads(done.stdout)
    assert summary["accepted"] == 36
    assert summary["lines"] == 40
    assert [r["line"] for r in summary["refused"]] == sorted(bad)
    assert [r["field"] for r in summary["refused"]] == [bad[n] for n in sorted(bad)]
    assert all(r["reason"].startswith(f"{r['field']}:") for r in summary["refused"])


def test_publish_from_stdin_skips_blank_lines(provisioned: Broker) -> None:
    run = f"pubs-{uuid.uuid4().hex[:8]}"
    events = [good_event(run, i) for i in range(1, 6)]
    data = b"\n".join([line(events[0]), b"", line(events[1]), b"  ", *map(line, events[2:]), b'{"kind":1}'])
    starts = asyncio.run(end_offsets(provisioned.bootstrap))
    done = subprocess.run([JPC, "publish", "--brokers", provisioned.bootstrap, "-"], input=data,
                          capture_output=True, timeout=60)
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr
    assert stderr.splitlines()[0].startswith("line 8: kind:")  # numbers count the blank lines; no newline at EOF
    assert "published 5, refused 1 (6 lines)" in stderr
    counts = asyncio.run(count_ids(provisioned.bootstrap, starts, run))
    assert counts == {e["event_id"]: 1 for e in events}


def test_clean_file_exits_zero(provisioned: Broker, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    run = f"pubc-{uuid.uuid4().hex[:8]}"
    path.write_bytes(b"\r\n".join(line(good_event(run, i)) for i in range(3)) + b"\r\n")  # CRLF too
    done = subprocess.run([JPC, "publish", "--brokers", provisioned.bootstrap, str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == f"jpc publish: published 3, refused 0 (3 lines) to {provisioned.bootstrap}\n"


def test_unreachable_broker_is_one_line_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(line(good_event("unreach", 1)) + b"\n")
    done = subprocess.run([JPC, "publish", "--brokers", "127.0.0.1:1", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("jpc: cannot reach Kafka at 127.0.0.1:1")
    assert done.stderr.count("\n") == 1
    assert done.stdout == ""


def test_unreadable_file_is_one_line_exit_2(tmp_path: Path) -> None:
    done = subprocess.run([JPC, "publish", "--brokers", "127.0.0.1:1", str(tmp_path / "missing.jsonl")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == f"jpc: cannot read {tmp_path / 'missing.jsonl'}: No such file or directory\n"


def _run_on_a_terminal(args: list[str], timeout_s: float = 60.0) -> tuple[int, bytes]:
    """Run with stderr (and stdout) on a pseudo-terminal; returns the exit status and what it drew."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)
    os.close(follower)
    drawn = b""
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the terminal closed: the process is gone
                    break
                if not chunk:
                    break
                drawn += chunk
            elif process.poll() is not None:
                break
        return process.wait(timeout=10), drawn
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()


def test_progress_bar_on_a_terminal_only(provisioned: Broker, tmp_path: Path) -> None:
    run = f"pubp-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(line(good_event(run, i)) for i in range(20_000)) + b"\n")
    args = [JPC, "publish", "--brokers", provisioned.bootstrap, str(path)]
    code, drawn = _run_on_a_terminal(args)
    assert code == 0, drawn[-2000:]
    assert b"\r\x1b[K[" in drawn  # a bar, redrawn in place
    assert b"%" in drawn
    assert b" lines " in drawn
    assert drawn.rstrip().endswith(b"published 20000, refused 0 (20000 lines) to " + provisioned.bootstrap.encode())
    piped = subprocess.run(args, capture_output=True, timeout=120)
    assert piped.returncode == 0
    assert b"\r" not in piped.stderr  # into a pipe: the summary only
    assert piped.stderr.count(b"\n") == 1


@pytest.mark.parametrize("through_spool", [False, True], ids=["direct", "spool"])
def test_a_slow_pipe_is_published_as_it_comes(provisioned: Broker, tmp_path: Path, through_spool: bool) -> None:
    """`tail -f log | jpc publish -`: each line reaches the bus while the pipe is still open."""
    run = f"pubt-{uuid.uuid4().hex[:8]}"
    starts = asyncio.run(end_offsets(provisioned.bootstrap))
    spool = ["--spool", str(tmp_path / "spool")] if through_spool else []
    publisher = subprocess.Popen([JPC, "publish", "--brokers", provisioned.bootstrap, *spool, "-"],
                                 stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert publisher.stdin is not None
    try:
        for i in range(2):
            publisher.stdin.write(line(good_event(run, i)) + b"\n")
            publisher.stdin.flush()
            deadline = time.monotonic() + 30
            while asyncio.run(count_ids(provisioned.bootstrap, starts, run)).get(f"{run}-{i}") != 1:
                assert time.monotonic() < deadline, f"line {i + 1} not on the bus while the pipe is open"
                assert publisher.poll() is None
                time.sleep(0.2)
        publisher.stdin.close()
        assert publisher.wait(timeout=60) == 0
    finally:
        if publisher.poll() is None:
            publisher.kill()
    assert asyncio.run(count_ids(provisioned.bootstrap, starts, run)) == {f"{run}-0": 1, f"{run}-1": 1}
