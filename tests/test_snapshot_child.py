"""The engine's snapshot taken by a forked child (agents/snapshot_child.py): the state as it was when the
child was made, whatever the engine does meanwhile; a child that fails is reported, not waited for forever."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest

from agents import snapshot_child
from agents.core.engine import Engine
from agents.replay import replay_lines
from agents.snapshot_child import SnapshotFailed
from schemas.directory import load_directory

pytestmark = [pytest.mark.core, pytest.mark.skipif(not snapshot_child.AVAILABLE, reason="no fork() here")]

SCENARIO = Path(__file__).resolve().parent.parent / "agents" / "scenarios" / "guangyuan-2020-01-24.jsonl"


def engine_after(lines: list[bytes]) -> Engine:
    engine = Engine(load_directory(None), "event")
    for _ in replay_lines(engine, lines):
        pass
    return engine


def test_the_child_hands_back_the_state_as_it_was_at_the_fork() -> None:
    lines = [ln for ln in SCENARIO.read_bytes().splitlines() if ln.strip()]
    half = len(lines) // 2
    engine = engine_after(lines[:half])
    at_fork = engine.snapshot()
    child = snapshot_child.start(engine.snapshot)
    went_on = list(replay_lines(engine, lines[half:]))  # the engine goes on while the child pickles
    assert engine.snapshot() != at_fork  # (else the test proves nothing)
    taken = zlib.decompress(child.collect())
    assert taken == at_fork
    restored = Engine.restore(engine.directory, taken)
    assert list(replay_lines(restored, lines[half:])) == went_on
    assert len(went_on) > 5


def test_a_child_that_fails_is_reported_and_reaped() -> None:
    def failing() -> bytes:
        raise RuntimeError("no memory left for the pickle")

    child = snapshot_child.start(failing)
    with pytest.raises(SnapshotFailed, match="exited with 1"):
        child.collect()
    with pytest.raises(ChildProcessError):
        os.waitpid(child.pid, os.WNOHANG)  # reaped already: no zombie left behind


def test_a_child_killed_part_way_is_reported() -> None:
    def killed() -> bytes:
        os.kill(os.getpid(), 9)
        return b""

    with pytest.raises(SnapshotFailed, match="exited with -9"):
        snapshot_child.start(killed).collect()
