"""What the engine keeps of an input event it may later cite as evidence.

Every event might end up as evidence (a sighting joins a case two weeks later), but only a few per
cent ever do, and the engine holds a fortnight of them: a province's checkpoints see a million people
in that time. So each is kept as a handful of references, and the `Evidence` model a revision carries
is built only when an escalation cites the event (the escalation keeps it).
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from schemas.escalation import Evidence

# Every evidence item sets every field: one set of names shared by all of them (a set of seven names
# takes 728 bytes, more than the rest of the item).
_EVERY_FIELD = set(Evidence.model_fields)


_Tail = tuple[str, str | None, str | None, int | None, int | None]  # kind, checkpoint_id, topic, partition, offset
_TAILS: dict[_Tail, _Tail] = {}  # without a Kafka position (replay) a tail is one of a few hundred: shared


class Proof:
    # Four references: the engine holds one per event of the last fortnight. What many events have in
    # common (kind, checkpoint, and under replay the absent Kafka position) is one shared tuple.
    __slots__ = ("_tail", "event_id", "occurred_at", "source_unit")

    def __init__(self, source_unit: str, event_id: str, kind: str, occurred_at: datetime,
                 topic: str | None = None, partition: int | None = None, offset: int | None = None,
                 checkpoint_id: str | None = None) -> None:
        self.source_unit = source_unit
        self.event_id = event_id
        self.occurred_at = occurred_at
        # checkpoint_id: where a checkpoint event was seen, the contact index's join key
        tail: _Tail = (kind, checkpoint_id, topic, partition, offset)
        if topic is None and partition is None and offset is None:
            tail = _TAILS.setdefault(tail, tail)  # kinds x checkpoints of the directory: bounded
        self._tail = tail

    @property
    def kind(self) -> str:
        return self._tail[0]

    @property
    def checkpoint_id(self) -> str | None:
        return self._tail[1]

    @property
    def topic(self) -> str | None:
        return self._tail[2]

    @property
    def partition(self) -> int | None:
        return self._tail[3]

    @property
    def offset(self) -> int | None:
        return self._tail[4]

    def cite(self, zone: tzinfo) -> Evidence:
        """The evidence item for a revision (times in the directory's zone)."""
        kind, _, topic, partition, offset = self._tail
        # Every value is already of its field's type: nothing for validation to do.
        return Evidence.model_construct(
            _EVERY_FIELD, source_unit=self.source_unit, event_id=self.event_id, kind=kind,
            occurred_at=self.occurred_at.astimezone(zone), topic=topic, partition=partition, offset=offset)

    def __reduce__(self) -> tuple[Any, ...]:
        # Positional, from the slots themselves: snapshots hold millions of these, and reading the tail through
        # its properties made the whole snapshot 2-3 times slower (it stops the engine while it is taken).
        return _restored, (self.source_unit, self.event_id, self.occurred_at, self._tail)

    def __repr__(self) -> str:
        return f"Proof({self.kind} {self.source_unit}/{self.event_id} @ {self.occurred_at.isoformat()})"


def _restored(source_unit: str, event_id: str, occurred_at: datetime, tail: _Tail) -> Proof:
    """A Proof from a snapshot (snapshots written before this function existed name Proof itself)."""
    proof = Proof.__new__(Proof)
    proof.source_unit, proof.event_id, proof.occurred_at = source_unit, event_id, occurred_at
    proof._tail = _TAILS.setdefault(tail, tail) if tail[2] is None and tail[3] is None and tail[4] is None else tail
    return proof


Cited = Proof | Evidence  # rules may still hand the book a ready-made Evidence


def cite(item: Cited, zone: tzinfo) -> Evidence:
    return item.cite(zone) if isinstance(item, Proof) else item
