"""`jpc` commands for member-unit systems: publish events, and the contract as documents."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from agents.cli_common import BROKERS_OPTION, CONTEXT, fail, run_async


@click.group(context_settings=CONTEXT)
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


@click.command(context_settings=CONTEXT)
@BROKERS_OPTION
@click.argument("file", metavar="FILE|-", type=click.Path(path_type=Path, allow_dash=True))
def publish(brokers: str, file: Path) -> None:
    """Validate each line of FILE (JSON lines; - for stdin) and publish it to its kind's topic.

    Refused lines are listed with their number and reason and are not sent. Exit status: 0 when
    every line was published, 1 when some were refused, 2 when nothing could be done.
    """
    from agents.publishing import publish_lines

    try:
        source: Any = sys.stdin.buffer if str(file) == "-" else file.open("rb")
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}")
    with source:
        report = run_async(publish_lines(brokers.split(","), source, progress=sys.stderr.isatty()), brokers)
    for line_no, reason in report.refused:
        click.echo(f"line {line_no}: {reason}", err=True)
    click.echo(f"published {report.accepted}, refused {len(report.refused)}", err=True)
    sys.exit(1 if report.refused else 0)



COMMANDS: list[click.Command] = [schemas, publish]
