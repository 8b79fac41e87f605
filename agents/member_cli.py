"""`jpc` commands for member-unit systems: publish events, and the contract as documents."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any, BinaryIO

import click
import orjson

from agents.cli_common import BROKERS_OPTION, CONTEXT, fail

EXIT_INTERRUPTED = 130


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


@schemas.command("asyncapi", context_settings=CONTEXT)
@click.argument("out_file", metavar="[FILE]", required=False, type=click.Path(path_type=Path, allow_dash=True))
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default=None,
              help="Document format. Default: from FILE's extension (.json is JSON), else YAML.")
@click.option("--with-schemas", is_flag=True,
              help="Also write the JSON Schemas the document refers to, into schemas/ beside FILE.")
def schemas_asyncapi(out_file: Path | None, fmt: str | None, with_schemas: bool) -> None:
    """Write an AsyncAPI 3.0 document of the bus's topics to FILE (default: stdout).

    Channels are the topics of the shipped Guangyuan directory: the input topics with a message per
    event kind, the escalations, the per-unit escalation topics (one parameterised channel) and the dead
    letters, with their record keys. Payloads refer to the JSON Schemas (`jpc schemas export`) under
    schemas/ relative to the document. The checked-in copy is docs/contract/ (regenerate with
    `jpc schemas asyncapi docs/contract/asyncapi.yaml --with-schemas`).
    """
    from streams.contract_docs import asyncapi_text, write_schemas

    to_stdout = out_file is None or str(out_file) == "-"
    if fmt is None:
        fmt = "json" if not to_stdout and out_file is not None and out_file.suffix == ".json" else "yaml"
    if with_schemas and to_stdout:
        fail("--with-schemas needs FILE: the schemas are written beside it")
    text = asyncapi_text(fmt)
    if to_stdout:
        click.echo(text, nl=False)
        return
    assert out_file is not None
    try:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(text, encoding="utf-8")
        written = [out_file, *(write_schemas(out_file.parent / "schemas") if with_schemas else [])]
    except OSError as exc:
        fail(f"cannot write {exc.filename or out_file}: {exc.strerror or exc}")
    for path in written:
        click.echo(str(path))


@click.command(context_settings=CONTEXT)
@BROKERS_OPTION
@click.argument("file", metavar="FILE|-", required=False, type=click.Path(path_type=Path, allow_dash=True))
@click.option("--spool", "spool_dir", type=click.Path(path_type=Path, file_okay=False), envvar="JPC_SPOOL",
              help="Store and forward through this spool directory: each valid line is written to it (fsync) "
                   "before it is sent, then sent exactly once, however often the publisher is killed or the "
                   "link drops; waits (retrying, with backoff) until everything is on the bus. [env: JPC_SPOOL]")
@click.option("--spool-only", is_flag=True, help="With --spool: validate and spool FILE, send nothing, exit.")
@click.option("--drain", is_flag=True, help="With --spool: read no input; send what is spooled and exit.")
@click.option("--give-up-after", "give_up_after", type=click.FloatRange(min=0), metavar="SECONDS",
              envvar="JPC_PUBLISH_GIVE_UP_AFTER",
              help="With --spool: stop (exit 2) once the broker has been out of reach this long; what is "
                   "spooled stays for the next run. Default: keep trying. [env: JPC_PUBLISH_GIVE_UP_AFTER]")
@click.option("--json", "as_json", is_flag=True,
              help="Print the summary as one JSON object on stdout: lines, accepted, refused [{line, field, "
                   "reason}] and, with --spool, duplicates, sent, waiting.")
def publish(brokers: str, file: Path | None, spool_dir: Path | None, spool_only: bool, drain: bool,
            give_up_after: float | None, as_json: bool) -> None:
    """Validate each line of FILE (JSON lines; - for stdin) and publish it to its kind's topic.

    Each line is checked against the contract; a refused line is listed with its number and reason and
    not sent, and nothing else stops. Valid lines go to their kind's topic (idempotent producer,
    acks=all). On a terminal, a progress bar shows on long files.

    With --spool DIR each valid line is on disk before it is sent, and the spool is forwarded in Kafka
    transactions that also record how far it got: a publisher killed at any point is simply run again,
    and each event reaches the bus once. An event already in the spool (same source_unit and event_id,
    same content) is skipped; with different content it is refused.

    \b
    Exit status: 0 every line published (or spooled with --spool-only),
                 1 some lines refused (the others were published),
                 2 nothing could be done: unreadable FILE, broker unreachable, spool unusable.
    """
    if drain and file is not None:
        fail("--drain sends what is already spooled: give FILE or --drain, not both")
    if file is None and not drain:
        fail("missing FILE (a file of JSON lines, or - for stdin); see jpc publish --help")
    if (spool_only or drain or give_up_after is not None) and spool_dir is None:
        fail("--spool-only, --drain and --give-up-after work with --spool DIR")
    if spool_only and drain:
        fail("--spool-only spools without sending, --drain sends without spooling: choose one")
    source = _open_input(file) if file is not None else None
    try:
        if spool_dir is not None:
            code = _publish_through_spool(brokers, source, spool_dir, spool_only, give_up_after, as_json)
        else:
            assert source is not None
            code = _publish_direct(brokers, source, as_json)
    finally:
        if source is not None and source is not sys.stdin.buffer:
            source.close()
    sys.exit(code)


def _open_input(file: Path) -> BinaryIO:
    if str(file) == "-":
        return sys.stdin.buffer
    try:
        return file.open("rb")
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}")


def _bar() -> Any:
    from agents.progress_bar import ProgressBar

    return ProgressBar(sys.stderr, enabled=sys.stderr.isatty())


def _publish_direct(brokers: str, source: BinaryIO, as_json: bool) -> int:
    from aiokafka.errors import KafkaConnectionError, KafkaError

    from agents.cli_common import kafka_errors
    from agents.publishing import InputLines, PublishReport, publish_lines

    report, bar = PublishReport(), _bar()
    try:
        with kafka_errors(brokers):  # unreachable at the start: the usual one line
            try:
                asyncio.run(publish_lines(_bootstrap(brokers), InputLines(source), report, bar))
            except KafkaError as exc:
                if report.lines == 0 or (report.accepted == 0 and isinstance(exc, KafkaConnectionError)):
                    raise  # nothing was under way: the usual one line
                bar.clear()
                fail(f"Kafka at {brokers} failed after {report.accepted} of {report.lines} lines were published "
                     f"({exc.__class__.__name__}); the rest of the input was not sent (--spool DIR stores and "
                     "forwards on poor links)")
    except OSError as exc:
        bar.clear()
        fail(f"cannot read input: {exc.strerror or exc}")
    except KeyboardInterrupt:
        bar.clear()
        click.echo(f"jpc publish: interrupted after {report.accepted} published", err=True)
        return EXIT_INTERRUPTED
    bar.clear()
    _summarise(report, as_json, f"published {report.accepted}, refused {len(report.refused)} "
                                f"({report.lines} lines) to {brokers}")
    return 1 if report.refused else 0


def _publish_through_spool(brokers: str, source: BinaryIO | None, spool_dir: Path, spool_only: bool,
                           give_up_after: float | None, as_json: bool) -> int:
    from agents.publishing import InputLines, PublishReport, spool_lines
    from streams.forwarder import ForwardingFailed, GaveUp, LinkState
    from streams.spool import Spool, SpoolError

    # aiokafka logs each failed connection attempt; on_link below says it once per outage.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    report, bar = PublishReport(), _bar()

    def on_link(state: LinkState) -> None:
        bar.clear()
        if state.up:
            click.echo(f"jpc publish: Kafka at {brokers} is reachable again; sending", err=True)
        else:
            click.echo(f"jpc publish: Kafka at {brokers}: {state.error}; events stay spooled in {spool_dir}, "
                       "retrying (Ctrl-C stops, nothing is lost)", err=True)

    try:
        spool = Spool(spool_dir)
    except SpoolError as exc:
        fail(str(exc))
    error: str | None = None
    try:
        with spool:
            asyncio.run(spool_lines(spool, InputLines(source) if source is not None else None, report, bar,
                                    bootstrap=None if spool_only else _bootstrap(brokers),
                                    give_up_after_s=give_up_after, on_link=on_link))
    except GaveUp as exc:
        error = (f"gave up after {give_up_after:g} s: Kafka at {brokers}: {exc}; "
                 f"{report.waiting} events stay spooled in {spool_dir}")
    except (ForwardingFailed, SpoolError) as exc:
        error = f"{exc}; {report.waiting} events stay spooled in {spool_dir}"
    except OSError as exc:
        error = f"cannot read input or write {spool_dir}: {exc.strerror or exc}"
    except KeyboardInterrupt:
        bar.clear()
        waiting = "the" if report.waiting is None else str(report.waiting)
        click.echo(f"jpc publish: interrupted; nothing is lost: {waiting} events not yet sent stay spooled in "
                   f"{spool_dir}", err=True)
        return EXIT_INTERRUPTED
    bar.clear()
    if spool_only:
        summary = (f"spooled {report.accepted} ({report.duplicates} already spooled), refused {len(report.refused)} "
                   f"({report.lines} lines); {report.waiting} waiting in {spool_dir} "
                   f"(send them: jpc publish --spool {spool_dir} --drain)")
    else:
        what = "" if source is None else (f"spooled {report.accepted} ({report.duplicates} already spooled), "
                                          f"refused {len(report.refused)} ({report.lines} lines); ")
        summary = f"{what}published {report.sent or 0} to {brokers}, {report.waiting} waiting in {spool_dir}"
    _summarise(report, as_json, summary, error)
    if error is not None:
        fail(error)
    return 1 if report.refused else 0


def _summarise(report: Any, as_json: bool, summary: str, error: str | None = None) -> None:
    if as_json:
        out = report.as_json()
        if error is not None:
            out["error"] = error
        sys.stdout.buffer.write(orjson.dumps(out) + b"\n")
        sys.stdout.flush()
        return
    for refused in report.refused:
        click.echo(f"line {refused.line}: {refused.reason}", err=True)
    if error is None:
        click.echo(f"jpc publish: {summary}", err=True)


def _bootstrap(brokers: str) -> list[str]:
    return [b.strip() for b in brokers.split(",") if b.strip()]


COMMANDS: list[click.Command] = [schemas, publish]
