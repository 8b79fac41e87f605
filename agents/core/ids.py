"""Stable escalation ids: the same (rule, subject) always names the same escalation."""

from __future__ import annotations

import hashlib

import orjson


def escalation_id(rule: str, subject: dict[str, str]) -> str:
    canonical = orjson.dumps([rule, subject], option=orjson.OPT_SORT_KEYS)
    return "esc-" + hashlib.sha256(canonical).hexdigest()[:20]
