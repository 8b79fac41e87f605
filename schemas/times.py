"""Times on the wire: RFC 3339 with an offset, within the contract's bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _within_bounds(value: datetime) -> datetime:
    if not EARLIEST <= value < LATEST:
        raise ValueError("time must lie between 2000-01-01 and 2100-01-01")
    return value


# AwareDatetime refuses naive times: a time without an offset cannot be placed on the clock.
EventTime = Annotated[AwareDatetime, AfterValidator(_within_bounds)]


def rfc3339(value: datetime, zone: tzinfo) -> str:
    """Render in the directory's zone, seconds precision unless sub-second detail exists."""
    local = value.astimezone(zone)
    return local.isoformat(timespec="microseconds" if local.microsecond else "seconds")


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
