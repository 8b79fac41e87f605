"""What the machine was doing: load averages and a process's memory, from /proc."""

from __future__ import annotations

import os
from pathlib import Path


def load_average() -> str:
    """`uptime`'s three load averages, e.g. "1.52 1.10 0.93" (other people's brokers count too)."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def memory_mb(pid: int | str = "self") -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of a process, in MB."""
    figures: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                figures[name] = int(rest.split()[0]) / 1024
    except OSError:
        pass
    return {"rss_mb": round(figures.get("VmRSS", 0.0), 1), "peak_rss_mb": round(figures.get("VmHWM", 0.0), 1)}


def cpu_seconds(pid: int | str = "self") -> float | None:
    """CPU time (user + system) a process has used so far, with its children's once reaped (the worker's
    snapshot children): unlike rates, hardly moved by other people's load."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime, stime, cutime, cstime
