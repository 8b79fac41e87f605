"""Input events of contract §1: one envelope, five kinds, every object closed to unknown fields."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from schemas.personal_data import refuse_personal_data
from schemas.times import EventTime
from schemas.versions import VersionOne

Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Text = Annotated[str, StringConstraints(max_length=256)]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
PseudonymRef = Annotated[Id, AfterValidator(refuse_personal_data)]
GuardedText = Annotated[Text, AfterValidator(refuse_personal_data)]
Note = Annotated[str, StringConstraints(max_length=500), AfterValidator(refuse_personal_data)]

MAX_SHIFT = timedelta(days=7)


class WireModel(BaseModel):
    # strict: "1" is not 1 and "yes" is not true; frozen: an event is a fact, not a draft.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Envelope(WireModel):
    event_id: EventId
    schema_version: VersionOne
    source_unit: Id
    occurred_at: EventTime
    reported_at: EventTime | None = None
    key_id: Text | None = None
    signature: Annotated[str, StringConstraints(max_length=4096)] | None = None

    @model_validator(mode="after")
    def _reported_after_occurred(self) -> Self:
        if self.reported_at is not None and self.reported_at < self.occurred_at:
            raise ValueError("reported_at: may not be earlier than occurred_at")
        return self

    @property
    def reported(self) -> EventTime:
        return self.reported_at if self.reported_at is not None else self.occurred_at


CaseStatus = Literal[
    "suspected", "confirmed", "asymptomatic", "close_contact", "excluded", "recovered", "deceased"
]


class Travel(WireModel):
    region: Id  # any region code, including ones outside the jurisdiction
    left_at: EventTime


class CaseReport(Envelope):
    kind: Literal["case_report"]
    case_id: Id
    status: CaseStatus
    person_ref: PseudonymRef
    region: Id
    township: GuardedText | None = None
    grid: GuardedText | None = None
    travel: Annotated[list[Travel], Field(max_length=64)] | None = None
    facility: GuardedText | None = None


class CheckpointAlert(Envelope):
    kind: Literal["checkpoint_alert"]
    checkpoint_id: Id
    person_ref: PseudonymRef
    reason: Literal["fever", "high_risk_origin", "refused_screening"]
    temperature_c: Annotated[float, Field(ge=34.0, le=43.0, allow_inf_nan=False)] | None = None
    origin_region: Id | None = None
    destination_region: Id | None = None
    direction: Literal["inbound", "outbound"]
    action: Literal["released", "referred", "quarantined"]

    @model_validator(mode="after")
    def _fever_has_temperature(self) -> Self:
        if self.reason == "fever" and self.temperature_c is None:
            raise ValueError("temperature_c: required when reason is fever")
        return self


class CheckpointHeartbeat(Envelope):
    kind: Literal["checkpoint_heartbeat"]
    checkpoint_id: Id
    screened: Annotated[int, Field(ge=0, le=1_000_000_000)]


Post = Literal["principal", "in_charge", "duty_officer"]
POSTS: tuple[Post, ...] = ("principal", "in_charge", "duty_officer")


class DutyShift(Envelope):
    kind: Literal["duty_shift"]
    unit_id: Id
    post: Post
    officer_id: Id
    officer_name: GuardedText
    phone: Text  # a duty contact: not guarded, a mobile number is expected here
    shift_start: EventTime
    shift_end: EventTime
    status: Literal["scheduled", "cancelled"]

    @model_validator(mode="after")
    def _sane_shift(self) -> Self:
        if self.shift_end <= self.shift_start:
            raise ValueError("shift_end: must be after shift_start")
        if self.shift_end - self.shift_start > MAX_SHIFT:
            raise ValueError("shift_end: a shift lasts at most 7 days")
        return self

    @property
    def roster_key(self) -> str:
        """The compaction key of `jpc.duty-rosters`: the last shift published under it wins."""
        return f"{self.unit_id}/{self.post}/{self.officer_id}/{self.shift_start.isoformat()}"


class EscalationAck(Envelope):
    kind: Literal["escalation_ack"]
    escalation_id: Id
    unit_id: Id
    officer_id: Id
    action: Literal["acknowledge", "resolve"]
    note: Note | None = None


InputEvent = CaseReport | CheckpointAlert | CheckpointHeartbeat | DutyShift | EscalationAck
AnyEvent = Annotated[InputEvent, Field(discriminator="kind")]

EVENT_MODELS: dict[str, type[Envelope]] = {
    "case_report": CaseReport,
    "checkpoint_alert": CheckpointAlert,
    "checkpoint_heartbeat": CheckpointHeartbeat,
    "duty_shift": DutyShift,
    "escalation_ack": EscalationAck,
}
KINDS = tuple(EVENT_MODELS)
