"""Bytes to events and back: the one place input is judged.

Every refusal names the field at fault and carries the original bytes with refused personal data
redacted, so that the dead-letter stream can tell a member unit exactly what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from schemas.events import KINDS, AnyEvent, InputEvent
from schemas.personal_data import REDACTED, redact_identifiers

MAX_EVENT_BYTES = 1024 * 1024  # a report is a few hundred bytes; a megabyte is an attack or a bug

_EVENT = TypeAdapter[InputEvent](AnyEvent)
_PERSONAL = "personal data refused"


@dataclass(frozen=True, slots=True)
class Refusal:
    field: str | None
    reason: str
    raw: bytes  # the original bytes, refused personal data replaced by "[redacted]"
    event_id: str | None = None
    source_unit: str | None = None


def decode_event(raw: bytes) -> InputEvent | Refusal:
    if len(raw) > MAX_EVENT_BYTES:
        return Refusal("(event)", f"(event): {len(raw)} bytes is over the {MAX_EVENT_BYTES}-byte limit", raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Refusal("(event)", f"(event): not UTF-8 text (byte {exc.start})", raw)
    try:
        return _EVENT.validate_json(raw)
    except ValidationError as exc:
        return _refusal(text, raw, exc)


def _refusal(text: str, raw: bytes, exc: ValidationError) -> Refusal:
    errors = exc.errors(include_url=False, include_input=False)
    parsed: Any = None
    if errors[0]["type"] != "json_invalid":
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
    field, reason = _describe(errors[0])
    refused = [_value_at(parsed, _path(e["loc"])) for e in errors if _PERSONAL in e["msg"]]
    if refused:
        text = _redact(text, [v for v in refused if isinstance(v, str)])
        raw = text.encode("utf-8")
    event_id = source_unit = None
    if isinstance(parsed, dict):
        event_id = _clean_str(parsed.get("event_id"))
        source_unit = _clean_str(parsed.get("source_unit"))
    return Refusal(field, reason, raw, event_id, source_unit)


def _path(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # A tagged union puts the tag first (e.g. ('case_report', 'region')): the user never wrote it.
    if loc and loc[0] in KINDS:
        return loc[1:]
    return loc


def _describe(error: Any) -> tuple[str, str]:
    kind = error["type"]
    path = _path(error["loc"])
    field = ".".join(str(p) for p in path) or "(event)"
    msg: str = error["msg"]
    if msg.startswith(("Value error, ", "Assertion failed, ")):
        msg = msg.split(", ", 1)[1]
        # Cross-field checks name their field themselves ("reported_at: may not be ...").
        head, sep, rest = msg.partition(": ")
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


def _value_at(obj: Any, path: tuple[int | str, ...]) -> Any:
    for step in path:
        if isinstance(obj, dict) and isinstance(step, str):
            obj = obj.get(step)
        elif isinstance(obj, list) and isinstance(step, int) and 0 <= step < len(obj):
            obj = obj[step]
        else:
            return None
    return obj


def _redact(text: str, values: list[str]) -> str:
    for value in values:
        encoded = orjson.dumps(value).decode("utf-8")[1:-1]
        text = text.replace(encoded, REDACTED) if encoded in text else redact_identifiers(text)
    return text


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
