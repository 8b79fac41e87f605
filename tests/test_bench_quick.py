"""The benchmark keeps working: `python -m bench --quick` runs to the end and writes sane figures.

Not a performance test: no figure is held to a time limit here (the machine is shared, the figures
are for people to read). It checks that every measurement happened and that what it wrote hangs
together: counts match the load, percentiles are in order, the picture is a PNG.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.bench, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("bench-out")
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-3000:]
    return done, json.loads((out / "results.json").read_text()), out


def test_prints_a_table_of_every_figure(quick_run: tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]
                                        ) -> None:
    done, _, _ = quick_run
    for figure in ("core (jpc replay)", "memory (engine)", "limit", "live", "latency p99", "recovery"):
        assert figure in done.stdout, done.stdout


def test_core_and_memory_figures_are_sane(quick_run: tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]
                                          ) -> None:
    _, r, _ = quick_run
    core, memory = r["core"], r["memory"]
    assert r["load"]["events"] == core["events"] == 20_000
    assert sum(r["load"]["mix"].values()) == 20_000
    assert r["load"]["mix"]["checkpoint_alert"] > r["load"]["mix"]["case_report"] > 0
    assert core["revisions"] > 0
    assert core["events_per_s"] > 0
    assert core["peak_rss_mb"] > 0
    assert memory["persons"] >= 10_000
    assert 0 < memory["baseline_rss_mb"] < memory["rss_mb"] <= memory["peak_rss_mb"]
    assert memory["snapshot_packed_mb"] > 0
    assert memory["restore_seconds"] > 0


def test_broker_figures_are_sane(quick_run: tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]) -> None:
    _, r, _ = quick_run
    limit, live, latency, recovery = r["limit"], r["live"], r["latency"], r["recovery"]
    assert limit["events"] == live["events"]
    assert limit["events_per_s"] > 0
    assert live["finished"], "the quick live run must get through its events"
    assert live["events_per_s"] > 0
    assert live["revisions_written"] > 0
    assert live["ratio_to_limit"] == pytest.approx(live["events_per_s"] / limit["events_per_s"], abs=0.001)
    assert latency["samples"] > 0
    assert latency["offered_events_per_s"] > 0
    assert latency["p50_ms"] <= latency["p99_ms"] <= latency["p999_ms"] <= latency["max_ms"]
    assert recovery["seconds"] is not None
    assert recovery["seconds"] > 0
    assert set(r["verdict"]) == {"core_events_per_s", "memory_rss_mb", "live_events_per_s", "live_to_limit",
                                 "latency_p99_ms", "recovery_s"}
    assert all(v["met"] in (True, False) for v in r["verdict"].values())


def test_draws_a_png(quick_run: tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]) -> None:
    _, _, out = quick_run
    picture = (out / "results.png").read_bytes()
    assert picture.startswith(b"\x89PNG\r\n\x1a\n")
    assert b"IDAT" in picture
    assert len(picture) > 5_000
