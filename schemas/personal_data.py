"""The personal-data guard of contract §5.

The bus carries pseudonyms only. A raw PRC resident identity number (18 characters with a valid
ISO 7064 MOD 11-2 check digit) or a mainland mobile number (11 digits, 13–19 prefix) anywhere in a
guarded text field is refused, so it never reaches a topic, an escalation or a log.
"""

from __future__ import annotations

import re
import unicodedata

# Bounded by non-digits: a longer digit run is some other number, not an id or a phone.
_RESIDENT_ID = re.compile(r"(?<![0-9])([0-9]{17}[0-9X])(?![0-9])")
_MOBILE = re.compile(r"(?<![0-9])(1[3-9][0-9]{9})(?![0-9])")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
# Any decimal digit (ASCII, full-width, other scripts): an identifier typed with a Chinese input
# method in full-width form is still the same identifier.
_ANY_DIGIT = re.compile(r"\d")
_CHECK_LETTER = str.maketrans({"x": "X", "Ｘ": "X", "ｘ": "X"})

REDACTED = "[redacted]"
# Fields whose text may not hold raw identifiers (`phone` is an officer's duty contact, allowed).
GUARDED_FIELDS = frozenset({"person_ref", "township", "grid", "facility", "officer_name", "note"})


def _normalised(text: str) -> str:
    """`text` with every decimal digit as its ASCII digit and the check letter as `X`.

    Each character maps to exactly one character, so match positions stay valid in `text`.
    """
    if not text.isascii():
        text = _ANY_DIGIT.sub(lambda m: str(unicodedata.decimal(m.group())), text)
    return text.translate(_CHECK_LETTER)


def resident_id_check_digit_valid(candidate: str) -> bool:
    candidate = _normalised(candidate)
    total = sum(int(d) * w for d, w in zip(candidate[:17], _WEIGHTS, strict=True))
    return _CHECK[total % 11] == candidate[17]


_ID_NUMBER = "a resident identity number"
_MOBILE_NUMBER = "a mobile phone number"


def _identifier_spans(text: str) -> list[tuple[int, int, str]]:
    plain = _normalised(text)
    spans = [
        (m.start(), m.end(), _ID_NUMBER)
        for m in _RESIDENT_ID.finditer(plain)
        if resident_id_check_digit_valid(m.group(1))
    ]
    spans += [(m.start(), m.end(), _MOBILE_NUMBER) for m in _MOBILE.finditer(plain)]
    return sorted(spans)


def find_personal_data(text: str) -> str | None:
    """Name the kind of raw identifier found in `text`, or None when it is clean."""
    found = {kind for _, _, kind in _identifier_spans(text)}
    return next((kind for kind in (_ID_NUMBER, _MOBILE_NUMBER) if kind in found), None)


def refuse_personal_data(value: str) -> str:
    """Pydantic after-validator: pass clean text through, refuse raw identifiers."""
    found = find_personal_data(value)
    if found is not None:
        raise ValueError(f"personal data refused: looks like {found}; send a pseudonym")
    return value


def redact_identifiers(text: str) -> str:
    """Replace every raw identifier in `text` (used on dead-letter bytes)."""
    out: list[str] = []
    end = 0
    for start, stop, _ in _identifier_spans(text):  # an 18-digit and an 11-digit run never overlap
        out += [text[end:start], REDACTED]
        end = stop
    out.append(text[end:])
    return "".join(out)
