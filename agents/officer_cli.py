"""`jpc` commands for duty officers: watch the unit's escalations, acknowledge or resolve one, list their
current state, and see who is (or was) on duty."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import orjson

from agents.cli_common import BROKERS_OPTION, CONTEXT, DIRECTORY_OPTION, directory_or_fail, fail, run_async

UNIT_HELP = "Your unit (an id of the directory). [env: JPC_UNIT]"
JSON_OPTION = click.option("--json", "as_json", is_flag=True, envvar="JPC_JSON",
                           help="Machine-readable output (see above). [env: JPC_JSON]")
CLOCK_OPTION = click.option(
    "--clock", type=click.Choice(["wall", "event"]), envvar="JPC_CLOCK", default="wall", show_default=True,
    help="What 'now' is. wall: the wall clock (production). event: the bus's own time, the latest update "
         "written on jpc.escalations, for a worker run with --clock event (demos and backfills of past data, "
         "e.g. the 2020 scenario, where wall-clock ages would all be years). [env: JPC_CLOCK]")


def _known_unit(directory: Any, unit: str | None) -> None:
    if unit is not None and unit not in directory.unit_by_id:
        fail(f"--unit: unknown unit {unit!r} in directory {directory.name}")


def _may_be_of_unit(raw: bytes, unit: str) -> bool:
    """False only for a JSON object whose unit_id is another unit's; everything else is validated in full."""
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return True
    return not isinstance(parsed, dict) or parsed.get("unit_id") == unit


def _write_json(obj: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj) + b"\n")
    sys.stdout.flush()


@click.command(context_settings=CONTEXT)
@BROKERS_OPTION
@DIRECTORY_OPTION
@click.option("--unit", "-u", envvar="JPC_UNIT", help="Your unit: shows jpc.escalations.<unit> and reads it as "
              "the duty group jpc.duty.<unit>. Without it: every escalation. [env: JPC_UNIT]")
@JSON_OPTION
@click.option("--from-beginning", is_flag=True, envvar="JPC_FROM_BEGINNING",
              help="Start at the oldest revision kept, not at new ones. [env: JPC_FROM_BEGINNING]")
@click.option("--exit-at-end", is_flag=True, envvar="JPC_EXIT_AT_END",
              help="Stop once the revisions present at start are shown. [env: JPC_EXIT_AT_END]")
def watch(brokers: str, directory_path: Path | None, unit: str | None, as_json: bool, from_beginning: bool,
          exit_at_end: bool) -> None:
    """A duty officer's live view of escalations: severity, title, why, who is on duty, time left.

    Each revision (escalation id, revision number) is shown once even if it is delivered twice.
    With --unit the unit's duty group commits what was shown: reading is a duty obligation, and the
    ops team sees a unit that does not read. --json prints each revision as one JSON line, exactly
    as on the topic (contract §4). Stop with Ctrl-C.
    """
    from agents.views import render
    from agents.watching import revisions
    from schemas.escalation import revision_json
    from streams.topics import ESCALATIONS, unit_topic

    directory = directory_or_fail(directory_path)
    _known_unit(directory, unit)
    topic = unit_topic(unit) if unit else ESCALATIONS
    group = f"jpc.duty.{unit}" if unit else None

    async def show() -> None:
        async for revision in revisions(brokers.split(","), topic, group, from_beginning or group is not None,
                                        stop_at_end=exit_at_end):
            if as_json:
                sys.stdout.buffer.write(revision_json(revision) + b"\n")
                sys.stdout.flush()
            else:
                click.echo(render(revision, directory, now=revision.updated_at, colour=sys.stdout.isatty()) + "\n")

    try:
        run_async(show(), brokers)
    except LookupError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        pass


@click.command(context_settings=CONTEXT)
@BROKERS_OPTION
@DIRECTORY_OPTION
@click.argument("escalation_id", metavar="ID")
@click.option("--unit", "-u", envvar="JPC_UNIT", required=True, help=UNIT_HELP)
@click.option("--officer", "-o", envvar="JPC_OFFICER", required=True,
              help="Your officer id, as on the duty roster. [env: JPC_OFFICER]")
@click.option("--resolve", is_flag=True, help="Resolve: the escalation is dealt with and ends for every unit. "
              "Final: nothing reopens it. (No environment variable, on purpose: a resolve is a decision.)")
@click.option("--note", metavar="T", help="A note for the record, at most 500 characters. Personal data (an "
              "identity number, a mobile number) is refused. (No environment variable.)")
@CLOCK_OPTION
@JSON_OPTION
def ack(brokers: str, directory_path: Path | None, escalation_id: str, unit: str, officer: str, resolve: bool,
        note: str | None, clock: str, as_json: bool) -> None:
    """Acknowledge escalation ID for your unit (or resolve it with --resolve).

    Before anything is sent, the latest revision of ID is read from jpc.escalations (only the partition
    its key hashes to, newest records first). Refused with one line and exit 2: an unknown escalation,
    a unit it is not routed to (an ancestor may act only once routed itself, by fallback or the ladder),
    a note carrying personal data. An escalation that is already resolved is reported, nothing is
    sent, and the exit status is 0: the work is done, and the bus would ignore the ack anyway.

    Otherwise an escalation_ack (event id ack-<uuid>, source_unit = your unit, occurred_at = now)
    goes to jpc.escalation-acks, keyed by the escalation id, with acks=all; the bus answers with a
    new revision (jpc watch --unit shows it). With --clock event, occurred_at is the escalation's
    latest update instead, so an ack never moves an event-clock worker into the present.
    --json prints {"sent": ..., ...} on one line.
    """
    from agents.officer_state import (
        AckAllowed,
        AckRefused,
        Action,
        AlreadyResolved,
        build_ack,
        decode_revisions,
        judge_ack,
        latest_revisions,
    )
    from schemas.codec import Refusal
    from streams.client import MemberUnitClient
    from streams.reading import latest_of_key
    from streams.topics import ESCALATIONS

    directory = directory_or_fail(directory_path)
    _known_unit(directory, unit)
    action: Action = "resolve" if resolve else "acknowledge"
    # Judged first, offline: a note with a phone number is refused before anything touches the bus.
    built = build_ack(escalation_id, unit, officer, action, note, datetime.now(directory.zone), directory)
    if isinstance(built, Refusal):
        fail(f"ack refused, nothing sent: {built.reason}")

    async def judge_and_send() -> tuple[Any, Any]:
        records = await latest_of_key(brokers.split(","), ESCALATIONS, escalation_id.encode())
        seen = decode_revisions(r.value for r in records)
        verdict = judge_ack(escalation_id, latest_revisions(seen).get(escalation_id), unit, directory)
        if not isinstance(verdict, AckAllowed):
            return verdict, None
        event, raw = built
        if clock == "event":
            rebuilt = build_ack(escalation_id, unit, officer, action, note, verdict.revision.updated_at, directory)
            assert not isinstance(rebuilt, Refusal)  # the same fields were accepted a moment ago
            event, raw = rebuilt
        async with MemberUnitClient(brokers) as bus:
            sent = await bus.send(event, raw)
        return verdict, (event, sent)

    try:
        verdict, result = run_async(judge_and_send(), brokers)
    except LookupError as exc:
        fail(str(exc))
    except TimeoutError:
        fail(f"reading jpc.escalations at {brokers} took too long; nothing sent")
    if isinstance(verdict, AckRefused):
        fail(f"ack refused, nothing sent: {verdict.reason}")
    seen = verdict.revision
    if isinstance(verdict, AlreadyResolved):
        by = ", ".join(f"{u}/{o}" for u, o in seen.acked_by.items())
        acks = f"acknowledged by {by}" if by else "no unit acknowledged it: its condition ended by itself"
        if as_json:
            _write_json({"sent": False, "reason": "already resolved", "escalation_id": escalation_id,
                         "revision_seen": seen.revision, "status_seen": seen.status})
        else:
            click.echo(f"jpc ack: {escalation_id} is already resolved (revision {seen.revision}, "
                       f"{seen.updated_at.isoformat()}; {acks}); nothing sent")
        return
    event, sent = result
    if as_json:
        _write_json({"sent": True, "action": action, "escalation_id": escalation_id, "unit_id": unit,
                     "officer_id": officer, "event_id": event.event_id, "occurred_at": event.occurred_at.isoformat(),
                     "topic": sent.topic, "partition": sent.partition, "offset": sent.offset,
                     "revision_seen": seen.revision, "status_seen": seen.status, "covered_by": verdict.covered_by})
        return
    done = "resolved" if resolve else "acknowledged"
    click.echo(f"jpc ack: {unit} {done} {escalation_id} (officer {officer}, seen at revision {seen.revision}, "
               f"{seen.status}); sent {event.event_id} to {sent.topic} partition {sent.partition} "
               f"offset {sent.offset}")
    if verdict.covered_by == unit and not resolve:
        click.echo(f"jpc ack: {unit} had already acknowledged ({seen.acked_by[unit]}): recorded on the topic, "
                   "no new revision expected")
    elif verdict.covered_by is not None and not resolve:
        click.echo(f"jpc ack: {unit} was already covered by {verdict.covered_by}'s acknowledgement; yours is "
                   "recorded as well")


@click.command(context_settings=CONTEXT)
@BROKERS_OPTION
@DIRECTORY_OPTION
@click.option("--unit", "-u", envvar="JPC_UNIT", help="Only the escalations routed to this unit (read from "
              "jpc.escalations.<unit>). Without it: every escalation on jpc.escalations. [env: JPC_UNIT]")
@click.option("--open", "open_only", is_flag=True, envvar="JPC_OPEN",
              help="Only escalations with status open (some routed unit not yet covered). [env: JPC_OPEN]")
@CLOCK_OPTION
@JSON_OPTION
def escalations(brokers: str, directory_path: Path | None, unit: str | None, open_only: bool, clock: str,
                as_json: bool) -> None:
    """The current state of escalations: the latest revision of each, oldest unacknowledged first.

    Reads the topic from its oldest revision kept to its end, then stops (no consumer group: this does
    not count as the unit reading its escalations). Order: open escalations by when they opened, then
    acknowledged ones, then resolved ones. Columns: AGE (since opened), SEV, STATUS, STEP on the
    ladder, DEADLINE (time left to acknowledge, or overdue), ESCALATION id, TITLE; below each, the
    routed units, with ✔ and the officer for each that acknowledged.
    --json prints the same latest revisions, in the same order, as JSON lines exactly as on the topic.
    """
    from agents.officer_state import bus_time, decode_revisions, in_order, latest_revisions
    from agents.views import BOARD_HEADER, board_row
    from schemas.escalation import revision_json
    from streams.reading import last_records, read_to_end
    from streams.topics import ESCALATIONS, unit_topic

    directory = directory_or_fail(directory_path)
    _known_unit(directory, unit)
    topic = unit_topic(unit) if unit else ESCALATIONS

    async def read() -> tuple[list[Any], list[Any]]:
        records = await read_to_end(brokers.split(","), topic)
        # A unit's topic lags the bus when nothing new concerns the unit: the event clock is read from
        # the newest revisions on jpc.escalations too (the last record of each partition, cheap).
        newest = await last_records(brokers.split(","), ESCALATIONS) if clock == "event" and unit else []
        return records, newest

    try:
        records, newest = run_async(read(), brokers)
    except LookupError as exc:
        fail(str(exc))
    except TimeoutError:
        fail(f"reading {topic} at {brokers} took too long")
    latest = latest_revisions(decode_revisions(r.value for r in records))
    board = in_order(e for e in latest.values() if not open_only or e.status == "open")
    if as_json:
        for revision in board:
            sys.stdout.buffer.write(revision_json(revision) + b"\n")
        sys.stdout.flush()
        return
    event_now = bus_time([*latest.values(), *decode_revisions(r.value for r in newest)])
    now = (event_now if clock == "event" else None) or datetime.now(directory.zone)
    opened = sum(1 for e in latest.values() if e.status == "open")
    which = "open escalations" if open_only else "escalations"
    basis = "event clock: the latest update on jpc.escalations" if clock == "event" else "wall clock"
    click.echo(f"{len(board)} {which} on {topic} ({opened} open of {len(latest)}); ages at "
               f"{now.astimezone(directory.zone).isoformat(timespec='seconds')} ({basis})")
    if board:
        click.echo(BOARD_HEADER)
    for revision in board:
        click.echo(board_row(revision, now, colour=sys.stdout.isatty()))


@click.command(context_settings=CONTEXT)
@BROKERS_OPTION
@DIRECTORY_OPTION
@click.option("--unit", "-u", envvar="JPC_UNIT", help="Only this unit. Without it: every unit with a roster. "
              "[env: JPC_UNIT]")
@click.option("--at", "at_text", metavar="T", envvar="JPC_DUTY_AT",
              help="When: an RFC 3339 time (2020-01-25T02:13:00+08:00), a date and time in the directory's zone "
              "(2020-01-25T02:13), or a time of day (02:13: its latest occurrence up to now). Default: now. "
              "[env: JPC_DUTY_AT]")
@JSON_OPTION
def duty(brokers: str, directory_path: Path | None, unit: str | None, at_text: str | None, as_json: bool) -> None:
    """Who is (or was) on duty at T, per unit and post, and the gaps in the 24 hours after T.

    Reads the compacted roster topic jpc.duty-rosters from its beginning to its end: for each roster key
    (unit/post/officer/shift start) the shift published last wins, cancelled shifts cover nothing, as
    the bus routes by. Any past time the topic still holds can be asked ("who was on duty at 02:13?").
    Gaps are listed for the watched posts, principal and in_charge, from the unit's first shift on;
    a gap that began before T is shown with its real start. Invalid roster records are skipped (the
    bus dead-letters them). --json prints one JSON object: at, gaps_until, units[], no_roster[].
    """
    from agents.core.roster import ONE_DAY
    from agents.officer_time import parse_officer_time
    from agents.roster_view import RosterBook, duty_json, render_unit
    from schemas.codec import decode_event
    from schemas.events import DutyShift
    from streams.reading import read_to_end
    from streams.topics import DUTY_ROSTERS

    directory = directory_or_fail(directory_path)
    _known_unit(directory, unit)
    now = datetime.now(directory.zone)
    try:
        at = parse_officer_time(at_text, directory.zone, now) if at_text else now
    except ValueError as exc:
        fail(f"--at: {exc}")
    try:
        records = run_async(read_to_end(brokers.split(","), DUTY_ROSTERS), brokers)
    except LookupError as exc:
        fail(str(exc))
    except TimeoutError:
        fail(f"reading {DUTY_ROSTERS} at {brokers} took too long")
    book, skipped = RosterBook(), 0
    for record in records:
        if record.value is None:
            continue  # a tombstone: ignored, as the bus ignores it
        if unit is not None and not _may_be_of_unit(record.value, unit):
            continue  # another unit's shift: a year of a city's rosters is ~10^5 records, validation is the cost
        event = decode_event(record.value)
        if not isinstance(event, DutyShift):
            skipped += 1
            continue
        book.add(event, record.topic, record.partition, record.offset)
    units = [unit] if unit else book.units(directory)
    report = [book.unit_duty(directory, u, at) for u in units if u in book.roster.watch_start]
    if unit:
        no_roster = [] if report else [unit]
    else:
        no_roster = [u.id for u in directory.units if u.duty_required and u.id not in book.roster.watch_start]
    until = at + ONE_DAY
    if as_json:
        _write_json(duty_json(report, at, until, directory, no_roster))
        return
    zone = directory.zone
    click.echo(f"on duty at {at.astimezone(zone).isoformat(timespec='seconds')} ({directory.timezone}); gaps "
               f"until {until.astimezone(zone).isoformat(timespec='seconds')}; read {len(records)} roster records"
               + (f", {skipped} invalid skipped" if skipped else ""))
    for u in report:
        click.echo()
        click.echo(render_unit(u, directory, at))
    if no_roster:
        click.echo()
        listed = ", ".join(no_roster[:12]) + (f" (+{len(no_roster) - 12} more)" if len(no_roster) > 12 else "")
        click.echo(f"no roster published on {DUTY_ROSTERS}: {listed}")


COMMANDS: list[click.Command] = [watch, ack, escalations, duty]
