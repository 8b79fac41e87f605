"""`jpc` commands for duty officers: watch the unit's escalations."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from agents.cli_common import BROKERS_OPTION, CONTEXT, DIRECTORY_OPTION, directory_or_fail, fail, run_async


@click.command(context_settings=CONTEXT)
@BROKERS_OPTION
@DIRECTORY_OPTION
@click.option("--unit", "-u", envvar="JPC_UNIT", help="Your unit: shows jpc.escalations.<unit> and reads it as "
              "the duty group jpc.duty.<unit>. Without it: every escalation. [env: JPC_UNIT]")
@click.option("--json", "as_json", is_flag=True, help="Print revisions as JSON lines.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest revision kept, not at new ones.")
@click.option("--exit-at-end", is_flag=True, help="Stop once the revisions present at start are shown.")
def watch(brokers: str, directory_path: Path | None, unit: str | None, as_json: bool, from_beginning: bool,
          exit_at_end: bool) -> None:
    """A duty officer's live view of escalations: severity, title, why, who is on duty, time left.

    Each revision is shown once even if it is delivered twice. Stop with Ctrl-C.
    """
    from agents.views import render
    from agents.watching import revisions
    from schemas.escalation import revision_json
    from streams.topics import ESCALATIONS, unit_topic

    directory = directory_or_fail(directory_path)
    if unit is not None and unit not in directory.unit_by_id:
        fail(f"--unit: unknown unit {unit!r} in directory {directory.name}")
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



COMMANDS: list[click.Command] = [watch]
