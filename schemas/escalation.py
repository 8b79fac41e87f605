"""Escalations out (contract §4): each revision is one immutable record."""

from __future__ import annotations

from typing import Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict

Severity = Literal["I", "II", "III", "IV"]
SEVERITIES: tuple[Severity, ...] = ("I", "II", "III", "IV")  # I is the most severe
Status = Literal["open", "acknowledged", "resolved"]
Rule = Literal[
    "fever_at_checkpoint",
    "high_risk_arrival",
    "imported_case",
    "case_cluster",
    "checkpoint_contact",
    "late_report",
    "duty_gap",
    "checkpoint_silent",
    "unit_not_reading",  # issue 4: a unit's duty group leaves revisions unread past their deadline
]
RULES: tuple[Rule, ...] = (
    "fever_at_checkpoint",
    "high_risk_arrival",
    "imported_case",
    "case_cluster",
    "checkpoint_contact",
    "late_report",
    "duty_gap",
    "checkpoint_silent",
    "unit_not_reading",
)


class Evidence(BaseModel):
    """One input event behind an escalation; where it was read from when it came from Kafka."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source_unit: str
    event_id: str
    kind: str
    occurred_at: AwareDatetime
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None


class Escalation(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    escalation_id: str
    revision: int
    step: int
    rule: Rule
    severity: Severity
    status: Status
    region: str | None
    subject: dict[str, str]
    title: str
    summary: str
    routed_to: list[str]
    assignees: dict[str, list[str]]
    fallback: dict[str, str]
    evidence: list[Evidence]
    opened_at: AwareDatetime
    updated_at: AwareDatetime
    ack_deadline: AwareDatetime
    acked_by: dict[str, str]


def revision_json(escalation: Escalation) -> bytes:
    """One revision as compact JSON; evidence omits the Kafka position it does not have (replay)."""
    data = escalation.model_dump(mode="json")
    data["evidence"] = [{k: v for k, v in item.items() if v is not None} for item in data["evidence"]]
    return orjson.dumps(data)
