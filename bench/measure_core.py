"""The core alone: `jpc replay` over the load, and the engine's memory holding a fortnight of people.

Both run in child processes, so each figure is that process's own: wall time, CPU time and peak
resident memory come from the kernel (wait4), not from inside the measured interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from bench.system import load_average

JPC = [sys.executable, "-m", "agents.cli"]  # the `jpc` console script, without relying on PATH


def run_measured(cmd: list[str], stdout: Path | None = None, cwd: Path | None = None) -> dict[str, Any]:
    """Run a command to completion; its wall seconds, CPU seconds and peak RSS (MB)."""
    out = stdout.open("wb") if stdout else subprocess.DEVNULL
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, cwd=cwd)
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    finally:
        if stdout:
            out.close()  # type: ignore[union-attr]
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}... exited {code}: {err.decode(errors='replace')[-2000:]}")
    return {"seconds": wall, "cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024,
            "stderr": err.decode(errors="replace").strip()}


def measure_core(directory: Path, load: Path, events: int, out_dir: Path) -> dict[str, Any]:
    escalations = out_dir / "core-escalations.jsonl"
    dead = out_dir / "core-dead.jsonl"
    cmd = [*JPC, "replay", "-q", "--directory", str(directory), str(load), "--dead-letter", str(dead)]
    before = load_average()
    run = run_measured(cmd, stdout=escalations)
    with escalations.open("rb") as f:
        revisions = sum(1 for _ in f)
    return {
        "command": f"jpc replay -q --directory {directory} {load} --dead-letter {out_dir / 'core-dead.jsonl'} "
                   f"> {escalations}",
        "events": events, "revisions": revisions, "seconds": round(run["seconds"], 3),
        "cpu_seconds": round(run["cpu_seconds"], 3), "events_per_s": round(events / run["seconds"]),
        "events_per_cpu_s": round(events / run["cpu_seconds"]), "peak_rss_mb": round(run["peak_rss_mb"], 1),
        "load_before": before, "load_after": load_average(),
    }


def measure_memory(directory: Path, persons: int, out_dir: Path) -> dict[str, Any]:
    """Peak RSS of an engine process holding `persons` distinct people in the contact window, and what
    the worker's per-batch snapshot of that state costs (pickle, compress, checksum) and restoring it."""
    result = out_dir / f"memory-{persons}.json"
    cmd = [sys.executable, "-m", "bench.engine_memory", "--directory", str(directory), "--persons", str(persons),
           "--out", str(result)]
    before = load_average()
    run = run_measured(cmd, cwd=Path(__file__).resolve().parent.parent)
    figures: dict[str, Any] = orjson.loads(result.read_bytes())
    figures |= {"command": f"python -m bench.engine_memory --directory {directory} --persons {persons}",
                "process_peak_rss_mb": round(run["peak_rss_mb"], 1), "load_before": before,
                "load_after": load_average()}
    return figures
