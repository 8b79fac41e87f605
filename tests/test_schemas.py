"""Wire events (contract §1 and §5): what `decode_event` refuses, what it accepts, and the round trip."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import MAX_EVENT_BYTES, Refusal, decode_event, encode_event
from schemas.events import (
    KINDS,
    CaseReport,
    CaseStatus,
    CheckpointAlert,
    CheckpointHeartbeat,
    DutyShift,
    EscalationAck,
    InputEvent,
    Travel,
)
from schemas.export import export
from schemas.personal_data import GUARDED_FIELDS, REDACTED

pytestmark = pytest.mark.core

RESIDENT_ID = "11010519491231002X"  # the GB 11643 sample: check digit valid
RESIDENT_ID_WRONG_CHECK = "110105194912310021"  # same 17 digits, wrong check digit
MOBILE = "13800138000"
DROP = object()  # in `line(...)`: leave the field out

VALID: dict[str, dict[str, Any]] = {
    "case_report": {
        "event_id": "cr-0001",
        "kind": "case_report",
        "schema_version": 1,
        "source_unit": "third-hospital",
        "occurred_at": "2020-01-24T09:30:00+08:00",
        "reported_at": "2020-01-24T10:05:00+08:00",
        "case_id": "GY-2020-001",
        "status": "confirmed",
        "person_ref": "psn-7f3a9c",
        "region": "lizhou",
        "township": "东坝街道",
        "grid": "东坝社区第3网格",
        "travel": [{"region": "hubei-wuhan", "left_at": "2020-01-20T08:00:00+08:00"}],
        "facility": "广元市第三人民医院",
    },
    "checkpoint_alert": {
        "event_id": "ca-0001",
        "kind": "checkpoint_alert",
        "schema_version": 1,
        "source_unit": "lizhou-hq",
        "occurred_at": "2020-01-24T18:12:00+08:00",
        "checkpoint_id": "gy-rail",
        "person_ref": "psn-11aa",
        "reason": "fever",
        "temperature_c": 38.2,
        "origin_region": "hubei-wuhan",
        "destination_region": "lizhou",
        "direction": "inbound",
        "action": "referred",
    },
    "checkpoint_heartbeat": {
        "event_id": "hb-0001",
        "kind": "checkpoint_heartbeat",
        "schema_version": 1,
        "source_unit": "lizhou-hq",
        "occurred_at": "2020-01-24T18:15:00+08:00",
        "checkpoint_id": "gy-rail",
        "screened": 214,
    },
    "duty_shift": {
        "event_id": "ds-0001",
        "kind": "duty_shift",
        "schema_version": 1,
        "source_unit": "health",
        "occurred_at": "2020-01-24T17:30:00+08:00",
        "unit_id": "health",
        "post": "principal",
        "officer_id": "wjw-01",
        "officer_name": "李明",
        "phone": "0839-3200000",
        "shift_start": "2020-01-24T18:00:00+08:00",
        "shift_end": "2020-01-25T08:00:00+08:00",
        "status": "scheduled",
    },
    "escalation_ack": {
        "event_id": "ack-0001",
        "kind": "escalation_ack",
        "schema_version": 1,
        "source_unit": "health",
        "occurred_at": "2020-01-24T18:20:00+08:00",
        "escalation_id": "esc-0123456789abcdef0123",
        "unit_id": "health",
        "officer_id": "wjw-01",
        "action": "acknowledge",
        "note": "已派流调队伍前往",
    },
}
MODELS: dict[str, type[Any]] = {
    "case_report": CaseReport,
    "checkpoint_alert": CheckpointAlert,
    "checkpoint_heartbeat": CheckpointHeartbeat,
    "duty_shift": DutyShift,
    "escalation_ack": EscalationAck,
}


def obj(kind: str, /, **changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(VALID[kind])
    for key, value in changes.items():
        if value is DROP:
            data.pop(key)
        else:
            data[key] = value
    return data


def line(kind: str, /, **changes: Any) -> bytes:
    return json.dumps(obj(kind, **changes), ensure_ascii=False).encode("utf-8")


def travel(**changes: Any) -> list[dict[str, Any]]:
    entry: dict[str, Any] = {"region": "hubei-wuhan", "left_at": "2020-01-20T08:00:00+08:00"}
    for key, value in changes.items():
        if value is DROP:
            entry.pop(key)
        else:
            entry[key] = value
    return [entry]


def refused(raw: bytes) -> Refusal:
    result = decode_event(raw)
    assert isinstance(result, Refusal), f"accepted: {result!r}"
    return result


# ---------------------------------------------------------------------------------------------------
# Refusals: (raw bytes, the field named, a phrase of the reason)
# ---------------------------------------------------------------------------------------------------

_guarded: list[Any] = []
for _kind, _field in [
    ("case_report", "person_ref"),
    ("checkpoint_alert", "person_ref"),
    ("case_report", "township"),
    ("case_report", "grid"),
    ("case_report", "facility"),
    ("duty_shift", "officer_name"),
    ("escalation_ack", "note"),
]:
    for _label, _value, _says in [
        ("resident-id", RESIDENT_ID, "resident identity number"),
        ("mobile", MOBILE, "mobile phone number"),
        ("resident-id-embedded", f"见身份证{RESIDENT_ID}号", "resident identity number"),
        ("mobile-embedded", f"tel:{MOBILE}/白天", "mobile phone number"),
    ]:
        _guarded.append(
            pytest.param(line(_kind, **{_field: _value}), _field, _says, id=f"{_kind}-{_field}-{_label}")
        )

REFUSALS = [
    # --- missing fields: envelope ---
    pytest.param(
        line("case_report", event_id=DROP), "event_id", "required field missing", id="missing-event_id"
    ),
    pytest.param(line("case_report", kind=DROP), "kind", "missing", id="missing-kind"),
    pytest.param(
        line("checkpoint_heartbeat", schema_version=DROP),
        "schema_version",
        "required",
        id="missing-schema_version",
    ),
    pytest.param(line("duty_shift", source_unit=DROP), "source_unit", "required", id="missing-source_unit"),
    pytest.param(
        line("escalation_ack", occurred_at=DROP), "occurred_at", "required", id="missing-occurred_at"
    ),
    # --- missing fields: per kind ---
    pytest.param(line("case_report", case_id=DROP), "case_id", "required", id="case-missing-case_id"),
    pytest.param(line("case_report", status=DROP), "status", "required", id="case-missing-status"),
    pytest.param(
        line("case_report", person_ref=DROP), "person_ref", "required", id="case-missing-person_ref"
    ),
    pytest.param(line("case_report", region=DROP), "region", "required", id="case-missing-region"),
    pytest.param(
        line("checkpoint_alert", checkpoint_id=DROP),
        "checkpoint_id",
        "required",
        id="alert-missing-checkpoint_id",
    ),
    pytest.param(
        line("checkpoint_alert", direction=DROP), "direction", "required", id="alert-missing-direction"
    ),
    pytest.param(line("checkpoint_alert", action=DROP), "action", "required", id="alert-missing-action"),
    pytest.param(line("checkpoint_alert", reason=DROP), "reason", "required", id="alert-missing-reason"),
    pytest.param(
        line("checkpoint_heartbeat", screened=DROP), "screened", "required", id="heartbeat-missing-screened"
    ),
    pytest.param(line("duty_shift", post=DROP), "post", "required", id="shift-missing-post"),
    pytest.param(line("duty_shift", phone=DROP), "phone", "required", id="shift-missing-phone"),
    pytest.param(line("duty_shift", shift_end=DROP), "shift_end", "required", id="shift-missing-shift_end"),
    pytest.param(
        line("duty_shift", officer_name=DROP), "officer_name", "required", id="shift-missing-officer_name"
    ),
    pytest.param(
        line("escalation_ack", escalation_id=DROP),
        "escalation_id",
        "required",
        id="ack-missing-escalation_id",
    ),
    pytest.param(line("escalation_ack", action=DROP), "action", "required", id="ack-missing-action"),
    pytest.param(
        line("case_report", travel=travel(left_at=DROP)),
        "travel[0].left_at",
        "required",
        id="travel-missing-left_at",
    ),
    pytest.param(
        line("case_report", travel=travel(region=DROP)),
        "travel[0].region",
        "required",
        id="travel-missing-region",
    ),
    # --- unknown (extra) fields ---
    pytest.param(line("case_report", colour="red"), "colour", "unknown field", id="case-extra-field"),
    pytest.param(line("checkpoint_alert", temp=38.0), "temp", "unknown field", id="alert-extra-field"),
    pytest.param(
        line("checkpoint_heartbeat", screened_total=5), "screened_total", "unknown", id="heartbeat-extra"
    ),
    pytest.param(line("duty_shift", mobile="x"), "mobile", "unknown field", id="shift-extra-field"),
    pytest.param(line("escalation_ack", comment="x"), "comment", "unknown field", id="ack-extra-field"),
    pytest.param(line("escalation_ack", schema="v1"), "schema", "unknown field", id="envelope-extra-field"),
    pytest.param(
        line("case_report", travel=travel(city="武汉")),
        "travel[0].city",
        "unknown field",
        id="travel-extra-field",
    ),
    # --- wrong types ---
    pytest.param(line("checkpoint_heartbeat", screened="214"), "screened", "integer", id="string-for-int"),
    pytest.param(line("checkpoint_heartbeat", screened=2.5), "screened", "integer", id="float-for-int"),
    pytest.param(line("checkpoint_heartbeat", screened=True), "screened", "integer", id="bool-for-int"),
    pytest.param(line("checkpoint_heartbeat", screened=None), "screened", "integer", id="null-for-int"),
    pytest.param(line("case_report", case_id=1), "case_id", "string", id="int-for-string"),
    pytest.param(line("duty_shift", officer_id=True), "officer_id", "string", id="bool-for-string"),
    pytest.param(line("case_report", person_ref=None), "person_ref", "string", id="null-person_ref"),
    pytest.param(line("duty_shift", officer_name=None), "officer_name", "string", id="null-officer_name"),
    pytest.param(line("case_report", region=["lizhou"]), "region", "string", id="list-for-string"),
    pytest.param(line("escalation_ack", occurred_at=None), "occurred_at", "datetime", id="null-occurred_at"),
    pytest.param(
        line("escalation_ack", occurred_at=1579831200), "occurred_at", "datetime", id="unix-timestamp"
    ),
    pytest.param(
        line("checkpoint_alert", temperature_c="38.2"), "temperature_c", "number", id="string-temperature"
    ),
    pytest.param(
        line("checkpoint_alert", temperature_c=True), "temperature_c", "number", id="bool-temperature"
    ),
    pytest.param(
        line("case_report", schema_version="1"), "schema_version", "integer 1", id="schema_version-string"
    ),
    pytest.param(
        line("case_report", schema_version=True), "schema_version", "integer 1", id="schema_version-true"
    ),
    pytest.param(
        line("case_report", schema_version=1.0), "schema_version", "integer 1", id="schema_version-float"
    ),
    pytest.param(line("case_report", schema_version=2), "schema_version", "1", id="schema_version-2"),
    pytest.param(
        line("case_report", travel={"region": "hubei-wuhan"}), "travel", "array", id="travel-not-a-list"
    ),
    pytest.param(
        line("case_report", travel=["hubei-wuhan"]), "travel[0]", "", id="travel-entry-not-an-object"
    ),
    # --- times ---
    pytest.param(
        line("case_report", occurred_at="2020-01-24T09:30:00"), "occurred_at", "offset", id="naive-occurred"
    ),
    pytest.param(
        line("case_report", reported_at="2020-01-24T10:05:00"), "reported_at", "offset", id="naive-reported"
    ),
    pytest.param(
        line("duty_shift", shift_start="2020-01-24T18:00:00"), "shift_start", "offset", id="naive-start"
    ),
    pytest.param(
        line("case_report", travel=travel(left_at="2020-01-20T08:00:00")),
        "travel[0].left_at",
        "offset",
        id="naive-travel-left_at",
    ),
    pytest.param(
        line("case_report", occurred_at="2020-02-30T09:30:00+08:00"), "occurred_at", "day", id="february-30"
    ),
    pytest.param(
        line("case_report", occurred_at="2020-01-24T25:00:00+08:00"), "occurred_at", "hour", id="hour-25"
    ),
    pytest.param(
        line("case_report", occurred_at="2020-01-24T10:61:00+08:00"), "occurred_at", "minute", id="minute-61"
    ),
    pytest.param(
        line("case_report", occurred_at="2020-13-01T10:00:00+08:00"), "occurred_at", "month", id="month-13"
    ),
    pytest.param(
        line("case_report", occurred_at="1999-12-31T23:59:59Z"),
        "occurred_at",
        "between 2000",
        id="before-2000",
    ),
    pytest.param(
        line("case_report", occurred_at="2000-01-01T07:59:59+08:00"),
        "occurred_at",
        "between 2000",
        id="before-2000-by-offset",
    ),
    pytest.param(
        line("case_report", occurred_at="2100-01-01T00:00:00Z"), "occurred_at", "between 2000", id="from-2100"
    ),
    pytest.param(
        line("duty_shift", shift_end="2101-01-01T00:00:00+08:00"),
        "shift_end",
        "between 2000",
        id="shift-end-2101",
    ),
    pytest.param(
        line("case_report", reported_at="2020-01-24T09:29:59+08:00"),
        "reported_at",
        "earlier than occurred_at",
        id="reported-before-occurred",
    ),
    pytest.param(
        line("case_report", occurred_at="2020-01-24T10:00+08:00"),
        "occurred_at",
        "RFC 3339",
        id="time-without-seconds",
    ),
    pytest.param(
        line("case_report", occurred_at="2020-01-24T10:00:00+0800"),
        "occurred_at",
        "RFC 3339",
        id="offset-without-colon",
    ),
    pytest.param(line("case_report", occurred_at="2020-01-24"), "occurred_at", "RFC 3339", id="date-only"),
    pytest.param(
        line("case_report", occurred_at="2020-01-24T10:00:00 CST"),
        "occurred_at",
        "RFC 3339",
        id="zone-abbreviation",
    ),
    # --- personal data in every guarded field (see _guarded) ---
    *_guarded,
    pytest.param(
        line("case_report", township="电话１３８００１３８０００"),
        "township",
        "mobile phone number",
        id="fullwidth-mobile-in-township",
    ),
    # --- kinds ---
    pytest.param(line("case_report", kind="case"), "kind", "unknown kind", id="unknown-kind"),
    pytest.param(line("case_report", kind="CASE_REPORT"), "kind", "unknown kind", id="kind-wrong-case"),
    pytest.param(line("case_report", kind=None), "kind", "", id="kind-null"),
    pytest.param(line("case_report", kind=3), "kind", "", id="kind-number"),
    pytest.param(
        line("checkpoint_heartbeat", kind="checkpoint_alert"), "person_ref", "required", id="kind-mismatch"
    ),
    # --- lengths ---
    pytest.param(line("case_report", event_id="e" * 129), "event_id", "128", id="event_id-129"),
    pytest.param(line("case_report", case_id="c" * 129), "case_id", "128", id="case_id-129"),
    pytest.param(line("case_report", person_ref="p" * 129), "person_ref", "128", id="person_ref-129"),
    pytest.param(line("duty_shift", source_unit="u" * 129), "source_unit", "128", id="source_unit-129"),
    pytest.param(
        line("checkpoint_heartbeat", checkpoint_id="c" * 129), "checkpoint_id", "128", id="checkpoint-129"
    ),
    pytest.param(line("case_report", township="镇" * 257), "township", "256", id="township-257"),
    pytest.param(line("case_report", facility="f" * 257), "facility", "256", id="facility-257"),
    pytest.param(line("duty_shift", officer_name="名" * 257), "officer_name", "256", id="officer_name-257"),
    pytest.param(line("duty_shift", phone="0" * 257), "phone", "256", id="phone-257"),
    pytest.param(line("escalation_ack", note="注" * 501), "note", "500", id="note-501"),
    pytest.param(line("case_report", event_id=""), "event_id", "at least 1", id="event_id-empty"),
    pytest.param(line("case_report", person_ref=""), "person_ref", "at least 1", id="person_ref-empty"),
    # --- event_id characters ---
    pytest.param(line("case_report", event_id="cr 0001"), "event_id", "pattern", id="event_id-space"),
    pytest.param(line("case_report", event_id="cr/0001"), "event_id", "pattern", id="event_id-slash"),
    pytest.param(line("case_report", event_id="病例-0001"), "event_id", "pattern", id="event_id-chinese"),
    pytest.param(line("case_report", event_id="cr#1"), "event_id", "pattern", id="event_id-hash"),
    pytest.param(line("case_report", event_id="cr-1\n"), "event_id", "pattern", id="event_id-newline"),
    # --- checkpoint alerts ---
    pytest.param(line("checkpoint_alert", temperature_c=33.9), "temperature_c", "34", id="temperature-33.9"),
    pytest.param(line("checkpoint_alert", temperature_c=43.1), "temperature_c", "43", id="temperature-43.1"),
    pytest.param(
        line("checkpoint_alert", temperature_c=DROP),
        "temperature_c",
        "required when reason is fever",
        id="fever-no-temp",
    ),
    pytest.param(
        line("checkpoint_alert", temperature_c=None),
        "temperature_c",
        "required when reason is fever",
        id="fever-null-temp",
    ),
    pytest.param(
        line("checkpoint_alert").replace(b"38.2", b"NaN"), "temperature_c", "finite", id="temperature-nan"
    ),
    pytest.param(line("checkpoint_alert", reason="cough"), "reason", "fever", id="invalid-reason"),
    pytest.param(
        line("checkpoint_alert", direction="sideways"), "direction", "inbound", id="invalid-direction"
    ),
    pytest.param(
        line("checkpoint_alert", action="detained"), "action", "quarantined", id="invalid-alert-action"
    ),
    # --- heartbeats ---
    pytest.param(
        line("checkpoint_heartbeat", screened=-1), "screened", "greater than or equal to 0", id="screened-neg"
    ),
    # --- duty shifts ---
    pytest.param(
        line("duty_shift", shift_end="2020-01-24T17:59:59+08:00"),
        "shift_end",
        "after shift_start",
        id="end-before-start",
    ),
    pytest.param(
        line("duty_shift", shift_end="2020-01-24T18:00:00+08:00"),
        "shift_end",
        "after shift_start",
        id="end-equals-start",
    ),
    pytest.param(
        line("duty_shift", shift_end="2020-01-24T10:00:00Z"),
        "shift_end",
        "after shift_start",
        id="end-equals-start-other-offset",
    ),
    pytest.param(
        line("duty_shift", shift_end="2020-01-31T18:00:01+08:00"),
        "shift_end",
        "7 days",
        id="shift-7-days-and-1s",
    ),
    pytest.param(
        line("duty_shift", shift_end="2020-02-24T18:00:00+08:00"), "shift_end", "7 days", id="shift-a-month"
    ),
    pytest.param(line("duty_shift", post="director"), "post", "principal", id="invalid-post"),
    pytest.param(line("duty_shift", status="active"), "status", "scheduled", id="invalid-shift-status"),
    # --- case reports and acks ---
    pytest.param(line("case_report", status="infected"), "status", "confirmed", id="invalid-case-status"),
    pytest.param(line("escalation_ack", action="ignore"), "action", "acknowledge", id="invalid-ack-action"),
    # --- not an event at all ---
    pytest.param(b"\xff\xfe{}", "(event)", "UTF-8", id="invalid-utf8"),
    pytest.param(line("escalation_ack")[:-2] + b'\xc3"}', "(event)", "UTF-8", id="truncated-utf8-sequence"),
    pytest.param(b"\xc0\xaf", "(event)", "UTF-8", id="overlong-utf8"),
    pytest.param(b"[]", "(event)", "not a JSON object", id="json-array"),
    pytest.param(b"[" + line("case_report") + b"]", "(event)", "not a JSON object", id="event-in-an-array"),
    pytest.param(b"42", "(event)", "not a JSON object", id="json-number"),
    pytest.param(b'"case_report"', "(event)", "not a JSON object", id="json-string"),
    pytest.param(b"null", "(event)", "not a JSON object", id="json-null"),
    pytest.param(b"true", "(event)", "not a JSON object", id="json-true"),
    pytest.param(b"{", "(event)", "not valid JSON", id="unterminated-object"),
    pytest.param(b"", "(event)", "not valid JSON", id="empty-line"),
    pytest.param(b"{'event_id': 'x'}", "(event)", "not valid JSON", id="single-quotes"),
    pytest.param(line("case_report")[:-1] + b",}", "(event)", "not valid JSON", id="trailing-comma"),
    pytest.param(line("case_report") + line("case_report"), "(event)", "not valid JSON", id="two-objects"),
    pytest.param(
        b'{"event_id":' + b"[" * 5000 + b"]" * 5000 + b"}", "(event)", "not valid JSON", id="deep-nesting"
    ),
    pytest.param(b'{"a":' * 3000 + b"1" + b"}" * 3000, "(event)", "not valid JSON", id="deep-objects"),
    pytest.param(
        line("escalation_ack", note="x" * 400)[:-1] + b',"pad":"' + b"x" * MAX_EVENT_BYTES + b'"}',
        "(event)",
        "byte limit",
        id="over-1-mib",
    ),
]


@pytest.mark.parametrize(("raw", "field", "says"), REFUSALS)
def test_refused_naming_the_field(raw: bytes, field: str, says: str) -> None:
    refusal = refused(raw)
    assert refusal.field == field
    assert refusal.reason.startswith(f"{field}: "), refusal.reason
    assert says in refusal.reason


def test_the_refusal_table_is_wide() -> None:
    assert len(REFUSALS) >= 45
    assert len({p.id for p in REFUSALS}) == len(REFUSALS)


def test_refusal_carries_where_the_event_came_from() -> None:
    refusal = refused(line("duty_shift", post="director"))
    assert (refusal.event_id, refusal.source_unit) == ("ds-0001", "health")
    assert refusal.raw == line("duty_shift", post="director")  # nothing to redact: the original bytes


def test_refusal_of_a_non_object_carries_no_event_id() -> None:
    refusal = refused(b"[1, 2]")
    assert (refusal.event_id, refusal.source_unit) == (None, None)
    assert refusal.raw == b"[1, 2]"


def test_invalid_utf8_keeps_the_original_bytes() -> None:
    raw = b'{"event_id":"\xff"}'
    assert refused(raw).raw == raw


# ---------------------------------------------------------------------------------------------------
# Accepted
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_valid_event_of_every_kind_decodes(kind: str) -> None:
    event = decode_event(line(kind))
    assert isinstance(event, MODELS[kind])
    assert event.kind == kind
    assert event.event_id == VALID[kind]["event_id"]
    assert event.occurred_at == datetime.fromisoformat(VALID[kind]["occurred_at"])


REQUIRED_ONLY = {
    "case_report": ["reported_at", "township", "grid", "travel", "facility"],
    "checkpoint_alert": ["origin_region", "destination_region"],
    "checkpoint_heartbeat": [],
    "duty_shift": [],
    "escalation_ack": ["note"],
}


@pytest.mark.parametrize("kind", KINDS)
def test_optional_fields_may_be_left_out(kind: str) -> None:
    event = decode_event(line(kind, **dict.fromkeys(REQUIRED_ONLY[kind], DROP)))
    assert isinstance(event, MODELS[kind])
    for name in REQUIRED_ONLY[kind]:
        assert getattr(event, name) is None


def test_reported_at_defaults_to_occurred_at() -> None:
    event = decode_event(line("case_report", reported_at=DROP))
    assert isinstance(event, CaseReport)
    assert event.reported == event.occurred_at


def test_details_of_a_case_report() -> None:
    event = decode_event(line("case_report"))
    assert isinstance(event, CaseReport)
    assert event.travel == [Travel(region="hubei-wuhan", left_at=datetime(2020, 1, 20, tzinfo=UTC))]
    assert event.township == "东坝街道"
    assert event.reported - event.occurred_at == timedelta(minutes=35)


@pytest.mark.parametrize(
    ("kind", "changes"),
    [
        pytest.param("case_report", {"person_ref": RESIDENT_ID_WRONG_CHECK}, id="18-digits-invalid-check"),
        pytest.param("case_report", {"person_ref": "1101051949123100201"}, id="19-digit-person_ref"),
        pytest.param("case_report", {"person_ref": "138001380001"}, id="12-digit-person_ref"),
        pytest.param("case_report", {"township": "12345678901"}, id="12x-eleven-digits"),
        pytest.param("duty_shift", {"phone": MOBILE}, id="mobile-in-phone"),
        pytest.param("duty_shift", {"phone": "+86 138 0013 8000 / 0839-3200000"}, id="phone-free-form"),
        pytest.param("duty_shift", {"phone": "0" * 256}, id="phone-256"),
        pytest.param("checkpoint_alert", {"temperature_c": 34.0}, id="temperature-34.0"),
        pytest.param("checkpoint_alert", {"temperature_c": 43.0}, id="temperature-43.0"),
        pytest.param("checkpoint_alert", {"temperature_c": 37}, id="temperature-integer"),
        pytest.param(
            "checkpoint_alert",
            {"reason": "high_risk_origin", "temperature_c": DROP},
            id="no-temp-without-fever",
        ),
        pytest.param(
            "checkpoint_alert", {"reason": "refused_screening", "temperature_c": None}, id="null-temp"
        ),
        pytest.param("duty_shift", {"shift_end": "2020-01-31T18:00:00+08:00"}, id="shift-exactly-7-days"),
        pytest.param("duty_shift", {"shift_end": "2020-01-31T10:00:00Z"}, id="shift-7-days-other-offset"),
        pytest.param(
            "duty_shift", {"shift_end": "2020-01-24T18:00:00.000001+08:00"}, id="shift-1-microsecond"
        ),
        pytest.param(
            "case_report", {"reported_at": "2020-01-24T09:30:00+08:00"}, id="reported-equals-occurred"
        ),
        pytest.param("case_report", {"reported_at": None}, id="reported_at-null"),
        pytest.param("checkpoint_heartbeat", {"screened": 0}, id="screened-0"),
        pytest.param("checkpoint_heartbeat", {"occurred_at": "2000-01-01T00:00:00Z"}, id="earliest-time"),
        pytest.param(
            "checkpoint_heartbeat", {"occurred_at": "2099-12-31T23:59:59.999999Z"}, id="latest-time"
        ),
        pytest.param("checkpoint_heartbeat", {"occurred_at": "2020-01-24 10:00:00+08:00"}, id="space-for-T"),
        pytest.param("checkpoint_heartbeat", {"occurred_at": "2020-01-24t02:00:00z"}, id="lowercase-t-and-z"),
        pytest.param(
            "checkpoint_heartbeat", {"occurred_at": "2020-01-24T10:00:00.5-05:30"}, id="fraction-negative"
        ),
        pytest.param("case_report", {"event_id": "e" * 128}, id="event_id-128"),
        pytest.param("case_report", {"event_id": "GY.cr_2020:01-24.A"}, id="event_id-every-allowed-char"),
        pytest.param("case_report", {"person_ref": "p" * 128}, id="person_ref-128"),
        pytest.param("case_report", {"township": "镇" * 256}, id="township-256"),
        pytest.param("escalation_ack", {"note": "注" * 500}, id="note-500"),
        pytest.param("case_report", {"travel": []}, id="travel-empty"),
        pytest.param("case_report", {"travel": None}, id="travel-null"),
        pytest.param("case_report", {"region": "外省某地"}, id="region-any-code"),
        pytest.param(
            "duty_shift", {"key_id": "k-2020", "signature": "c2lnbmF0dXJl"}, id="key_id-and-signature"
        ),
        pytest.param("escalation_ack", {"action": "resolve", "note": "解除"}, id="resolve"),
    ],
)
def test_accepted(kind: str, changes: dict[str, Any]) -> None:
    event = decode_event(line(kind, **changes))
    assert isinstance(event, MODELS[kind]), event
    for name, value in changes.items():
        if value is DROP or name.endswith("_at") or name.startswith("shift_") or name == "travel":
            continue
        assert getattr(event, name) == value


def test_signature_fields_are_carried() -> None:
    raw = line("duty_shift", key_id="k-2020", signature="c2lnbmF0dXJl")
    event = decode_event(raw)
    assert isinstance(event, DutyShift)
    assert json.loads(encode_event(event))["signature"] == "c2lnbmF0dXJl"


def test_chinese_text_round_trips() -> None:
    raw = line(
        "case_report", township="嘉陵街道", grid="千佛崖社区二组", facility="广元市中心医院（发热门诊）"
    )
    event = decode_event(raw)
    assert isinstance(event, CaseReport)
    assert (event.township, event.grid, event.facility) == (
        "嘉陵街道",
        "千佛崖社区二组",
        "广元市中心医院（发热门诊）",
    )
    encoded = encode_event(event)
    assert "广元市中心医院（发热门诊）".encode() in encoded  # UTF-8 on the wire, not \u escapes
    assert decode_event(encoded) == event
    assert json.loads(encoded) == json.loads(raw)


def test_escaped_chinese_text_decodes_to_the_same_event() -> None:
    event = decode_event(line("duty_shift"))
    escaped = decode_event(json.dumps(obj("duty_shift"), ensure_ascii=True).encode())
    assert event == escaped
    assert isinstance(escaped, DutyShift)
    assert escaped.officer_name == "李明"


def test_encode_writes_only_the_fields_that_were_given() -> None:
    raw = line("checkpoint_alert", origin_region=DROP, destination_region=DROP)
    event = decode_event(raw)
    assert isinstance(event, CheckpointAlert)
    assert json.loads(encode_event(event)) == json.loads(raw)


def test_events_are_frozen() -> None:
    event = decode_event(line("checkpoint_heartbeat"))
    assert isinstance(event, CheckpointHeartbeat)
    with pytest.raises(ValueError, match="frozen"):
        event.screened = 5  # type: ignore[misc]


def test_a_valid_line_after_a_bad_one_is_unaffected() -> None:
    assert isinstance(decode_event(b"{"), Refusal)
    assert isinstance(decode_event(line("case_report", person_ref=RESIDENT_ID)), Refusal)
    assert isinstance(decode_event(line("case_report")), CaseReport)


# ---------------------------------------------------------------------------------------------------
# Redaction of refused personal data in the dead-letter bytes
# ---------------------------------------------------------------------------------------------------

GUARDED = [
    ("case_report", "person_ref"),
    ("checkpoint_alert", "person_ref"),
    ("case_report", "township"),
    ("case_report", "grid"),
    ("case_report", "facility"),
    ("duty_shift", "officer_name"),
    ("escalation_ack", "note"),
]


@pytest.mark.parametrize(("kind", "field"), GUARDED, ids=[f"{k}-{f}" for k, f in GUARDED])
@pytest.mark.parametrize("number", [RESIDENT_ID, MOBILE], ids=["resident-id", "mobile"])
def test_refused_personal_data_is_redacted(kind: str, field: str, number: str) -> None:
    refusal = refused(line(kind, **{field: f"身份{number}"}))
    assert refusal.field == field
    assert REDACTED.encode() in refusal.raw
    assert number.encode() not in refusal.raw
    carried = json.loads(refusal.raw)  # still the event, only the value replaced
    assert carried[field] == REDACTED
    assert carried == {**obj(kind), field: REDACTED}


def test_redaction_survives_an_earlier_failure_of_another_field() -> None:
    raw = line("case_report", colour="red", person_ref=RESIDENT_ID)
    refusal = refused(raw)
    assert refusal.field in {"colour", "person_ref"}
    assert RESIDENT_ID.encode() not in refusal.raw
    assert REDACTED.encode() in refusal.raw


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        pytest.param(line("case_report", kind="case", person_ref=RESIDENT_ID), "kind", id="unknown-kind"),
        pytest.param(line("case_report", kind=DROP, person_ref=RESIDENT_ID), "kind", id="missing-kind"),
        pytest.param(
            line("case_report", event_id="bad id", township=RESIDENT_ID), "event_id", id="bad-event_id"
        ),
        pytest.param(
            line("case_report", occurred_at="2020-01-24T09:30:00", grid=f"网格{MOBILE}"),
            "occurred_at",
            id="naive-time",
        ),
        pytest.param(line("case_report", person_ref=RESIDENT_ID + "p" * 120), "person_ref", id="too-long"),
        pytest.param(line("escalation_ack", note=[f"电话{MOBILE}"]), "note", id="wrong-type"),
        pytest.param(
            line("duty_shift", officer_name=f"王{MOBILE}", shift_end="2020-01-24T17:00:00+08:00"),
            "officer_name",
            id="with-cross-field-error",
        ),
    ],
)
def test_identifiers_in_guarded_fields_never_reach_raw(raw: bytes, field: str) -> None:
    refusal = refused(raw)
    assert refusal.field == field
    assert RESIDENT_ID.encode() not in refusal.raw
    assert MOBILE.encode() not in refusal.raw
    assert REDACTED.encode() in refusal.raw
    json.loads(refusal.raw)  # still JSON


def test_redaction_does_not_depend_on_how_the_value_was_escaped() -> None:
    # "证" is \u8bc1 when escaped: a hex digit right before the number must not hide it.
    raw = json.dumps(obj("escalation_ack", note=f"证{RESIDENT_ID}号"), ensure_ascii=True).encode()
    refusal = refused(raw)
    assert refusal.field == "note"
    assert RESIDENT_ID.encode() not in refusal.raw
    assert json.loads(refusal.raw)["note"] == REDACTED


def test_escaped_digits_are_redacted_too() -> None:
    escaped = "".join(f"\\u{ord(c):04x}" for c in MOBILE)
    raw = line("case_report", person_ref="PLACEHOLDER").replace(b"PLACEHOLDER", escaped.encode())
    refusal = refused(raw)
    assert refusal.field == "person_ref"
    assert escaped.encode() not in refusal.raw
    assert json.loads(refusal.raw)["person_ref"] == REDACTED


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"person_ref": "' + RESIDENT_ID.encode() + b'", ', id="invalid-json"),
        pytest.param(b'["' + MOBILE.encode() + b'"]', id="not-an-object"),
        pytest.param(b'{"note": "\xff ' + MOBILE.encode() + b'"}', id="not-utf8"),
        pytest.param(
            line("escalation_ack", note=RESIDENT_ID)[:-1] + b',"pad":"' + b"x" * MAX_EVENT_BYTES + b'"}',
            id="over-1-mib",
        ),
    ],
)
def test_lines_without_fields_have_every_identifier_redacted(raw: bytes) -> None:
    refusal = refused(raw)
    assert refusal.field == "(event)"
    assert RESIDENT_ID.encode() not in refusal.raw
    assert MOBILE.encode() not in refusal.raw
    assert REDACTED.encode() in refusal.raw


def test_phone_is_not_redacted_when_the_line_is_refused_for_something_else() -> None:
    raw = line("duty_shift", phone=MOBILE, post="director")
    refusal = refused(raw)
    assert refusal.field == "post"
    assert refusal.raw == raw


def test_an_identifier_in_an_unknown_field_name_is_not_repeated_in_the_reason() -> None:
    refusal = refused(line("case_report", **{MOBILE: "x"}))
    assert MOBILE not in refusal.reason
    assert MOBILE not in (refusal.field or "")
    assert refusal.reason.startswith(f"{refusal.field}: unknown field")


def test_event_id_that_looks_like_a_mobile_is_not_carried() -> None:
    refusal = refused(line("case_report", event_id=MOBILE, status="infected"))
    assert refusal.field == "status"
    assert refusal.event_id is None
    assert refusal.source_unit == "third-hospital"


# ---------------------------------------------------------------------------------------------------
# Round trip: model -> JSON -> model is the identity, for every kind
# ---------------------------------------------------------------------------------------------------

EARLIEST = datetime(2000, 1, 1)
LATEST = datetime(2099, 12, 31, 23, 59, 59, 999999)
LONG_DIGIT_RUN = re.compile(r"\d{11}")

offsets = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))


def instants(latest: datetime = LATEST) -> st.SearchStrategy[datetime]:
    return st.datetimes(min_value=EARLIEST, max_value=latest, timezones=st.just(UTC))


def times(latest: datetime = LATEST) -> st.SearchStrategy[datetime]:
    return st.builds(lambda t, tz: t.astimezone(tz), instants(latest), offsets)


def text(min_size: int = 0, max_size: int = 256) -> st.SearchStrategy[str]:
    # Any Unicode, Chinese included, but no digit run long enough to be an identifier.
    return st.text(st.characters(codec="utf-8"), min_size=min_size, max_size=max_size).filter(
        lambda s: not LONG_DIGIT_RUN.search(s)
    )


ids = text(1, 128)
event_ids = st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True)
temperatures = st.floats(34.0, 43.0, allow_nan=False)


@st.composite
def envelopes(draw: st.DrawFn, latest: datetime = LATEST) -> dict[str, Any]:
    occurred = draw(times(latest))
    fields: dict[str, Any] = {
        "event_id": draw(event_ids),
        "schema_version": 1,
        "source_unit": draw(ids),
        "occurred_at": occurred,
    }
    delay = draw(st.none() | st.timedeltas(timedelta(0), timedelta(days=30)))
    if delay is not None and occurred + delay < datetime(2100, 1, 1, tzinfo=UTC):
        fields["reported_at"] = (occurred + delay).astimezone(draw(offsets))
    for name in ("key_id", "signature"):
        if draw(st.booleans()):
            fields[name] = draw(st.none() | text(max_size=256))
    return fields


def optional(fields: dict[str, Any], draw: st.DrawFn, **strategies: st.SearchStrategy[Any]) -> None:
    """Each optional field is left out, given as null, or given a value."""
    for name, strategy in strategies.items():
        choice = draw(st.sampled_from(["absent", "null", "value"]))
        if choice == "null":
            fields[name] = None
        elif choice == "value":
            fields[name] = draw(strategy)


@st.composite
def case_reports(draw: st.DrawFn) -> CaseReport:
    fields = draw(envelopes())
    fields |= {
        "kind": "case_report",
        "case_id": draw(ids),
        "status": draw(st.sampled_from(get_args(CaseStatus))),
        "person_ref": draw(ids),
        "region": draw(ids),
    }
    travels = st.lists(st.builds(Travel, region=ids, left_at=times()), max_size=5)
    optional(fields, draw, township=text(), grid=text(), facility=text(), travel=travels)
    return CaseReport(**fields)


@st.composite
def checkpoint_alerts(draw: st.DrawFn) -> CheckpointAlert:
    fields = draw(envelopes())
    reason = draw(st.sampled_from(["fever", "high_risk_origin", "refused_screening"]))
    fields |= {
        "kind": "checkpoint_alert",
        "checkpoint_id": draw(ids),
        "person_ref": draw(ids),
        "reason": reason,
        "direction": draw(st.sampled_from(["inbound", "outbound"])),
        "action": draw(st.sampled_from(["released", "referred", "quarantined"])),
    }
    if reason == "fever":
        fields["temperature_c"] = draw(temperatures)
        optional(fields, draw, origin_region=ids, destination_region=ids)
    else:
        optional(fields, draw, temperature_c=temperatures, origin_region=ids, destination_region=ids)
    return CheckpointAlert(**fields)


@st.composite
def checkpoint_heartbeats(draw: st.DrawFn) -> CheckpointHeartbeat:
    fields = draw(envelopes())
    fields |= {
        "kind": "checkpoint_heartbeat",
        "checkpoint_id": draw(ids),
        "screened": draw(st.integers(0, 10**9)),
    }
    return CheckpointHeartbeat(**fields)


@st.composite
def duty_shifts(draw: st.DrawFn) -> DutyShift:
    fields = draw(envelopes())
    start = draw(times(latest=datetime(2099, 12, 24)))
    length = draw(st.timedeltas(timedelta(microseconds=1), timedelta(days=7)))
    fields |= {
        "kind": "duty_shift",
        "unit_id": draw(ids),
        "post": draw(st.sampled_from(["principal", "in_charge", "duty_officer"])),
        "officer_id": draw(ids),
        "officer_name": draw(text()),
        "phone": draw(st.text(st.characters(codec="utf-8"), max_size=256)),  # not guarded: anything goes
        "shift_start": start,
        "shift_end": (start + length).astimezone(draw(offsets)),
        "status": draw(st.sampled_from(["scheduled", "cancelled"])),
    }
    return DutyShift(**fields)


@st.composite
def escalation_acks(draw: st.DrawFn) -> EscalationAck:
    fields = draw(envelopes())
    fields |= {
        "kind": "escalation_ack",
        "escalation_id": draw(ids),
        "unit_id": draw(ids),
        "officer_id": draw(ids),
        "action": draw(st.sampled_from(["acknowledge", "resolve"])),
    }
    optional(fields, draw, note=text(max_size=500))
    return EscalationAck(**fields)


STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "case_report": case_reports(),
    "checkpoint_alert": checkpoint_alerts(),
    "checkpoint_heartbeat": checkpoint_heartbeats(),
    "duty_shift": duty_shifts(),
    "escalation_ack": escalation_acks(),
}


def test_there_is_a_strategy_for_every_kind() -> None:
    assert set(STRATEGIES) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_is_the_identity(kind: str) -> None:
    @settings(max_examples=120, deadline=None)
    @given(STRATEGIES[kind])
    def round_trip(event: InputEvent) -> None:
        assert event.kind == kind
        encoded = encode_event(event)
        decoded = decode_event(encoded)
        assert not isinstance(decoded, Refusal), decoded.reason
        assert type(decoded) is type(event)
        assert decoded == event
        assert decoded.model_fields_set == event.model_fields_set
        assert encode_event(decoded) == encoded  # byte-stable: a re-publish is the same message

    round_trip()


# ---------------------------------------------------------------------------------------------------
# JSON Schema export
# ---------------------------------------------------------------------------------------------------


def test_export_writes_one_schema_per_kind(tmp_path: Path) -> None:
    written = export(tmp_path / "schemas")
    names = {p.name for p in written}
    expected = {f"{kind}.schema.json" for kind in KINDS} | {
        "escalation.schema.json",
        "dead_letter.schema.json",
    }
    assert names == expected
    assert {p.name for p in (tmp_path / "schemas").iterdir()} == expected
    for path in written:
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["type"] == "object"
        assert schema["additionalProperties"] is False, path.name
        assert schema["$id"].endswith(path.name.removesuffix(".schema.json"))


def test_case_report_schema_states_the_contract(tmp_path: Path) -> None:
    export(tmp_path)
    schema = json.loads((tmp_path / "case_report.schema.json").read_text(encoding="utf-8"))
    assert set(schema["required"]) == {
        "event_id", "kind", "schema_version", "source_unit", "occurred_at",
        "case_id", "status", "person_ref", "region",
    }  # fmt: skip
    props = schema["properties"]
    assert props["kind"]["const"] == "case_report"
    assert props["schema_version"]["const"] == 1
    assert props["event_id"]["pattern"] == "^[A-Za-z0-9._:-]+$"
    assert (props["event_id"]["minLength"], props["event_id"]["maxLength"]) == (1, 128)
    assert props["occurred_at"]["format"] == "date-time"
    assert set(props["status"]["enum"]) == {
        "suspected", "confirmed", "asymptomatic", "close_contact", "excluded", "recovered", "deceased",
    }  # fmt: skip
    travel_entry = schema["$defs"]["Travel"]
    assert travel_entry["additionalProperties"] is False
    assert set(travel_entry["required"]) == {"region", "left_at"}


def test_alert_and_shift_schemas_carry_their_bounds(tmp_path: Path) -> None:
    export(tmp_path)
    alert = json.loads((tmp_path / "checkpoint_alert.schema.json").read_text(encoding="utf-8"))
    temperature = next(s for s in alert["properties"]["temperature_c"]["anyOf"] if s.get("type") == "number")
    assert (temperature["minimum"], temperature["maximum"]) == (34.0, 43.0)
    heartbeat = json.loads((tmp_path / "checkpoint_heartbeat.schema.json").read_text(encoding="utf-8"))
    assert heartbeat["properties"]["screened"]["minimum"] == 0
    ack = json.loads((tmp_path / "escalation_ack.schema.json").read_text(encoding="utf-8"))
    note = next(s for s in ack["properties"]["note"]["anyOf"] if s.get("type") == "string")
    assert note["maxLength"] == 500
    assert "note" not in ack["required"]


def test_export_is_deterministic(tmp_path: Path) -> None:
    first = {p.name: p.read_bytes() for p in export(tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in export(tmp_path / "b")}
    assert first == second


# ---------------------------------------------------------------------------------------------------
# Fuzzing the decoder: it never raises, and every refusal names its field first
# ---------------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
all_fields = sorted({name for kind in KINDS for name in MODELS[kind].model_fields} | {"travel[0]"})


def assert_decodes_or_names_the_field(raw: bytes, guarded_id: bool = False) -> None:
    result = decode_event(raw)
    if isinstance(result, Refusal):
        assert result.field
        assert result.reason.startswith(f"{result.field}: "), result.reason
        if guarded_id:
            assert RESIDENT_ID.encode() not in result.raw


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(raw: bytes) -> None:
    assert_decodes_or_names_the_field(raw)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_fuzz_random_json(value: Any) -> None:
    assert_decodes_or_names_the_field(json.dumps(value, ensure_ascii=False).encode())


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    edits=st.lists(
        st.tuples(
            st.sampled_from([*all_fields, "colour"]), st.just(DROP) | json_values | st.just(RESIDENT_ID)
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_fuzz_edited_valid_events(kind: str, edits: list[tuple[str, Any]]) -> None:
    data = obj(kind)
    for name, value in edits:
        if name == "travel[0]":
            data.setdefault("travel", [{}])
            if isinstance(data["travel"], list) and data["travel"] and value is not DROP:
                data["travel"][0] = value
        elif value is DROP:
            data.pop(name, None)
        else:
            data[name] = value
    raw = json.dumps(data, ensure_ascii=False).encode()
    guarded = GUARDED_FIELDS & data.keys()
    assert_decodes_or_names_the_field(
        raw, guarded_id=any(RESIDENT_ID in json.dumps(data[k]) for k in guarded)
    )
    result = decode_event(raw)
    if isinstance(result, Refusal):
        top = re.split(r"[.\[]", result.field or "")[0]
        assert top in data or top in {"(event)", "kind"} or top in MODELS[kind].model_fields, result.field
