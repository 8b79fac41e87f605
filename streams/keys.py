"""Record keys of the input topics (contract §6): they decide the partition, and compaction for rosters."""

from __future__ import annotations

from schemas.events import CaseReport, CheckpointAlert, CheckpointHeartbeat, DutyShift, EscalationAck, InputEvent


def record_key(event: InputEvent) -> bytes:
    match event:
        case CaseReport():
            return event.region.encode()
        case CheckpointAlert() | CheckpointHeartbeat():
            return event.checkpoint_id.encode()
        case DutyShift():
            return event.roster_key.encode()
        case EscalationAck():
            return event.escalation_id.encode()
    raise TypeError(f"not an input event: {type(event).__name__}")
