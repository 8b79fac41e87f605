"""The personal-data guard of contract §5.

The bus carries pseudonyms only. A raw PRC resident identity number (18 characters with a valid
ISO 7064 MOD 11-2 check digit) or a mainland mobile number (11 digits, 13–19 prefix) anywhere in a
guarded text field is refused, so it never reaches a topic, an escalation or a log.
"""

from __future__ import annotations

import re

# Bounded by non-digits: a longer digit run is some other number, not an id or a phone.
_RESIDENT_ID = re.compile(r"(?<!\d)(\d{17}[\dXx])(?!\d)")
_MOBILE = re.compile(r"(?<!\d)(1[3-9]\d{9})(?!\d)")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"

REDACTED = "[redacted]"
# Fields whose text may not hold raw identifiers (`phone` is an officer's duty contact, allowed).
GUARDED_FIELDS = frozenset({"person_ref", "township", "grid", "facility", "officer_name", "note"})


def resident_id_check_digit_valid(candidate: str) -> bool:
    total = sum(int(d) * w for d, w in zip(candidate[:17], _WEIGHTS, strict=True))
    return _CHECK[total % 11] == candidate[17].upper()


def find_personal_data(text: str) -> str | None:
    """Name the kind of raw identifier found in `text`, or None when it is clean."""
    for match in _RESIDENT_ID.finditer(text):
        if resident_id_check_digit_valid(match.group(1)):
            return "a resident identity number"
    if _MOBILE.search(text):
        return "a mobile phone number"
    return None


def refuse_personal_data(value: str) -> str:
    """Pydantic after-validator: pass clean text through, refuse raw identifiers."""
    found = find_personal_data(value)
    if found is not None:
        raise ValueError(f"personal data refused: looks like {found}; send a pseudonym")
    return value


def redact_identifiers(text: str) -> str:
    """Replace every raw identifier in `text` (used on dead-letter bytes)."""
    text = _RESIDENT_ID.sub(
        lambda m: REDACTED if resident_id_check_digit_valid(m.group(1)) else m.group(0), text
    )
    return _MOBILE.sub(REDACTED, text)
