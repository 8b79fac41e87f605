"""`jpc`: the command line of the bus. Every option can also come from a `JPC_*` environment variable."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from agents import member_cli, officer_cli, ops_cli
from agents.cli_common import (
    BROKERS_OPTION,
    CONTEXT,
    DIRECTORY_OPTION,
    directory_or_fail,
    fail,
    kafka_errors,
    parse_time,
    run_async,
    settings_from,
)


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="jpc-bus", prog_name="jpc")
def main() -> None:
    """jpc-bus: the message bus of a joint prevention and control command headquarters (联防联控指挥部).

    Member units publish case reports, checkpoint alerts and duty rosters; the bus correlates them
    into escalations, routes each to the units responsible and the officers on duty there, and climbs
    the command tree when nobody acknowledges in time.

    \b
    Start here:
      make demo                      the whole bus on the Guangyuan directory, with a scenario
      jpc replay EVENTS.jsonl        the correlation core offline, escalations on stdout
      jpc worker --clock event       the live bus (needs a broker: deploy/kafka.sh start)
    """


@main.command(context_settings=CONTEXT)
@DIRECTORY_OPTION
@click.argument("events", type=click.Path(path_type=Path, allow_dash=True))
@click.option("--until", "until", metavar="T", help="After the last line, move the engine clock to T "
              "(RFC 3339) so timers due by then fire; nothing is dropped.")
@click.option("--dead-letter", "dead_letter", type=click.Path(path_type=Path),
              help="Write refused lines here as JSON lines (default: stderr).")
@click.option("--quiet", "-q", is_flag=True, help="No summary line on stderr.")
def replay(directory_path: Path | None, events: Path, until: str | None, dead_letter: Path | None,
           quiet: bool) -> None:
    """Run the correlation core offline over EVENTS (JSON lines; - for stdin).

    Escalation revisions are written to stdout as JSON lines, byte-identical for the same input.
    Refused lines go to the dead-letter output with their line number and reason. Exit status is 0
    even when lines were refused, 2 for an unreadable file or a refused directory.
    """
    from agents.replay import replay as run_replay

    directory = directory_or_fail(directory_path)
    until_at = parse_time(until, "--until") if until else None
    try:
        source: Any = sys.stdin.buffer if str(events) == "-" else events.open("rb")
    except OSError as exc:
        fail(f"cannot read {events}: {exc.strerror or exc}")
    dead: Any = dead_letter.open("wb") if dead_letter else sys.stderr.buffer
    try:
        with source:
            report = run_replay(directory, source, sys.stdout.buffer, dead, until_at)
    except OSError as exc:
        fail(f"cannot read {events}: {exc.strerror or exc}")
    finally:
        if dead_letter:
            dead.close()
    sys.stdout.flush()
    if not quiet:
        click.echo(f"jpc replay: {report.lines} lines, {report.revisions} revisions of "
                   f"{len(report.escalations)} escalations, {report.dead_letters} dead letters, "
                   f"{report.duplicates} duplicates ignored", err=True)


@main.group(context_settings=CONTEXT)
def topics() -> None:
    """The topics of the bus (contract §6)."""


@topics.command("create", context_settings=CONTEXT)
@BROKERS_OPTION
@DIRECTORY_OPTION
@click.option("--app-id", envvar="JPC_APP_ID", default="jpc-bus", show_default=True,
              help="Worker app id; names its state changelog topic. [env: JPC_APP_ID]")
@click.option("--replication", envvar="JPC_REPLICATION_FACTOR", type=int, default=1, show_default=True,
              help="Replication factor of every topic. [env: JPC_REPLICATION_FACTOR]")
@click.option("--partitions", envvar="JPC_INPUT_PARTITIONS", type=int, default=4, show_default=True,
              help="Partitions of the input and escalation topics. [env: JPC_INPUT_PARTITIONS]")
def topics_create(brokers: str, directory_path: Path | None, app_id: str, replication: int,
                  partitions: int) -> None:
    """Provision every topic idempotently: inputs, escalations, one per unit, dead letters, internals.

    Existing topics that match are left alone. A topic that exists with a different partition count,
    replication or cleanup policy is an error and nothing is changed.
    """
    from streams.provision import TopicMismatch, provision
    from streams.topics import catalogue

    directory = directory_or_fail(directory_path)
    specs = catalogue([u.id for u in directory.units], input_partitions=partitions, app_id=app_id)
    try:
        report = run_async(provision(brokers.split(","), specs, replication), brokers)
    except TopicMismatch as exc:
        fail(f"topics differ from the catalogue, nothing changed: {exc}")
    click.echo(f"topics: {len(report.created)} created, {len(report.existing)} already present "
               f"({len(specs)} in the catalogue) on {brokers}")


@main.command(context_settings=CONTEXT)
@BROKERS_OPTION
@DIRECTORY_OPTION
@click.option("--clock", type=click.Choice(["wall", "event"]), envvar="JPC_CLOCK", default="wall",
              show_default=True, help="Engine clock: wall (production) or event (the highest event time "
              "seen; demos, tests, backfills). [env: JPC_CLOCK]")
@click.option("--app-id", envvar="JPC_APP_ID", default="jpc-bus", show_default=True,
              help="Consumer group and table namespace. [env: JPC_APP_ID]")
@click.option("--data-dir", envvar="JPC_DATA_DIR", type=click.Path(path_type=Path),
              default=Path(".cache/worker"), show_default=True, help="Local files of the worker. [env: JPC_DATA_DIR]")
@click.option("--reorder-ms", envvar="JPC_REORDER_MS", type=int, default=None,
              help="How long records wait to be put back into reporting order across partitions before "
              "the engine sees them. Default: 2000 with --clock event (where order moves the clock), 0 with "
              "--clock wall. [env: JPC_REORDER_MS]")
@click.option("--web/--no-web", "web", envvar="JPC_WEB_ENABLED", default=False, show_default=True,
              help="Serve /metrics (Prometheus) and /health on 127.0.0.1; /health says 503 once records have "
              "waited with nothing processed for JPC_HEALTH_STALL_S (30) s. [env: JPC_WEB_ENABLED]")
@click.option("--web-port", envvar="JPC_WEB_PORT", type=int, default=6066, show_default=True,
              help="Port of /metrics and /health (with --web). [env: JPC_WEB_PORT]")
def worker(brokers: str, directory_path: Path | None, clock: str, app_id: str, data_dir: Path,
           reorder_ms: int | None, web: bool, web_port: int) -> None:
    """Run the live bus: validate inputs, correlate, route escalations, climb the ladder.

    Checks at start that every topic exists as the catalogue says (run `jpc topics create` first).
    Stop with Ctrl-C or SIGTERM: in-flight work is finished and committed.

    The engine's state is snapshotted every JPC_SNAPSHOT_EVERY_S seconds (default 2) or
    JPC_SNAPSHOT_EVERY_RECORDS events (default 50000); offsets are committed up to the last snapshot,
    and a restarted worker applies the records after it again. JPC_UVLOOP=0 keeps asyncio's own loop.
    """
    from streams.logging import configure
    from streams.provision import check
    from streams.topics import catalogue

    settings = settings_from(brokers=brokers, app_id=app_id, data_dir=data_dir, clock=clock, web_enabled=web,
                             web_port=web_port)
    configure(settings.log_format, settings.log_level)
    directory = directory_or_fail(directory_path)
    specs = catalogue([u.id for u in directory.units], input_partitions=settings.input_partitions,
                      app_id=app_id)
    problems = run_async(check(settings.bootstrap, specs, settings.replication_factor), brokers)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        fail(f"topics are not ready: {'; '.join(problems[:3])}{more}; run: jpc topics create")
    from agents.worker import run_worker

    if reorder_ms is None:
        reorder_ms = 2000 if settings.clock == "event" else 0
    sys.exit(run_worker(settings, directory, settings.clock, reorder_ms / 1000))


@main.command(context_settings=CONTEXT)
@BROKERS_OPTION
@DIRECTORY_OPTION
@click.option("--pace", type=float, default=0.1, show_default=True,
              help="Seconds of demo per minute of scenario time (the night of 24 January 2020).")
@click.option("--linger", type=float, default=None, help="Stop this many seconds after the scenario is published "
              "(default: run until Ctrl-C).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path(".cache/demo"), show_default=True,
              help="Where the demo worker keeps its log and files.")
def demo(brokers: str, directory_path: Path | None, pace: float, linger: float | None, data_dir: Path) -> None:
    """Run the bus on a scenario from the seed document and show escalations as they arrive.

    Needs a broker (make demo starts one). Provisions topics, starts a worker with the event clock,
    publishes the scenario of New Year's Eve 2020 in Guangyuan and prints every escalation: what
    happened, who it went to, who is on duty there and why. Ctrl-C stops it cleanly.
    """
    from agents.demo import run_demo

    directory = directory_or_fail(directory_path)
    with kafka_errors(brokers):
        code = run_demo(brokers, directory, directory_path, data_dir, pace, linger)
    sys.exit(code)


# Commands for each kind of user live in their own modules (member units, duty officers, the ops team).
for module in (member_cli, officer_cli, ops_cli):
    for command in module.COMMANDS:
        main.add_command(command)


if __name__ == "__main__":
    main()
