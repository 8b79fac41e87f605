"""Times on the wire: RFC 3339 with an offset, within the contract's bounds."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)

# RFC 3339 §5.6 date-time (its note allows a space for the `T`). The offset is optional here only so
# that a naive time gets the clearer "must carry an offset" refusal from AwareDatetime.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)?", re.ASCII
)


def _parse_rfc3339(value: object) -> object:
    # Pydantic's own parser also takes `2020-01-24_10:00+0800` and, in lax mode, Unix timestamps;
    # other systems reading the same events may not, so only RFC 3339 text gets through.
    if not isinstance(value, str):
        return value  # a datetime from Python code; anything else is refused by the strict type
    if not _RFC3339.fullmatch(value):
        raise ValueError("not an RFC 3339 time (e.g. 2020-01-24T10:00:00+08:00)")
    try:
        return datetime.fromisoformat(value.upper())
    except ValueError as exc:  # an impossible date or hour: "day is out of range for month"
        raise ValueError(f"not a valid time ({exc})") from None


def _within_bounds(value: datetime) -> datetime:
    if not EARLIEST <= value < LATEST:
        raise ValueError("time must lie between 2000-01-01 and 2100-01-01")
    return value


# AwareDatetime refuses naive times: a time without an offset cannot be placed on the clock.
EventTime = Annotated[AwareDatetime, BeforeValidator(_parse_rfc3339), AfterValidator(_within_bounds)]


def rfc3339(value: datetime, zone: tzinfo) -> str:
    """Render in the directory's zone, seconds precision unless sub-second detail exists."""
    local = value.astimezone(zone)
    return local.isoformat(timespec="microseconds" if local.microsecond else "seconds")


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
