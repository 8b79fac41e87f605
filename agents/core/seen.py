"""Duplicate detection: which (source unit, event id) keys the bus has seen, and with what content.

A province's checkpoints send a million events in a fortnight, and each key is kept that long (contract
§3, Duplicates), so a key costs one small integer: when it was seen and a digest of its content, packed
together. Keys are also filed by the hour they were seen in, so forgetting old ones looks at those
hours only, never at the whole fortnight.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from operator import countOf
from typing import Literal

import orjson
from pydantic import BaseModel

from agents.core.timers import HOUR_US as _HOUR
from agents.core.timers import epoch_micros as _micros
from schemas.events import InputEvent

_DIGEST_BITS = 128
_DIGEST_MASK = (1 << _DIGEST_BITS) - 1
# A fresh hasher copied per event: cheaper than making one, whose keyword arguments are parsed every time.
_BLAKE2B = hashlib.blake2b(digest_size=_DIGEST_BITS // 8)

Verdict = Literal["new", "duplicate", "conflict"]
_NOTHING: dict[str, int] = {}


def fingerprint(event: InputEvent) -> int:
    """A digest of the fields that were set, with their parsed values: two encodings of the same event
    (key order, spacing, the same time written with a lower-case `t`) give the same digest, as they
    give the same `model_dump_json(exclude_unset=True)`.

    Every field that was not set is None, so the values in field order say which fields were set,
    except for a field set to an explicit null: those (rare) are named after the values."""
    values = event.__dict__
    given = event.__pydantic_fields_set__
    content = orjson.dumps(values, default=_nested)
    if len(given) != len(values) - countOf(values.values(), None):
        content += b"|" + ",".join(sorted(k for k, v in values.items() if v is None and k in given)).encode()
    hasher = _BLAKE2B.copy()
    hasher.update(content)
    return int.from_bytes(hasher.digest())


def _nested(value: object) -> object:
    if isinstance(value, BaseModel):  # a trip of a case report: its fields that were set, as its JSON has them
        return {k: v for k, v in value.__dict__.items() if k in value.model_fields_set}
    raise TypeError(f"{type(value).__name__} in an event")


@dataclass(slots=True)
class SeenKeys:
    # source unit -> event id -> (microseconds since the epoch when seen << 128) | content digest
    _by_unit: dict[str, dict[str, int]] = field(default_factory=dict)
    # hour (since the epoch) a key was seen in -> source unit -> event ids (no tuple, nor unit, per key)
    _hours: dict[int, dict[str, list[str]]] = field(default_factory=dict)
    _count: int = 0

    def judge(self, source_unit: str, event_id: str, digest: int) -> Verdict:
        known = self._by_unit.get(source_unit, _NOTHING).get(event_id)
        if known is None:
            return "new"
        return "duplicate" if known & _DIGEST_MASK == digest else "conflict"

    def remember(self, source_unit: str, event_id: str, digest: int, seen_at: datetime) -> None:
        ids = self._by_unit.get(source_unit)
        if ids is None:
            ids = self._by_unit[source_unit] = {}
        if event_id not in ids:
            self._count += 1
        self._file(ids, source_unit, event_id, digest, seen_at)

    def admit(self, source_unit: str, event_id: str, digest: int, seen_at: datetime) -> Verdict:
        """`judge`, and `remember` the key when it is new: one lookup of the unit for both, on every event."""
        ids = self._by_unit.get(source_unit)
        if ids is None:
            ids = self._by_unit[source_unit] = {}
        else:
            known = ids.get(event_id)
            if known is not None:
                return "duplicate" if known & _DIGEST_MASK == digest else "conflict"
        self._count += 1
        self._file(ids, source_unit, event_id, digest, seen_at)
        return "new"

    def _file(self, ids: dict[str, int], source_unit: str, event_id: str, digest: int, seen_at: datetime) -> None:
        micros = _micros(seen_at)
        ids[event_id] = (micros << _DIGEST_BITS) | digest
        hour = self._hours.get(micros // _HOUR)
        if hour is None:
            hour = self._hours[micros // _HOUR] = {}
        filed = hour.get(source_unit)
        if filed is None:
            hour[source_unit] = [event_id]
        else:
            filed.append(event_id)

    def forget(self, source_unit: str, event_id: str) -> None:
        ids = self._by_unit.get(source_unit)
        if ids is not None and ids.pop(event_id, None) is not None:
            self._count -= 1

    def evict(self, before: datetime) -> None:
        """Forget every key seen before `before` (exactly: the hour `before` falls in is sorted key by key)."""
        cutoff = _micros(before)
        for hour in sorted(h for h in self._hours if h <= cutoff // _HOUR):
            kept_hour: dict[str, list[str]] = {}
            for source_unit, ids in self._hours.pop(hour).items():
                known_ids = self._by_unit.get(source_unit, _NOTHING)
                kept: list[str] = []
                for event_id in ids:
                    known = known_ids.get(event_id)
                    if known is None:
                        continue  # forgotten already, or filed again under a later hour
                    if known >> _DIGEST_BITS < cutoff:
                        if (known >> _DIGEST_BITS) // _HOUR == hour:
                            del self._by_unit[source_unit][event_id]
                            self._count -= 1
                    elif (known >> _DIGEST_BITS) // _HOUR == hour:
                        kept.append(event_id)
                if kept:
                    kept_hour[source_unit] = kept
            if kept_hour:
                self._hours[hour] = kept_hour

    def __len__(self) -> int:
        return self._count

    def __setstate__(self, state: tuple[object, dict[str, object]]) -> None:
        for name, value in state[1].items():
            object.__setattr__(self, name, value)
        # A snapshot from before keys were filed by unit holds each hour as (units, event ids).
        for hour, filed in list(self._hours.items()):
            if isinstance(filed, tuple):
                by_unit: dict[str, list[str]] = {}
                for source_unit, event_id in zip(*filed, strict=True):
                    by_unit.setdefault(source_unit, []).append(event_id)
                self._hours[hour] = by_unit
