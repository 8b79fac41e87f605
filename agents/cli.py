"""`jpc`: the command line of the bus. Every option can also come from a `JPC_*` environment variable."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from schemas.directory import Directory, DirectoryError, load_directory

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DIRECTORY_OPTION = click.option(
    "--directory", "directory_path", type=click.Path(path_type=Path), envvar="JPC_DIRECTORY",
    help="Directory YAML (command tree, checkpoints, routes, thresholds). Default: the shipped Guangyuan "
         "directory. [env: JPC_DIRECTORY]",
)


def fail(message: str) -> NoReturn:
    """One line on stderr and exit 2: for bad input a person can fix, never a traceback."""
    click.echo(f"jpc: {message}", err=True)
    sys.exit(2)


def directory_or_fail(path: Path | None) -> Directory:
    try:
        return load_directory(path)
    except DirectoryError as exc:
        fail(f"directory refused: {exc}")


def parse_time(value: str, option: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option}: {value!r} is not an RFC 3339 time (e.g. 2020-01-25T08:00:00+08:00)")
    if parsed.tzinfo is None:
        fail(f"{option}: {value!r} has no offset; add one, e.g. +08:00")
    return parsed


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
def schemas() -> None:
    """The wire contract as machine-readable documents."""


@schemas.command("export", context_settings=CONTEXT)
@click.argument("out_dir", metavar="DIR", type=click.Path(path_type=Path))
def schemas_export(out_dir: Path) -> None:
    """Write one JSON Schema (draft 2020-12) per event kind, plus escalation and dead letter, into DIR."""
    from schemas.export import export

    try:
        written = export(out_dir)
    except OSError as exc:
        fail(f"cannot write to {out_dir}: {exc.strerror or exc}")
    for path in written:
        click.echo(str(path))


if __name__ == "__main__":
    main()
