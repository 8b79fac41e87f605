"""Input partitions that stopped moving: the worker's last line against records never delivered again.

streams/fetching.py fixes the causes found in Faust's fetch loop around a rebalance; this watch catches any
other. A partition is stuck when neither its commit nor how far the intake has judged it moves while it has
work left (records acked past the commit, or records on the broker the intake has not judged) and no record
at its commit is held on purpose (the intake sorting it, the engine until its snapshot). The worker then
reads it again from the commit: records after it come twice, and the engine ignores an event's second copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STUCK_AFTER_S = 20.0  # longer than anything the intake waits for (its window, a 10 MB record's refusal)


@dataclass(frozen=True, slots=True)
class Standing:
    """Where one input partition stands, as the worker sees it at one look."""

    committed: int
    judged: int | None  # the next offset to judge since it was assigned (None: nothing judged yet)
    highwater: int | None  # None: not known (nothing fetched since assignment)
    acked_ahead: bool  # an offset past the commit was acked (so the commit waits for one that was not)
    held_at: int | None  # the lowest offset an agent holds on purpose (None: none)

    def work_left(self) -> bool:
        read = self.committed if self.judged is None else max(self.committed, self.judged)
        unread = self.highwater is not None and self.highwater > read
        return self.acked_ahead or unread

    def held_at_commit(self) -> bool:
        return self.held_at is not None and self.held_at <= self.committed


class StuckInputs:
    """Per input partition, since when it has not moved; which ones to read again now."""

    def __init__(self, after_s: float = STUCK_AFTER_S) -> None:
        self.after_s = after_s
        self._since: dict[Any, tuple[tuple[int, int | None], float]] = {}

    def stuck(self, standings: dict[Any, Standing], now: float) -> list[Any]:
        """The partitions to read again from their commit now. A partition reported is watched afresh, so
        it is read again at most once per `after_s` while it stays put."""
        for tp in [tp for tp in self._since if tp not in standings]:
            del self._since[tp]  # revoked: its next owner watches it
        out = []
        for tp, s in standings.items():
            if not s.work_left() or s.held_at_commit():
                self._since.pop(tp, None)
                continue
            marker = (s.committed, s.judged)
            seen, since = self._since.setdefault(tp, (marker, now))
            if seen != marker:
                self._since[tp] = (marker, now)
            elif now - since >= self.after_s:
                out.append(tp)
                self._since[tp] = (marker, now)
        return out
