"""Times as duty officers write and read them: "02:13", "2020-01-25 02:13", "1h05m ago"."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta, tzinfo

_CLOCK_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")


def parse_officer_time(value: str, zone: tzinfo, now: datetime) -> datetime:
    """An RFC 3339 time; or a date and time without offset, read in the directory's zone; or a bare
    time of day ("02:13"), meaning its latest occurrence at or before `now` ("who was on duty at 02:13?").
    ValueError with a message a person can act on."""
    text = value.strip()
    clock = _CLOCK_TIME.fullmatch(text)
    if clock:
        hour, minute, second = int(clock[1]), int(clock[2]), int(clock[3] or 0)
        if hour > 23 or minute > 59 or second > 59:
            raise ValueError(f"{value!r} is not a time of day")
        local_now = now.astimezone(zone)
        at = datetime.combine(local_now.date(), time(hour, minute, second), tzinfo=zone)
        return at if at <= local_now else at - timedelta(days=1)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{value!r} is not a time (e.g. 02:13, 2020-01-25T02:13 or "
                         "2020-01-25T02:13:00+08:00)") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone)


def span(delta: timedelta) -> str:
    """A duration the way it is said on the phone: 45s, 12m, 2h05m, 3d04h."""
    seconds = int(abs(delta).total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def short(at: datetime, zone: tzinfo) -> str:
    """A time in the directory's zone, to the minute, with its offset left off (said once per screen)."""
    return at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
