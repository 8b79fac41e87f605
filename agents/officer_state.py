"""The state of escalations as a duty officer acts on it: the latest revision of each, what to do first,
and whether an acknowledgement can be sent at all.

Pure: revisions in, decisions out. The commands in agents/officer_cli.py do the reading and sending.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import orjson

from schemas.codec import Refusal, decode_event
from schemas.directory import Directory
from schemas.escalation import Escalation
from schemas.events import EscalationAck
from schemas.times import rfc3339

# What needs a person first: nobody has covered it yet, then covered but not over, then over.
STATUS_ORDER = {"open": 0, "acknowledged": 1, "resolved": 2}
Action = Literal["acknowledge", "resolve"]


def decode_revisions(values: Iterable[bytes | None]) -> list[Escalation]:
    """Revisions from record values; anything else (a tombstone, a stray record) is nothing to act on."""
    revisions = []
    for value in values:
        try:
            revisions.append(Escalation.model_validate_json(value or b""))
        except ValueError:
            continue
    return revisions


def latest_revisions(revisions: Iterable[Escalation]) -> dict[str, Escalation]:
    """The highest revision of each escalation. By number, not by arrival: a revision re-sent after a
    worker restart may arrive after a newer one."""
    latest: dict[str, Escalation] = {}
    for revision in revisions:
        known = latest.get(revision.escalation_id)
        if known is None or revision.revision > known.revision:
            latest[revision.escalation_id] = revision
    return latest


def in_order(escalations: Iterable[Escalation]) -> list[Escalation]:
    """Oldest unacknowledged first: open ones by when they opened, then acknowledged, then resolved."""
    return sorted(escalations, key=lambda e: (STATUS_ORDER[e.status], e.opened_at, e.escalation_id))


def bus_time(escalations: Iterable[Escalation]) -> datetime | None:
    """The latest time the bus has written: the engine clock as far as a reader can see it (for the
    event clock of demos and backfills, where the wall clock says nothing about age)."""
    return max((e.updated_at for e in escalations), default=None)


@dataclass(frozen=True, slots=True)
class AckRefused:
    reason: str


@dataclass(frozen=True, slots=True)
class AlreadyResolved:
    revision: Escalation


@dataclass(frozen=True, slots=True)
class AckAllowed:
    revision: Escalation
    covered_by: str | None  # a unit whose ack already covers this one (itself or a routed ancestor)


AckVerdict = AckRefused | AlreadyResolved | AckAllowed


def judge_ack(escalation_id: str, latest: Escalation | None, unit_id: str, directory: Directory) -> AckVerdict:
    """What the engine would make of an ack from `unit_id`, judged on the latest revision a reader sees.

    The engine dead-letters an ack for an unknown escalation or from a unit that is not routed, and
    ignores one on a resolved escalation (agents/core/ladder.py); saying so before sending spares the
    officer an ack that silently does nothing. Only a routed unit may act: an ancestor covers its units
    once it is routed itself (by fallback or the ladder), not before.
    """
    if latest is None:
        return AckRefused(f"unknown escalation {escalation_id!r}: jpc.escalations holds no revision of it "
                          "(check the id: jpc escalations --unit YOUR-UNIT lists them)")
    if latest.status == "resolved":
        return AlreadyResolved(latest)
    if unit_id not in latest.routed_to:
        routed = ", ".join(latest.routed_to)
        hint = ""
        below = [u for u in latest.routed_to if unit_id in directory.ancestors(u)]
        if below:
            hint = (f"; {unit_id} is above {', '.join(below)} but an ancestor may acknowledge only once it "
                    "is routed itself (fallback or the ladder)")
        return AckRefused(f"{escalation_id} is not routed to {unit_id} (revision {latest.revision} is routed to "
                          f"{routed}){hint}")
    covered_by = next((a for a in latest.acked_by if directory.covers(a, unit_id)), None)
    return AckAllowed(latest, covered_by)


def build_ack(escalation_id: str, unit_id: str, officer_id: str, action: Action, note: str | None,
              at: datetime, directory: Directory) -> tuple[EscalationAck, bytes] | Refusal:
    """The `escalation_ack` event (contract §1) as it goes on the wire, judged by the same codec as
    every input, so a note carrying a phone number is refused here, not dead-lettered later."""
    fields: dict[str, object] = {
        "event_id": f"ack-{uuid.uuid4().hex}", "kind": "escalation_ack", "schema_version": 1,
        "source_unit": unit_id, "occurred_at": rfc3339(at, directory.zone),
        "escalation_id": escalation_id, "unit_id": unit_id, "officer_id": officer_id, "action": action,
    }
    if note is not None:
        fields["note"] = note
    raw = orjson.dumps(fields)
    decoded = decode_event(raw)
    if isinstance(decoded, Refusal):
        return decoded
    if not isinstance(decoded, EscalationAck):  # the kind is written above; this only narrows the type
        raise TypeError(f"decoded {decoded.kind}, expected escalation_ack")
    return decoded, raw
