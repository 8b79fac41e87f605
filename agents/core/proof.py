"""What the engine keeps of an input event it may later cite as evidence.

Every event might end up as evidence (a sighting joins a case two weeks later), but only a few per
cent ever do, and the engine holds a fortnight of them: a province's checkpoints see a million people
in that time. So each is kept as a handful of references, and the `Evidence` model a revision carries
is built only when the event is first cited.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from schemas.escalation import Evidence


class Proof:
    __slots__ = ("_cited", "checkpoint_id", "event_id", "kind", "occurred_at", "offset", "partition",
                 "source_unit", "topic")

    def __init__(self, source_unit: str, event_id: str, kind: str, occurred_at: datetime,
                 topic: str | None = None, partition: int | None = None, offset: int | None = None,
                 checkpoint_id: str | None = None) -> None:
        self.source_unit = source_unit
        self.event_id = event_id
        self.kind = kind
        self.occurred_at = occurred_at
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.checkpoint_id = checkpoint_id  # where a checkpoint event was seen: the contact index's join key
        self._cited: Evidence | None = None

    def cite(self, zone: tzinfo) -> Evidence:
        """The evidence item for a revision (times in the directory's zone); built once."""
        cited = self._cited
        if cited is None:
            cited = self._cited = Evidence(
                source_unit=self.source_unit, event_id=self.event_id, kind=self.kind,
                occurred_at=self.occurred_at.astimezone(zone), topic=self.topic, partition=self.partition,
                offset=self.offset)
        return cited

    def __reduce__(self) -> tuple[Any, ...]:
        # Positional and without the cached model: snapshots hold millions of these.
        return Proof, (self.source_unit, self.event_id, self.kind, self.occurred_at, self.topic, self.partition,
                       self.offset, self.checkpoint_id)

    def __repr__(self) -> str:
        return f"Proof({self.kind} {self.source_unit}/{self.event_id} @ {self.occurred_at.isoformat()})"


Cited = Proof | Evidence  # rules may still hand the book a ready-made Evidence


def cite(item: Cited, zone: tzinfo) -> Evidence:
    return item.cite(zone) if isinstance(item, Proof) else item
