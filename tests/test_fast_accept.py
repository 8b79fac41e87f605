"""The fast acceptor in `schemas.codec` makes exactly the events the pydantic models make, or defers.

It may say "not sure" (None) about anything, but whatever it accepts must equal what the models
accept from the same bytes: same model, same values and types, same fields set (duplicate detection
compares those), same field order (the JSON the bus writes follows it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import _EVENT, accept_plain, encode_event
from schemas.events import KINDS, InputEvent
from tests.test_schemas import DROP, RESIDENT_ID, STRATEGIES, all_fields, json_values, obj

pytestmark = pytest.mark.core
SCENARIO = Path(__file__).resolve().parent.parent / "agents" / "scenarios" / "guangyuan-2020-01-24.jsonl"


def models_say(raw: bytes) -> InputEvent | None:
    try:
        return _EVENT.validate_json(raw)
    except ValueError:
        return None


def assert_same_or_deferred(raw: bytes) -> InputEvent | None:
    fast = accept_plain(raw)
    if fast is None:
        return None
    slow = models_say(raw)
    assert slow is not None, f"accepted what the models refuse: {raw!r}"
    assert type(fast) is type(slow)
    assert fast == slow
    assert fast.model_fields_set == slow.model_fields_set
    assert list(fast.__dict__) == list(slow.__dict__)
    assert [type(v) for v in fast.__dict__.values()] == [type(v) for v in slow.__dict__.values()]
    assert fast.model_dump_json(exclude_unset=True) == slow.model_dump_json(exclude_unset=True)
    return fast


def test_every_valid_scenario_line_is_accepted_fast_and_identically() -> None:
    accepted = 0
    for line in SCENARIO.read_bytes().splitlines():
        if assert_same_or_deferred(line) is not None:
            accepted += 1
        else:
            assert models_say(line) is None, line  # only the line with a phone number is left to the models
    assert accepted == 245


@pytest.mark.parametrize("kind", KINDS)
def test_generated_events_are_accepted_identically(kind: str) -> None:
    @settings(max_examples=150, deadline=None)
    @given(STRATEGIES[kind], st.booleans())
    def check(event: InputEvent, shuffle: bool) -> None:
        raw = encode_event(event)
        if shuffle:  # another producer's key order and spacing: still the same event
            raw = json.dumps(dict(reversed(list(orjson.loads(raw).items()))), indent=1).encode()
        assert assert_same_or_deferred(raw) is not None  # valid events are the common case: never deferred

    check()


@settings(max_examples=400, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    edits=st.lists(st.tuples(st.sampled_from([*all_fields, "colour"]),
                             st.just(DROP) | json_values | st.just(RESIDENT_ID) | st.just("13800138000")
                             | st.sampled_from([True, 1, 1.0, 38, 38.5, "2020-01-24t10:00:00z", "2020-01-24T10:00:00",
                                                "2020-02-30T10:00:00+08:00", "1999-12-31T23:59:59+00:00", None])),
                   min_size=1, max_size=3),
)
def test_edited_events_are_accepted_identically_or_deferred(kind: str, edits: list[tuple[str, Any]]) -> None:
    data = obj(kind)
    for name, value in edits:
        if name == "travel[0]":
            data["travel"] = [value] if value is not DROP else []
        elif value is DROP:
            data.pop(name, None)
        else:
            data[name] = value
    assert_same_or_deferred(json.dumps(data, ensure_ascii=False).encode())


@pytest.mark.parametrize("raw", [
    b'{"kind": "checkpoint_heartbeat", "kind": "case_report"}',
    b'[1, 2]', b'"x"', b'{"kind": ["checkpoint_alert"]}', b'\xff\xfe', b'{"event_id": "a",}',
])
def test_odd_input_is_left_to_the_models(raw: bytes) -> None:
    assert accept_plain(raw) is None


def test_duplicate_keys_mean_what_the_models_say() -> None:
    data = obj("checkpoint_heartbeat")
    raw = json.dumps(data)[:-1].encode() + b', "screened": 7}'
    assert assert_same_or_deferred(raw) is not None
