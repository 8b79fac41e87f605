"""The worker's reading monitor (`--clock wall` only): is each unit's duty group reading its escalations?

Every few seconds it looks at every unit's `jpc.duty.<unit>` group on `jpc.escalations.<unit>`
(`streams.duty_reading`) and writes what it saw into `jpc.intake` as a reading report, so the
engine applies it in log order like any event and a restarted or replaying engine comes to the same
escalations (`agents.core.reading`). Only a change is written: a unit falling behind, or catching
up; the engine's rule is idempotent, so the first look after a start writes every unit whose topic
ever held a record once, which also resolves an episode that ended while the worker was down.

In `--clock event` mode reading is not judged: the engine's clock is the events' time (a backfill,
the 2020 demo), not the time officers read at.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from agents.core.reading import ReadingReport
from schemas.directory import Directory
from streams.duty_reading import DutyReadingProbe, UnitReading
from streams.logging import get_logger

log = get_logger("reading")
READING_KEY = b"reading"


def reading_record(reading: UnitReading, observed_at: datetime) -> bytes:
    """The intake record of one observation; the figures besides the report are for people."""
    return orjson.dumps({"reading": {
        "unit_id": reading.unit_id, "observed_at": observed_at.isoformat(),
        "unread_since": None if reading.unread_since is None else reading.unread_since.isoformat(),
        "group": reading.group, "topic": reading.topic, "committed": reading.committed, "end": reading.end,
        "unread": reading.unread, "overdue": reading.overdue,
    }})


def report_of(record: dict[str, Any]) -> ReadingReport:
    """The engine's report from an intake record's `reading` object; ValueError when it is not one."""
    try:
        since = record["unread_since"]
        report = ReadingReport(unit_id=str(record["unit_id"]),
                               observed_at=datetime.fromisoformat(record["observed_at"]),
                               unread_since=None if since is None else datetime.fromisoformat(since))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a reading report: {exc!r}") from exc
    if report.observed_at.tzinfo is None or (report.unread_since is not None and report.unread_since.tzinfo is None):
        raise ValueError("not a reading report: naive time")
    return report


class ReadingMonitor:
    def __init__(self, directory: Directory, bootstrap: list[str], send: Callable[[bytes, bytes], Awaitable[Any]],
                 timeout_s: float = 10.0, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        # A unit that keeps no duty has no duty officers to read (the engine ignores it too).
        self._units = [u.id for u in directory.units if u.duty_required]
        self._bootstrap = bootstrap
        self._send = send
        self._timeout_s = timeout_s
        self._clock = clock
        self._probe: DutyReadingProbe | None = None
        self._written: dict[str, bool] = {}  # unit -> behind, as last written

    async def check(self) -> int:
        """One look at every unit; the reports written. Never raises for a slow or absent broker: it
        logs, drops its connections and tries again next time (a timer that raised would stop Faust)."""
        try:
            async with asyncio.timeout(3 * self._timeout_s):
                return await self._check()
        except Exception as exc:
            log.warning("duty groups not checked; trying again next time", error=repr(exc))
            await self.close()
            return 0

    async def _check(self) -> int:
        if self._probe is None:
            probe = DutyReadingProbe(self._bootstrap, self._timeout_s)
            await probe.__aenter__()
            self._probe = probe
        now = self._clock()
        written = 0
        for reading in await self._probe.scan(self._units, now):
            if not reading.complete:
                continue  # its backlog could not be read in time: nothing to conclude yet
            if reading.end == 0 and reading.unit_id not in self._written:
                continue  # a topic that never held a record: nothing was ever there to read
            if self._written.get(reading.unit_id) == reading.behind:
                continue
            await self._send(READING_KEY, reading_record(reading, now))
            self._written[reading.unit_id] = reading.behind
            written += 1
            if reading.behind:
                log.info("unit not reading its escalations", unit_id=reading.unit_id, group=reading.group,
                         overdue=reading.overdue, unread=reading.unread, unread_since=str(reading.unread_since))
        return written

    async def close(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            try:
                await probe.__aexit__(None, None, None)
            except Exception:
                log.debug("reading probe did not close cleanly")
