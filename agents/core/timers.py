"""Timers on the engine clock: deadlines, silences and duty gaps, fired in order of due time."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

TimerKind = Literal["ack", "silence", "duty", "cover"]


@dataclass(order=True, frozen=True, slots=True)
class Timer:
    due: datetime
    seq: int  # insertion order breaks ties, so firing order is a pure function of the input
    kind: TimerKind = field(compare=False)
    key: str = field(compare=False)

    @property
    def strict(self) -> bool:
        # A duty gap escalates only once the clock is strictly past gap start + grace (contract §3).
        return self.kind == "duty"


@dataclass(slots=True)
class TimerQueue:
    _heap: list[Timer] = field(default_factory=list)
    _seq: int = 0

    def schedule(self, due: datetime, kind: TimerKind, key: str) -> None:
        self._seq += 1
        heapq.heappush(self._heap, Timer(due, self._seq, kind, key))

    def pop_due(self, now: datetime) -> Timer | None:
        """The earliest timer that may fire with the clock at `now`, or None."""
        held: list[Timer] = []
        found: Timer | None = None
        while self._heap and self._heap[0].due <= now:
            timer = heapq.heappop(self._heap)
            if timer.strict and timer.due == now:
                held.append(timer)
                continue
            found = timer
            break
        for timer in held:
            heapq.heappush(self._heap, timer)
        return found

    def __len__(self) -> int:
        return len(self._heap)
