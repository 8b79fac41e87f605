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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from schemas.events import KINDS, AnyEvent, InputEvent
from schemas.personal_data import GUARDED_FIELDS, REDACTED, find_personal_data, redact_identifiers

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
