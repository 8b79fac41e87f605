"""Bytes to events and back: the one place input is judged.

Every refusal names the field at fault and carries the original bytes with refused personal data
redacted, so that the dead-letter stream can tell a member unit exactly what to fix. A raw
identifier in a guarded field is redacted whatever else was wrong with the line; a line that is
not a JSON object (or not UTF-8, or too large) has every identifier-shaped number redacted, since
its `phone` cannot be told apart from the rest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any, TypeVar, get_args

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas.events import (
    KINDS,
    MAX_SHIFT,
    AnyEvent,
    CaseReport,
    CheckpointAlert,
    CheckpointHeartbeat,
    DutyShift,
    EscalationAck,
    InputEvent,
    Travel,
)
from schemas.personal_data import GUARDED_FIELDS, REDACTED, find_personal_data, redact_identifiers
from schemas.times import _RFC3339 as RFC3339  # the very pattern EventTime applies
from schemas.times import EARLIEST, LATEST

MAX_EVENT_BYTES = 1024 * 1024  # a report is a few hundred bytes; a megabyte is an attack or a bug

_EVENT = TypeAdapter[InputEvent](AnyEvent)
# A JSON string token; in a document that parsed, the tokens this finds are exactly its strings.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')


@dataclass(frozen=True, slots=True)
class Refusal:
    field: str | None
    reason: str
    raw: bytes  # the original bytes, personal data replaced by "[redacted]" (see the module docstring)
    event_id: str | None = None
    source_unit: str | None = None


def decode_event(raw: bytes) -> InputEvent | Refusal:
    if len(raw) > MAX_EVENT_BYTES:
        reason = f"(event): {len(raw)} bytes is over the {MAX_EVENT_BYTES}-byte limit"
        return Refusal("(event)", reason, _redact_unparsed(raw))
    accepted = accept_plain(raw)
    if accepted is not None:
        return accepted
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Refusal("(event)", f"(event): not UTF-8 text (byte {exc.start})", _redact_unparsed(raw))
    try:
        return _EVENT.validate_json(raw)
    except ValidationError as exc:
        return _refusal(text, raw, exc)


def _refusal(text: str, raw: bytes, exc: ValidationError) -> Refusal:
    errors = exc.errors(include_url=False, include_input=False)
    field, reason = _describe(errors[0])
    # An unknown field's name is free text too: it may not carry an identifier into a log line.
    field, reason = redact_identifiers(field), redact_identifiers(reason)
    parsed = None if errors[0]["type"] == "json_invalid" else _loads(text)
    if not isinstance(parsed, dict):
        # Not an object of fields, so no field can be told apart from `phone`: redact every identifier.
        return Refusal(field, reason, _redact_unparsed(raw))
    # Guarded fields are redacted whichever rule failed first (an unknown kind, an over-long value):
    # what matters is what the dead letter would carry, not how far validation got.
    refused = set(_personal_in_guarded(parsed))
    if refused:
        raw = _redact(text, refused).encode("utf-8")
    event_id, source_unit = _clean_str(parsed.get("event_id")), _clean_str(parsed.get("source_unit"))
    return Refusal(field, reason, raw, event_id, source_unit)


def _loads(text: str) -> Any:
    # The stdlib parser, not orjson: it also takes what pydantic took and orjson does not (integers
    # beyond 64 bits, lone surrogate escapes), so the fields of every parsed line can be looked at.
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _path(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # A tagged union puts the tag first (e.g. ('case_report', 'region')): the user never wrote it.
    if loc and loc[0] in KINDS:
        return loc[1:]
    return loc


def _field_name(path: tuple[int | str, ...]) -> str:
    """`travel[0].left_at`, written the way the directory's refusals write their paths."""
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out or "(event)"


def _describe(error: Any) -> tuple[str, str]:
    kind = error["type"]
    path = _path(error["loc"])
    field = _field_name(path)
    msg: str = error["msg"]
    if msg.startswith(("Value error, ", "Assertion failed, ")):
        msg = msg.split(", ", 1)[1]
        # Cross-field checks name their field themselves ("reported_at: may not be ...").
        head, sep, _ = msg.partition(": ")
        if sep and path == () and " " not in head:
            return head, msg
        return field, f"{field}: {msg}"
    if kind == "json_invalid":
        return "(event)", f"(event): not valid JSON ({error.get('ctx', {}).get('error', msg)})"
    if kind in {"union_tag_invalid"}:
        return "kind", f"kind: unknown kind; expected one of {', '.join(KINDS)}"
    if kind == "union_tag_not_found":
        return "kind", "kind: missing"
    if kind in {"model_attributes_type", "model_type", "dict_type"} and path == ():
        return "(event)", "(event): not a JSON object"
    if kind == "missing":
        return field, f"{field}: required field missing"
    if kind == "extra_forbidden":
        return field, f"{field}: unknown field"
    if kind == "timezone_aware":
        return field, f"{field}: time must carry an offset (e.g. +08:00)"
    return field, f"{field}: {msg}"


def _personal_in_guarded(parsed: dict[str, Any]) -> Iterator[str]:
    for key in GUARDED_FIELDS & parsed.keys():
        yield from _personal_strings(parsed[key])


def _personal_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if find_personal_data(value) is not None:
            yield value
    elif isinstance(value, list):
        for item in value:
            yield from _personal_strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _personal_strings(item)


def _redact(text: str, values: set[str]) -> str:
    """Replace each JSON string whose value was refused, however it was escaped on the wire."""

    def swap(match: re.Match[str]) -> str:
        return f'"{REDACTED}"' if _loads(match.group(0)) in values else match.group(0)

    return _JSON_STRING.sub(swap, text)


def _redact_unparsed(raw: bytes) -> bytes:
    # surrogateescape carries bytes that are not UTF-8 through unchanged; identifiers are ASCII digits.
    text = raw.decode("utf-8", errors="surrogateescape")
    return redact_identifiers(text).encode("utf-8", errors="surrogateescape")


def _clean_str(value: Any) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= 128 and redact_identifiers(value) == value:
        return value
    return None


def encode_event(event: InputEvent) -> bytes:
    """Compact JSON of an event as it would be published (only the fields that were set)."""
    return orjson.dumps(event.model_dump(mode="json", exclude_unset=True))


def dumps(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, no spaces, UTF-8 (ids are hashed over this)."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


# ---- the fast acceptor ----
# Pydantic costs tens of microseconds per event; a bus taking a province's checkpoints sees hundreds of
# thousands of events a second at peak. Well-formed events are the common case, so they are accepted
# here by hand and built without a second validation. This only ever *accepts*: anything it is not
# sure of (an unknown field, a wrong type, a bound, personal data) returns None, and the pydantic
# models above judge the line and word the refusal. So an event it accepts is exactly the event the
# models would have made (tests/test_fast_accept.py checks both paths agree), and every refusal still
# comes from one place. A change to a model in schemas/events.py must be made here too.

_NO: Any = object()  # "not sure": let the models decide
_M = TypeVar("_M", bound=BaseModel)
_Check = Callable[[Any], Any]
_set = object.__setattr__
# What `model.__new__` is (the models define none), without asking pydantic's metaclass for the attribute.
_new = object.__new__
_EVENT_ID = re.compile(r"[A-Za-z0-9._:-]+")
_ELEVEN_DIGITS = re.compile(r"\d{11}")  # both identifiers hold a run of at least 11 digits
_TIMES: dict[str, datetime] = {}  # events of one second share their timestamps: parse each once
_ZONES: dict[tzinfo, tzinfo] = {}
# The contract's bounds written in each zone seen: comparing times in one zone object goes field by field,
# comparing across zones asks both for their offsets (slower than parsing the time).
_BOUNDS: dict[tzinfo, tuple[datetime, datetime]] = {}
_SHARED_IDS: dict[str, str] = {}  # unit, checkpoint and region ids: one string object each, not one per event
# "YYYY-MM-DDTHH:MM+HH:MM" -> that minute (":00" seconds), parsed and within bounds: see `_time`
_MINUTES: dict[str, datetime] = {}
_SECONDS = {f":{n:02d}": timedelta(seconds=n) for n in range(60)}
_BOUND = 100_000  # the caches are cleared when full: input decides what is in them
_TIMES_BOUND = 8_192  # input comes roughly in time order: recent seconds are the ones that repeat


@dataclass(frozen=True, slots=True)
class _Field:
    """How one field is judged. `check` takes any value and says what the model would hold, or `_NO`;
    `known` (when given) holds string values `check` has accepted, with what it made of them: most fields
    repeat a few hundred values (ids, enumerations, the current second), and a lookup costs less than a call.
    Every entry of `known` must be exactly what `check` returns for its key."""

    check: _Check
    known: dict[str, Any] | None = None


def _refuse(value: Any) -> Any:
    return _NO


def _time(value: Any) -> Any:
    if type(value) is not str:
        return _NO
    known = _TIMES.get(value)
    if known is not None:
        return known
    # The common shape, whole seconds and an offset ("2020-01-24T06:00:13+08:00"): a minute parsed before plus
    # its seconds. Regex, parse and a change of zone cost ten times as much; this shape differs from its minute
    # only in the two digits of the seconds, which the lookup of ":SS" checks (seconds 00-59, as the parser).
    second = _SECONDS.get(value[16:19])
    if second is not None and len(value) == 25:
        minute = _MINUTES.get(value[:16] + value[19:])
        if minute is not None:
            return _remember_time(value, minute + second)
    if RFC3339.fullmatch(value) is None:
        return _NO
    try:
        parsed = datetime.fromisoformat(value.upper())
    except ValueError:
        return _NO
    zone = parsed.tzinfo
    if zone is None:
        return _NO
    # One zone object per offset: each parse makes its own, and a fortnight of events would otherwise hold
    # (and every engine snapshot pickle) a million copies of "+08:00". Equal zones, equal datetimes.
    shared = _ZONES.setdefault(zone, zone)
    if shared is not zone:
        parsed = parsed.replace(tzinfo=shared)
    bounds = _BOUNDS.get(shared)
    if bounds is None:
        bounds = _BOUNDS[shared] = (EARLIEST.astimezone(shared), LATEST.astimezone(shared))
    if not bounds[0] <= parsed < bounds[1]:
        return _NO
    if second is not None and len(value) == 25 and value[19] in "+-":
        # The bounds fall on whole minutes in every offset written HH:MM, so every second of an accepted
        # minute is within them too.
        if len(_MINUTES) >= _TIMES_BOUND:
            _MINUTES.clear()
        _MINUTES[value[:16] + value[19:]] = parsed - second
    return _remember_time(value, parsed)


def _remember_time(value: str, parsed: datetime) -> datetime:
    if len(_TIMES) >= _TIMES_BOUND:
        _TIMES.clear()
    _TIMES[value] = parsed
    return parsed


def _text(limit: int, *, min_length: int = 0, guarded: bool = False) -> _Check:
    def check(value: Any) -> Any:
        if type(value) is not str or not min_length <= len(value) <= limit:
            return _NO
        if guarded and _ELEVEN_DIGITS.search(value) is not None and find_personal_data(value) is not None:
            return _NO
        return value
    return check


def _shared_text(check: _Check) -> _Field:
    """A text field with few distinct values (a township): one string object each, not one per event."""
    known: dict[str, Any] = {}

    def shared(value: Any) -> Any:
        checked = check(value)
        if type(checked) is str:
            if len(known) >= _BOUND:
                known.clear()
            checked = known.setdefault(checked, checked)
        return checked
    return _Field(shared, known)


def _one_of(*values: str) -> _Field:
    """An enumeration: the canonical string of each value allowed; anything else is not sure."""
    return _Field(_refuse, {v: v for v in values})


def _shared_id(value: Any) -> Any:
    # Unit, checkpoint and region ids: a few hundred values, each checked once and then looked up.
    if type(value) is not str:
        return _NO
    known = _SHARED_IDS.get(value)
    if known is not None:
        return known
    if not 1 <= len(value) <= 128:
        return _NO
    if len(_SHARED_IDS) >= _BOUND:
        _SHARED_IDS.clear()
    _SHARED_IDS[value] = value
    return value


def _optional(field: _Field) -> _Field:
    check = field.check
    return _Field(lambda value: None if value is None else check(value), field.known)


def _event_id(value: Any) -> Any:
    if type(value) is str and len(value) <= 128 and _EVENT_ID.fullmatch(value) is not None:
        return value
    return _NO


def _version(value: Any) -> Any:
    return 1 if type(value) is int and value == 1 else _NO


def _temperature(value: Any) -> Any:
    # Strict floats take JSON integers too (pydantic makes them floats); never booleans.
    if (type(value) is float or type(value) is int) and 34.0 <= value <= 43.0:
        return float(value)
    return _NO


def _screened(value: Any) -> Any:
    return value if type(value) is int and 0 <= value <= 1_000_000_000 else _NO


def _travel(value: Any) -> Any:
    if type(value) is not list or len(value) > 64:
        return _NO
    trips = []
    for item in value:
        if type(item) is not dict or len(item) != 2:
            return _NO
        region, left_at = _ID(item.get("region")), _time(item.get("left_at"))
        if region is _NO or left_at is _NO:
            return _NO
        trips.append(_build(Travel, _TRAVEL_FIELDS, {"region": region, "left_at": left_at}))
    return trips


_ID = _text(128, min_length=1)  # inlined by `accept_plain`: see there
_ID_FIELD = _Field(_ID)
_SHARED_ID = _Field(_shared_id, _SHARED_IDS)
_TIME = _Field(_time, _TIMES)
_PSEUDONYM = _Field(_text(128, min_length=1, guarded=True))
_GUARDED = _optional(_Field(_text(256, guarded=True)))
_TRAVEL_FIELDS = tuple(Travel.model_fields)
_ENVELOPE: dict[str, _Field] = {
    "event_id": _Field(_event_id), "schema_version": _Field(_version), "source_unit": _SHARED_ID,
    "occurred_at": _TIME, "reported_at": _optional(_TIME), "key_id": _optional(_Field(_text(256))),
    "signature": _optional(_Field(_text(4096))),
}


@dataclass(frozen=True, slots=True)
class _Kind:
    model: type[BaseModel]
    checks: dict[str, _Check]  # every field
    known: dict[str, dict[str, Any]]  # the fields with a `known` of their own (see `_Field`)
    required: frozenset[str]
    blank: dict[str, None]  # every field of the model, in definition order, None until given


def _kind(model: type[BaseModel], fields: dict[str, _Field]) -> _Kind:
    every = {**_ENVELOPE, "kind": _one_of(_kind_name(model)), **fields}
    required = frozenset(name for name, info in model.model_fields.items() if info.is_required())
    return _Kind(model, {name: f.check for name, f in every.items()},
                 {name: f.known for name, f in every.items() if f.known is not None}, required,
                 dict.fromkeys(model.model_fields))


def _kind_name(model: type[BaseModel]) -> str:
    return str(get_args(model.model_fields["kind"].annotation)[0])


_KINDS = {
    "case_report": _kind(CaseReport, {
        "case_id": _ID_FIELD,
        "status": _one_of("suspected", "confirmed", "asymptomatic", "close_contact", "excluded", "recovered",
                          "deceased"),
        "person_ref": _PSEUDONYM, "region": _SHARED_ID,
        "township": _optional(_shared_text(_text(256, guarded=True))), "grid": _GUARDED,
        "travel": _optional(_Field(_travel)), "facility": _GUARDED,
    }),
    "checkpoint_alert": _kind(CheckpointAlert, {
        "checkpoint_id": _SHARED_ID, "person_ref": _PSEUDONYM,
        "reason": _one_of("fever", "high_risk_origin", "refused_screening"),
        "temperature_c": _optional(_Field(_temperature)), "origin_region": _optional(_SHARED_ID),
        "destination_region": _optional(_SHARED_ID), "direction": _one_of("inbound", "outbound"),
        "action": _one_of("released", "referred", "quarantined"),
    }),
    "checkpoint_heartbeat": _kind(CheckpointHeartbeat, {"checkpoint_id": _SHARED_ID, "screened": _Field(_screened)}),
    "duty_shift": _kind(DutyShift, {
        "unit_id": _SHARED_ID, "post": _one_of("principal", "in_charge", "duty_officer"), "officer_id": _ID_FIELD,
        "officer_name": _Field(_text(256, guarded=True)), "phone": _Field(_text(256)), "shift_start": _TIME,
        "shift_end": _TIME, "status": _one_of("scheduled", "cancelled"),
    }),
    "escalation_ack": _kind(EscalationAck, {
        "escalation_id": _ID_FIELD, "unit_id": _SHARED_ID, "officer_id": _ID_FIELD,
        "action": _one_of("acknowledge", "resolve"), "note": _optional(_Field(_text(500, guarded=True))),
    }),
}


def accept_plain(raw: bytes) -> InputEvent | None:
    """The event when `raw` is a well-formed event beyond doubt; None means "ask the models"."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict:
        return None
    kind = data.get("kind")
    if type(kind) is not str or (spec := _KINDS.get(kind)) is None:
        return None
    checks, memos = spec.checks, spec.known
    values: dict[str, Any] = spec.blank.copy()  # every field in definition order: absent ones stay None
    try:
        for name, value in data.items():
            known = memos.get(name)
            # A value seen before is a lookup (`known` holds strings only: no other value equals one).
            if known is not None and (hit := known.get(value)) is not None:
                values[name] = hit
                continue
            check = checks.get(name)
            if check is None:
                return None  # not a field of this kind
            if check is _ID:  # inline: a call per field was a fifth of the cost
                if type(value) is not str or not 0 < len(value) <= 128:
                    return None
                values[name] = value
                continue
            checked = check(value)
            if checked is _NO:
                return None
            values[name] = checked
    except TypeError:  # an array or object where a string belongs cannot be looked up: the models say why
        return None
    if not spec.required <= data.keys() or not _consistent(kind, values):
        return None
    # Every key of `data` was a field (or the line was deferred above): they are the fields that were set.
    return construct(spec.model, values, set(data))  # type: ignore[return-value]  # spec.model is an event model


def _consistent(kind: str, v: dict[str, Any]) -> bool:
    """The models' cross-field rules (their `model_validator`s)."""
    reported = v.get("reported_at")
    if reported is not None and reported < v["occurred_at"]:
        return False
    if kind == "checkpoint_alert":
        return not (v["reason"] == "fever" and v.get("temperature_c") is None)
    if kind == "duty_shift":
        start, end = v["shift_start"], v["shift_end"]
        return bool(start < end and end - start <= MAX_SHIFT)
    return True


def _build(model: type[_M], fields: tuple[str, ...], values: dict[str, Any]) -> _M:
    every = dict.fromkeys(fields)  # every field, in definition order, None until given
    every.update(values)
    return construct(model, every, set(values))


def construct(model: type[_M], every: dict[str, Any], given: set[str]) -> _M:
    """A model of values already of their fields' types, built as validation would build it: what
    `model_construct` does, without its per-field bookkeeping. `every` holds every field in definition order
    (absent ones None: every optional field of the wire models defaults to None) and is kept, not copied;
    `given` are the fields set, so `exclude_unset` means the same as for a validated model. Also how the
    engine makes its revisions (agents/core/ladder.py)."""
    event = _new(model)
    _set(event, "__dict__", every)
    _set(event, "__pydantic_fields_set__", given)
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event
