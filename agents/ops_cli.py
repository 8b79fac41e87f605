"""`jpc` commands for the ops team: consumer lag of the worker and of duty officers' consumers."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from agents.cli_common import BROKERS_OPTION, CONTEXT, DIRECTORY_OPTION, directory_or_fail, fail, run_async

if TYPE_CHECKING:
    from pathlib import Path

    from streams.duty_reading import UnitReading
    from streams.lag_rules import GroupVerdict, PartitionVerdict

LAG_HELP = """Consumer lag of the worker and of duty officers, judged like Burrow.

\b
Groups: the worker's (its app id) and every jpc.duty.<unit> group on the broker, or those named
with --group. Per topic and partition: committed offset, end offset, offset lag (never negative;
a partition never committed on counts from the earliest offset still kept), time lag (now minus
the timestamp of the first unconsumed record; 0 when caught up), consume and produce rates over
the window, and the time to catch up at those rates (or "falling behind").

\b
Each group is sampled --samples times across --window seconds. Status of a partition, the first
rule that holds:
  OK     lag 0 in the last sample (transaction markers are not records: a group committed just
         before a commit marker is caught up)
  STOP   nothing commits for it: the group has no member (Empty or Dead), or no member of a
         Stable group is assigned the partition
  STALL  members present, committed offset the same in every sample, lag > 0 in every sample,
         and the first unconsumed record has waited at least --stall-after seconds
  WARN   committed offset moved, but the lag never shrank between samples and grew overall
  OK     otherwise (catching up, steady, or a commit not due yet)
A group's status is its worst partition's (OK < WARN < STALL < STOP). A consumer that commits
less often than the window spans looks stuck during it: --stall-after covers that, and a --window
longer than its commit interval judges growth better (the worker commits every second, jpc watch
every 5 s).

\b
Units not reading: for every unit of the directory (those whose duty group was named, with
--group), the revisions on jpc.escalations.<unit> at or after the committed offset of
jpc.duty.<unit> (the earliest kept offset when it never committed) that are past their reading
deadline: the revision's ack_deadline, and at least a minute after it was written. Each such unit
is listed with its group, unread and overdue revisions and since when, and counts as WARN; the
worker escalates it as unit_not_reading. Judged on the wall clock (against an event-clock worker's
data, such as the 2020 demo, every unread revision is overdue).

\b
Exit status: 0 all OK, 1 worst is WARN, 2 any STALL or STOP (or an error, e.g. an unreachable
broker). With --watch: the status of the last refresh.
"""


@click.command(context_settings=CONTEXT, help=LAG_HELP)
@BROKERS_OPTION
@DIRECTORY_OPTION
@click.option("--app-id", envvar="JPC_APP_ID", default="jpc-bus", show_default=True,
              help="The worker's app id: its consumer group. [env: JPC_APP_ID]")
@click.option("--group", "-g", "groups", multiple=True, envvar="JPC_LAG_GROUPS", metavar="G",
              help="Measure this group (repeatable) instead of the worker's and the duty groups. "
                   "[env: JPC_LAG_GROUPS, space-separated]")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (groups -> partitions, every figure).")
@click.option("--all", "show_all", is_flag=True, help="List caught-up partitions one by one too (the table "
              "otherwise sums them up in one line per group; --json always has every partition).")
@click.option("--watch", is_flag=True, help="Measure again every --every seconds until Ctrl-C.")
@click.option("--window", type=click.FloatRange(min=0.1), envvar="JPC_LAG_WINDOW", default=2.0, show_default=True,
              metavar="S", help="Seconds the samples are spread over. [env: JPC_LAG_WINDOW]")
@click.option("--samples", type=click.IntRange(min=2), envvar="JPC_LAG_SAMPLES", default=3, show_default=True,
              help="Samples taken across the window. [env: JPC_LAG_SAMPLES]")
@click.option("--stall-after", type=click.FloatRange(min=0), envvar="JPC_LAG_STALL_AFTER", default=15.0,
              show_default=True, metavar="S",
              help="How long the first unconsumed record may wait under a stuck offset before STALL; "
                   "longer than the consumers' commit interval. [env: JPC_LAG_STALL_AFTER]")
@click.option("--every", type=click.FloatRange(min=0), envvar="JPC_LAG_EVERY", default=3.0, show_default=True,
              metavar="S", help="With --watch: pause between measurements. [env: JPC_LAG_EVERY]")
def lag(brokers: str, directory_path: Path | None, app_id: str, groups: tuple[str, ...], as_json: bool,
        show_all: bool, watch: bool, window: float, samples: int, stall_after: float, every: float) -> None:
    import asyncio
    import signal

    import orjson

    from streams.duty_reading import DutyReadingProbe, duty_group
    from streams.lag import LagProbe, UnknownGroup
    from streams.lag_rules import exit_code

    last_code = [2]
    directory = directory_or_fail(directory_path)
    units = [u.id for u in directory.units if u.duty_required and (not groups or duty_group(u.id) in groups)]

    async def measure() -> None:
        if watch:  # Ctrl-C or a supervisor's SIGTERM ends the watch with the last status, even where
            # the shell started us with SIGINT ignored (a background job)
            loop, task = asyncio.get_running_loop(), asyncio.current_task()
            assert task is not None
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, task.cancel)
        async with LagProbe(brokers.split(",")) as probe, DutyReadingProbe(brokers.split(",")) as reading:
            while True:
                names = list(groups) or await probe.default_groups(app_id)
                verdicts = await probe.measure(names, app_id, window, samples, stall_after, explicit=bool(groups))
                behind = [r for r in await reading.scan(units, datetime.now(UTC)) if r.behind]
                last_code[0] = exit_code(verdicts, len(behind))
                if as_json:
                    sys.stdout.buffer.write(orjson.dumps(lag_json(verdicts, brokers, behind)) + b"\n")
                    sys.stdout.flush()
                else:
                    if watch and sys.stdout.isatty():
                        click.echo("\x1b[2J\x1b[H", nl=False)  # redraw in place
                    click.echo(render_table(verdicts, brokers, colour=sys.stdout.isatty(), show_all=show_all,
                                            not_reading=behind))
                if not watch:
                    return
                await asyncio.sleep(every)

    try:
        run_async(measure(), brokers)
    except UnknownGroup as exc:
        fail(f"--group: {exc} on {brokers}")
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    sys.exit(last_code[0])


def lag_json(verdicts: list[GroupVerdict], brokers: str, not_reading: list[UnitReading] | None = None
             ) -> dict[str, Any]:
    from streams.lag_rules import exit_code, overall

    behind = not_reading or []
    return {
        "brokers": brokers,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "status": overall(verdicts, len(behind)).value,
        "exit_code": exit_code(verdicts, len(behind)),
        "not_reading": [_reading_json(r) for r in behind],
        "groups": {v.group: {
            "status": v.status.value, "state": v.state, "members": v.members, "lag": v.lag,
            "samples": v.samples, "window_s": round(v.window_s, 3),
            "partitions": [_partition_json(p) for p in v.partitions],
        } for v in verdicts},
    }


def _reading_json(r: UnitReading) -> dict[str, Any]:
    return {
        "unit_id": r.unit_id, "group": r.group, "topic": r.topic, "committed": r.committed, "end": r.end,
        "unread": r.unread, "overdue": r.overdue,
        "unread_since": None if r.unread_since is None else r.unread_since.isoformat(), "status": "WARN",
    }


def _partition_json(p: PartitionVerdict) -> dict[str, Any]:
    return {
        "topic": p.topic, "partition": p.partition, "committed": p.committed, "earliest": p.earliest,
        "end": p.end, "lag": p.lag, "time_lag_s": None if p.time_lag_s is None else round(p.time_lag_s, 3),
        "consume_rate": round(p.consume_rate, 3), "produce_rate": round(p.produce_rate, 3),
        "catch_up_s": None if p.catch_up_s is None else round(p.catch_up_s, 3),
        "falling_behind": p.falling_behind, "status": p.status.value, "reason": p.reason,
    }


_COLOURS = {"OK": "green", "WARN": "yellow", "STALL": "red", "STOP": "red"}
_COLUMNS = ("TOPIC", "PART", "COMMITTED", "END", "LAG", "TIME LAG", "CONSUME/S", "PRODUCE/S", "CATCH UP",
            "STATUS")


def render_table(verdicts: list[GroupVerdict], brokers: str, colour: bool = False, show_all: bool = False,
                 not_reading: list[UnitReading] | None = None) -> str:
    def paint(status: str) -> str:
        return click.style(status, fg=_COLOURS[status], bold=status != "OK") if colour else status

    out = []
    for v in verdicts:
        members = f"{v.members} member{'s' if v.members != 1 else ''}"
        out.append(f"{v.group}  {paint(v.status.value)}  ({v.state}, {members}, lag {v.lag}; "
                   f"{v.samples} samples over {v.window_s:.1f} s)")
        if not v.partitions:
            out.append("  no partitions: no committed offset and no topic it is known to read")
            continue
        # A worker reads some twenty partitions, most of them idle: say those in one line.
        shown = [p for p in v.partitions if show_all or p.lag or p.status.value != "OK"]
        quiet = [p for p in v.partitions if p not in shown]
        if shown:
            out += _partition_rows(shown, paint)
        if quiet:
            counted = f"all {len(quiet)} partitions" if not shown and len(quiet) > 1 else \
                f"{len(quiet)} partition{'s' if len(quiet) != 1 else ''}"
            out.append(f"  {counted} caught up: {_ranges(quiet)}")
    if not verdicts:
        out.append(f"no consumer groups to measure on {brokers}")
    if not_reading:
        out.append(f"units not reading  {paint('WARN')}  ({len(not_reading)} with revisions unread past their "
                   "deadline; escalated as unit_not_reading)")
        rows = [("UNIT", "GROUP", "UNREAD", "OVERDUE", "UNREAD SINCE")] + [
            (r.unit_id, r.group, str(r.unread), str(r.overdue),
             "-" if r.unread_since is None else r.unread_since.isoformat(timespec="seconds"))
            for r in not_reading]
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        out += ["  " + "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in
                                 enumerate(zip(row, widths, strict=True))).rstrip() for row in rows]
    return "\n".join(out)


def _partition_rows(partitions: list[PartitionVerdict], paint: Any) -> list[str]:
    rows = [_COLUMNS] + [(
        p.topic, str(p.partition), "-" if p.committed is None else str(p.committed), str(p.end), str(p.lag),
        _duration(p.time_lag_s, unknown="?"), f"{p.consume_rate:.1f}", f"{p.produce_rate:.1f}",
        "falling behind" if p.catch_up_s is None else _duration(p.catch_up_s if p.lag else None), p.status.value,
    ) for p in partitions]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    out = []
    for n, row in enumerate(rows):
        cells = [c.ljust(w) if i in (0, 8) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        line = "  " + "  ".join(cells[:-1]) + "  " + (paint(row[-1]) if n else row[-1])
        if n and partitions[n - 1].lag:
            line += f"  {partitions[n - 1].reason}"
        out.append(line.rstrip())
    return out


def _ranges(partitions: list[PartitionVerdict]) -> str:
    """`jpc.case-reports 0-3, jpc.intake 0`: partitions per topic, runs joined."""
    by_topic: dict[str, list[int]] = {}
    for p in partitions:
        by_topic.setdefault(p.topic, []).append(p.partition)
    said = []
    for topic, numbers in by_topic.items():
        runs: list[list[int]] = []
        for n in sorted(numbers):
            if runs and n == runs[-1][-1] + 1:
                runs[-1].append(n)
            else:
                runs.append([n])
        said.append(f"{topic} " + ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs))
    return ", ".join(said)


def _duration(seconds: float | None, unknown: str = "-") -> str:
    if seconds is None:
        return unknown
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


COMMANDS: list[click.Command] = [lag]
