"""What every `jpc` command shares: options, one-line failures, the directory, Kafka errors."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from schemas.directory import Directory, DirectoryError, load_directory

if TYPE_CHECKING:
    from streams.settings import Settings

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


BROKERS_OPTION = click.option(
    "--brokers", envvar="JPC_BROKERS", default="127.0.0.1:9092", show_default=True,
    help="Kafka bootstrap servers, comma-separated. [env: JPC_BROKERS]",
)


def settings_from(**overrides: Any) -> Settings:
    from streams.settings import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def run_async(coro: Any, brokers: str) -> Any:
    """Run a coroutine; a broker that cannot be reached is one line, not a traceback."""
    import asyncio

    with kafka_errors(brokers):
        return asyncio.run(coro)


@contextlib.contextmanager
def kafka_errors(brokers: str) -> Iterator[None]:
    import logging

    from aiokafka.errors import KafkaConnectionError, KafkaError

    # aiokafka logs each failed connection attempt; the one line below says it better.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        yield
    except KafkaConnectionError:
        fail(f"cannot reach Kafka at {brokers}: is the broker running? (deploy/kafka.sh start; "
             "check --brokers / JPC_BROKERS)")
    except KafkaError as exc:
        fail(f"Kafka at {brokers} refused: {exc.__class__.__name__}: {exc}")
