"""structlog set-up: JSON lines for machines, a readable console for people.

Free-text fields (names, notes, townships) are never logged: bind ids and positions only.
"""

from __future__ import annotations

import logging
import sys

import structlog

# Keys that may hold free text from member units; dropped from every log record, whoever binds them.
_FREE_TEXT = frozenset({"officer_name", "note", "township", "grid", "facility", "phone", "raw", "person_ref"})


def _drop_free_text(_: object, __: str, event_dict: dict[str, object]) -> dict[str, object]:
    for key in _FREE_TEXT.intersection(event_dict):
        event_dict[key] = "[not logged]"
    return event_dict


def configure(fmt: str = "auto", level: str = "INFO") -> None:
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _drop_free_text,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Faust, mode and aiokafka log through the standard library: warnings only, unless debugging.
    library_level = logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    logging.basicConfig(stream=sys.stderr, level=library_level, format="%(levelname)s %(name)s %(message)s")


def get_logger(component: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(component=component)  # type: ignore[no-any-return]
