"""Timers on the engine clock: deadlines, silences and duty gaps, fired in order of due time."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import UTC, datetime, timezone, tzinfo
from typing import Literal

TimerKind = Literal["ack", "silence", "duty", "cover"]
# (due, seq, kind, key): plain tuples so the heap compares in C; a timer checked on every event must not
# cost a Python-level comparison per heap step.
_Entry = tuple[datetime, int, TimerKind, str]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR_US = 3_600_000_000


_EPOCH_IN: dict[tzinfo, datetime] = {}  # the epoch written in each fixed offset seen


def epoch_micros(at: datetime) -> int:
    """Microseconds since 1970 (exact: state filed by the hour must land in the hour it belongs to)."""
    # Subtracting times in different zones asks each for its offset, which costs more than the rest of
    # filing an event; two times in the same fixed-offset zone object subtract field by field. (No cache by
    # time: the first hash of an aware datetime costs more than this whole computation.)
    zone = at.tzinfo
    if type(zone) is timezone:
        epoch = _EPOCH_IN.get(zone)
        if epoch is None:
            epoch = _EPOCH_IN[zone] = _EPOCH.astimezone(zone)
        since = at - epoch
    else:
        since = at - _EPOCH  # a zone with rules (DST): its offset depends on the time
    # The fields, not `since // timedelta(microseconds=1)`: a third cheaper, and as exact.
    return (since.days * 86_400 + since.seconds) * 1_000_000 + since.microseconds


@dataclass(frozen=True, slots=True)
class Timer:
    due: datetime
    seq: int  # insertion order breaks ties, so firing order is a pure function of the input
    kind: TimerKind
    key: str


@dataclass(slots=True)
class TimerQueue:
    _heap: list[_Entry] = field(default_factory=list)
    _seq: int = 0

    def schedule(self, due: datetime, kind: TimerKind, key: str) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, kind, key))

    def reserve(self) -> int:
        """A place in the firing order now, for a timer that may be put in later (see `put`)."""
        self._seq += 1
        return self._seq

    def put(self, due: datetime, seq: int, kind: TimerKind, key: str) -> None:
        """Schedule with a place reserved earlier: it fires exactly where it would have, had it been
        scheduled then. Lets a watch keep one timer per subject instead of one per event."""
        heapq.heappush(self._heap, (due, seq, kind, key))

    def due(self, now: datetime) -> bool:
        """Whether a timer is due at `now` (one `pop_due` may still hold back: see there)."""
        return bool(self._heap) and self._heap[0][0] <= now

    def pop_due(self, now: datetime) -> Timer | None:
        """The earliest timer that may fire with the clock at `now`, or None."""
        heap = self._heap
        if not heap or heap[0][0] > now:
            return None  # the common case, checked on every event
        held: list[_Entry] = []
        found: Timer | None = None
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if entry[2] == "duty" and entry[0] == now:
                # A duty gap escalates only once the clock is strictly past gap start + grace (contract §3).
                held.append(entry)
                continue
            found = Timer(*entry)
            break
        for entry in held:
            heapq.heappush(heap, entry)
        return found

    def __len__(self) -> int:
        return len(self._heap)
